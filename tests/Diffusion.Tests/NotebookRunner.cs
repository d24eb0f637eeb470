using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Diffusion.Tests;

/// <summary>
/// Executes a .ipynb headless in the kernel Jupyter and VS Code users run: Debian's <c>jupyter nbconvert --execute</c>
/// driving dotnet-interactive 1.0.712001 (a local tool, dotnet-tools.json), whose kernelspec is registered in a private
/// Jupyter folder (artifacts/jupyter), never the user's home. It runs from the notebook's own folder, as VS Code does,
/// and reads back every cell's outputs.
/// </summary>
static class NotebookRunner
{
    public sealed record CellOutput(int Cell, string FirstLine, string OutputType, IReadOnlyList<string> MimeTypes, string Text);

    public sealed record Result(string Notebook, int ExitCode, IReadOnlyList<CellOutput> Outputs, string ExecutedPath, string Log)
    {
        public IEnumerable<CellOutput> Errors => Outputs.Where(o => o.OutputType == "error");
        public int Count(string mime) => Outputs.Count(o => o.MimeTypes.Contains(mime));
        public int PlotlyCharts => Outputs.Count(o => o.MimeTypes.Contains("text/html") && o.Text.Contains("renderPlotly_"));

        /// <summary>Outputs a learner would read as something gone wrong: compiler warnings or errors, stack traces.</summary>
        public IEnumerable<CellOutput> Suspicious => Outputs.Where(o => o.OutputType != "error" && LooksWrong(o));

        /// <summary>
        /// Empty if every cell ran and printed nothing alarming; else one line per failing cell (notebook, cell number,
        /// source, message), then one per output showing a compiler diagnostic or a stack trace.
        /// </summary>
        public string Failures()
        {
            var lines = Errors.Select(e => $"{Notebook} cell {e.Cell} ({e.FirstLine}): {e.Text}").ToList();
            lines.AddRange(Suspicious.Select(o => $"{Notebook} cell {o.Cell} ({o.FirstLine}) printed: {Excerpt(o.Text)}"));
            if (ExitCode != 0 && lines.Count == 0) lines.Add($"{Notebook}: jupyter nbconvert exited with {ExitCode} and no cell error.\n{Log}");
            return string.Join("\n", lines);
        }
    }

    static readonly Regex CompilerDiagnostic = new(@"\b(warning|error) CS\d{4}", RegexOptions.Compiled);
    static readonly Regex StackFrame = new(@"^\s+at \S+\(.*\)", RegexOptions.Multiline | RegexOptions.Compiled);

    /// <summary>A compiler diagnostic anywhere; a stack frame in text a learner reads (not inside HTML and scripts).</summary>
    static bool LooksWrong(CellOutput o) =>
        CompilerDiagnostic.IsMatch(o.Text) ||
        ((o.OutputType == "stream" || o.MimeTypes.SequenceEqual(["text/plain"])) && StackFrame.IsMatch(o.Text));

    static string Excerpt(string text)
    {
        var m = CompilerDiagnostic.Match(text) is { Success: true } d ? d : StackFrame.Match(text);
        var start = Math.Max(0, m.Index - 40);
        return Regex.Replace(text.Substring(start, Math.Min(text.Length - start, 240)), @"\s+", " ").Trim();   // one line
    }

    static readonly object BuildLock = new();
    static bool built;

    /// <summary>The private Jupyter folder: kernelspecs in kernels/, connection files in runtime/.</summary>
    public static string JupyterDir => Path.Combine(TestSetup.RepoRoot, "artifacts", "jupyter");

    /// <summary>The Debian packages that provide <c>jupyter nbconvert</c> and its kernel client.</summary>
    public const string AptPackages = "jupyter-nbconvert jupyter-client python3-ipykernel";

    /// <summary>
    /// Slot k's private Jupyter folder. Two notebooks run at once (<see cref="NotebookRuns"/>) need two kernelspecs:
    /// dotnet-interactive binds the first free port of its <c>--http-port-range</c>, and two kernels starting in the same
    /// second both took 2048 ("address already in use"). Slot 0 keeps the registered range, slot k uses its own.
    /// </summary>
    static string SlotDir(int slot) => slot == 0 ? JupyterDir : JupyterDir + "-slot" + slot;

    public const int Slots = 2;

    static Dictionary<string, string> JupyterEnvironment(int slot = 0) => new()
    {
        ["JUPYTER_PATH"] = SlotDir(slot),
        ["JUPYTER_DATA_DIR"] = SlotDir(slot),
        ["JUPYTER_CONFIG_DIR"] = Path.Combine(SlotDir(slot), "config"),
        ["JUPYTER_RUNTIME_DIR"] = Path.Combine(SlotDir(slot), "runtime"),
        ["JUPYTER_PLATFORM_DIRS"] = "1",
    };

