using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Diffusion.Tests;

/// <summary>
/// One run per folder: a second train or --resume into a folder in use is refused naming the holder's PID; the lock dies
/// with its process (kill -9 leaves none behind); a new run never deletes or overwrites files the project did not write.
/// </summary>
public class RunFolderTests
{
    static string[] Long(int steps = 400, int seed = 3) =>
        ["train", "--steps", steps.ToString(), "--batch-size", "4", "--dim", "8", "--dim-mults", "1,2", "--attention-levels", "1",
         "--timesteps", "20", "--checkpoint-every", "1", "--samples", "0", "--seed", seed.ToString(), "--threads", "1"];

    /// <summary>A CLI process in the background; <see cref="WaitForStep"/> waits for its progress line of a step.</summary>
    internal sealed class Background : IDisposable
    {
        public Process Process { get; }
        int step = -1;
        readonly System.Text.StringBuilder output = new();
        public string Output { get { lock (output) return output.ToString(); } }
        const string Python = "/usr/bin/python3";

        public Background(params string[] args)
        {
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            if (File.Exists(Python))
            {
                // A process started in the background by a shell inherits SIGINT ignored, and so would the CLI (which then
                // rightly ignores Ctrl+C): start it with SIGINT's default disposition, as a terminal would.
                psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true };
                foreach (var a in new[] { "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp('dotnet', ['dotnet'] + sys.argv[1:])" })
                    psi.ArgumentList.Add(a);
            }
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Diffusion.Cli.dll"));
            foreach (var a in args) psi.ArgumentList.Add(a);
            psi.Environment["DIFFUSION_DATA_DIR"] = Path.Combine(TestSetup.RepoRoot, "data");
            Process = new Process { StartInfo = psi };
            Process.OutputDataReceived += (_, e) => Seen(e.Data);
            Process.ErrorDataReceived += (_, e) => Seen(e.Data);
            Process.Start();
            Process.BeginOutputReadLine();
            Process.BeginErrorReadLine();
        }

        void Seen(string? line)
        {
            if (line is null) return;
            lock (output) output.AppendLine(line);
            var m = Regex.Match(line, @"^training (\d+)/");
            if (m.Success) Volatile.Write(ref step, int.Parse(m.Groups[1].Value));
        }

        public void WaitForStep(int wanted)
        {
            var sw = Stopwatch.StartNew();
            while (Volatile.Read(ref step) < wanted)
            {
                Assert.False(Process.HasExited, $"the run ended before step {wanted}:\n{Output}");
                Assert.True(sw.Elapsed < TimeSpan.FromMinutes(2), $"no step {wanted} within 2 minutes:\n{Output}");
                Thread.Sleep(50);
            }
        }

        public void Kill()
        {
            if (!Process.HasExited) Process.Kill();                    // SIGKILL: the process gets no chance to clean up
            Process.WaitForExit();
        }

