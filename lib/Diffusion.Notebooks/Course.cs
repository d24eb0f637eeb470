using System.Globalization;
using System.Runtime.Loader;
using Diffusion.Platform;
using TorchSharp;

namespace Diffusion.Notebooks;

/// <summary>What <see cref="Course.Setup"/> found; shown by the setup cell of every notebook.</summary>
public sealed record CourseEnvironment(
    string TorchSharp, string LibTorch, string Device, int Threads, bool QuickMode, bool CudaAvailable,
    string DataFolder, string TorchLoad);

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
    public static bool Quick => Environment.GetEnvironmentVariable(QuickModeVariable) is "1" or "true" or "yes";

    /// <summary>Picks the quick-mode or the course value.</summary>
    public static T Pick<T>(T quick, T course) => Quick ? quick : course;

    static CourseEnvironment? environment;

    /// <summary>
    /// Call once at the top of every notebook. Idempotent.
    /// </summary>
    /// <param name="device">"auto" (CUDA when available, else CPU), "cpu" or "cuda".</param>
    /// <param name="threads">libtorch threads (null: one per core).</param>
    /// <param name="inlinePlotly">Send plotly.js (bundled with Plotly.NET) into the notebook once, so that charts draw
    /// without internet. Set false to load it from the plotly CDN instead.</param>
    public static CourseEnvironment Setup(string device = "auto", int? threads = null, bool inlinePlotly = true)
    {
        var load = TorchNative.EnsureLoaded();
        PlotlyKernelFix.Register();
        Compute.SetThreads(threads);
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
        return environment;
    }

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
