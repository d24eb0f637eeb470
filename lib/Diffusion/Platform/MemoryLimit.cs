using System.Globalization;

namespace Diffusion.Platform;

/// <summary>
/// The memory this process may use (the machine's, its container's or its address-space limit), and the one check every
/// allocation of a network, a batch, a dataset or a file's bytes goes through first: what cannot fit is refused with
/// numbers instead of growing until the kernel kills the process.
/// </summary>
public static class MemoryLimit
{
    /// <summary>The memory this process may use: physical memory, or the container's limit (what the .NET runtime sees).</summary>
    public static long Available
    {
        get
        {
            var env = Environment.GetEnvironmentVariable("DIFFUSION_MEMORY_LIMIT_MB");
            if (long.TryParse(env, NumberStyles.Integer, CultureInfo.InvariantCulture, out var mb) && mb > 0) return mb << 20;
            long total = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
            return AddressSpaceLeft() is { } left ? Math.Min(total, left) : total;
        }
    }

    /// <summary>Under an address-space limit (ulimit -v, prlimit --as): the limit minus what the process has mapped already (Linux).</summary>
    static long? AddressSpaceLeft()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            var limit = new ulong[2];
            if (getrlimit(9 /* RLIMIT_AS */, limit) != 0 || limit[0] == ulong.MaxValue || limit[0] > long.MaxValue) return null;
            long mapped = 0;
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmSize:", StringComparison.Ordinal))
                    mapped = 1024 * long.Parse(line[7..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            return Math.Max(0, (long)limit[0] - mapped);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or IOException or FormatException) { return null; }
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    static extern int getrlimit(int resource, [System.Runtime.InteropServices.Out] ulong[] limit);

    /// <summary>Throws (an <see cref="ArgumentException"/> unless <paramref name="error"/> says otherwise) if <paramref name="bytes"/> exceed 80 % of <see cref="Available"/>.</summary>
    public static void Check(long bytes, string what, string fix, Func<string, Exception>? error = null)
    {
        long limit = (long)(0.8 * Available);
        if (bytes <= limit) return;
        throw (error ?? (m => new ArgumentException(m)))(
            $"{what} needs about {Gigabytes(bytes)} of memory, but this machine allows {Gigabytes(Available)} (at most {Gigabytes(limit)} for one thing): {fix}.");
    }

    /// <summary>"12.3 GB".</summary>
    public static string Gigabytes(long bytes) => (bytes / 1e9).ToString(bytes >= 100_000_000 ? "0.0" : "0.000", CultureInfo.InvariantCulture) + " GB";
}
