
namespace Diffusion.Tests;

public class TrainingTests
{
    /// <summary>A few small synthetic 8×8 images: bars and blocks, distinct enough to memorise.</summary>
    internal static ImageDataset TinyData(int count = 8, int size = 8)
    {
        var pixels = new byte[count * size * size];
        for (int i = 0; i < count; i++)
            for (int y = 0; y < size; y++)
                for (int x = 0; x < size; x++)
                    pixels[i * size * size + y * size + x] = (byte)((i % 4) switch
                    {
                        0 => x < size / 2 ? 255 : 0,
                        1 => y < size / 2 ? 255 : 0,
                        2 => (x + y) % 2 == 0 ? 255 : 0,
                        _ => Math.Abs(x - y) <= 1 ? 255 : 0,
                    });
        var labels = Enumerable.Range(0, count).Select(i => (long)(i % 4)).ToArray();
        return new ImageDataset(tensor(pixels, [count, 1, size, size], dtype: ScalarType.Byte), tensor(labels),
            ["left", "top", "checker", "diagonal"], "tiny synthetic");
    }

    internal static DiffusionModelConfig TinyModel(int numClasses = 0) => new()
    {
        Unet = new UnetConfig { Dim = 8, DimMults = [1, 2], LinearAttentionLevels = [1], NumClasses = numClasses },
        Schedule = Schedules.ScheduleKind.Cosine,
        Timesteps = 50,
        ImageSize = 8,
        ClassNames = numClasses > 0 ? ["left", "top", "checker", "diagonal"] : [],
    };

    static TrainingOptions Quick(int steps) => new()
    {
        Steps = steps, BatchSize = 4, LearningRate = 3e-3, WarmupSteps = 5, EmaDecay = 0.9, CheckpointEvery = 1000, Seed = 3,
    };

    /// <summary>A trainer of the tiny model that has run <paramref name="steps"/> quick steps, writing into <paramref name="dir"/>.</summary>
    static Trainer TrainedTiny(int steps, ImageDataset data, string dir)
    {
        var trainer = new Trainer(TinyModel(), Quick(steps), data, dir);
        trainer.Train();
        return trainer;
    }

    static float[] Weights(nn.Module m) => m.parameters().SelectMany(p => p.detach().flatten().data<float>().ToArray()).ToArray();

    [Fact]
    public void TinyUnetOverfitsAFewImages()
    {
        using var data = TinyData(4);
        using var trainer = new Trainer(TinyModel(), Quick(300) with { RandomFlip = false }, data);
        trainer.Train();
        double first = trainer.LossHistory.Take(10).Average(l => l.Loss);
        double last = trainer.LossHistory.TakeLast(30).Average(l => l.Loss);
        Assert.True(last < 0.35 * first, $"loss fell only from {first:F3} to {last:F3}");
    }

    [Fact]
    public void SeededTrainingIsBitIdentical()
    {
        using var data = TinyData();
        float[] Run(int seed)
        {
            using var t = new Trainer(TinyModel(), Quick(4) with { Seed = seed }, data);
            t.Train();
            return Weights(t.Model).Concat(Weights(t.EmaModel!)).ToArray();
        }
        var a = Run(1);
        Assert.Equal(a, Run(1));
        Assert.NotEqual(a, Run(2));
    }

    [Fact]
    public void ResumingFromACheckpointEqualsAnUninterruptedRun()
    {
        using var data = TinyData();
        using var dir = TestSetup.Temp();
        var options = Quick(8) with { CheckpointEvery = 3 };

        using var straight = new Trainer(TinyModel(numClasses: 4), options, data);
        straight.Train();

        using (var first = new Trainer(TinyModel(numClasses: 4), options with { Steps = 3 }, data, dir.Path))
            first.Train();                                                    // writes a checkpoint at step 3
        Assert.Equal(3, Checkpoint.ReadInfo(Path.Combine(dir.Path, Trainer.CheckpointFileName)).Step);
        using var resumed = Trainer.Resume(Path.Combine(dir.Path, Trainer.CheckpointFileName), data, dir.Path, totalSteps: 8);
        Assert.Equal(3, resumed.Step);
        resumed.Train();

        Assert.Equal(8, resumed.Step);
        Assert.Equal(Weights(straight.Model), Weights(resumed.Model));
        Assert.Equal(Weights(straight.EmaModel!), Weights(resumed.EmaModel!));
        // The loss log holds each step once, in order, however the run was split.
        var logged = File.ReadAllLines(Path.Combine(dir.Path, Trainer.LossLogFileName)).Skip(1).Select(l => int.Parse(l.Split(',')[0])).ToArray();
        Assert.Equal(Enumerable.Range(1, 8), logged);
    }

    [Fact]
    public void CheckpointRoundTripRebuildsTheSameNetwork()
    {
        using var data = TinyData();
        using var dir = TestSetup.Temp();
        using var trainer = TrainedTiny(2, data, dir.Path);
        var (model, info) = Checkpoint.LoadModel(trainer.CheckpointPath!, preferEma: false);
        using (model)
        {
            Assert.Equal(2, info.Step);
            Assert.Empty(info.Model.DifferencesFrom(trainer.Config));
            Assert.Equal(Weights(trainer.Model), Weights(model));
            var x = randn(2, 1, 8, 8);
            var t = tensor(new long[] { 1, 40 });
            Assert.True(trainer.Model.call(x, t).equal(model.call(x, t)).all().item<bool>());
        }
        var (ema, _) = Checkpoint.LoadModel(trainer.CheckpointPath!, preferEma: true);
        using (ema) Assert.Equal(Weights(trainer.EmaModel!), Weights(ema));
    }

