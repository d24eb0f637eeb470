// Builds the course library (lib/Diffusion.Notebooks, Release) when it is missing or older than its sources,
// so that a fresh clone runs top to bottom: about a minute the first time, a second when nothing changed. It prints
// nothing when the build is up to date.
// If you change the library while a notebook is open, restart its kernel: a process loads an assembly only once.
using System.Diagnostics;
using System.IO;

static class CourseBuild
{
    public static string Run()
    {
        var root = Path.GetFullPath("..");
        var lib = Path.Combine(root, "lib");
        var dll = Path.Combine(lib, "Diffusion.Notebooks", "bin", "Release", "net10.0", "Diffusion.Notebooks.dll");
        if (!Directory.Exists(lib))
            throw new DirectoryNotFoundException($"{lib} not found: open this notebook from the repository's notebooks/ folder.");
        var sep = Path.DirectorySeparatorChar;
        var newestSource = Directory.EnumerateFiles(lib, "*", SearchOption.AllDirectories)
            .Where(f => (f.EndsWith(".cs") || f.EndsWith(".csproj") || f.EndsWith(".props"))
                        && !f.Contains($"{sep}bin{sep}") && !f.Contains($"{sep}obj{sep}"))
            .Max(File.GetLastWriteTimeUtc);
        if (File.Exists(dll) && File.GetLastWriteTimeUtc(dll) >= newestSource)
            return "";

        var psi = new ProcessStartInfo("dotnet", $"build \"{Path.Combine(lib, "Diffusion.Notebooks")}\" -c Release -nologo -v q")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = root,
        };
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            if (File.Exists(dll))
                return "could not rebuild the course library (is another notebook's kernel holding it?); using the existing build.\n" + output;
            throw new InvalidOperationException("building the course library failed. Run  dotnet build lib/Diffusion.Notebooks -c Release  " +
                                                "in a terminal at the repository root to see why.\n" + output);
        }
        return "built the course library (lib/Diffusion.Notebooks)";
    }
}

{
    var message = CourseBuild.Run();
    if (message.Length > 0) Console.WriteLine(message);
}
