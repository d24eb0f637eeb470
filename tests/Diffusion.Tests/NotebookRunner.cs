using System.Diagnostics;
using System.Text.Json.Nodes;

namespace Diffusion.Tests;

/// <summary>
/// Executes a .ipynb headless with dotnet-repl 0.3.259 (the same kernel packages as VS Code's Polyglot Notebooks),
/// from the notebook's own folder as VS Code does, and reads back every cell's outputs.
/// </summary>
static class NotebookRunner
{
    public sealed record CellOutput(int Cell, string FirstLine, string OutputType, IReadOnlyList<string> MimeTypes, string Text);

    public sealed record Result(string Notebook, int ExitCode, IReadOnlyList<CellOutput> Outputs, string ExecutedPath, string Log)
    {
        public IEnumerable<CellOutput> Errors => Outputs.Where(o => o.OutputType == "error");
        public int Count(string mime) => Outputs.Count(o => o.MimeTypes.Contains(mime));
        public int PlotlyCharts => Outputs.Count(o => o.MimeTypes.Contains("text/html") && o.Text.Contains("renderPlotly_"));

        /// <summary>Empty if every cell ran; else one line per failing cell: notebook, cell number, source, message.</summary>
        public string Failures()
        {
            var lines = Errors.Select(e => $"{Notebook} cell {e.Cell} ({e.FirstLine}): {e.Text}").ToList();
            if (ExitCode != 0 && lines.Count == 0) lines.Add($"{Notebook}: dotnet-repl exited with {ExitCode} and no cell error.\n{Log}");
            return string.Join("\n", lines);
        }
    }

    static readonly object BuildLock = new();
    static bool built;

    /// <summary>Builds the notebooks' runtime (lib/Diffusion.Notebooks, Release) and restores dotnet-repl, once per test run.</summary>
    public static void Prepare()
    {
        lock (BuildLock)
        {
            if (built) return;
            Run(TestSetup.RepoRoot, TimeSpan.FromMinutes(10), "dotnet", "tool", "restore");
            var build = Run(TestSetup.RepoRoot, TimeSpan.FromMinutes(10), "dotnet", "build", "lib/Diffusion.Notebooks", "-c", "Release", "-nologo", "-v", "q");
            if (build.ExitCode != 0) throw new InvalidOperationException("building lib/Diffusion.Notebooks failed:\n" + build.Output);
            built = true;
        }
    }

    /// <summary>Runs one notebook in quick mode; the executed copy goes to <paramref name="outputDir"/> (default artifacts/notebooks/).</summary>
    public static Result Execute(string notebookPath, TimeSpan timeout, IDictionary<string, string>? environment = null,
        string? outputDir = null)
    {
        Prepare();
        var full = Path.GetFullPath(notebookPath);
        var outDir = outputDir ?? Path.Combine(TestSetup.RepoRoot, "artifacts", "notebooks");
        Directory.CreateDirectory(outDir);                 // dotnet-repl crashes (rc 134) if the folder is missing
        var executed = Path.Combine(outDir, Path.GetFileName(full));
        File.Delete(executed);
        var env = new Dictionary<string, string> { ["DIFFUSION_QUICK"] = "1" };
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) env[k] = v;
        var r = Run(Path.GetDirectoryName(full)!, timeout, "dotnet", env, "repl", "--run", Path.GetFileName(full),
            "--exit-after-run", "--output-path", executed);
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

    static ProcessResult Run(string dir, TimeSpan timeout, string file, IDictionary<string, string>? env, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            return new ProcessResult(-1, $"timed out after {timeout.TotalMinutes} minutes");
        }
        return new ProcessResult(p.ExitCode, stdout.Result + stderr.Result);
    }
}
