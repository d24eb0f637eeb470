
namespace Diffusion.Tests;

public class LearnedVarianceCliTests
{
    [Fact]
    public void FineTuneALearnedVarianceFromAFixedRunThenSampleWithFewStepsAndScoreBitsPerDim()
    {
        using var dir = TestSetup.Temp();
        var fixedRun = dir["fixed"];
        var learnedRun = dir["learned"];
        var train = Cli.TrainTiny(dir.Path, fixedRun, "--samples", "0");

        // A learned-variance model started from the fixed one, only its output head trained.
        var tune = Cli.TrainTiny(dir.Path, learnedRun, "--learn-variance", "--init-from", fixedRun,
            "--train-only", "final_res_block,final_conv", "--samples", "2");
        Assert.Contains("initialised from", tune.Stdout);
        // Fine-tuning keeps what the network predicts: an ε-model under today's v default is refused, with the fix.
        var epsRun = dir["eps"];
        Cli.TrainTiny(dir.Path, epsRun, "--prediction", "eps", "--samples", "0");
        var mismatch = Cli.Run(dir.Path, ["train", "--out", dir["mismatch"], .. Cli.Tiny, "--learn-variance", "--init-from", epsRun, "--samples", "0"]);
        Assert.NotEqual(0, mismatch.ExitCode);
        Assert.Contains("that network predicts eps, this run v; fine-tuning keeps what a network predicts: add --prediction eps", mismatch.All);
        Assert.False(File.Exists(Path.Combine(dir["mismatch"], Trainer.CheckpointFileName)));
        Assert.Contains("ddpm-20", tune.Stdout);
        var info = Checkpoint.ReadInfo(Path.Combine(learnedRun, "model.ckpt"));
        Assert.Equal(VarianceType.Learned, info.Model.Variance);
        Assert.Equal(2, info.Model.Unet.ResolvedOutDim);

        var sample = Cli.Run(dir.Path, ["sample", "--checkpoint", learnedRun, "--count", "2", "--steps", "5", "--out", dir["s.png"]]);
        Assert.True(sample.ExitCode == 0, sample.All);
        Assert.Contains("ddpm-5", sample.Stdout);                      // respaced DDPM

        var bpd = Cli.Run(dir.Path, ["bpd", "--checkpoint", learnedRun, "--count", "2", "--steps", "20,4"]);
        Assert.True(bpd.ExitCode == 0, bpd.All);
        Assert.Contains("4 | learned |", bpd.Stdout);
        Assert.Contains("20 | beta-tilde |", bpd.Stdout);

        // Asking a fixed-variance model for a learned variance is one clear error line.
        var wrong = Cli.Run(dir.Path, ["sample", "--checkpoint", fixedRun, "--variance", "learned", "--count", "1", "--out", dir["w.png"]]);
        Assert.NotEqual(0, wrong.ExitCode);
        Assert.Contains("error: --variance learned needs a model trained with --learn-variance", wrong.All);
        var badSteps = Cli.Run(dir.Path, ["bpd", "--checkpoint", learnedRun, "--steps", "50"]);
        Assert.NotEqual(0, badSteps.ExitCode);
        Assert.Contains("error: --steps 50", badSteps.All);
    }
}
