using System.Globalization;
using Diffusion.Flow;
using Diffusion.Latent;
using Diffusion.Visuals;

namespace Diffusion.Tests;

/// <summary>
/// The command line of the second model family: <c>train --network dit --objective flow</c>, the flow samplers in
/// <c>sample</c> and <c>eval</c>, latent training with <c>--latents</c>, and the errors for mixing the families.
/// </summary>
public class FlowCliTests
{
    /// <summary>A DiT small enough to train in seconds: 28×28 in 7×7 patches (16 tokens), width 16, one block.</summary>
    static readonly string[] TinyDit =
        ["--network", "dit", "--objective", "flow", "--patch-size", "7", "--hidden", "16", "--depth", "1", "--heads", "2",
         "--batch-size", "4", "--checkpoint-every", "2", "--threads", "1"];

    [Fact]
    public void ADitTrainedWithRectifiedFlowResumesExactlyAndSamplesWithTheFlowSamplers()
    {
        using var dir = TestSetup.Temp();
        var run = Cli.Run(dir.Path, ["train", "--out", dir["run"], .. TinyDit, "--steps", "4", "--samples", "2", "--sample-steps", "3"]);
        Assert.True(run.ExitCode == 0, run.All);
        Assert.Contains("model: DiT", run.Stdout);
        Assert.Contains("rectified flow (logit-normal t)", run.Stdout);
        Assert.Contains("euler-3", run.Stdout);                          // a flow run's final samples: Euler unless --sampler
        var info = Checkpoint.ReadInfo(Path.Combine(dir["run"], Trainer.CheckpointFileName));
        Assert.Equal(new FlowTimeDistribution(FlowTimeSampling.LogitNormal), info.Model.FlowTimes);
        Assert.Equal(7, info.Model.Dit!.PatchSize);
        Assert.Equal(0, info.Training.MinSnrGamma);                      // min-SNR weights DDPM's loss only

        // Stopped after 2 steps and resumed to 4: the same losses as the uninterrupted run.
        var first = Cli.Run(dir.Path, ["train", "--out", dir["split"], .. TinyDit, "--samples", "0", "--steps", "2"]);
        Assert.True(first.ExitCode == 0, first.All);
        var resumed = Cli.Run(dir.Path, ["train", "--out", dir["split"], "--resume", "--steps", "4", "--samples", "0", "--threads", "1"]);
        Assert.True(resumed.ExitCode == 0, resumed.All);
        Assert.Equal(Losses(dir["run"]), Losses(dir["split"]));

        var heun = Cli.Run(dir.Path, ["sample", "--checkpoint", dir["run"], "--sampler", "heun", "--steps", "2", "--count", "2", "--out", dir["heun.png"], "--threads", "1"]);
        Assert.True(heun.ExitCode == 0, heun.All);
        Assert.Contains("heun-2", heun.Stdout);
        Assert.True(File.Exists(dir["heun.png"]));

        var eval = Cli.Run(dir.Path, ["eval", "--checkpoint", dir["run"], "--samplers", "euler:2,heun:2", "--count", "4", "--batch-size", "4", "--threads", "1"]);
        Assert.True(eval.ExitCode == 0, eval.All);
        Assert.Contains("| euler-2 | 2 |", eval.Stdout);                 // network evaluations: Euler n, Heun 2n − 1
        Assert.Contains("| heun-2 | 3 |", eval.Stdout);

        // DDPM's samplers and bits/dim are refused for a velocity model, with the fix; nothing is written.
        var ddim = Cli.Run(dir.Path, ["sample", "--checkpoint", dir["run"], "--sampler", "ddim", "--count", "2", "--out", dir["ddim.png"]]);
        Assert.Equal(2, ddim.ExitCode);
        Assert.Contains("was trained with rectified flow", ddim.Stderr);
        Assert.Contains("euler:N", ddim.Stderr);
        Assert.False(File.Exists(dir["ddim.png"]));
        var bpd = Cli.Run(dir.Path, ["bpd", "--checkpoint", dir["run"], "--count", "2"]);
        Assert.Equal(2, bpd.ExitCode);
        Assert.Contains("rectified flow", bpd.Stderr);
    }

    [Fact]
    public void SampleDrawsWhatTheLibrarysEulerSamplerDrawsFromTheSameSeed()
    {
        using var dir = TestSetup.Temp();
        var run = Cli.Run(dir.Path, ["train", "--out", dir["run"], .. TinyDit, "--steps", "4", "--samples", "0"]);
        Assert.True(run.ExitCode == 0, run.All);
        var sample = Cli.Run(dir.Path, ["sample", "--checkpoint", dir["run"], "--sampler", "euler", "--steps", "4", "--count", "4",
            "--seed", "3", "--out", dir["cli.png"], "--threads", "1"]);
        Assert.True(sample.ExitCode == 0, sample.All);

        // The same draw written out with the library: the EMA network called at 1000·t, Euler over diffusers' σ's, clipped.
        var (network, _) = Checkpoint.LoadNetwork(Path.Combine(dir["run"], Trainer.CheckpointFileName));
        using (network)
        using (var g = new Generator(3))
        {
            network.eval();
            using var noise = randn([4, 1, 28, 28], generator: g);
            var schedule = new FlowMatchSchedule(4);
            var x = noise.clone();
            using (no_grad())
                for (int i = 0; i < 4; i++)
                {
                    using var sigma = full([4], schedule.Sigmas[i], dtype: ScalarType.Float32);
                    using var t = sigma * 1000;
                    using var v = network.forward(x, t, null);
                    var next = x + schedule.Delta(i) * v;
                    x.Dispose();
                    x = next;
                }
            using (x) ImageGrid.SaveGridPng(x.clamp(-1, 1), dir["library.png"], 2, padding: 2, scale: 2);
        }
        Assert.Equal(File.ReadAllBytes(dir["library.png"]), File.ReadAllBytes(dir["cli.png"]));
    }

