using Diffusion.Latent;

namespace Diffusion.Tests;

/// <summary>Latent diffusion: the autoencoder, the latent scaling, the course's trainer and samplers on latents.</summary>
public class LatentTests
{
    static string Checkpoints => Path.Combine(TestSetup.RepoRoot, "data", "checkpoints");
    public static string ShippedAutoencoder => Path.Combine(Checkpoints, "fashion-mnist-autoencoder.ckpt");
    public static string ShippedLatentDdpm => Path.Combine(Checkpoints, "fashion-mnist-latent-ddpm.ckpt");

    /// <summary>An untrained autoencoder of the default configuration, its weights drawn after manual_seed(seed).</summary>
    static Autoencoder SeededAutoencoder(int seed)
    {
        manual_seed(seed);
        return new Autoencoder(new AutoencoderConfig());
    }

    static ImageDataset Test() => ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train: false);

    [Fact]
    public void EncoderAndDecoderShapes()
    {
        using var scope = NewDisposeScope();
        using var ae = SeededAutoencoder(0);
        var x = rand(3, 1, 28, 28) * 2 - 1;
        var (mean, logVar) = ae.Posterior(x);
        Assert.Equal([3L, 4, 8, 8], mean.shape);
        Assert.Equal([3L, 4, 8, 8], logVar.shape);
        Assert.Equal([3L, 1, 28, 28], ae.Decode(mean).shape);
        Assert.Equal([3L, 1, 28, 28], ae.forward(x).shape);
        // Padding to 32 adds a border of −1 (the background) and cropping undoes it exactly.
        var padded = ae.Pad(x);
        Assert.Equal([3L, 1, 32, 32], padded.shape);
        Assert.Equal(-1f, padded[.., .., 0, ..].max().item<float>());
        Assert.Equal(-1f, padded[.., .., .., 31].min().item<float>());
        Assert.True(ae.Crop(padded).allclose(x, rtol: 0, atol: 0));
        Assert.Equal(8, new AutoencoderConfig().LatentSize);
    }

    [Fact]
    public void KlTermMatchesAMonteCarloEstimate()
    {
        // KL(q ‖ p) = E_q[log q(z) − log p(z)]: estimate it from samples of q and compare with the closed form the loss uses.
        using var scope = NewDisposeScope();
        using var ae = SeededAutoencoder(1);
        var x = rand(1, 1, 28, 28) * 2 - 1;
        var terms = ae.ComputeLoss(x);
        var (mean, logVar) = ae.Posterior(x);
        var mu = mean.to(ScalarType.Float64).flatten();
        var lv = logVar.to(ScalarType.Float64).flatten();
        var sigma = (0.5 * lv).exp();
        var eps = randn(20000, mu.shape[0], dtype: ScalarType.Float64);
        var z = mu + sigma * eps;
        // log q(z) − log p(z) = Σ_i [−½ log σ_i² − ½ ε_i² + ½ z_i²]
        var logRatio = (-0.5 * lv - 0.5 * eps.square() + 0.5 * z.square()).sum(1);
        double estimate = logRatio.mean().item<double>();
        double stderr = logRatio.std().item<double>() / Math.Sqrt(20000);
        Assert.True(Math.Abs(estimate - terms.Kl) < 5 * stderr + 1e-3 * Math.Abs(terms.Kl),
            $"closed-form KL {terms.Kl} vs Monte Carlo {estimate} ± {stderr}");
    }

    [Fact]
    public void AutoencoderTrainingLowersTheReconstructionErrorAndIsSeeded()
    {
        using var data = ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train: true).Take(512);
        var options = new TrainingOptions { Steps = 20, BatchSize = 16, LearningRate = 2e-3, WarmupSteps = 5, Seed = 5 };
        float[] Run(out List<AutoencoderProgress> history)
        {
            using var t = new AutoencoderTrainer(new AutoencoderConfig(), options, data);
            t.Train();
            history = t.History;
            return t.Model.parameters().SelectMany(p => p.detach().flatten().data<float>().ToArray()).ToArray();
        }
        var a = Run(out var h);
        double first = h.Take(3).Average(p => p.PixelMse), last = h.TakeLast(3).Average(p => p.PixelMse);
        Assert.True(last < 0.5 * first, $"pixel MSE fell only from {first:F3} to {last:F3}");
        Assert.Equal(a, Run(out _));
    }

    [Fact]
    public void AutoencoderFileRoundTripsAndRejectsDamage()
    {
        using var dir = TestSetup.Temp();
        manual_seed(2);
        using var ae = new Autoencoder(new AutoencoderConfig { LatentChannels = 3 });
        var path = dir["ae.ckpt"];
        AutoencoderFile.Save(path, ae, new AutoencoderInfo { Config = ae.Config, ScalingFactor = 0.42 });
        var (loaded, info) = AutoencoderFile.Load(path);
        using (loaded)
        using (var scope = NewDisposeScope())
        {
            Assert.Equal(0.42, info.ScalingFactor);
            Assert.Equal(3, info.Config.LatentChannels);
            var x = rand(2, 1, 28, 28);
            ae.eval();
            using var noGrad = no_grad();
            Assert.True(ae.forward(x).allclose(loaded.forward(x), rtol: 0, atol: 0));
        }
        var bytes = File.ReadAllBytes(path);
        bytes[bytes.Length / 2] ^= 0x55;
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<CheckpointException>(() => AutoencoderFile.Load(path));
        Assert.Contains("damaged", e.Message);
    }

    [Fact]
    public void ScalingFactorIsOneOverTheStandardDeviation()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var z = randn(50, 4, 8, 8) * 3.7 + 0.5;
        var v = z.data<float>().Select(f => (double)f).ToArray();
        double mean = v.Average();
        double std = Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1));   // torch.std is unbiased
        Assert.Equal(1 / std, LatentSpace.ScalingFactor(z), 10);
    }

    /// <summary>
    /// The shipped autoencoder reconstructs held-out (t10k) images with a mean squared error below a tenth of their pixel
    /// variance (it explains over 90 % of it); an untrained autoencoder of the same shape does not.
    /// </summary>
    [Fact]
    public void ShippedAutoencoderReconstructsHeldOutImages()
    {
        using var test = Test().Take(1000);
        double variance;
        using (var x = test.ModelInputs(arange(test.Count, dtype: ScalarType.Int64)))
            variance = x.var().item<float>();
        double threshold = 0.1 * variance;
        var (ae, info) = AutoencoderFile.Load(ShippedAutoencoder);
        double trained = LatentSpace.ReconstructionMse(ae, test, test.Count);
        manual_seed(0);
        using var untrained = new Autoencoder(info.Config);
        double untrainedMse = LatentSpace.ReconstructionMse(untrained, test, test.Count);
        ae.Dispose();
        Assert.True(trained < threshold, $"shipped autoencoder: MSE {trained:F4} ≥ threshold {threshold:F4} (pixel variance {variance:F4})");
        Assert.True(untrainedMse > threshold, $"the untrained autoencoder already passes: MSE {untrainedMse:F4} < {threshold:F4}");
    }

    [Fact]
    public void ScaledHeldOutLatentsHaveUnitStandardDeviation()
    {
        using var test = Test();
        var (ae, info) = AutoencoderFile.Load(ShippedAutoencoder);
        using (ae)
        using (var latents = LatentSpace.EncodeAll(ae, test, 2000))
        using (var scaled = latents * info.ScalingFactor)
        {
            double std = scaled.std().item<float>();
            Assert.InRange(std, 0.9, 1.1);
            // The stored factor is the training data's; recomputed on held-out data it is close (the same ±10 %).
            Assert.InRange(LatentSpace.ScalingFactor(latents) / info.ScalingFactor, 0.9, 1.1);
        }
    }

    [Fact]
    public void ShippedLatentDiffusionSamplesDecodeToImages()
    {
        var (ae, aeInfo) = AutoencoderFile.Load(ShippedAutoencoder);
        var (unet, info) = Checkpoint.LoadModel(ShippedLatentDdpm);
        using (ae)
        using (unet)
        using (var schedule = new NoiseSchedule(info.Model.Schedule, info.Model.Timesteps))
        using (var g = new Generator(0))
        using (var classes = tensor(new long[] { 0, 1, 5, 9 }))
        {
            Assert.Equal(aeInfo.Config.LatentChannels, info.Model.Unet.Channels);
            Assert.Equal(aeInfo.Config.LatentSize, info.Model.ImageSize);
            var sampler = new DdimSampler(schedule, 10, prediction: info.Model.Prediction, clipDenoised: false);
            using var images = LatentSpace.SampleImages(ae, aeInfo.ScalingFactor,
                LatentSpace.ClipStart(LatentSpace.Guided(unet, classes, 2.0), schedule), sampler, info.Model, 4, g);
            Assert.Equal([4L, 1, 28, 28], images.shape);
            Assert.True(images.isfinite().all().item<bool>());
            Assert.InRange(images.min().item<float>(), -1f, 1f);
            Assert.InRange(images.max().item<float>(), -1f, 1f);
            // Not blank: every image has both dark background and bright garment pixels.
            using var perImageStd = images.flatten(1).std(1);
            Assert.True(perImageStd.min().item<float>() > 0.1f, $"a decoded sample is nearly uniform (std {perImageStd.min().item<float>():F3})");
        }
    }

    [Fact]
    public void ClipStartClampsTheImpliedX0AndLeavesTheRestAlone()
    {
        using var scope = NewDisposeScope();
        using var schedule = new NoiseSchedule(ScheduleKind.Cosine, 100);
        manual_seed(8);
        var xt = randn(3, 4, 8, 8) * 2;
        var t = tensor(new long[] { 5, 50, 99 });
        var eps = randn(3, 4, 8, 8);
        DenoisingModel model = (_, _) => eps;
        var x0 = Forward.ForwardProcess.PredictStartFromNoise(schedule, xt, t, eps);
        double limit = 1.5;
        var clippedEps = LatentSpace.ClipStart(model, schedule, limit)(xt, t);
        var impliedX0 = Forward.ForwardProcess.PredictStartFromNoise(schedule, xt, t, clippedEps);
        Assert.True(impliedX0.allclose(x0.clamp(-limit, limit), rtol: 1e-4, atol: 1e-3));
        // A limit that clips nothing returns the model's ε.
        double big = x0.abs().max().item<float>() + 1;
        Assert.True(LatentSpace.ClipStart(model, schedule, big)(xt, t).allclose(eps, rtol: 1e-4, atol: 1e-4));
    }

    [Fact]
    public void DecodeUndoesTheScaling()
    {
        using var scope = NewDisposeScope();
        using var ae = SeededAutoencoder(4);
        ae.eval();
        using var noGrad = no_grad();
        var x = rand(2, 1, 28, 28) * 2 - 1;
        var z = ae.Encode(x);
        const double s = 0.37;
        Assert.True(LatentSpace.Decode(ae, z * s, s).allclose(ae.Decode(z).clamp(-1, 1), rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void GuidanceIsTheCoursesClassifierFreeGuidance()
    {
        using var scope = NewDisposeScope();
        manual_seed(6);
        using var net = new Unet(new UnetConfig { Dim = 8, DimMults = [1, 2], LinearAttentionLevels = [1], Channels = 4, NumClasses = 3 });
        net.eval();
        using var noGrad = no_grad();
        // Make the class embedding matter (it is random already; this keeps the test meaningful if that changes).
        var x = randn(2, 4, 8, 8);
        var t = tensor(new long[] { 3, 40 });
        var y = tensor(new long[] { 0, 2 });
        var cond = net.forward(x, t, y);
        var uncond = net.forward(x, t, null);
        Assert.False(cond.allclose(uncond, atol: 1e-4));
        Assert.True(LatentSpace.Guided(net, y, 0.0)(x, t).allclose(cond, rtol: 1e-4, atol: 1e-5));
        Assert.True(LatentSpace.Guided(net, y, -1.0)(x, t).allclose(uncond, rtol: 1e-4, atol: 1e-5));
        // ε̃ = (1 + w) ε_y − w ε_∅ for w = 2
        Assert.True(LatentSpace.Guided(net, y, 2.0)(x, t).allclose(3 * cond - 2 * uncond, rtol: 1e-4, atol: 1e-4));
    }

    [Fact]
    public void TrainerUsesFloatDataAsX0Unchanged()
    {
        using var scope = NewDisposeScope();
        var latents = randn(10, 4, 8, 8) * 2;
        using var floatData = new ImageDataset(latents, null, [], "latents");
        var idx = tensor(new long[] { 3, 7 });
        Assert.True(floatData.IsModelSpace);
        Assert.True(floatData.ModelInputs(idx).allclose(latents.index_select(0, idx), rtol: 0, atol: 0));
        using var pixels = TrainingTests.TinyData(4);
        Assert.False(pixels.IsModelSpace);
        Assert.True(pixels.ModelInputs(tensor(new long[] { 1 })).allclose(Transforms.ToSignedUnit(pixels.Images[1..2]), rtol: 0, atol: 0));
    }

    /// <summary>Live tensors, after finalisers have released garbage from earlier work (so only real leaks remain).</summary>
    static long LiveTensors()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return Tensor.TotalCount;
    }

    /// <summary>No tensor outlives its step: the live-tensor count is the same after warm-up and after more steps.</summary>
    [Fact]
    public void LatentTrainingAndSamplingDoNotLeakTensors()
    {
        using var pixelData = ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train: false).Take(64);
        using var aeTrainer = new AutoencoderTrainer(new AutoencoderConfig(),
            new TrainingOptions { Steps = 8, BatchSize = 8, Seed = 1 }, pixelData);
        for (int i = 0; i < 3; i++) aeTrainer.TrainStep();
        long before = LiveTensors();
        for (int i = 0; i < 5; i++) aeTrainer.TrainStep();
        Assert.Equal(before, LiveTensors());

        var ae = aeTrainer.Model;
        using var latents = LatentSpace.EncodeAll(ae, pixelData);
        double s = LatentSpace.ScalingFactor(latents);
        using var latentData = LatentSpace.Dataset(latents, s, pixelData);
        var config = LatentSpace.DiffusionConfig(ae.Config, pixelData.ClassNames) with
        {
            Unet = new UnetConfig { Dim = 8, DimMults = [1, 2], LinearAttentionLevels = [1], Channels = 4, NumClasses = 10 },
            Timesteps = 20,
        };
        using var trainer = new Trainer(config, new TrainingOptions { Steps = 8, BatchSize = 8, RandomFlip = false, Seed = 1 }, latentData);
        for (int i = 0; i < 3; i++) trainer.TrainStep();
        before = LiveTensors();
        for (int i = 0; i < 5; i++) trainer.TrainStep();
        Assert.Equal(before, LiveTensors());

        using var schedule = new NoiseSchedule(config.Schedule, config.Timesteps);
        using var g = new Generator(0);
        using var classes = tensor(new long[] { 1, 2 });
        var sampler = new DdpmSampler(schedule, clipDenoised: false);
        trainer.EmaModel!.eval();
        before = LiveTensors();
        using (var images = LatentSpace.SampleImages(ae, s, LatentSpace.Guided(trainer.EmaModel!, classes, 2), sampler, config, 2, g))
        {
            Assert.Equal([2L, 1, 28, 28], images.shape);
            Assert.Equal(before + 1, LiveTensors());
        }
        Assert.Equal(before, LiveTensors());
    }
}
