using System.Diagnostics;
using System.Security.Cryptography;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace Diffusion.Tests;

/// <summary>Runs the CLI as a separate process, as a user would.</summary>
static class Cli
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr)
    {
        public string All => Stdout + Stderr;
    }

    public static Result Run(string workingDir, params string[] args) => Run(null, workingDir, args);

    /// <summary>Trains the tiny configuration into <paramref name="run"/> and fails the test unless it exits with 0.</summary>
    public static Result TrainTiny(string workingDir, string run, params string[] extra)
    {
        var r = Run(workingDir, ["train", "--out", run, .. Tiny, .. extra]);
        Assert.True(r.ExitCode == 0, r.All);
        return r;
    }

    /// <summary>Runs the CLI with extra environment variables.</summary>
    public static Result Run(IReadOnlyDictionary<string, string>? environment, string workingDir, params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "Diffusion.Cli.dll");
        var psi = new ProcessStartInfo("dotnet") { WorkingDirectory = workingDir, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DIFFUSION_DATA_DIR"] = Path.Combine(TestSetup.RepoRoot, "data");
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) psi.Environment[key] = value;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"CLI {string.Join(' ', args)} did not finish in 10 minutes");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>The smallest settings that still exercise every stage.</summary>
    public static readonly string[] Tiny =
        ["--steps", "4", "--batch-size", "4", "--dim", "8", "--dim-mults", "1,2", "--attention-levels", "1", "--timesteps", "20",
         "--checkpoint-every", "2"];
}

