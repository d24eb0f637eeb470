using Diffusion.Flow;
using Diffusion.Model.Transformer;

namespace Diffusion.Tests;

/// <summary>
/// The shared training skeleton: the run facts a trainer publishes against its checkpoint and a computation by hand,
/// Algorithm 1's draws and the objectives against formulas written out here, and a second network family (the DiT)
/// trained, resumed and loaded through the same trainer and checkpoint.
/// </summary>
public class TrainingSkeletonTests
{
    static TrainingOptions Quick(int steps) => new()
    {
        Steps = steps, BatchSize = 4, LearningRate = 3e-3, WarmupSteps = 5, EmaDecay = 0.9, CheckpointEvery = 1000, Seed = 3,
    };

    static float[] Weights(IDenoisingNetwork n) =>
        n.parameters().SelectMany(p => p.detach().flatten().data<float>().ToArray()).ToArray();

    [Fact]
    public void RunFactsAreTheCheckpointsAndTheLossWindowIsTheLastFiftySteps()
    {
        using var data = TrainingTests.TinyData();
        using var dir = TestSetup.Temp();
        using var trainer = new Trainer(TrainingTests.TinyModel(), Quick(56), data, dir.Path);
        trainer.Train();

        // The window: the mean of steps 7..56, summed by hand.
        var losses = trainer.LossHistory.Select(l => l.Loss).ToArray();
        Assert.Equal(56, losses.Length);
        double sum = 0;
        for (int i = 6; i < 56; i++) sum += losses[i];
        Assert.Equal(sum / 50, trainer.RecentLoss, 12);
        Assert.Equal(Trainer.RecentLossWindow, 50);

        var info = Checkpoint.ReadInfo(trainer.CheckpointPath!);
        Assert.Equal(info.Step, trainer.Step);
        Assert.Equal(info.RecentLoss, trainer.RecentLoss);                // the same double: run.json repeats the checkpoint
        Assert.Equal(info.TrainingSeconds, trainer.TrainingSeconds);
        Assert.Equal(trainer.Model.parameters().Sum(p => p.numel()), trainer.ParameterCount);

        // A resumed run that has not stepped yet reports the checkpoint's facts.
        using var resumed = Trainer.Resume(trainer.CheckpointPath!, data, totalSteps: 60);
        Assert.Equal(56, resumed.Step);
        Assert.Equal(info.RecentLoss, resumed.RecentLoss);
        Assert.Equal(info.TrainingSeconds, resumed.TrainingSeconds);
    }