    /// <summary>Null when <c>{program} nbconvert --version</c> works; else the one-line error naming the apt packages.</summary>
    public static string? MissingJupyter(string program = "jupyter")
    {
        var nbconvert = TryRun(TestSetup.RepoRoot, TimeSpan.FromMinutes(2), program, JupyterEnvironment(), "nbconvert", "--version");
        if (nbconvert is { ExitCode: 0 }) return null;
        var why = nbconvert is null ? $"no '{program}' on PATH" : nbconvert.Output.Trim().Split('\n')[^1];
        return $"error: the notebook tests need Jupyter's nbconvert, which is not installed ({why}). " +
               $"Install it with: sudo apt-get install -y {AptPackages}";
    }

    /// <summary>
    /// Once per test run: checks that jupyter nbconvert is installed (else one message naming the apt packages), restores
    /// the local tools, registers dotnet-interactive's kernelspec in <see cref="JupyterDir"/>, builds lib/Diffusion.Notebooks.
    /// </summary>
    public static void Prepare()
    {
        lock (BuildLock)
        {
            if (built) return;
            if (MissingJupyter() is { } missing) throw new InvalidOperationException(missing);
            KillStrayKernels();
            var restore = Run(TestSetup.RepoRoot, TimeSpan.FromMinutes(10), "dotnet", "tool", "restore");
            if (restore.ExitCode != 0) throw new InvalidOperationException("dotnet tool restore failed:\n" + restore.Output);
            var kernels = Path.Combine(JupyterDir, "kernels");
            Directory.CreateDirectory(kernels);
            var install = Run(TestSetup.RepoRoot, TimeSpan.FromMinutes(5), "dotnet", "tool", "run", "dotnet-interactive", "--",
                "jupyter", "install", "--path", kernels);
            if (install.ExitCode != 0 || !File.Exists(Path.Combine(kernels, ".net-csharp", "kernel.json")))
                throw new InvalidOperationException("registering the dotnet-interactive kernel for Jupyter failed:\n" + install.Output);
            var build = Run(TestSetup.RepoRoot, TimeSpan.FromMinutes(10), "dotnet", "build", "lib/Diffusion.Notebooks", "-c", "Release", "-nologo", "-v", "q");
            if (build.ExitCode != 0) throw new InvalidOperationException("building lib/Diffusion.Notebooks failed:\n" + build.Output);
            var spec = File.ReadAllText(Path.Combine(kernels, ".net-csharp", "kernel.json"));
            const string range = "\"2048-3000\"";
            if (!spec.Contains(range, StringComparison.Ordinal))
                throw new InvalidOperationException("dotnet-interactive's kernelspec no longer says --http-port-range 2048-3000: update NotebookRunner.Prepare\n" + spec);
            for (int slot = 1; slot < Slots; slot++)
            {
                var dir = Path.Combine(SlotDir(slot), "kernels", ".net-csharp");
                Directory.CreateDirectory(dir);
                File.WriteAllText(Path.Combine(dir, "kernel.json"), spec.Replace(range, $"\"{3001 + 1000 * (slot - 1)}-{4000 + 1000 * (slot - 1)}\"", StringComparison.Ordinal));
            }
            built = true;
        }
    }

    /// <summary>
    /// Runs one notebook in quick mode, every cell even after a failing one (as "Run All" shows them); the executed copy
    /// goes to <paramref name="outputDir"/> (default artifacts/notebooks/).
    /// </summary>
    public static Result Execute(string notebookPath, TimeSpan timeout, IDictionary<string, string>? environment = null,
        string? outputDir = null, Func<bool>? stillWanted = null)
    {
        Prepare();
        var slot = FreeSlots.Take();                                    // at most Slots kernels at once, each with its own port range
        try
        {
            return stillWanted?.Invoke() == false
                ? new Result(Path.GetFileName(notebookPath), -2, [], "", "not run: no longer wanted")
                : Execute(notebookPath, timeout, environment, outputDir, slot);
        }
        finally { FreeSlots.Add(slot); }
    }

    /// <summary>Kills every notebook run still going (with its kernel); see <see cref="NotebookRuns.StopUnclaimedRuns"/>.</summary>
    public static void KillRunning()
    {
        lock (Live)
            foreach (var p in Live)
                try { p.Kill(entireProcessTree: true); } catch (InvalidOperationException) { } catch (System.ComponentModel.Win32Exception) { }
    }

    static readonly BlockingCollection<int> FreeSlots = new(new ConcurrentQueue<int>(Enumerable.Range(0, Slots)));