        public void Dispose()
        {
            Kill();
            Process.Dispose();
        }
    }

    [Fact]
    public void ASecondRunOrResumeIntoAFolderInUseIsRefusedNamingTheHolderAndKillReleasesTheLock()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        using (var first = new Background([.. Long(), "--out", run]))
        {
            first.WaitForStep(2);
            int pid = first.Process.Id;
            var info = Checkpoint.ReadInfo(Path.Combine(run, "checkpoint.ckpt"));
            var lossBefore = File.ReadAllText(Path.Combine(run, "loss.csv"));

            // A --resume of the running run, and a new run into its folder: both refused, the holder named.
            var resume = Cli.Run(dir.Path, [.. Long(info.Step + 2), "--out", run, "--resume"]);
            Assert.Equal(2, resume.ExitCode);
            Assert.StartsWith("error:", resume.Stderr.Trim());
            Assert.Contains($"process {pid}", resume.Stderr);
            var second = Cli.Run(dir.Path, [.. Long(seed: 4), "--out", run]);
            Assert.Equal(2, second.ExitCode);
            Assert.Contains($"process {pid}", second.Stderr);
            Assert.DoesNotContain("   at ", resume.Stderr + second.Stderr);
            first.Kill();
        }
        // kill -9 left no stale lock: the run continues from its checkpoint, and its log has every step once.
        var at = Checkpoint.ReadInfo(Path.Combine(run, "checkpoint.ckpt")).Step;
        var resumed = Cli.Run(dir.Path, [.. Long(at + 1), "--out", run, "--resume"]);
        Assert.True(resumed.ExitCode == 0, resumed.All);
        var steps = File.ReadAllLines(Path.Combine(run, "loss.csv")).Skip(1).Select(l => int.Parse(l.Split(',')[0])).ToArray();
        Assert.Equal(Enumerable.Range(1, at + 1), steps);
    }

    [Fact]
    public void TwoRunsStartedTogetherIntoOneFolderLeaveOneRunWhole()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        using var a = new Background([.. Long(6, seed: 1), "--out", run]);
        using var b = new Background([.. Long(6, seed: 2), "--out", run]);
        Assert.True(a.Process.WaitForExit(TimeSpan.FromMinutes(3)) && b.Process.WaitForExit(TimeSpan.FromMinutes(3)));
        a.Process.WaitForExit();
        b.Process.WaitForExit();
        var codes = new[] { a.Process.ExitCode, b.Process.ExitCode }.Order().ToArray();
        Assert.True(codes is [0, 2], $"exit codes {a.Process.ExitCode}, {b.Process.ExitCode}:\n{a.Output}\n---\n{b.Output}");
        var winner = a.Process.ExitCode == 0 ? a : b;
        var loser = winner == a ? b : a;
        Assert.Contains("error:", loser.Output);
        // The folder holds the winner's run alone: its checkpoint's seed, and a log of steps 1..6 once each.
        var info = Checkpoint.ReadInfo(Path.Combine(run, "checkpoint.ckpt"));
        Assert.Equal(winner == a ? 1 : 2, info.Training.Seed);
        var steps = File.ReadAllLines(Path.Combine(run, "loss.csv")).Skip(1).Select(l => int.Parse(l.Split(',')[0])).ToArray();
        Assert.Equal(Enumerable.Range(1, 6), steps);
    }

    [Fact]
    public void ANewRunNeverDeletesOrOverwritesFilesItDidNotWrite()
    {
        using var dir = TestSetup.Temp();
        // A folder of the user's: files with the names a run writes (but no checkpoint.ckpt) and hidden .tmp files.
        var folder = dir["mine"];
        Directory.CreateDirectory(folder);
        var files = new Dictionary<string, string>
        {
            ["model.ckpt"] = "my model", ["loss.csv"] = "my numbers", ["run.json"] = "{}", [".notes.tmp"] = "draft",
            [".checkpoint.ckpt.123.0123456789abcdef0123456789abcdef.tmp"] = "not the course's",
        };
        foreach (var (name, text) in files) File.WriteAllText(Path.Combine(folder, name), text);
        var r = Cli.Run(dir.Path, [.. Long(2), "--out", folder]);
        Assert.Equal(2, r.ExitCode);
        Assert.StartsWith("error:", r.Stderr.Trim());
        Assert.Contains(folder, r.Stderr);
        foreach (var (name, text) in files) Assert.Equal(text, File.ReadAllText(Path.Combine(folder, name)));
        Assert.Equal(files.Count, Directory.GetFiles(folder).Length);

        // A run folder whose checkpoint was deleted still holds that run's results: a new run does not replace them.
        var earlier = dir["earlier"];
        Cli.TrainTiny(dir.Path, earlier, "--samples", "0", "--threads", "1");
        File.Delete(Path.Combine(earlier, "checkpoint.ckpt"));
        var model = File.ReadAllBytes(Path.Combine(earlier, "model.ckpt"));
        var again = Cli.Run(dir.Path, [.. Long(2), "--out", earlier]);
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("model.ckpt", again.Stderr);
        Assert.Equal(model, File.ReadAllBytes(Path.Combine(earlier, "model.ckpt")));

        // A folder holding only a hidden file is not empty either.
        var hidden = dir["hidden"];
        Directory.CreateDirectory(hidden);
        File.WriteAllText(Path.Combine(hidden, ".keep.tmp"), "keep");
        var h = Cli.Run(dir.Path, [.. Long(2), "--out", hidden]);
        Assert.Equal(2, h.ExitCode);
        Assert.Equal("keep", File.ReadAllText(Path.Combine(hidden, ".keep.tmp")));
    }
}
