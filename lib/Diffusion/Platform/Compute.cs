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
    /// Sets libtorch's intra-op thread count; null chooses automatically (<see cref="AutoThreads"/>) and lets
    /// <see cref="RecheckThreads"/> adjust the count later. Returns the count.
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
        Threads = n;
        ThreadsAutomatic = threads is null;
        lastLoad = ThreadsAutomatic && OperatingSystem.IsLinux() ? TryLoad() : null;
        lastRecheck = Environment.TickCount64;
        return n;
    }

    /// <summary>The thread count <see cref="SetThreads"/> or <see cref="RecheckThreads"/> last set (0 before).</summary>
    public static int Threads { get; internal set; }

    /// <summary>True when the thread count was chosen automatically, so <see cref="RecheckThreads"/> may change it.</summary>
    public static bool ThreadsAutomatic { get; private set; }

    /// <summary>
    /// One thread per core that other processes leave free. Samples /proc/stat for half a second and subtracts the CPU
    /// time of this process and of the programs that launched it (the <c>dotnet run</c> / <c>dotnet test</c> process and
    /// its build or launcher children: busy for a moment after starting us — they made every <c>dotnet run</c> start on
    /// 1 of 2 threads). What remains is everyone else's load. All cores when that cannot be read.
    /// </summary>
    public static int AutoThreads()
    {
        int cores = Environment.ProcessorCount;
        if (!OperatingSystem.IsLinux() || cores == 1) return cores;
        var before = TryLoad();
        Thread.Sleep(500);
        var after = TryLoad();
        if (before is null || after is null || after.Value.Total <= before.Value.Total) return cores;
        OtherProcessesBusyCores = CpuLoad.OtherBusyCores(before.Value, after.Value, cores);
        return ThreadsFor(OtherProcessesBusyCores, cores);
    }

    /// <summary>The thread count for a machine where other processes keep <paramref name="busyCores"/> busy.</summary>
    static int ThreadsFor(double busyCores, int cores) => Math.Clamp((int)Math.Floor(cores - busyCores + 0.3), 1, cores);

    /// <summary>What <see cref="AutoThreads"/> or <see cref="RecheckThreads"/> measured: cores kept busy by other processes (NaN before).</summary>
    public static double OtherProcessesBusyCores { get; private set; } = double.NaN;

    /// <summary>Raised by <see cref="RecheckThreads"/> with a line announcing a changed thread count.</summary>
    public static event Action<string>? ThreadsChanged;

    static CpuLoad.Snapshot? lastLoad;
    static long lastRecheck;

    /// <summary>
    /// Call between the steps of a long loop (training, sampling). With an automatic thread count, at most every
    /// <paramref name="everySeconds"/> it measures the load of other processes since the last check — while this
    /// process works, its own CPU time subtracted — and raises or lowers the thread count to the cores they leave free.
    /// Returns a line announcing the change, or null when nothing changed (always null for a fixed thread count).
    /// </summary>
    public static string? RecheckThreads(double everySeconds = 20)
    {
        if (!ThreadsAutomatic || lastLoad is null) return null;
        long now = Environment.TickCount64;
        if (now - lastRecheck < everySeconds * 1000) return null;
        lastRecheck = now;
        var sample = TryLoad();
        if (sample is null) return null;
        var previous = lastLoad.Value;
        lastLoad = sample;
        if (sample.Value.Total <= previous.Total) return null;
        int cores = Environment.ProcessorCount;
        double busy = CpuLoad.OtherBusyCores(previous, sample.Value, cores);
        OtherProcessesBusyCores = busy;
        int wanted = ThreadsFor(busy, cores);
        if (wanted == Threads) return null;
        int old = Threads;
        set_num_threads(wanted);
        Threads = wanted;
        var line = $"threads: {old} → {wanted} (auto: other processes now keep {busy:F1} of {cores} cores busy)";
        ThreadsChanged?.Invoke(line);
        return line;
    }

    static CpuLoad.Snapshot? TryLoad()
    {
        try { return CpuLoad.Sample(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }

    /// <summary>N(0, I) noise of <paramref name="shape"/>, drawn on the CPU from <paramref name="generator"/>, on <paramref name="on"/>.</summary>
    public static Tensor Randn(long[] shape, Generator? generator, Device? on = null)
    {
        var x = randn(shape, generator: generator);
        if (on is null || on.type == DeviceType.CPU) return x;
        using (x) return x.to(on);
    }
}
