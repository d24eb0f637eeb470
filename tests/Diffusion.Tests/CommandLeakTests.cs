namespace Diffusion.Tests;

/// <summary>
/// Every command path disposes what it makes: the CLI reports (DIFFUSION_REPORT_LIVE_TENSORS=1) the tensors its thread
/// created and did not dispose — TorchSharp's per-thread DisposeScope statistics, which a finalizer's late release does
/// not touch, so an undisposed tensor counts even if the GC collected it. Every path must leave none — building the
/// networks included (TorchSharp 0.107's <c>zero_()</c> returns a fresh wrapper that nobody disposes; it used to leave
/// one tensor per GroupNorm, 27 per small U-Net).
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
    public void TrainSampleBpdEvalExportAndLatentLeaveNoTensorBehind()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        var train = Cli.Run(Report, dir.Path, "train", "--out", run, "--steps", "3", "--batch-size", "4", "--dim", "8", "--dim-mults", "1,2",
            "--attention-levels", "1", "--timesteps", "20", "--samples", "4", "--sampler", "ddim", "--sample-steps", "3", "--threads", "1");
        Assert.Equal(0, UnetLeak(Checkpoint.ReadInfo(Path.Combine(run, Trainer.CheckpointFileName)).Model.Unet));
        Assert.Equal(0, UnetLeak(new UnetConfig()));                 // the annotated network: attention at every level
        Assert.Equal(0, UnetLeak(new UnetConfig { Block = BlockType.ConvNext, NumClasses = 10 }));
        Assert.Equal(0, Live(train));                                // the network and its EMA
        var paths = new (string Name, string[] Args)[]
        {
            ("sample ddpm respaced", ["sample", "--checkpoint", run, "--count", "2", "--steps", "3", "--threads", "1", "--out", dir["a.png"]]),
            ("sample ddim + gif", ["sample", "--checkpoint", run, "--count", "2", "--sampler", "ddim", "--steps", "4", "--threads", "1",
                                   "--out", dir["b.png"], "--gif", dir["b.gif"]]),
            ("bpd", ["bpd", "--checkpoint", run, "--count", "2", "--steps", "20,4", "--threads", "1"]),
            ("eval", ["eval", "--checkpoint", run, "--samplers", "ddim:2,ddpm:3", "--count", "4", "--batch-size", "4", "--threads", "1"]),
            ("export", ["export", "--checkpoint", run, "--format", "pt", "--out", dir["w.pt"]]),
        };
        // A class-conditional run: guided DDIM without x̂_0 clipping (the path that leaked one tensor per step) and DDPM.
        var cond = dir["cond"];
        Assert.Equal(0, Live(Cli.Run(Report, dir.Path, "train", "--out", cond, "--conditional", "--steps", "2", "--batch-size", "4", "--dim", "8",
            "--dim-mults", "1,2", "--attention-levels", "none", "--timesteps", "20", "--samples", "0", "--threads", "1")));
        paths =
        [
            .. paths,
            ("sample guided ddim, no clip", ["sample", "--checkpoint", cond, "--count", "10", "--sampler", "ddim", "--steps", "3", "--guidance", "2",
                                             "--no-clip", "--threads", "1", "--out", dir["c.png"]]),
            ("sample guided ddpm", ["sample", "--checkpoint", cond, "--count", "10", "--steps", "3", "--guidance", "1", "--threads", "1", "--out", dir["d.png"]]),
            ("latent (both stages)", ["latent", "--ae-steps", "2", "--steps", "2", "--batch-size", "4", "--encode", "64", "--sample-steps", "2",
                                      "--out", dir["latent"], "--threads", "1"]),
        ];
        // The flow family: a tiny DiT trained with rectified flow (its final samples too), the flow samplers in sample and eval.
        var flow = dir["flow"];
        Assert.Equal(0, Live(Cli.Run(Report, dir.Path, "train", "--out", flow, "--network", "dit", "--objective", "flow", "--patch-size", "7",
            "--hidden", "16", "--depth", "1", "--heads", "2", "--steps", "2", "--batch-size", "4", "--samples", "2", "--sample-steps", "2", "--threads", "1")));
        paths =
        [
            .. paths,
            ("sample flow euler + gif", ["sample", "--checkpoint", flow, "--count", "2", "--sampler", "euler", "--steps", "3", "--threads", "1",
                                         "--out", dir["f.png"], "--gif", dir["f.gif"]]),
            ("eval flow", ["eval", "--checkpoint", flow, "--samplers", "euler:2,heun:2,dpm++:3", "--count", "4", "--batch-size", "4", "--threads", "1"]),
        ];
        foreach (var (name, args) in paths)
            Assert.True(Live(Cli.Run(Report, dir.Path, args)) == 0, $"{name} left tensors behind");
        // An early error (no such checkpoint) leaves nothing.
        var missing = Cli.Run(Report, dir.Path, "sample", "--checkpoint", dir["none"], "--threads", "1");
        Assert.NotEqual(0, missing.ExitCode);
        Assert.Contains("live tensors: 0", missing.Stderr);
    }

    /// <summary>
    /// A train that fails after it built its network still frees it: --train-only naming no module (the Trainer's
    /// constructor throws after building the U-Net and its EMA; 297 tensors were left before) and --init-from a missing file
    /// (the Trainer is built, then the file is not found; 579 were left).
    /// </summary>
    [Fact]
    public void TrainThatFailsAfterBuildingItsNetworkLeavesNoTensorBehind()
    {
        using var dir = TestSetup.Temp();
        string[] tiny = ["--steps", "1", "--batch-size", "4", "--dim", "8", "--dim-mults", "1,2", "--attention-levels", "none",
            "--timesteps", "20", "--samples", "0", "--threads", "1"];
        var noModule = Cli.Run(Report, dir.Path, ["train", "--out", dir["a"], "--train-only", "nomatch", .. tiny]);
        Assert.Contains("no parameter name starts with nomatch", noModule.Stderr);
        var noFile = Cli.Run(Report, dir.Path, ["train", "--out", dir["b"], "--init-from", dir["none.ckpt"], .. tiny]);
        Assert.Contains("not found", noFile.Stderr);
        foreach (var r in new[] { noModule, noFile })
        {
            Assert.NotEqual(0, r.ExitCode);
            Assert.Contains("live tensors: 0", r.Stderr);
        }
    }
}
