using System.Runtime.CompilerServices;
using Diffusion.Platform;

namespace Diffusion.Tests;

static class TestSetup
{
    /// <summary>The test process loads TorchSharp through the library's fix before any test touches torch.</summary>
    [ModuleInitializer]
    internal static void Init() => TorchNative.EnsureLoaded();

    /// <summary>The repository root (the folder holding Notebooks.sln).</summary>
    public static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Notebooks.sln"))) return dir.FullName;
            throw new InvalidOperationException("cannot find the repository root (Notebooks.sln) above " + AppContext.BaseDirectory);
        }
    }

    public static string FashionMnistDir => Path.Combine(RepoRoot, "data", "fashion-mnist");

    /// <summary>A fresh temporary folder, deleted when disposed.</summary>
    public static TempDir Temp() => new();
}

sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "diffusion-tests-" + Guid.NewGuid().ToString("N")[..10]);
    public TempDir() => Directory.CreateDirectory(Path);
    public string this[string name] => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
