using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Diffusion.Notebooks.Exercises;

namespace Diffusion.Tests;

/// <summary>
/// Classroom mode: every notebook but 00 (00b and 01–11) has its exercises, each followed by a check; the solution files fit
/// the stubs; <see cref="Solutions.WriteSolvedNotebooks"/> (and the CLI's <c>solutions</c> command) writes the teacher's
/// copies; one run per notebook of its classroom copy (<see cref="NotebookRuns"/>: the committed notebook with each solution
/// and its check inserted after the stub's check) shows every check saying "not attempted" for the stub and "passed" for
/// the solution, with no error anywhere.
/// </summary>
public class SolvedNotebookTests : IClassFixture<NotebookRunsFixture>
{
    /// <summary>The exercises of each core notebook, in order.</summary>
    public static readonly Dictionary<string, string[]> ExpectedExercises = new()
    {
        ["00b-csharp-and-torch.ipynb"] = ["gaussian-nll"],
        ["01-gaussian-noise.ipynb"] = ["q-step"],
        ["02-closed-form.ipynb"] = ["q-sample"],
        ["03-epsilon-loss.ipynb"] = ["posterior-variance", "posterior-mean"],
        ["04-unet.ipynb"] = ["sinusoidal-embedding"],
        ["05-training.ipynb"] = ["training-step"],
        ["06-sampling.ipynb"] = ["reverse-step"],
        ["07-where-next.ipynb"] = ["ddim-step"],
        ["08-guidance.ipynb"] = ["guided-noise"],
        ["09-learned-variance.ipynb"] = ["respaced-betas"],
        ["10-latent-diffusion.ipynb"] = ["latent-scale"],
        ["11-what-is-stable-diffusion.ipynb"] = ["cross-attention"],
        ["12-stable-diffusion-3.ipynb"] = ["flow-euler-step"],
    };

    static string NotebooksDir => Path.Combine(TestSetup.RepoRoot, "notebooks");
    static string SolutionsDir => Solutions.SolutionsFolder(TestSetup.RepoRoot);

    public static TheoryData<string> CoreNotebooks() => new(ExpectedExercises.Keys);

    static string Source(JsonNode cell) => string.Concat(cell["source"]!.AsArray().Select(x => (string?)x));

    /// <summary>The learner's function declared by an exercise cell: "Tensor MyQStep(…)" gives MyQStep.</summary>
    static string DeclaredFunction(string source) =>
        Regex.Match(source, @"^\S+\s+(My\w+)\(", RegexOptions.Multiline) is { Success: true } m
            ? m.Groups[1].Value
            : throw new InvalidOperationException("no My… function declared in:\n" + source);

    static string SignatureLine(string source) =>
        source.Split('\n').First(l => Regex.IsMatch(l, @"^\S+\s+My\w+\(")).Trim();

    [Fact]
    public void OnlyTheCoreNotebooksHaveExercises()
    {
        foreach (var notebook in Directory.GetFiles(NotebooksDir, "*.ipynb"))
        {
            var name = Path.GetFileName(notebook);
            Assert.Equal(ExpectedExercises.GetValueOrDefault(name, []), Solutions.ExerciseIds(notebook));
        }
    }

    [Theory]
    [MemberData(nameof(CoreNotebooks))]
    public void ExercisesAreStubsFollowedByTheirCheckAndNothingElseUsesThem(string notebook)
    {
        var cells = JsonNode.Parse(File.ReadAllText(Path.Combine(NotebooksDir, notebook)))!["cells"]!.AsArray().Select(c => c!).ToList();
        // the checkers' namespace reaches every cell: course.csx, which the setup cell loads, declares it globally
        Assert.Contains("global using Diffusion.Notebooks.Exercises;", File.ReadAllText(Path.Combine(NotebooksDir, "course.csx")));
        Assert.Contains("#load \"course.csx\"", Source(cells.First(c => (string?)c["cell_type"] == "code")));
        for (int i = 0; i < cells.Count; i++)
        {
            if (Solutions.ExerciseId(cells[i]) is not { } id) continue;
            var stub = Source(cells[i]);
            var function = DeclaredFunction(stub);
            Assert.Equal("code", (string?)cells[i]["cell_type"]);
            Assert.Contains("exercise", cells[i]["metadata"]!["tags"]!.AsArray().Select(t => (string?)t));
            Assert.Contains("throw new NotImplementedException();", stub);
            Assert.Contains("TODO", stub);
            Assert.StartsWith("### Exercise", Source(cells[i - 1]));
            Assert.Contains($"`{id}`", Source(cells[i - 1]));
            // the check right after, calling the checker with the learner's function
            Assert.Matches($@"^\w+Exercise\.Check\({function}\);$", Source(cells[i + 1]).Trim());
            // no other code cell touches the learner's function: after a failed or skipped exercise the notebook runs on
            for (int j = 0; j < cells.Count; j++)
                if (j != i && j != i + 1 && (string?)cells[j]["cell_type"] == "code")
                    Assert.DoesNotContain(function, Source(cells[j]));
        }
    }

