using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Platform;

/// <summary>
/// The one place where the device and the thread count are chosen. Every tensor of a run lives on
/// <see cref="Device"/>; random numbers are drawn on the CPU (from a seeded generator) and moved there, so a seed
/// gives the same noise on every device.
/// </summary>
public static class Compute
{
    static Device? device;

    /// <summary>The device of the current run (CPU until <see cref="UseDevice"/> says otherwise).</summary>
    public static Device Device => device ??= CPU;

    /// <summary>
    /// Chooses the device: "cpu", "cuda" (fails clearly if CUDA is not there) or "auto" (CUDA when available).
    /// </summary>
    public static Device UseDevice(string name)
    {
        TorchNative.EnsureLoaded();
        device = Resolve(name);
        return device;
    }

    /// <summary>Resolves a device name without making it the current one.</summary>
    public static Device Resolve(string name)
    {
        switch (name.Trim().ToLowerInvariant())
        {
            case "cpu": return CPU;
            case "auto": return cuda.is_available() ? CUDA : CPU;
            case "cuda":
                if (!cuda.is_available())
                    throw new ArgumentException(
                        "--device cuda was asked for, but CUDA is not available: either no NVIDIA GPU/driver is visible, or " +
                        "this build uses the CPU backend. Rebuild with -p:TorchBackend=cuda on a machine with a GPU " +
                        "(README, 'GPU'), or use --device cpu.");
                return CUDA;
            default:
                throw new ArgumentException($"unknown device '{name}': use cpu, cuda or auto");
        }
    }

    /// <summary>True if a CUDA device can be used by this process.</summary>
    public static bool CudaAvailable
    {
        get
        {
            TorchNative.EnsureLoaded();
            return cuda.is_available();
        }
    }

    /// <summary>
    /// Sets libtorch's intra-op thread count; null chooses automatically (<see cref="AutoThreads"/>). Returns the count.
    /// On a 2-core machine shared with another busy process, 2 threads were measured 3–4× slower than 1
    /// (oversubscription: the threads wait for each other), so the automatic choice leaves busy cores alone.
    /// The thread count changes the last bits of some results (parallel sums), so pass it explicitly when two runs
    /// must be bit-identical.
    /// </summary>
    public static int SetThreads(int? threads)
    {
        TorchNative.EnsureLoaded();
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "thread count must be ≥ 1");
        int n = threads ?? AutoThreads();
        set_num_threads(n);
        return n;
    }

    /// <summary>
    /// One thread per core that other processes leave free: samples /proc/stat for a quarter of a second while this
    /// process waits, so the busy time measured is everyone else's. All cores when that cannot be read.
    /// </summary>
    public static int AutoThreads()
    {
        int cores = Environment.ProcessorCount;
        if (!OperatingSystem.IsLinux() || cores == 1) return cores;
        try
        {
            var (busy0, total0) = CpuTimes();
            Thread.Sleep(250);
            var (busy1, total1) = CpuTimes();
            if (total1 <= total0) return cores;
            OtherProcessesBusyCores = (busy1 - busy0) / (double)(total1 - total0) * cores;
            return Math.Clamp((int)Math.Floor(cores - OtherProcessesBusyCores + 0.3), 1, cores);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return cores;
        }
    }

    /// <summary>What <see cref="AutoThreads"/> measured: cores kept busy by other processes (NaN before).</summary>
    public static double OtherProcessesBusyCores { get; private set; } = double.NaN;

    static (long Busy, long Total) CpuTimes()
    {
        // cpu  user nice system idle iowait irq softirq steal ...
        var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Skip(1).Take(8).Select(long.Parse).ToArray();
        long idle = fields[3] + fields[4];
        long total = fields.Sum();
        return (total - idle, total);
    }

    /// <summary>N(0, I) noise of <paramref name="shape"/>, drawn on the CPU from <paramref name="generator"/>, on <paramref name="on"/>.</summary>
    public static Tensor Randn(long[] shape, Generator? generator, Device? on = null)
    {
        var x = randn(shape, generator: generator);
        if (on is null || on.type == DeviceType.CPU) return x;
        using (x) return x.to(on);
    }
}
