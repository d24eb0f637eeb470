using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// The teacher's copies: every course notebook with each exercise cell (cell metadata <c>"exercise": "&lt;id&gt;"</c>)
/// replaced by its solution, <c>lib/Diffusion.Notebooks/Exercises/Solutions/&lt;id&gt;.csx</c>.
/// Teachers run it as <c>dotnet run -c Release --project lib/Diffusion.Cli -- solutions [--out &lt;folder&gt;]</c>.
/// (This file uses nothing but the base class library: the CLI compiles it in as a linked file.)
/// </summary>
public static class Solutions
{
    /// <summary>Where the solved notebooks go unless the teacher chooses another folder (ignored by git).</summary>
    public const string DefaultOutputFolder = "artifacts/solved-notebooks";

    /// <summary>The cell-metadata key that marks an exercise cell; its value is the exercise id.</summary>
    public const string MetadataKey = "exercise";

    /// <summary>One solved notebook: its path and the exercises whose solutions it now holds.</summary>
    public sealed record SolvedNotebook(string Path, IReadOnlyList<string> Exercises);

    /// <summary>The ids of the exercise cells of a notebook, in order.</summary>
    public static IReadOnlyList<string> ExerciseIds(string notebookPath) =>
        Cells(JsonNode.Parse(File.ReadAllText(notebookPath))!).Select(ExerciseId).OfType<string>().ToList();

    /// <summary>The exercise id of a cell, or null.</summary>
    public static string? ExerciseId(JsonNode cell) => (string?)cell["metadata"]?[MetadataKey];

    /// <summary>The folder holding the solution files of a repository.</summary>
    public static string SolutionsFolder(string repositoryRoot) =>
        System.IO.Path.Combine(repositoryRoot, "lib", "Diffusion.Notebooks", "Exercises", "Solutions");