    [Fact]
    public void OptionsOfTheOtherFamilyAndSamplersOfTheOtherObjectiveAreOneClearError()
    {
        using var dir = TestSetup.Temp();
        var dim = Cli.Run(dir.Path, ["train", "--out", dir["a"], .. TinyDit, "--steps", "4", "--dim", "8"]);
        Assert.Equal(2, dim.ExitCode);
        Assert.Contains("--dim is an option of a U-Net, and this run uses --network dit: drop it", dim.Stderr);
        var snr = Cli.Run(dir.Path, ["train", "--out", dir["b"], "--objective", "flow", "--min-snr", "5", "--prediction", "eps", .. Cli.Tiny]);
        Assert.Equal(2, snr.ExitCode);
        Assert.Contains("--prediction, --min-snr are options of DDPM's objective", snr.Stderr);
        var depth = Cli.Run(dir.Path, ["train", "--out", dir["c"], "--depth", "3", .. Cli.Tiny]);
        Assert.Equal(2, depth.ExitCode);
        Assert.Contains("--depth is an option of a DiT", depth.Stderr);
        foreach (var folder in new[] { dir["a"], dir["b"], dir["c"] })
            Assert.False(File.Exists(Path.Combine(folder, Trainer.CheckpointFileName)));

        // A DDPM U-Net: the flow samplers are refused, and its checkpoint's configuration names neither DiT nor flow.
        Cli.TrainTiny(dir.Path, dir["ddpm"], "--samples", "0");
        var euler = Cli.Run(dir.Path, ["sample", "--checkpoint", dir["ddpm"], "--sampler", "euler", "--count", "2", "--out", dir["e.png"]]);
        Assert.Equal(2, euler.ExitCode);
        Assert.Contains("was trained with DDPM", euler.Stderr);
        Assert.False(File.Exists(dir["e.png"]));
        var json = File.ReadAllText(Path.Combine(dir["ddpm"], "run.json"));
        Assert.DoesNotContain("FlowTimes", json);
        Assert.DoesNotContain("\"Dit\"", json);
    }

    [Fact]
    public void TrainingOnLatentsDecodesTheSamplesThroughTheAutoencoder()
    {
        using var dir = TestSetup.Temp();
        var ae = Path.Combine(TestSetup.RepoRoot, "data", "checkpoints", "fashion-mnist-autoencoder.ckpt");
        var run = Cli.Run(dir.Path, ["train", "--out", dir["run"], "--latents", ae, "--network", "dit", "--objective", "flow", "--patch-size", "2",
            "--hidden", "16", "--depth", "1", "--heads", "2", "--steps", "2", "--batch-size", "4", "--samples", "2", "--sample-steps", "2", "--threads", "1"]);
        Assert.True(run.ExitCode == 0, run.All);
        Assert.Contains("60000 latents 8×8×4", run.Stdout);
        Assert.Contains("decoded", run.Stdout);
        var info = Checkpoint.ReadInfo(Path.Combine(dir["run"], Trainer.CheckpointFileName));
        Assert.Equal((4, 8), (info.Model.Channels, info.Model.ImageSize));
        Assert.False(info.Training.RandomFlip);                         // a flipped latent is not the latent of the flipped image

        var bare = Cli.Run(dir.Path, ["sample", "--checkpoint", dir["run"], "--count", "2", "--out", dir["bare.png"]]);
        Assert.Equal(2, bare.ExitCode);
        Assert.Contains("--autoencoder", bare.Stderr);
        var decoded = Cli.Run(dir.Path, ["sample", "--checkpoint", dir["run"], "--autoencoder", ae, "--count", "4", "--steps", "2", "--out", dir["d.png"], "--threads", "1"]);
        Assert.True(decoded.ExitCode == 0, decoded.All);
        using (var image = SixLabors.ImageSharp.Image.Load(dir["d.png"]))
            Assert.Equal(2 * 28 * 2 + 3 * 2, image.Width);               // 2 columns of 28-pixel pictures at scale 2, padding 2: pixels, not latents
        var eval = Cli.Run(dir.Path, ["eval", "--checkpoint", dir["run"], "--autoencoder", ae, "--samplers", "euler:2", "--count", "4", "--batch-size", "4", "--threads", "1"]);
        Assert.True(eval.ExitCode == 0, eval.All);
        Assert.Contains("| euler-2 | 2 |", eval.Stdout);
    }

    static string Losses(string run) => string.Join("\n",
        File.ReadLines(Path.Combine(run, Trainer.LossLogFileName)).Select(l => string.Join(',', l.Split(',')[..3])));
}
