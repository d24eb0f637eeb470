using System.Globalization;
using System.Reflection;
using System.Runtime.Loader;
using Diffusion.Platform;

namespace Diffusion.Notebooks;

/// <summary>What <see cref="Course.Setup"/> found (<see cref="Course.Environment"/> shows it in full).</summary>
public sealed record CourseEnvironment(
    string TorchSharp, string LibTorch, string Device, int Threads, bool QuickMode, bool CudaAvailable,
    string DataFolder, string TorchLoad)
{
    /// <summary>The one line the setup cell prints: what a learner needs to know before running anything.</summary>
    public string Summary =>
        $"device {Device} · {Threads} thread{(Threads == 1 ? "" : "s")} · " +
        (QuickMode ? $"quick mode ({Course.QuickModeVariable}=1: tiny settings, minutes on a CPU)"
                   : $"course mode (the real settings; set {Course.QuickModeVariable}=1 for a quick run)");
}

/// <summary>
/// The notebooks' entry point: one call in each notebook's setup cell makes TorchSharp load (even on Debian 12),
/// fixes Plotly.NET's FSharp.Core version in the notebook kernels, picks the device, and reports what it found.
/// </summary>
public static class Course
{
    /// <summary>Environment variable that switches every notebook to quick mode (tiny settings for CI).</summary>
    public const string QuickModeVariable = "DIFFUSION_QUICK";

    /// <summary>
    /// True when <c>DIFFUSION_QUICK=1</c>: notebooks then train and sample with tiny settings so that the whole course
    /// runs in minutes on a CPU (CI does this). Without it they use the real course settings.
    /// </summary>
    public static bool Quick => System.Environment.GetEnvironmentVariable(QuickModeVariable) is "1" or "true" or "yes";

    /// <summary>Picks the quick-mode or the course value.</summary>
    public static T Pick<T>(T quick, T course) => Quick ? quick : course;

    static CourseEnvironment? environment;

    /// <summary>
    /// Call once at the top of every notebook (the setup cell does): prints one line (device, threads, quick or course
    /// mode; <see cref="CourseEnvironment.Summary"/>). Idempotent; call again to change the device or the threads.
    /// </summary>
    /// <param name="device">"auto" (CUDA when available, else CPU), "cpu" or "cuda".</param>
    /// <param name="threads">libtorch threads (null: one per core).</param>
    /// <param name="inlinePlotly">Send plotly.js (bundled with Plotly.NET) into the notebook once, so that charts draw
    /// without internet. Set false to load it from the plotly CDN instead.</param>
    public static CourseEnvironment Setup(string device = "auto", int? threads = null, bool inlinePlotly = true)
    {
        var load = TorchNative.EnsureLoaded();
        PlotlyKernelFix.Register();
        KernelWarningLevel.Apply();
        Compute.SetThreads(threads);
        Compute.ThreadsChanged -= Console.WriteLine;      // an automatic thread count that follows the load says so
        Compute.ThreadsChanged += Console.WriteLine;
        var dev = Compute.UseDevice(device);
        if (environment is null && Show.InKernel) Charts.LoadPlotlyJs(inlinePlotly);
        environment = new CourseEnvironment(
            TorchSharp: typeof(torch).Assembly.GetName().Version?.ToString() ?? "?",
            LibTorch: torch.__version__,
            Device: dev.ToString(),
            Threads: torch.get_num_threads(),
            QuickMode: Quick,
            CudaAvailable: torch.cuda.is_available(),
            DataFolder: DataFolder,
            TorchLoad: load.Summary);
        Console.WriteLine(environment.Summary);
        return environment;
    }

    /// <summary>What the last <see cref="Setup"/> found, in full (versions, data folder, how TorchSharp's native library
    /// was loaded); null before it ran.</summary>
    public static CourseEnvironment? Environment => environment;

    /// <summary>The repository's data/ folder, found by walking up from the current folder (the notebook's folder).</summary>
    public static string DataFolder
    {
        get
        {
            for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "data");
                if (Directory.Exists(Path.Combine(candidate, "fashion-mnist"))) return candidate;
            }
            throw new DirectoryNotFoundException(
                "cannot find the repository's data/ folder above " + Directory.GetCurrentDirectory() +
                ". Open the notebook from the repository's notebooks/ folder.");
        }
    }

    /// <summary>data/fashion-mnist.</summary>
    public static string FashionMnistFolder => Path.Combine(DataFolder, "fashion-mnist");

    /// <summary>A folder for files a notebook writes (runs/notebooks under the repository; ignored by git).</summary>
    public static string OutputFolder(string name)
    {
        var dir = Path.Combine(Path.GetDirectoryName(DataFolder)!, "runs", "notebooks", name);
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>Formats a number for prose: 4 significant digits, invariant culture.</summary>
    public static string Num(double x) => x.ToString("G4", CultureInfo.InvariantCulture);
}

/// <summary>
/// TorchSharp 0.107 is compiled against System.Runtime.Numerics 8.0; the kernels run on .NET 10, so Roslyn warns
/// "CS1701: Assuming assembly reference … 8.0.0.0 … matches identity … 10.0.0.0" in every cell that binds to an
/// overload touching it (dotnet-interactive 1.0.712001 prints it as stderr; project builds hide CS1701 by default).
/// The kernels' scripting options accept no list of suppressed warnings, only a warning level: CS1701 is level 2, so
/// level 1 (which still shows the level-1 warnings) silences it. Found by reflection on the running C# kernel, as
/// <see cref="Show"/> does; outside a kernel it does nothing.
/// </summary>
public static class KernelWarningLevel
{
    /// <summary>The warning level the cells compile with after <see cref="Apply"/>.</summary>
    public const int Level = 1;

    /// <summary>Sets the running C# kernel's script warning level to <see cref="Level"/>; true if it did.</summary>
    public static bool Apply()
    {
        var context = AppDomain.CurrentDomain.GetAssemblies()
            .FirstOrDefault(a => a.GetName().Name == "Microsoft.DotNet.Interactive")
            ?.GetType("Microsoft.DotNet.Interactive.KernelInvocationContext");
        var current = context?.GetProperty("Current", BindingFlags.Public | BindingFlags.Static)?.GetValue(null);
        var kernel = current?.GetType().GetProperty("HandlingKernel")?.GetValue(current);
        var field = kernel?.GetType().GetField("_scriptOptions", BindingFlags.NonPublic | BindingFlags.Instance);
        var options = field?.GetValue(kernel);
        var withLevel = options?.GetType().GetMethod("WithWarningLevel", [typeof(int)]);
        if (withLevel is null) return false;
        field!.SetValue(kernel, withLevel.Invoke(options, [Level]));
        return true;
    }
}

/// <summary>
/// Plotly.NET 6.0.0 is compiled against FSharp.Core 10.1, but the notebook kernels (dotnet-interactive 1.0.712001 and
/// dotnet-repl 0.3.259) ship FSharp.Core 10.0 and fail at the first chart with "Could not load FSharp.Core 10.1.0.0".
/// Every FSharp.Core member Plotly.NET uses exists in 10.0, so answering the request with the loaded FSharp.Core works.
/// </summary>
public static class PlotlyKernelFix
{
    static int registered;

    public static void Register()
    {
        if (Interlocked.Exchange(ref registered, 1) == 1) return;
        AssemblyLoadContext.Default.Resolving += (_, name) =>
            name.Name == "FSharp.Core"
                ? AppDomain.CurrentDomain.GetAssemblies().FirstOrDefault(a => a.GetName().Name == "FSharp.Core")
                : null;
    }
}