    [Fact]
    public void SamplingOnlyCheckpointHoldsTheEmaWeightsAndCannotBeResumed()
    {
        using var data = TinyData();
        using var dir = TestSetup.Temp();
        using var trainer = TrainedTiny(3, data, dir.Path);
        var slim = trainer.SaveModelForSampling(dir["model.ckpt"]);
        Assert.True(new FileInfo(slim).Length < new FileInfo(trainer.CheckpointPath!).Length / 3);
        var (model, info) = Checkpoint.LoadModel(slim);
        using (model) Assert.Equal(Weights(trainer.EmaModel!), Weights(model));
        Assert.False(info.HasOptimizer);
        Assert.Contains("cannot continue", Assert.Throws<ArgumentException>(() => Trainer.Resume(slim, data)).Message);
    }

    [Fact]
    public void DamagedTruncatedOrForeignCheckpointsAreRejectedClearly()
    {
        using var data = TinyData();
        using var dir = TestSetup.Temp();
        using (var trainer = new Trainer(TinyModel(), Quick(1), data, dir.Path)) trainer.Train();
        var path = Path.Combine(dir.Path, Trainer.CheckpointFileName);
        var bytes = File.ReadAllBytes(path);

        var flipped = (byte[])bytes.Clone();
        flipped[bytes.Length / 2] ^= 0x10;
        File.WriteAllBytes(dir["flipped.ckpt"], flipped);
        Assert.Contains("damaged or truncated", Assert.Throws<CheckpointException>(() => Checkpoint.Load(dir["flipped.ckpt"])).Message);

        File.WriteAllBytes(dir["truncated.ckpt"], bytes[..(bytes.Length * 2 / 3)]);
        Assert.Contains("damaged or truncated", Assert.Throws<CheckpointException>(() => Checkpoint.Load(dir["truncated.ckpt"])).Message);

        File.WriteAllText(dir["foreign.ckpt"], "PK\u0003\u0004 this is some other file");
        Assert.Contains("not a checkpoint", Assert.Throws<CheckpointException>(() => Checkpoint.Load(dir["foreign.ckpt"])).Message);
        Assert.Contains("not found", Assert.Throws<CheckpointException>(() => Checkpoint.Load(dir["missing.ckpt"])).Message);
    }

    [Fact]
    public void DivergenceStopsTrainingAndKeepsTheLastGoodCheckpoint()
    {
        using var data = TinyData();
        using var dir = TestSetup.Temp();
        // An absurd learning rate without clipping blows the weights up within a few steps.
        var options = Quick(200) with { LearningRate = 1e6, WarmupSteps = 0, GradientClipNorm = 0, CheckpointEvery = 1, EmaDecay = 0 };
        using var trainer = new Trainer(TinyModel(), options, data, dir.Path);
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.Train());
        Assert.Contains("Lower the learning rate", e.Message);
        var info = Checkpoint.ReadInfo(trainer.CheckpointPath!);
        Assert.True(info.Step < trainer.Step + 1);
        Assert.True(double.IsFinite(info.RecentLoss));
    }

    [Fact]
    public void LearningRateWarmsUpThenDecaysToItsFloor()
    {
        var o = new TrainingOptions { Steps = 1000, LearningRate = 1e-3, WarmupSteps = 100, MinLearningRateFraction = 0.1 };
        Assert.Equal(1e-5, o.LearningRateAt(0), 12);
        Assert.Equal(5e-4, o.LearningRateAt(49), 12);
        Assert.Equal(1e-3, o.LearningRateAt(100), 12);
        Assert.Equal(1e-4, o.LearningRateAt(999), 12);
        Assert.Equal((1e-3 + 1e-4) / 2, o.LearningRateAt(100 + 899 / 2), 5);
        Assert.Equal(1e-3, (o with { LearningRateSchedule = LearningRateSchedule.Constant }).LearningRateAt(999), 12);
    }

    [Fact]
    public void EmaFollowsItsFormula()
    {
        manual_seed(0);
        using var model = nn.Linear(3, 2);
        using var average = nn.Linear(3, 2);
        var ema = new Ema(model, average, 0.99);
        ema.CopyFromModel();
        var before = Weights(average);
        using (no_grad()) foreach (var p in model.parameters()) p.add_(1.0);
        ema.Update(updates: 5);
        double d = Math.Min(0.99, 6.0 / 15.0);
        var after = Weights(average);
        for (int i = 0; i < before.Length; i++)
            Assert.Equal(d * before[i] + (1 - d) * (before[i] + 1), after[i], 5);
    }

    [Fact]
    public void MismatchedDataOrOptionsAreRejected()
    {
        using var data = TinyData();
        Assert.Contains("configured for 16×16",
            Assert.Throws<ArgumentException>(() => new Trainer(TinyModel() with { ImageSize = 16 }, Quick(1), data)).Message);
        Assert.Contains("fewer than the batch size",
            Assert.Throws<ArgumentException>(() => new Trainer(TinyModel(), Quick(1) with { BatchSize = 64 }, data)).Message);
        Assert.Contains("EMA decay", Assert.Throws<ArgumentException>(() => new Trainer(TinyModel(), Quick(1) with { EmaDecay = 1.5 }, data)).Message);
        using var unlabelled = new ImageDataset(data.Images.clone(), null, [], "no labels");
        Assert.Contains("labelled data",
            Assert.Throws<ArgumentException>(() => new Trainer(TinyModel(numClasses: 4), Quick(1), unlabelled)).Message);
    }
}
