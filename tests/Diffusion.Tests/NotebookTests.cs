using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Diffusion.Tests;

/// <summary>
/// Every course notebook runs top to bottom in the kernel learners run (Jupyter + dotnet-interactive), in quick mode,
/// without a cell error, a compiler warning or a stack trace in any output, and shows the figures it promises; a notebook
/// with exercises runs once, as its classroom copy (<see cref="NotebookRuns"/>). The harness itself is tested on
/// deliberately broken notebooks.
/// </summary>
public class NotebookTests : IClassFixture<NotebookRunsFixture>
{
    /// <summary>What each notebook must show at least: PNG images, Plotly charts, GIF animations.</summary>
    public static readonly Dictionary<string, (int Png, int Charts, int Gif)> Expected = new()
    {
        ["00-setup.ipynb"] = (1, 1, 0),
        ["00b-csharp-and-torch.ipynb"] = (1, 2, 0),
        ["01-gaussian-noise.ipynb"] = (3, 7, 0),
        ["02-closed-form.ipynb"] = (3, 6, 0),
        ["03-epsilon-loss.ipynb"] = (1, 7, 0),
        ["04-unet.ipynb"] = (1, 6, 0),
        ["05-training.ipynb"] = (4, 5, 0),
        ["06-sampling.ipynb"] = (7, 4, 1),
        ["07-where-next.ipynb"] = (0, 2, 0),
        ["08-guidance.ipynb"] = (2, 3, 0),
        ["09-learned-variance.ipynb"] = (1, 4, 0),
        ["10-latent-diffusion.ipynb"] = (4, 5, 0),
        ["11-what-is-stable-diffusion.ipynb"] = (7, 2, 0),
        ["12-stable-diffusion-3.ipynb"] = (2, 5, 0),
        ["99-under-the-hood.ipynb"] = (0, 3, 0),
    };

    /// <summary>Appendices (99-…) sit outside the numbered path: linked from the notebooks they came from, not chained.</summary>
    static bool IsAppendix(string notebook) => notebook.StartsWith("99-", StringComparison.Ordinal);

    static string NotebooksDir => Path.Combine(TestSetup.RepoRoot, "notebooks");

    static List<string> NotebookNames() =>
        Directory.GetFiles(NotebooksDir, "*.ipynb").Select(f => Path.GetFileName(f)!).Order(StringComparer.Ordinal).ToList();

    public static TheoryData<string> Notebooks()
    {
        var data = new TheoryData<string>();
        foreach (var nb in NotebookNames()) data.Add(nb);
        return data;
    }

    /// <summary>Problems with a run: cell errors, then missing figures.</summary>
    internal static List<string> Problems(NotebookRunner.Result r, (int Png, int Charts, int Gif) expected)
    {
        var problems = new List<string>();
        var failures = r.Failures();
        if (failures.Length > 0) problems.Add(failures);
        if (r.Count("image/png") < expected.Png) problems.Add($"{r.Notebook}: {r.Count("image/png")} image/png outputs, expected at least {expected.Png}");
        if (r.PlotlyCharts < expected.Charts) problems.Add($"{r.Notebook}: {r.PlotlyCharts} Plotly charts, expected at least {expected.Charts}");
        if (r.Count("image/gif") < expected.Gif) problems.Add($"{r.Notebook}: {r.Count("image/gif")} image/gif outputs, expected at least {expected.Gif}");
        return problems;
    }

    [Theory]
    [MemberData(nameof(Notebooks))]
    public void NotebookRunsCleanInQuickMode(string notebook)
    {
        Assert.True(Expected.ContainsKey(notebook), $"{notebook} has no entry in NotebookTests.Expected: say which figures it must show");
        // A notebook with exercises runs as its classroom copy: the committed cells plus each solution and its check
        // again (NotebookRuns; SolvedNotebookTests reads the same run's verdicts).
        var r = NotebookRuns.Get(notebook, NotebookNames());
        var problems = Problems(r, Expected[notebook]);
        Assert.True(problems.Count == 0, string.Join("\n", problems) + $"\n(executed copy: {r.ExecutedPath})");
    }

