using System.Security.Cryptography;
using Diffusion;

namespace Diffusion.Tests;

/// <summary>
/// Outputs never clobber: an output that exists is refused with one error naming --overwrite; an output that is one of the
/// command's inputs is refused even with --overwrite; the file is left as it was.
/// </summary>
public class OutputTests
{
    static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    static string DefaultModelCopy(TempDir dir)
    {
        var ckpt = dir["model.ckpt"];
        File.Copy(Path.Combine(TestSetup.RepoRoot, "data", "checkpoints", "fashion-mnist-default.ckpt"), ckpt);
        return ckpt;
    }

    static void AssertRefused(Cli.Result r, string mention)
    {
        Assert.True(r.ExitCode == 2, $"exit {r.ExitCode}:\n{r.All}");
        Assert.StartsWith("error:", r.Stderr.Trim());
        Assert.Single(r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(mention, r.Stderr);
    }

    [Fact]
    public void SampleNeverWritesOverItsCheckpointNorOverAnExistingFileUnlessAsked()
    {
        using var dir = TestSetup.Temp();
        var ckpt = DefaultModelCopy(dir);
        var before = Hash(ckpt);
        string[] quick = ["--count", "1", "--sampler", "ddim", "--steps", "1", "--threads", "1"];

        // The input as the output: refused, with and without --overwrite.
        AssertRefused(Cli.Run(dir.Path, ["sample", "--checkpoint", ckpt, "--out", ckpt, .. quick]), "--checkpoint");
        AssertRefused(Cli.Run(dir.Path, ["sample", "--checkpoint", ckpt, "--out", ckpt, "--overwrite", .. quick]), "--checkpoint");
        AssertRefused(Cli.Run(dir.Path, ["sample", "--checkpoint", ckpt, "--out", dir["a.png"], "--gif", ckpt, .. quick]), "--checkpoint");
        Assert.Equal(before, Hash(ckpt));
        // A FIFO (or a device such as /dev/null) is never replaced by the atomic rename, not even with --overwrite.
        System.Diagnostics.Process.Start("mkfifo", dir["pipe.png"])!.WaitForExit();
        AssertRefused(Cli.Run(dir.Path, ["sample", "--checkpoint", ckpt, "--out", dir["pipe.png"], "--overwrite", .. quick]), "FIFO");
        Assert.Equal("a FIFO (named pipe)", InputFile.SpecialKind(dir["pipe.png"]));

        // An existing file: refused naming --overwrite; given --overwrite, replaced.
        File.WriteAllText(dir["old.png"], "mine");
        AssertRefused(Cli.Run(dir.Path, ["sample", "--checkpoint", ckpt, "--out", dir["old.png"], .. quick]), "--overwrite");
        Assert.Equal("mine", File.ReadAllText(dir["old.png"]));
        var replaced = Cli.Run(dir.Path, ["sample", "--checkpoint", ckpt, "--out", dir["old.png"], "--overwrite", .. quick]);
        Assert.True(replaced.ExitCode == 0, replaced.All);
        Assert.Equal((byte)0x89, File.ReadAllBytes(dir["old.png"])[0]);                // a PNG now
        Assert.Empty(Directory.GetFiles(dir.Path, ".*.tmp"));
    }

    [Fact]
    public void OtherCommandsRefuseOutputsThatExistOrAreInputs()
    {
        using var dir = TestSetup.Temp();
        var t2i = dir["t2i.ckpt"];
        File.Copy(Path.Combine(TestSetup.RepoRoot, "data", "checkpoints", "fashion-mnist-text2img.ckpt"), t2i);
        var before = Hash(t2i);
        AssertRefused(Cli.Run(dir.Path, "generate", "--prompt", "a boot", "--checkpoint", t2i, "--out", t2i, "--overwrite",
            "--count", "1", "--steps", "1", "--threads", "1"), "--checkpoint");
        Assert.Equal(before, Hash(t2i));

        File.WriteAllText(dir["results.json"], "mine");
        AssertRefused(Cli.Run(dir.Path, "eval", "--real-only", "--count", "2", "--json", dir["results.json"], "--threads", "1"), "--overwrite");
        Assert.Equal("mine", File.ReadAllText(dir["results.json"]));

        var ckpt = DefaultModelCopy(dir);
        var model = Hash(ckpt);
        AssertRefused(Cli.Run(dir.Path, "eval", "--checkpoint", ckpt, "--count", "2", "--json", ckpt, "--overwrite", "--threads", "1"), "--checkpoint");
        Assert.Equal(model, Hash(ckpt));
        File.WriteAllText(dir["bench.json"], "mine");
        AssertRefused(Cli.Run(dir.Path, "bench", "--quick", "--json", dir["bench.json"], "--threads", "1"), "--overwrite");
        Assert.Equal("mine", File.ReadAllText(dir["bench.json"]));
    }

    /// <summary>Waits until the background CLI has printed <paramref name="text"/> (fails if it ends first or takes over 3 minutes).</summary>
    static void WaitFor(RunFolderTests.Background run, string text)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!run.Output.Contains(text, StringComparison.Ordinal))
        {
            Assert.False(run.Process.HasExited, $"the command ended before printing \"{text}\":\n{run.Output}");
            Assert.True(sw.Elapsed < TimeSpan.FromMinutes(3), $"no \"{text}\" within 3 minutes:\n{run.Output}");
            Thread.Sleep(50);
        }
    }

    [Fact]
    public void AFileCreatedAtTrainClipsOutWhileItTrainsIsNotReplaced()
    {
        // --out is checked before training; the final write checks again, atomically: a file that appears meanwhile is kept,
        // and the trained model is kept beside it.
        using var dir = TestSetup.Temp();
        var path = dir["clip.bin"];
        using (var run = new RunFolderTests.Background("train-clip", "--out", path, "--steps", "400", "--batch-size", "8", "--dim", "16",
                   "--layers", "1", "--eval-count", "20", "--seed", "1", "--threads", "1"))
        {
            WaitFor(run, "contrastive training 20/400");
            File.WriteAllText(path, "mine");
            Assert.True(run.Process.WaitForExit(TimeSpan.FromMinutes(5)), run.Output);
            run.Process.WaitForExit();
            Assert.True(run.Process.ExitCode == 2, $"exit {run.Process.ExitCode}:\n{run.Output}");
            Assert.Contains("error:", run.Output);
            Assert.Contains("never overwritten", run.Output);
        }
        Assert.Equal("mine", File.ReadAllText(path));
        Assert.Equal(400, Diffusion.TextToImage.MiniClipFile.ReadInfo(path + ".new").Steps);      // the trained model, kept
        Assert.Empty(Directory.GetFiles(dir.Path, ".*.tmp"));
    }

    [Fact]
    public void LatentWritesTheAutoencoderLossLogAtomically()
    {
        // A run folder left by a latent run that ended before its first diffusion checkpoint: run.lock (the marker) and
        // stage 1's log. A new run killed during stage 1 leaves that log as it was, never truncated or half written.
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, "run.lock"), "");
        var log = Path.Combine(run, "ae-loss.csv");
        const string earlier = "step,loss,squared_error,kl,pixel_mse,elapsed_seconds\n1,0.5,0.4,0.1,0.3,0.01\n";
        File.WriteAllText(log, earlier);
        using (var latent = new RunFolderTests.Background("latent", "--ae-steps", "2000", "--steps", "1", "--batch-size", "4", "--encode", "64",
                   "--out", run, "--threads", "1"))
        {
            WaitFor(latent, "autoencoder 100/2000");
            latent.Kill();
        }
        Assert.Equal(earlier, File.ReadAllText(log));

        // A run that ends writes the whole log: every step of stage 1 once.
        var done = Cli.Run(dir.Path, "latent", "--ae-steps", "5", "--steps", "1", "--batch-size", "4", "--encode", "64", "--sample-steps", "1",
            "--out", run, "--threads", "1");
        Assert.True(done.ExitCode == 0, done.All);
        Assert.Equal(Enumerable.Range(1, 5), File.ReadAllLines(log).Skip(1).Select(l => int.Parse(l.Split(',')[0])));
        Assert.Empty(Directory.GetFiles(run, ".*.tmp"));
    }

    [Fact]
    public void SolutionsNeverReplacesFilesItDidNotWriteUnlessAsked()
    {
        var outDir = Path.Combine(TestSetup.RepoRoot, "artifacts", "test-solved-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            // A folder of the user's holding a file of one of the names the command writes: refused, nothing written.
            Directory.CreateDirectory(outDir);
            File.WriteAllText(Path.Combine(outDir, "course.csx"), "mine");
            AssertRefused(Cli.Run(TestSetup.RepoRoot, "solutions", "--out", outDir), "--overwrite");
            Assert.Equal("mine", File.ReadAllText(Path.Combine(outDir, "course.csx")));
            Assert.Equal([Path.Combine(outDir, "course.csx")], Directory.GetFiles(outDir));

            // --overwrite replaces it; a second run into the folder the command wrote needs no --overwrite.
            var replaced = Cli.Run(TestSetup.RepoRoot, "solutions", "--out", outDir, "--overwrite");
            Assert.True(replaced.ExitCode == 0, replaced.All);
            Assert.NotEqual("mine", File.ReadAllText(Path.Combine(outDir, "course.csx")));
            var again = Cli.Run(TestSetup.RepoRoot, "solutions", "--out", outDir);
            Assert.True(again.ExitCode == 0, again.All);
            Assert.Empty(Directory.GetFiles(outDir, ".*.tmp"));
        }
        finally
        {
            if (Directory.Exists(outDir)) Directory.Delete(outDir, recursive: true);
        }
    }
}