    /// <summary>
    /// Copies every notebook of <paramref name="notebooksDir"/> (the repository's notebooks/ folder) to
    /// <paramref name="outDir"/>, replacing the source of each exercise cell by its solution, and writes the two setup
    /// scripts (build-course.csx, course.csx) next to them with their paths adjusted, so the copies run where they are.
    /// <paramref name="outDir"/> must lie inside the repository (the notebooks find data/ by walking up) and must not be
    /// the notebooks folder itself.
    /// </summary>
    /// <remarks>
    /// Files of the user are never replaced unless asked: the folder gets a marker file (<see cref="MarkerFileName"/>), and in
    /// a folder without it that already holds a file of one of the names written here, nothing is written unless
    /// <paramref name="overwrite"/> is true (the command line's --overwrite). Each file is written to a hidden temporary file
    /// first and renamed over its name, so an interrupted run never leaves half a notebook.
    /// </remarks>
    /// <returns>The solved notebooks, in file-name order.</returns>
    public static IReadOnlyList<SolvedNotebook> WriteSolvedNotebooks(string notebooksDir, string outDir, string? solutionsDir = null, bool overwrite = false)
    {
        var source = System.IO.Path.GetFullPath(notebooksDir);
        var target = System.IO.Path.GetFullPath(outDir);
        var root = Directory.GetParent(source)?.FullName
                   ?? throw new ArgumentException($"{source} has no parent folder: pass the repository's notebooks/ folder", nameof(notebooksDir));
        if (!Directory.Exists(System.IO.Path.Combine(root, "lib")) || !File.Exists(System.IO.Path.Combine(source, "course.csx")))
            throw new ArgumentException($"{source} is not the course's notebooks/ folder (no course.csx, or no lib/ next to it)", nameof(notebooksDir));
        if (string.Equals(source.TrimEnd(System.IO.Path.DirectorySeparatorChar), target.TrimEnd(System.IO.Path.DirectorySeparatorChar), StringComparison.Ordinal))
            throw new ArgumentException("the solved notebooks would overwrite the course's notebooks: choose another folder", nameof(outDir));
        var relativeRoot = System.IO.Path.GetRelativePath(target, root).Replace('\\', '/');
        if (relativeRoot != "." && relativeRoot.Split('/').Any(part => part != ".."))
            throw new ArgumentException($"{target} is outside the repository {root}: the solved notebooks must live inside it, " +
                                        $"because they find data/ and lib/ by walking up from their folder (default: {DefaultOutputFolder})", nameof(outDir));
        solutionsDir = System.IO.Path.GetFullPath(solutionsDir ?? SolutionsFolder(root));
        var marker = System.IO.Path.Combine(target, MarkerFileName);
        if (!overwrite && Directory.Exists(target) && !File.Exists(marker))
        {
            var names = Directory.GetFiles(source, "*.ipynb").Select(System.IO.Path.GetFileName).Append("build-course.csx").Append("course.csx");
            var taken = names.Where(n => File.Exists(System.IO.Path.Combine(target, n!)) || Directory.Exists(System.IO.Path.Combine(target, n!)))
                .Order(StringComparer.Ordinal).ToList();
            if (taken.Count > 0)
                throw new ArgumentException($"{target} already holds {string.Join(", ", taken.Take(3))}{(taken.Count > 3 ? $" and {taken.Count - 3} more" : "")}, " +
                                            "not written by this command: choose a new or empty folder, or pass --overwrite to replace those files", nameof(outDir));
        }
        Directory.CreateDirectory(target);
        WriteFile(marker, "Teacher's copies of the course notebooks, written by the 'solutions' command; running it again replaces them.\n");

        // The setup scripts, with their one relative path adjusted to the new folder's depth.
        CopyScript("build-course.csx", "Path.GetFullPath(\"..\")", $"Path.GetFullPath(\"{relativeRoot}\")");
        CopyScript("course.csx", "\"../lib/", $"\"{relativeRoot}/lib/");

        var written = new List<SolvedNotebook>();
        foreach (var notebook in Directory.GetFiles(source, "*.ipynb").Order(StringComparer.Ordinal))
        {
            var json = JsonNode.Parse(File.ReadAllText(notebook))!;
            var ids = new List<string>();
            var cells = Cells(json).ToList();
            foreach (var cell in cells)
            {
                if (ExerciseId(cell) is not { } id) continue;
                var file = System.IO.Path.Combine(solutionsDir, id + ".csx");
                if (!File.Exists(file))
                    throw new FileNotFoundException($"{System.IO.Path.GetFileName(notebook)} has exercise '{id}' but there is no solution file {file}", file);
                cell["source"] = SourceLines(File.ReadAllText(file));
                cell["outputs"] = new JsonArray();
                cell["execution_count"] = null;
                ids.Add(id);
            }
            if (ids.Count > 0)
            {
                // A banner under the title, so that nobody hands the teacher's copy out by mistake.
                var banner = new JsonObject
                {
                    ["cell_type"] = "markdown",
                    ["metadata"] = new JsonObject(),
                    ["source"] = SourceLines("> **Teacher's copy, with the solutions** of " + string.Join(", ", ids.Select(i => $"`{i}`")) +
                                             ". Written by `Solutions.WriteSolvedNotebooks` from `notebooks/" + System.IO.Path.GetFileName(notebook) +
                                             "`; edit that notebook (or the solution files), not this copy."),
                };
                json["cells"]!.AsArray().Insert(cells.Count > 0 && (string?)cells[0]["cell_type"] == "markdown" ? 1 : 0, banner);
            }
            var path = System.IO.Path.Combine(target, System.IO.Path.GetFileName(notebook));
            WriteFile(path, json.ToJsonString(JsonOptions) + "\n");
            written.Add(new SolvedNotebook(path, ids));
        }
        return written;

        void CopyScript(string name, string find, string replace)
        {
            var text = File.ReadAllText(System.IO.Path.Combine(source, name));
            if (relativeRoot != "..")
            {
                if (!text.Contains(find, StringComparison.Ordinal))
                    throw new InvalidOperationException($"notebooks/{name} no longer contains {find}: update Solutions.WriteSolvedNotebooks");
                text = text.Replace(find, replace, StringComparison.Ordinal);
            }
            WriteFile(System.IO.Path.Combine(target, name), text);
        }
    }

    /// <summary>The marker of a folder of solved notebooks: its files were written by <see cref="WriteSolvedNotebooks"/>.</summary>
    public const string MarkerFileName = ".solved-notebooks";

    /// <summary>Writes <paramref name="text"/> to a hidden temporary file beside <paramref name="path"/>, then renames it over it.</summary>
    static void WriteFile(string path, string text)
    {
        var tmp = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(path)!, $".{System.IO.Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllText(tmp, text);
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    static IEnumerable<JsonNode> Cells(JsonNode notebook) => notebook["cells"]?.AsArray().OfType<JsonNode>() ?? [];

    /// <summary>Text as a notebook's source array: one string per line, each but the last ending in "\n".</summary>
    static JsonArray SourceLines(string text)
    {
        var lines = text.Replace("\r\n", "\n").TrimEnd('\n').Split('\n');
        var array = new JsonArray();
        for (int i = 0; i < lines.Length; i++) array.Add(i < lines.Length - 1 ? lines[i] + "\n" : lines[i]);
        return array;
    }
}