    static Result Execute(string notebookPath, TimeSpan timeout, IDictionary<string, string>? environment, string? outputDir, int slot)
    {
        var full = Path.GetFullPath(notebookPath);
        var outDir = outputDir ?? Path.Combine(TestSetup.RepoRoot, "artifacts", "notebooks");
        Directory.CreateDirectory(outDir);
        var executed = Path.Combine(outDir, Path.GetFileName(full));
        File.Delete(executed);
        var env = JupyterEnvironment(slot);
        env["DIFFUSION_QUICK"] = "1";
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) env[k] = v;
        var r = Run(Path.GetDirectoryName(full)!, timeout, "jupyter", env, "nbconvert", "--to", "notebook", "--execute",
            "--allow-errors", $"--ExecutePreprocessor.timeout={(int)timeout.TotalSeconds}",
            "--output-dir", outDir, "--output", Path.GetFileName(full), Path.GetFileName(full));
        var outputs = File.Exists(executed) ? ReadOutputs(executed) : [];
        return new Result(Path.GetFileName(full), r.ExitCode, outputs, executed, r.Output);
    }

    public static List<CellOutput> ReadOutputs(string ipynb)
    {
        var root = JsonNode.Parse(File.ReadAllText(ipynb))!;
        var result = new List<CellOutput>();
        int index = 0;
        foreach (var cell in root["cells"]!.AsArray())
        {
            index++;
            if ((string?)cell!["cell_type"] != "code") continue;
            var first = Join(cell["source"]).Split('\n').FirstOrDefault(l => l.Trim().Length > 0)?.Trim() ?? "";
            foreach (var o in cell["outputs"]?.AsArray() ?? [])
            {
                var type = (string)o!["output_type"]!;
                var data = o["data"]?.AsObject();
                var mimes = data?.Select(kv => kv.Key).ToList() ?? [];
                string text = type == "error"
                    ? $"{(string?)o["ename"]}: {(string?)o["evalue"]}"
                    : type == "stream" ? Join(o["text"]) : string.Join("\n", data?.Select(kv => Join(kv.Value)) ?? []);
                result.Add(new CellOutput(index, first.Length > 80 ? first[..80] : first, type, mimes, text));
            }
        }
        return result;
    }

    static string Join(JsonNode? node) => node switch
    {
        null => "",
        JsonArray a => string.Concat(a.Select(x => (string?)x)),
        JsonValue v => v.ToString(),
        _ => node.ToJsonString(),
    };

    sealed record ProcessResult(int ExitCode, string Output);

    static ProcessResult Run(string dir, TimeSpan timeout, string file, params string[] args) => Run(dir, timeout, file, null, args);

    /// <summary>Like Run, but null when the program is not found.</summary>
    static ProcessResult? TryRun(string dir, TimeSpan timeout, string file, IDictionary<string, string>? env, params string[] args)
    {
        try { return Run(dir, timeout, file, env, args); }
        catch (System.ComponentModel.Win32Exception) { return null; }
    }

    static ProcessResult Run(string dir, TimeSpan timeout, string file, IDictionary<string, string>? env, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        lock (Live) Live.Add(p);
        try
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(timeout))
            {
                p.Kill(entireProcessTree: true);
                return new ProcessResult(-1, $"timed out after {timeout.TotalMinutes} minutes");
            }
            return new ProcessResult(p.ExitCode, stdout.Result + stderr.Result);
        }
        finally { lock (Live) Live.Remove(p); }
    }

    /// <summary>Processes still running (a notebook started beside another, see <see cref="NotebookRuns"/>).</summary>
    static readonly HashSet<Process> Live = CreateLiveSet();

    static HashSet<Process> CreateLiveSet()
    {
        var set = new HashSet<Process>();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => KillStrayKernels();
        return set;
    }

    /// <summary>
    /// Kills nbconvert processes and kernels left by an earlier test process (Linux): the test host can be killed before
    /// its runs end (vstest kills it at the end of a run; no exit handler runs then), and an orphaned dotnet-interactive
    /// kernel waits for its client for ever. Recognised by the private Jupyter folders in their environment, so nothing
    /// but this repository's test runs is touched. Called before the first notebook of a test process.
    /// </summary>
    static void KillStrayKernels()
    {
        if (!OperatingSystem.IsLinux()) return;
        var marker = "JUPYTER_RUNTIME_DIR=" + JupyterDir;                  // slot 0 and the -slotK folders
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId) continue;
            try
            {
                var environ = File.ReadAllText(Path.Combine(dir, "environ"));
                if (!environ.Split('\0').Any(v => v.StartsWith(marker, StringComparison.Ordinal))) continue;
                using var p = Process.GetProcessById(pid);
                p.Kill();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException
                                          or System.ComponentModel.Win32Exception) { }
        }
    }
}