    [Fact]
    public void EverySolutionFitsItsStub()
    {
        var stubs = ExpectedExercises.Keys
            .SelectMany(nb => JsonNode.Parse(File.ReadAllText(Path.Combine(NotebooksDir, nb)))!["cells"]!.AsArray())
            .Where(c => Solutions.ExerciseId(c!) is not null)
            .ToDictionary(c => Solutions.ExerciseId(c!)!, c => Source(c!));
        Assert.Equal(ExpectedExercises.Values.SelectMany(v => v).Order(), stubs.Keys.Order());
        var files = Directory.GetFiles(SolutionsDir, "*.csx").Select(f => Path.GetFileNameWithoutExtension(f)).Order();
        Assert.Equal(stubs.Keys.Order(), files);                        // one solution per exercise, no orphans
        foreach (var (id, stub) in stubs)
        {
            var solution = File.ReadAllText(Path.Combine(SolutionsDir, id + ".csx"));
            Assert.Equal(SignatureLine(stub), SignatureLine(solution));
            Assert.DoesNotContain("NotImplementedException", solution);
            Assert.DoesNotContain("TODO", solution);
            // the comment block that explains the task is the same in both
            Assert.Equal(stub[..stub.IndexOf(SignatureLine(stub), StringComparison.Ordinal)],
                         solution[..solution.IndexOf(SignatureLine(solution), StringComparison.Ordinal)]);
        }
    }

