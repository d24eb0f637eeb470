namespace Diffusion.Tests;

/// <summary>
/// Every command path disposes what it makes: the CLI reports (DIFFUSION_REPORT_LIVE_TENSORS=1) the tensors its thread
/// created and did not dispose — TorchSharp's per-thread DisposeScope statistics, which a finalizer's late release does
/// not touch, so an undisposed tensor counts even if the GC collected it. Building a U-Net currently leaves a fixed number
/// of tensors of its own (measured here in-process for the same configuration); a command may leave only that, once per
/// network it builds.
/// </summary>
public class CommandLeakTests
{
    static long UnetLeak(UnetConfig config)
    {
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        new Unet(config).Dispose();
        return DisposeScopeManager.Statistics.ThreadTotalLiveCount - before;
    }

    static long Live(Cli.Result r)
    {
        Assert.True(r.ExitCode == 0, r.All);
        var line = r.Stderr.Split('\n').Single(l => l.StartsWith("live tensors: ", StringComparison.Ordinal));
        return long.Parse(line["live tensors: ".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    static readonly Dictionary<string, string> Report = new() { ["DIFFUSION_REPORT_LIVE_TENSORS"] = "1" };

    [Fact]
    public void TrainSampleBpdEvalAndExportLeaveNoTensorBehind()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        var train = Cli.Run(Report, dir.Path, "train", "--out", run, "--steps", "3", "--batch-size", "4", "--dim", "8", "--dim-mults", "1,2",
            "--attention-levels", "1", "--timesteps", "20", "--samples", "4", "--sampler", "ddim", "--sample-steps", "3", "--threads", "1");
        long perNet = UnetLeak(Checkpoint.ReadInfo(Path.Combine(run, Trainer.CheckpointFileName)).Model.Unet);
        Assert.Equal(2 * perNet, Live(train));                      // the network and its EMA
        var paths = new (string Name, string[] Args)[]
        {
            ("sample ddpm respaced", ["sample", "--checkpoint", run, "--count", "2", "--steps", "3", "--threads", "1", "--out", dir["a.png"]]),
            ("sample ddim + gif", ["sample", "--checkpoint", run, "--count", "2", "--sampler", "ddim", "--steps", "4", "--threads", "1",
                                   "--out", dir["b.png"], "--gif", dir["b.gif"]]),
            ("bpd", ["bpd", "--checkpoint", run, "--count", "2", "--steps", "20,4", "--threads", "1"]),
            ("eval", ["eval", "--checkpoint", run, "--samplers", "ddim:2,ddpm:3", "--count", "4", "--batch-size", "4", "--threads", "1"]),
            ("export", ["export", "--checkpoint", run, "--format", "pt", "--out", dir["w.pt"]]),
        };
        foreach (var (name, args) in paths)
            Assert.True(perNet == Live(Cli.Run(Report, dir.Path, args)), $"{name} left tensors beyond the {perNet} of building its network");
        // An early error (no such checkpoint) leaves nothing.
        var missing = Cli.Run(Report, dir.Path, "sample", "--checkpoint", dir["none"], "--threads", "1");
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("live tensors: 0", missing.Stderr);
    }
}
