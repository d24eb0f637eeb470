using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Diffusion.Notebooks.Exercises;

namespace Diffusion.Tests;

/// <summary>
/// One execution per notebook per test run, shared by <see cref="NotebookTests"/> and <see cref="SolvedNotebookTests"/>.
/// A notebook with exercises runs as its <b>classroom copy</b>: the committed notebook, unchanged, with two cells inserted
/// after each exercise's check — the exercise's solution and the same check again. One run thus shows what a learner sees
/// (every cell of the committed notebook runs clean, each check says "not attempted" for the stub) and what the teacher's
/// copy checks (each solution passes its check in the notebook's own context). No other cell uses the learner's function
/// (<see cref="SolvedNotebookTests.ExercisesAreStubsFollowedByTheirCheckAndNothingElseUsesThem"/>), so the inserted
/// cells change nothing the rest of the notebook computes.
/// <para>
/// While a test waits for its notebook, another notebook of the same test class that has not run yet (the slowest first)
/// starts beside it, two at a time at most: much of a notebook run is single-threaded (kernel start, compiling cells),
/// so on two cores the pair finishes sooner than one after the other. Runs no test of the class claimed (a filtered test run) are killed when the class
/// ends (<see cref="NotebookRunsFixture"/>).
/// </para>
/// </summary>
static class NotebookRuns
{
    static string NotebooksDir => Path.Combine(TestSetup.RepoRoot, "notebooks");

    /// <summary>The classroom copies (setup scripts adjusted by <see cref="Solutions.WriteSolvedNotebooks"/>, two levels down).</summary>
    public static string ClassroomDir => Path.Combine(TestSetup.RepoRoot, "artifacts", "classroom-notebooks");

    /// <summary>Where the executed copies go (as before: artifacts/notebooks/).</summary>
    public static string ExecutedDir => Path.Combine(TestSetup.RepoRoot, "artifacts", "notebooks");

    /// <summary>Metadata key of an inserted solution cell (not "exercise": the classroom copy's exercise list stays the committed one).</summary>
    public const string InsertedSolutionKey = "classroom-solution";

    const int MaxParallel = NotebookRunner.Slots;
    static readonly object Gate = new();
    static readonly Dictionary<string, Task<NotebookRunner.Result>> Runs = new();
    static bool written;

    /// <summary>
    /// The run of <paramref name="notebook"/> (started now, or earlier as a prefetch); starts one notebook of
    /// <paramref name="sameClass"/> that has not run yet beside it when fewer than two are running.
    /// </summary>
    public static NotebookRunner.Result Get(string notebook, IEnumerable<string> sameClass)
    {
        Task<NotebookRunner.Result> task;
        lock (Gate)
        {
            WriteClassroomCopies();
            task = Start(notebook);
            if (Runs.Values.Count(t => !t.IsCompleted) < MaxParallel &&
                sameClass.OrderBy(LongestFirst).ThenBy(n => n, StringComparer.Ordinal).FirstOrDefault(n => !Runs.ContainsKey(n)) is { } next)
                Start(next);
        }
        return task.GetAwaiter().GetResult();
    }

    /// <summary>
    /// The slowest quick-mode runs start first, so that the short ones fill in beside them (xUnit asks for the notebooks
    /// in an order of its own). Measured on a 2-core family-23 EPYC, 2026-12-06: 06 ≈ 190 s, 10 and 05 ≈ 80 s, 08 ≈ 70 s,
    /// 03 ≈ 40 s, the rest 20–30 s. Only an order: a notebook missing here runs after these.
    /// </summary>
    static int LongestFirst(string notebook) =>
        Array.IndexOf(["06-sampling.ipynb", "10-latent-diffusion.ipynb", "05-training.ipynb", "08-guidance.ipynb", "03-epsilon-loss.ipynb"], notebook) is var i and >= 0 ? i : int.MaxValue;

    static Task<NotebookRunner.Result> Start(string notebook)
    {
        if (!Runs.TryGetValue(notebook, out var task))
        {
            NotebookRunner.Prepare();                                   // once, before two runs could race to do it
            var path = File.Exists(Path.Combine(ClassroomDir, notebook)) ? Path.Combine(ClassroomDir, notebook) : Path.Combine(NotebooksDir, notebook);
            int generation = Generation;
            Runs[notebook] = task = Task.Factory.StartNew(() => NotebookRunner.Execute(path, TimeSpan.FromMinutes(15), outputDir: ExecutedDir,
                    stillWanted: () => { lock (Gate) return generation == Generation; }),
                TaskCreationOptions.LongRunning);
        }
        return task;
    }

    static int Generation;

    /// <summary>
    /// After a test class: runs it started beside its tests but no test claimed (a filtered test run) are killed and
    /// forgotten, so that no notebook runs on into the next class (the thread-choice and benchmark tests need the cores)
    /// and no kernel outlives the test process. In a full run every started notebook was claimed, and nothing is killed.
    /// </summary>
    public static void StopUnclaimedRuns()
    {
        lock (Gate)
        {
            var unclaimed = Runs.Where(kv => !kv.Value.IsCompleted).Select(kv => kv.Key).ToList();
            if (unclaimed.Count == 0) return;
            foreach (var n in unclaimed) Runs.Remove(n);
            Generation++;                                               // runs still waiting for a slot will not start
        }
        NotebookRunner.KillRunning();
    }

    /// <summary>Writes artifacts/classroom-notebooks/ once per test run: a copy of every notebook with exercises.</summary>
    static void WriteClassroomCopies()
    {
        if (written) return;
        if (Directory.Exists(ClassroomDir)) Directory.Delete(ClassroomDir, recursive: true);
        // The setup scripts with their paths adjusted; the solved copies written beside them are replaced below.
        Solutions.WriteSolvedNotebooks(NotebooksDir, ClassroomDir);
        var solutions = Solutions.SolutionsFolder(TestSetup.RepoRoot);
        foreach (var notebook in Directory.GetFiles(NotebooksDir, "*.ipynb"))
        {
            var target = Path.Combine(ClassroomDir, Path.GetFileName(notebook));
            if (Solutions.ExerciseIds(notebook).Count == 0) { File.Delete(target); continue; }
            File.WriteAllText(target, ClassroomCopy(File.ReadAllText(notebook), solutions).ToJsonString(Json) + "\n");
        }
        written = true;
    }

    /// <summary>The committed notebook with (solution, check) inserted after each (exercise, check) pair.</summary>
    internal static JsonNode ClassroomCopy(string notebookJson, string solutionsDir)
    {
        var root = JsonNode.Parse(notebookJson)!;
        var cells = root["cells"]!.AsArray();
        for (int i = cells.Count - 1; i >= 0; i--)
        {
            if (Solutions.ExerciseId(cells[i]!) is not { } id) continue;
            var check = cells[i + 1]!.DeepClone();
            check["outputs"] = new JsonArray();
            var solution = new JsonObject
            {
                ["cell_type"] = "code",
                ["execution_count"] = null,
                ["metadata"] = new JsonObject { [InsertedSolutionKey] = id },
                ["outputs"] = new JsonArray(),
                ["source"] = new JsonArray(File.ReadAllText(Path.Combine(solutionsDir, id + ".csx")).TrimEnd('\n')),
            };
            cells.Insert(i + 2, solution);
            cells.Insert(i + 3, check);
        }
        return root;
    }

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}

/// <summary>Shared by the two test classes that run notebooks: stops what they started and did not claim.</summary>
public sealed class NotebookRunsFixture : IDisposable
{
    public void Dispose() => NotebookRuns.StopUnclaimedRuns();
}
