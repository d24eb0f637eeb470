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
}