    [Fact]
    public void AlgorithmOneDrawsTThenEpsilonFromTheGenerator()
    {
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 40);
        long[] shape = [6, 1, 4, 4];
        var (t, noise) = DenoisingLoss.Draw(s, shape, new Generator(11), CPU);
        using var g = new Generator(11);
        var tByHand = randint(0, 40, [6], dtype: ScalarType.Int64, generator: g);
        var noiseByHand = randn(shape, generator: g);
        Assert.Equal(tByHand.data<long>().ToArray(), t.data<long>().ToArray());
        Assert.Equal(noiseByHand.data<float>().ToArray(), noise.data<float>().ToArray());
    }

    [Fact]
    public void DdpmObjectiveIsAlgorithmOneWrittenOut()
    {
        using var s = new NoiseSchedule(ScheduleKind.Linear, 30);
        manual_seed(2);
        var x0 = rand(5, 1, 4, 4) * 2 - 1;
        Func<Tensor, Tensor, Tensor> model = (x, tt) => 0.5 * x + 0.01 * tt.to(ScalarType.Float32).reshape(-1, 1, 1, 1);

        foreach (var prediction in new[] { Prediction.Epsilon, Prediction.Velocity })
        {
            double loss = new DdpmObjective(s, prediction).Loss(model, x0, new Generator(4)).item<float>();

            using var g = new Generator(4);
            var t = randint(0, 30, [5], dtype: ScalarType.Int64, generator: g).data<long>().ToArray();
            var eps = randn([5, 1, 4, 4], generator: g);
            double sq = 0;
            for (int b = 0; b < 5; b++)
            {
                double a = Math.Sqrt(s.AlphasCumprod[t[b]]), c = Math.Sqrt(1 - s.AlphasCumprod[t[b]]);
                var xt = a * x0[b] + c * eps[b];
                var target = prediction == Prediction.Epsilon ? eps[b] : a * eps[b] - c * x0[b];
                var output = 0.5 * xt + 0.01 * t[b];
                sq += (output - target).square().sum().item<float>();
            }
            Assert.Equal(sq / x0.numel(), loss, 5);
        }
    }

    [Fact]
    public void RectifiedFlowObjectiveIsTheVelocityLossWrittenOut()
    {
        manual_seed(5);
        var x0 = rand(4, 1, 4, 4) * 2 - 1;
        // A network that reads its time: v̂ = x · (network time)/1000 = x · t.
        Func<Tensor, Tensor, Tensor> model = (x, tt) => x * (tt.to(ScalarType.Float32) / 1000).reshape(-1, 1, 1, 1);
        double loss = new RectifiedFlowObjective().Loss(model, x0, new Generator(8)).item<float>();

        using var g = new Generator(8);
        var t = randn([4], generator: g).sigmoid().data<float>().ToArray();          // SD3's logit-normal, m = 0, s = 1
        var eps = randn([4, 1, 4, 4], generator: g);
        double sq = 0;
        for (int b = 0; b < 4; b++)
        {
            var xt = (1 - t[b]) * x0[b] + t[b] * eps[b];
            sq += ((eps[b] - x0[b]) - xt * t[b]).square().sum().item<float>();
        }
        Assert.Equal(sq / x0.numel(), loss, 5);
    }

    static DiffusionModelConfig TinyDit() => TrainingTests.TinyModel(numClasses: 4) with
    {
        Dit = new DitConfig(ImageSize: 8, Channels: 1, PatchSize: 2, Hidden: 16, Depth: 1, Heads: 2, NumClasses: 4),
    };

    [Fact]
    public void ADitTrainsResumesAndLoadsThroughTheSameTrainerAndCheckpoint()
    {
        using var data = TrainingTests.TinyData();
        using var dir = TestSetup.Temp();
        var options = Quick(6) with { CheckpointEvery = 3 };

        using var straight = new Trainer(TinyDit(), options, data);
        Assert.IsType<Dit>(straight.Network);
        Assert.Equal(TinyDit().Dit!.ParameterCountFormula(), straight.ParameterCount);
        var initial = Weights(straight.Network);
        straight.Train();
        Assert.NotEqual(initial, Weights(straight.Network));
        Assert.Contains("not a U-Net", Assert.Throws<InvalidOperationException>(() => straight.Model).Message);

        using (var first = new Trainer(TinyDit(), options with { Steps = 3 }, data, dir.Path)) first.Train();
        using var resumed = Trainer.Resume(Path.Combine(dir.Path, Trainer.CheckpointFileName), data, dir.Path, totalSteps: 6);
        resumed.Train();
        Assert.Equal(Weights(straight.Network), Weights(resumed.Network));
        Assert.Equal(Weights(straight.EmaNetwork!), Weights(resumed.EmaNetwork!));

        var (network, info) = Checkpoint.LoadNetwork(resumed.CheckpointPath!);
        using (network)
        {
            Assert.Equal(TinyDit().Dit, info.Model.Dit);
            Assert.Equal(Weights(resumed.EmaNetwork!), Weights(network));
        }
        Assert.Contains("LoadNetwork", Assert.Throws<CheckpointException>(() => Checkpoint.LoadModel(resumed.CheckpointPath!)).Message);
    }

    [Fact]
    public void AUnetConfigurationWritesNoDitField()
    {
        var json = System.Text.Json.JsonSerializer.Serialize(TrainingTests.TinyModel(), Checkpoint.JsonOptions);
        Assert.DoesNotContain("Dit", json);
        Assert.Null(System.Text.Json.JsonSerializer.Deserialize<DiffusionModelConfig>(json, Checkpoint.JsonOptions)!.Dit);
        var dit = System.Text.Json.JsonSerializer.Serialize(TinyDit(), Checkpoint.JsonOptions);
        Assert.Equal(TinyDit().Dit, System.Text.Json.JsonSerializer.Deserialize<DiffusionModelConfig>(dit, Checkpoint.JsonOptions)!.Dit);
    }
}