    [Fact]
    public void WriteSolvedNotebooksReplacesOnlyTheExerciseCells()
    {
        var outDir = Path.Combine(TestSetup.RepoRoot, "artifacts", "test-solved-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var solved = Solutions.WriteSolvedNotebooks(NotebooksDir, outDir);
            Assert.Equal(Directory.GetFiles(NotebooksDir, "*.ipynb").Select(Path.GetFileName).Order(), solved.Select(s => Path.GetFileName(s.Path)).Order());
            foreach (var s in solved)
            {
                var name = Path.GetFileName(s.Path);
                Assert.Equal(ExpectedExercises.GetValueOrDefault(name, []), s.Exercises);
                var original = JsonNode.Parse(File.ReadAllText(Path.Combine(NotebooksDir, name)))!["cells"]!.AsArray().Select(c => c!).ToList();
                var copy = JsonNode.Parse(File.ReadAllText(s.Path))!["cells"]!.AsArray().Select(c => c!).ToList();
                if (s.Exercises.Count > 0)
                {
                    // one banner cell under the title
                    Assert.Contains("Teacher's copy", Source(copy[1]));
                    copy.RemoveAt(1);
                }
                Assert.Equal(original.Count, copy.Count);
                for (int i = 0; i < original.Count; i++)
                {
                    if (Solutions.ExerciseId(original[i]) is { } id)
                    {
                        Assert.Equal(File.ReadAllText(Path.Combine(SolutionsDir, id + ".csx")).TrimEnd('\n'), Source(copy[i]));
                        Assert.Equal(id, Solutions.ExerciseId(copy[i]));
                    }
                    else Assert.True(JsonNode.DeepEquals(original[i], copy[i]), $"{name}: cell {i + 1} changed");
                }
            }
            // The setup scripts point two levels up: artifacts/<folder>/ → the repository root.
            Assert.Contains("\"../../lib/Diffusion.Notebooks/bin/Release/net10.0/Diffusion.Notebooks.dll\"", File.ReadAllText(Path.Combine(outDir, "course.csx")));
            Assert.Contains("Path.GetFullPath(\"../..\")", File.ReadAllText(Path.Combine(outDir, "build-course.csx")));
        }
        finally
        {
            if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true);
        }
    }

    [Fact]
    public void WriteSolvedNotebooksRefusesBadFolders()
    {
        Assert.Throws<ArgumentException>(() => Solutions.WriteSolvedNotebooks(NotebooksDir, NotebooksDir));
        using var outside = TestSetup.Temp();
        var e = Assert.Throws<ArgumentException>(() => Solutions.WriteSolvedNotebooks(NotebooksDir, outside.Path));
        Assert.Contains("inside", e.Message);
        using var noSolutions = TestSetup.Temp();
        var outDir = Path.Combine(TestSetup.RepoRoot, "artifacts", "test-solved-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var missing = Assert.Throws<FileNotFoundException>(() => Solutions.WriteSolvedNotebooks(NotebooksDir, outDir, noSolutions.Path));
            Assert.Contains("no solution file", missing.Message);
        }
        finally
        {
            if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true);
        }
    }

    [Fact]
    public void TheReadmeCommandWritesTheSolvedNotebooks()
    {
        // dotnet run -c Release --project lib/Diffusion.Cli -- solutions [--out <folder>]   (the built CLI, run as a process)
        var outDir = Path.Combine(TestSetup.RepoRoot, "artifacts", "test-solved-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var r = Cli.Run(TestSetup.RepoRoot, "solutions", "--out", outDir);
            Assert.True(r.ExitCode == 0, r.All);
            Assert.Contains($"{ExpectedExercises.Values.Sum(ids => ids.Length)} exercises solved in {ExpectedExercises.Count} notebooks", r.Stdout);
            foreach (var (nb, ids) in ExpectedExercises)
                Assert.Equal(ids, Solutions.ExerciseIds(Path.Combine(outDir, nb)));
            Assert.True(File.Exists(Path.Combine(outDir, "course.csx")));
        }
        finally
        {
            if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true);
        }
    }

    [Fact]
    public void TheSolutionsCommandRefusesAFolderOutsideTheRepositoryInOneLine()
    {
        using var outside = TestSetup.Temp();
        var r = Cli.Run(TestSetup.RepoRoot, "solutions", "--out", outside.Path);
        Assert.Equal(2, r.ExitCode);
        Assert.StartsWith("error: ", r.Stderr);
        Assert.Contains("inside", r.Stderr);
        Assert.DoesNotContain("   at ", r.All);
        Assert.Empty(Directory.GetFiles(outside.Path));
    }

    // ---------------------------------------------------------------- running the notebooks

    /// <summary>The verdict each exercise's check showed, in order: exercise id → outcomes ("passed", "not-attempted", "failed").</summary>
    static Dictionary<string, List<string>> Verdicts(NotebookRunner.Result r)
    {
        var verdicts = new Dictionary<string, List<string>>();
        foreach (var o in r.Outputs)
            foreach (Match m in Regex.Matches(o.Text, "data-exercise=\"([^\"]+)\" data-outcome=\"([^\"]+)\""))
            {
                if (!verdicts.TryGetValue(m.Groups[1].Value, out var list)) verdicts[m.Groups[1].Value] = list = [];
                list.Add(m.Groups[2].Value);
            }
        return verdicts;
    }

    [Fact]
    public void TheClassroomCopyIsTheCommittedNotebookWithEachSolutionAndItsCheckInserted()
    {
        foreach (var notebook in ExpectedExercises.Keys)
        {
            var committed = JsonNode.Parse(File.ReadAllText(Path.Combine(NotebooksDir, notebook)))!["cells"]!.AsArray().Select(c => c!).ToList();
            var copy = NotebookRuns.ClassroomCopy(File.ReadAllText(Path.Combine(NotebooksDir, notebook)), SolutionsDir)["cells"]!.AsArray().Select(c => c!).ToList();
            Assert.Equal(committed.Count + 2 * ExpectedExercises[notebook].Length, copy.Count);
            int j = 0;
            for (int i = 0; i < committed.Count; i++, j++)
            {
                Assert.True(JsonNode.DeepEquals(committed[i], copy[j]), $"{notebook}: committed cell {i + 1} is not cell {j + 1} of the classroom copy");
                if (Solutions.ExerciseId(committed[i]) is not { } id) continue;
                // the stub, its check, then the solution and the check again
                i++; j++;
                Assert.True(JsonNode.DeepEquals(committed[i], copy[j]));
                Assert.Equal(File.ReadAllText(Path.Combine(SolutionsDir, id + ".csx")).TrimEnd('\n'), Source(copy[j + 1]));
                Assert.Equal(id, (string?)copy[j + 1]["metadata"]![NotebookRuns.InsertedSolutionKey]);
                Assert.Null(Solutions.ExerciseId(copy[j + 1]));
                Assert.Equal(Source(committed[i]), Source(copy[j + 2]));
                j += 2;
            }
        }
    }

    /// <summary>
    /// One run of the classroom copy (the same run <see cref="NotebookTests.NotebookRunsCleanInQuickMode"/> checks for
    /// errors, warnings and figures): the committed stub's check says "not attempted" and the notebook runs on, then the
    /// solution passes the same check in the notebook's own context.
    /// </summary>
    [Theory]
    [MemberData(nameof(CoreNotebooks))]
    public void EachCheckSaysNotAttemptedForTheStubThenPassesWithTheSolution(string notebook)
    {
        var r = NotebookRuns.Get(notebook, ExpectedExercises.Keys);
        Assert.True(r.Failures().Length == 0, r.Failures() + $"\n(executed copy: {r.ExecutedPath})");
        var verdicts = Verdicts(r);
        foreach (var id in ExpectedExercises[notebook])
            Assert.True(verdicts.GetValueOrDefault(id) is ["not-attempted", "passed"],
                $"{notebook}: the checks of '{id}' showed [{string.Join(", ", verdicts.GetValueOrDefault(id, []))}], expected 'not-attempted' " +
                $"(the committed stub) then 'passed' (its solution)\n" +
                string.Join("\n", r.Outputs.Where(o => o.Text.Contains($"data-exercise=\"{id}\"")).Select(o => o.Text)) +
                $"\n(executed copy: {r.ExecutedPath})");
    }
}
