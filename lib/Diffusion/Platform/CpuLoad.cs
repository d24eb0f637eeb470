namespace Diffusion.Platform;

/// <summary>
/// How busy the machine's cores are, and how much of that is this program's own family: the process itself, the
/// processes that launched it, and the other children of a <c>dotnet</c> launcher among them (<c>dotnet run</c>'s build
/// nodes, <c>dotnet test</c>'s host). Linux only (/proc). Times are in clock ticks, as /proc reports them.
/// Processes this process started itself (say, a load generator in a test) count as other processes.
/// </summary>
static class CpuLoad
{
    /// <summary>Machine-wide busy and total ticks, and the CPU ticks of each process of the family.</summary>
    public readonly record struct Snapshot(long Busy, long Total, Dictionary<int, long> FamilyTicks);

    /// <param name="withOwnChildren">Count the processes this one started as family too (tests measure a child's view).</param>
    public static Snapshot Sample(bool withOwnChildren = false)
    {
        // cpu  user nice system idle iowait irq softirq steal ...
        var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Skip(1).Take(8).Select(long.Parse).ToArray();
        long idle = fields[3] + fields[4];
        long total = fields.Sum();
        return new Snapshot(total - idle, total, Family(withOwnChildren));
    }

    /// <summary>
    /// Cores kept busy by processes outside the family between two snapshots: all busy time minus the family's.
    /// A family process that ended in between is not subtracted (its last ticks are unknown), so the result errs
    /// towards "busy".
    /// </summary>
    public static double OtherBusyCores(Snapshot before, Snapshot after, int cores)
    {
        long family = 0;
        foreach (var (pid, ticks) in after.FamilyTicks)
            family += before.FamilyTicks.TryGetValue(pid, out var old) ? Math.Max(ticks - old, 0) : ticks;
        long busy = Math.Max(after.Busy - before.Busy - family, 0);
        return busy / (double)(after.Total - before.Total) * cores;
    }

    readonly record struct ProcStat(int Pid, int ParentPid, string Command, long Ticks);

    /// <summary>CPU ticks (user + system) of this process, its ancestors, and the descendants of its dotnet ancestors.</summary>
    static Dictionary<int, long> Family(bool withOwnChildren)
    {
        var all = new Dictionary<int, ProcStat>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid)) continue;
            var stat = Read(pid);
            if (stat is not null) all[pid] = stat.Value;
        }
        var children = all.Values.GroupBy(p => p.ParentPid).ToDictionary(g => g.Key, g => g.Select(p => p.Pid).ToList());
        int self = Environment.ProcessId;
        var family = new Dictionary<int, long>();
        if (all.TryGetValue(self, out var me)) family[self] = me.Ticks;
        var launchers = new List<int>();
        for (int pid = me.ParentPid; pid > 1 && all.TryGetValue(pid, out var p) && !family.ContainsKey(pid); pid = p.ParentPid)
        {
            family[pid] = p.Ticks;
            if (p.Command == "dotnet") launchers.Add(pid);
        }
        // The launchers' other descendants (build nodes, the test host), but not the processes this one started.
        var stack = new Stack<int>(launchers);
        if (withOwnChildren) stack.Push(self);
        while (stack.Count > 0)
        {
            int pid = stack.Pop();
            if (!children.TryGetValue(pid, out var kids)) continue;
            foreach (int kid in kids)
            {
                if (kid == self && !withOwnChildren) continue;
                if (family.TryAdd(kid, all[kid].Ticks) || launchers.Contains(kid)) stack.Push(kid);
            }
        }
        return family;
    }

    static ProcStat? Read(int pid)
    {
        string text;
        try { text = File.ReadAllText($"/proc/{pid}/stat"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }   // it has ended
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
        int open = text.IndexOf('('), close = text.LastIndexOf(')');
        if (open < 0 || close < open) return null;
        var rest = text[(close + 2)..].Split(' ');
        return new ProcStat(pid, int.Parse(rest[1]), text[(open + 1)..close], long.Parse(rest[11]) + long.Parse(rest[12]));
    }
}