    [Theory]
    [MemberData(nameof(Notebooks))]
    public void CommittedNotebookIsCleanAndLinksOn(string notebook)
    {
        var root = JsonNode.Parse(File.ReadAllText(Path.Combine(NotebooksDir, notebook)))!;
        Assert.Equal(".net-csharp", (string?)root["metadata"]!["kernelspec"]!["name"]);
        var cells = root["cells"]!.AsArray();
        foreach (var cell in cells.Where(c => (string?)c!["cell_type"] == "code"))
            Assert.True((cell!["outputs"]?.AsArray().Count ?? 0) == 0, $"{notebook} is committed with outputs");
        string Source(JsonNode c) => string.Concat(c["source"]!.AsArray().Select(x => (string?)x));
        var codeCells = cells.Where(c => (string?)c!["cell_type"] == "code").Select(c => Source(c!)).ToList();
        // One setup cell: build the library, then (a second submission, so the build exists before it is referenced)
        // load it with the common namespaces and call Course.Setup; only usings beyond course.csx's follow.
        var setup = codeCells[0].Split('\n');
        Assert.Equal(["#load \"build-course.csx\"", "#!csharp", "#load \"course.csx\""], setup[..3]);
        Assert.Equal("Course.Setup();", setup[^1]);
        Assert.All(setup[3..^1], line => Assert.Matches(@"^using [\w.]+;$", line));
        var common = File.ReadAllText(Path.Combine(NotebooksDir, "course.csx"));
        Assert.All(setup[3..^1], line => Assert.DoesNotContain("global " + line, common));
        Assert.DoesNotContain(codeCells.Skip(1), c => c.Contains("#load"));
        // Every notebook of the path but the last ends with a link to the next one, which exists; an appendix ends
        // with a link back into the path, and some notebook of the path links to it.
        var path = NotebookNames().Where(n => !IsAppendix(n)).ToList();
        var last = Source(cells[^1]!);
        if (IsAppendix(notebook))
        {
            Assert.Contains(path, n => last.Contains($"({n}"));
            Assert.Contains(path, n => File.ReadAllText(Path.Combine(NotebooksDir, n)).Contains($"({notebook}"));
        }
        else
        {
            int i = path.IndexOf(notebook);
            if (i < path.Count - 1) Assert.Contains($"({path[i + 1]})", last);
        }
    }