public class CliTests
{
    [Fact]
    public void MinutesFixesAStepCountThatStepsRepeatsExactly()
    {
        using var dir = TestSetup.Temp();
        string[] net = ["--batch-size", "4", "--dim", "8", "--dim-mults", "1,2", "--attention-levels", "none", "--timesteps", "20",
                        "--samples", "4", "--sampler", "ddim", "--sample-steps", "2", "--threads", "1"];
        var timed = Cli.Run(dir.Path, ["train", "--out", dir["timed"], "--minutes", "0.15", .. net]);
        Assert.True(timed.ExitCode == 0, timed.All);
        var line = timed.Stdout.Split('\n').Single(l => l.StartsWith("--minutes 0.15: ", StringComparison.Ordinal));
        int total = int.Parse(System.Text.RegularExpressions.Regex.Match(line, @"`--steps (\d+)`").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(total >= 30, line);                                  // never fewer than the measured warm-up steps
        Assert.Contains($"trained to step {total}:", timed.Stdout);
        Assert.Equal(total, Checkpoint.ReadInfo(Path.Combine(dir["timed"], Trainer.CheckpointFileName)).Training.Steps);

        var fixedRun = Cli.Run(dir.Path, ["train", "--out", dir["fixed"], "--steps", total.ToString(System.Globalization.CultureInfo.InvariantCulture), .. net]);
        Assert.True(fixedRun.ExitCode == 0, fixedRun.All);
        string Losses(string run) => string.Join("\n", File.ReadLines(Path.Combine(run, Trainer.LossLogFileName)).Select(l => string.Join(',', l.Split(',')[..3])));
        Assert.Equal(Losses(dir["timed"]), Losses(dir["fixed"]));        // step, loss and learning rate of every step
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir["timed"], "samples.png")), File.ReadAllBytes(Path.Combine(dir["fixed"], "samples.png")));

        var both = Cli.Run(dir.Path, ["train", "--out", dir["both"], "--minutes", "1", "--steps", "10", .. net]);
        Assert.NotEqual(0, both.ExitCode);
        Assert.Contains("--minutes sets the number of steps itself", both.All);
        Assert.False(File.Exists(Path.Combine(dir["both"], Trainer.CheckpointFileName)));
    }

    [Fact]
    public void BenchQuickRunsEveryPartAndWritesItsJsonLine()
    {
        using var dir = TestSetup.Temp();
        var json = dir["bench.json"];
        var r = Cli.Run(dir.Path, "bench", "--quick", "--threads", "1", "--json", json);
        Assert.True(r.ExitCode == 0, r.All);
        var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(json))!;
        Assert.True((double)root["matmul_gflops"]! > 0, r.Stdout);
        Assert.Equal("tiny (--quick)", (string?)root["training"]![0]!["Name"]);
        Assert.Equal(2, root["training_rss_mb"]!.AsObject().Count);
        Assert.Contains("of matmul", r.Stdout);
        Assert.Contains("memory: training RSS", r.Stdout);
    }

    [Fact]
    public void TrainThenSampleEndToEnd()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        var train = Cli.TrainTiny(dir.Path, run, "--samples", "4");
        Assert.Contains("Fashion-MNIST train: 60000 images", train.Stdout);
        Assert.DoesNotContain("NNPACK", train.Stderr);          // libtorch's "Could not initialize NNPACK" noise is off
        foreach (var f in new[] { "checkpoint.ckpt", "model.ckpt", "loss.csv", "samples.png", "denoising.gif", "run.json" })
            Assert.True(File.Exists(Path.Combine(run, f)), $"{f} missing; output:\n{train.All}");
        Assert.Equal(5, File.ReadAllLines(Path.Combine(run, "loss.csv")).Length);          // header + 4 steps
        Assert.Equal(4, Checkpoint.ReadInfo(Path.Combine(run, "checkpoint.ckpt")).Step);
        using (var png = Image.Load<Rgb24>(Path.Combine(run, "samples.png")))
            Assert.Equal(2 + 2 * (28 * 2 + 2), png.Width);                                   // 2 columns of 56 px + padding
        using (var gif = Image.Load<Rgb24>(Path.Combine(run, "denoising.gif")))
            Assert.True(gif.Frames.Count >= 10);

        var sample = Cli.Run(dir.Path, "sample", "--checkpoint", run, "--count", "9", "--sampler", "ddim", "--steps", "5", "--threads", "1", "--out", dir["s.png"], "--gif", dir["s.gif"]);
        Assert.True(sample.ExitCode == 0, sample.All);
        using (var png = Image.Load<Rgb24>(dir["s.png"])) Assert.Equal(2 + 3 * 58, png.Width);
        using (var gif = Image.Load<Rgb24>(dir["s.gif"])) Assert.Equal(6, gif.Frames.Count);   // x_T + 5 DDIM steps

        // Same seed, same samples: the CLI is deterministic end to end.
        var again = Cli.Run(dir.Path, "sample", "--checkpoint", run, "--count", "9", "--sampler", "ddim", "--steps", "5", "--threads", "1", "--out", dir["s2.png"]);
        Assert.True(again.ExitCode == 0, again.All);
        Assert.Equal(File.ReadAllBytes(dir["s.png"]), File.ReadAllBytes(dir["s2.png"]));
    }

    [Fact]
    public void ExistingRunIsNeverOverwrittenAndResumeChecksTheConfiguration()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        var first = Cli.TrainTiny(dir.Path, run, "--samples", "0");
        var checkpoint = Path.Combine(run, "checkpoint.ckpt");
        var hash = SHA256.HashData(File.ReadAllBytes(checkpoint));

        var again = Cli.Run(dir.Path, ["train", "--out", run, .. Cli.Tiny]);
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("already holds a checkpoint", again.Stderr);
        Assert.Single(again.Stderr.Trim().Split('\n'));

        var other = Cli.Run(dir.Path, "train", "--out", run, "--dim", "16", "--resume");
        Assert.Equal(2, other.ExitCode);
        Assert.Contains("trained with another configuration", other.Stderr);
        Assert.Contains("Dim: 16 vs 8", other.Stderr);
        Assert.Equal(hash, SHA256.HashData(File.ReadAllBytes(checkpoint)));                   // nothing was lost

        var resumed = Cli.Run(dir.Path, "train", "--out", run, "--resume", "--steps", "6", "--samples", "0");
        Assert.True(resumed.ExitCode == 0, resumed.All);
        Assert.Contains("resuming", resumed.Stdout);
        Assert.Equal(6, Checkpoint.ReadInfo(checkpoint).Step);
    }

    public static TheoryData<string[], string> BadArguments() => new()
    {
        { ["train", "--timesteps", "0"], "--timesteps must be between" },
        { ["train", "--schedule", "exponential"], "not one of linear, quadratic, cosine, sigmoid" },
        { ["train", "--dim-mults", "1,x"], "comma-separated list of integers" },
        { ["train", "--data", "/no/such/place"], "no such file or folder" },
        { ["train", "--dim", "10", "--steps", "1"], "divisible by ResnetBlockGroups" },
        { ["train", "--dim-mults", "1,2,4,8", "--steps", "1"], "multiple of 8" },
        { ["train", "--device", "cuda", "--steps", "1"], "CUDA is not available" },
        { ["train", "--batch-size", "0"], "--batch-size must be between" },
        { ["train", "--lr", "abc"], "abc" },
        { ["train", "--conditional", "--data", "IDXFILE", "--steps", "1"], "needs labelled data" },
        { ["sample", "--checkpoint", "/no/such.ckpt"], "not found" },
        { ["sample", "--checkpoint", "CORRUPT"], "damaged or truncated" },
        { ["train", "--resume", "--out", "EMPTYDIR"], "no checkpoint" },
        { ["frobnicate"], "frobnicate" },
    };

    [Theory]
    [MemberData(nameof(BadArguments))]
    public void BadArgumentsAndFilesGiveOneClearErrorAndNonZeroExit(string[] args, string expected)
    {
        using var dir = TestSetup.Temp();
        // Placeholders for files the case needs.
        Data.IdxFile.Write(dir["images.idx"], new Data.IdxArray([8, 28, 28], new byte[8 * 784]));
        File.WriteAllBytes(dir["corrupt.ckpt"], [.. "DDPMCKPT"u8, .. new byte[100]]);
        Directory.CreateDirectory(dir["empty"]);
        var resolved = args.Select(a => a switch
        {
            "IDXFILE" => dir["images.idx"], "CORRUPT" => dir["corrupt.ckpt"], "EMPTYDIR" => dir["empty"], _ => a,
        }).ToList();
        if (resolved[0] == "train" && !resolved.Contains("--out")) resolved.AddRange(["--out", dir["run"]]);
        var r = Cli.Run(dir.Path, [.. resolved]);
        Assert.True(r.ExitCode == 2, $"exit {r.ExitCode} for {string.Join(' ', args)}:\n{r.All}");
        Assert.StartsWith("error:", r.Stderr.Trim());
        Assert.Contains(expected, r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);                                            // no stack trace
        Assert.False(File.Exists(Path.Combine(dir["run"], "checkpoint.ckpt")));
    }

    public static TheoryData<string[], string[]> ParseErrors => new()
    {
        // args, the words the one error line must contain (the option and the value)
        { ["train", "--steps", "0"], ["--steps", "0"] },
        { ["train", "--lr", "abc"], ["--lr", "abc"] },
        { ["train", "--lr", "NaN"], ["--lr", "NaN"] },
        { ["train", "--ema-decay", "nan"], ["--ema-decay", "nan"] },
        { ["sample", "--guidance", "NaN"], ["--guidance", "NaN"] },
        { ["sample", "--eta", "Infinity"], ["--eta", "Infinity"] },
        { ["train", "--no-such-option", "3"], ["--no-such-option"] },
        { ["train", "--steps", "5", "--steps", "6"], ["--steps"] },
        { ["sample", "--count"], ["--count"] },
        { ["frobnicate"], ["frobnicate"] },
    };

    [Theory]
    [MemberData(nameof(ParseErrors))]
    public void ParseErrorsAreOneErrorLineWithExit2AndNoHelp(string[] args, string[] mentions)
    {
        using var dir = TestSetup.Temp();
        var r = Cli.Run(dir.Path, [.. args, .. (args[0] == "train" ? new[] { "--out", dir["run"] } : [])]);
        Assert.True(r.ExitCode == 2, $"exit {r.ExitCode} for {string.Join(' ', args)}:\n{r.All}");
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, r.Stderr);
        Assert.StartsWith("error: ", lines[0]);
        foreach (var m in mentions) Assert.Contains(m, lines[0]);
        Assert.Contains("--help", lines[0]);                                            // where to read the options
        Assert.DoesNotContain("Options:", r.All);                                       // help only when asked for
        Assert.False(Directory.Exists(dir["run"]));
    }

    [Fact]
    public void HelpIsShownWhenAskedFor()
    {
        using var dir = TestSetup.Temp();
        var r = Cli.Run(dir.Path, "train", "--help");
        Assert.Equal(0, r.ExitCode);
        Assert.Contains("--overwrite", Cli.Run(dir.Path, "sample", "--help").Stdout);
        Assert.Contains("Options:", r.Stdout);
    }
}