    /// <summary>The markdown cells of a notebook, with their indices.</summary>
    static IEnumerable<(int Cell, string Text)> MarkdownCells(string notebook) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(NotebooksDir, notebook)))!["cells"]!.AsArray()
            .Select((c, i) => (Cell: i, Node: c!))
            .Where(c => (string?)c.Node["cell_type"] == "markdown")
            .Select(c => (c.Cell, string.Concat(c.Node["source"]!.AsArray().Select(x => (string?)x))));

    /// <summary>
    /// Measurement history: a date (2026-12-02) or a CPU model or family (EPYC, Xeon, Ryzen, Zen 3, "CPU family 25").
    /// Explanations say what is true now; the runs behind a number live in docs/ (docs/notebook-measurements.md).
    /// </summary>
    internal static readonly Regex MachineDiary = new(
        @"\b(19|20)\d\d-[01]\d-[0-3]\d\b|\b(EPYC|Xeon|Ryzen|Threadripper|Opteron|Core i[3579]|Zen ?\d|Zen\b|CPU family|family \d+)",
        RegexOptions.Compiled);

    static List<string> DiaryLines(string name, IEnumerable<(int Cell, string Text)> parts) =>
        parts.SelectMany(p => p.Text.Split('\n').Where(l => MachineDiary.IsMatch(l))
                                .Select(l => $"{name} cell {p.Cell}: {MachineDiary.Match(l).Value} in \"{l.Trim()}\""))
             .ToList();

    [Theory]
    [MemberData(nameof(Notebooks))]
    public void NotebookProseCarriesNoDatesOrMachineNames(string notebook)
    {
        var found = DiaryLines(notebook, MarkdownCells(notebook));
        Assert.True(found.Count == 0, "measurement history in a lesson (move it to docs/notebook-measurements.md):\n" + string.Join("\n", found));
    }

    [Fact]
    public void TeachersGuideCarriesNoDatesOrMachineNames()
    {
        var found = DiaryLines("TEACHERS.md", [(0, File.ReadAllText(Path.Combine(NotebooksDir, "TEACHERS.md")))]);
        Assert.True(found.Count == 0, "measurement history in the teacher's guide (move it to docs/notebook-measurements.md):\n" + string.Join("\n", found));
    }

    [Fact]
    public void TheDiaryPatternCatchesWhatItShould()
    {
        string[] diary = ["since 2026-12-02 the default", "a 2-core Zen 4 EPYC", "an Intel Xeon", "CPU family 25", "on a Zen 3", "AMD Ryzen 7"];
        string[] fine = ["Ho et al. 2020", "T = 1000 steps", "family of schedules", "a 2-core CPU", "x_{t-1}", "zenith"];
        Assert.All(diary, d => Assert.Matches(MachineDiary, d));
        Assert.All(fine, f => Assert.DoesNotMatch(MachineDiary, f));
    }

    /// <summary>
    /// The inline math spans ($…$, outside code and $$…$$) of a markdown text that GitHub's renderer breaks: it reads
    /// <c>\{ \} \| \, \; \!</c> as markdown escapes before the math is typeset, and a span that begins or ends with a
    /// space is not read as math at all (pandoc, nbsphinx and GitHub leave it as raw TeX).
    /// </summary>
    internal static List<string> BrokenInlineMath(string text)
    {
        var masked = Regex.Replace(text, @"```.*?```", m => new string(' ', m.Length), RegexOptions.Singleline);
        masked = Regex.Replace(masked, @"`[^`\n]*`", m => new string(' ', m.Length));
        masked = Regex.Replace(masked, @"\$\$.*?\$\$", m => new string(' ', m.Length), RegexOptions.Singleline);
        string[] bad = [@"\{", @"\}", @"\|", @"\,", @"\;", @"\!"];
        return Regex.Matches(masked, @"(?<!\\)\$([^$]+?)(?<!\\)\$")
            .Select(m => text.Substring(m.Groups[1].Index, m.Groups[1].Length))
            .Where(span => bad.Any(b => span.Contains(b, StringComparison.Ordinal)) || span != span.Trim())
            .ToList();
    }

    [Theory]
    [MemberData(nameof(Notebooks))]
    public void InlineMathRendersOnGitHubJupyterAndVsCode(string notebook)
    {
        var found = MarkdownCells(notebook).SelectMany(c => BrokenInlineMath(c.Text).Select(span => $"{notebook} cell {c.Cell}: ${span}$")).ToList();
        Assert.True(found.Count == 0, "inline math with \\{ \\} \\| \\, \\; or \\! (GitHub eats them; use \\lbrace \\rbrace, \\lVert \\rVert or \\mid, plain spaces):\n" +
                                      string.Join("\n", found));
    }

    [Fact]
    public void TheInlineMathLintCatchesWhatItShould()
    {
        Assert.Equal([@"D(q\,\|\,p)"], BrokenInlineMath(@"the bound $D(q\,\|\,p)$ and $x \in \lbrace 0, 1 \rbrace$"));
        Assert.Equal([@"\{0, 1\}"], BrokenInlineMath(@"pixels $\{0, 1\}$ and $a \mid b$"));
        // a span that starts or ends with a space is not math to pandoc, nbsphinx or GitHub: "$a / b $" stays raw TeX
        Assert.Equal([@"\lVert a \rVert "], BrokenInlineMath(@"the ratio $\lVert a \rVert $ and $b$"));
        Assert.Empty(BrokenInlineMath("display math is not inline: $$\n\\left\\| x \\right\\|\\,\n$$ and code `$x\\,y$` is not math"));
    }

    [Fact]
    public void HarnessReportsTheFailingCellOfABrokenNotebook()
    {
        var r = NotebookRunner.Execute(Path.Combine(AppContext.BaseDirectory, "NotebookFixtures", "broken.ipynb"), TimeSpan.FromMinutes(5));
        var problems = Problems(r, (0, 0, 0));
        var text = string.Join("\n", problems);
        Assert.Equal(2, r.Errors.Count());
        Assert.Contains("broken.ipynb cell 3", text);                    // the cell that throws
        Assert.Contains("deliberately broken", text);                    // its message
        Assert.Contains("broken.ipynb cell 4", text);                    // a compile error is caught too
        Assert.Contains("CS0103", text);
        Assert.DoesNotContain("cell 2 ", text);                          // the good cell is not blamed
        // The good cell after the failures still ran (the kernel goes on), and its output is read.
        Assert.Contains(r.Outputs, o => o.Cell == 5 && o.Text.Contains("still alive"));
    }

    [Fact]
    public void HarnessReportsCompilerWarningsAndStackTracesInOutputs()
    {
        var r = NotebookRunner.Execute(Path.Combine(AppContext.BaseDirectory, "NotebookFixtures", "warnings.ipynb"), TimeSpan.FromMinutes(5));
        Assert.Empty(r.Errors);                                          // every cell ran ...
        Assert.Contains(r.Outputs, o => o.Cell == 3 && o.Text.Contains("cell 3 ran"));
        var lines = r.Failures().Split('\n');
        Assert.Equal(2, lines.Length);                                   // ... but two printed something alarming
        Assert.StartsWith("warnings.ipynb cell 3 ", lines[0]);
        Assert.Contains("warning CS8632", lines[0]);
        Assert.StartsWith("warnings.ipynb cell 4 ", lines[1]);
        Assert.Contains("caught on purpose", string.Join("\n", r.Outputs.Where(o => o.Cell == 4).Select(o => o.Text)));
        Assert.Matches(@"\bat \S+\(", lines[1]);
        Assert.Contains("warnings.ipynb cell 3", string.Join("\n", Problems(r, (0, 0, 0))));
    }

    [Fact]
    public void MissingJupyterFailsWithOneLineNamingTheAptPackages()
    {
        Assert.Null(NotebookRunner.MissingJupyter());                    // installed here
        var message = NotebookRunner.MissingJupyter("jupyter-that-is-not-installed");
        Assert.NotNull(message);
        Assert.StartsWith("error: ", message);
        Assert.DoesNotContain("\n", message);
        Assert.Contains("apt-get install -y jupyter-nbconvert jupyter-client python3-ipykernel", message);
    }

    [Fact]
    public void HarnessReportsMissingFigures()
    {
        var r = NotebookRunner.Execute(Path.Combine(AppContext.BaseDirectory, "NotebookFixtures", "no-figures.ipynb"), TimeSpan.FromMinutes(5));
        Assert.Equal(0, r.ExitCode);
        Assert.Empty(r.Failures());
        var problems = Problems(r, (1, 1, 1));
        Assert.Equal(3, problems.Count);
        Assert.Contains("0 image/png outputs", problems[0]);
        Assert.Contains("0 Plotly charts", problems[1]);
        Assert.Contains("0 image/gif outputs", problems[2]);
    }
}
