using TorchSharp.Modules;

namespace Diffusion.Tests;

/// <summary>
/// Classifier-free guidance (Ho &amp; Salimans 2022): the guided prediction's identities, the single batched pass,
/// the parameterisation argument, label dropout, and guided sampling on an analytic model and a tiny U-Net.
/// </summary>
public class GuidanceTests
{
    const int K = 3;   // classes of the tiny U-Net; index K = ∅ ("no label")

    static Unet TinyConditionalUnet()
    {
        manual_seed(7);
        var net = new Unet(new UnetConfig { Dim = 8, DimMults = [1, 2], LinearAttentionLevels = [1], NumClasses = K });
        net.eval();
        return net;
    }

    static (Tensor X, Tensor T, Tensor Y) Inputs()
    {
        using var g = new Generator(11);
        var x = randn([4, 1, 8, 8], generator: g);
        var t = tensor(new long[] { 3, 17, 30, 49 });
        var y = tensor(new long[] { 0, 1, 2, K });            // per-image labels, one of them ∅
        return (x, t, y);
    }

    static void AssertClose(Tensor expected, Tensor actual, string what, double atol = 1e-5)
    {
        double diff = (expected - actual).abs().max().item<float>();
        Assert.True(diff <= atol, $"{what}: max |difference| {diff:g3} > {atol:g3}");
    }

    [Fact]
    public void GuidedPredictionIdentitiesAndTheBatchedPassEqualSeparateCalls()
    {
        using var net = TinyConditionalUnet();
        var (x, t, y) = Inputs();
        using var _ = no_grad();
        int calls = 0;
        long batchSeen = 0;
        ConditionalDenoisingModel model = (xt, tt, cc) =>
        {
            calls++;
            batchSeen = xt.shape[0];
            return net.forward(xt, tt, cc);
        };

        // Independent references: two separate forward passes, labels c and ∅.
        var cond = net.forward(x, t, y);
        var uncond = net.forward(x, t, full_like(y, K));
        Assert.True((cond - uncond).abs().max().item<float>() > 1e-3, "the label must change the prediction, else the identities below prove nothing");

        // w = 0: the conditional prediction; w = −1: the unconditional one (both through the batched path).
        AssertClose(cond, ClassifierFreeGuidance.Predict(model, x, t, y, K, 0), "w = 0 vs ε_θ(x, c)");
        AssertClose(uncond, ClassifierFreeGuidance.Predict(model, x, t, y, K, -1), "w = −1 vs ε_θ(x, ∅)");

        // Any w: the single batched call equals (1 + w)·ε_θ(x, c) − w·ε_θ(x, ∅) combined by hand.
        calls = 0;
        foreach (var w in new[] { 0.5, 1.0, 3.0 })
        {
            var guided = ClassifierFreeGuidance.Predict(model, x, t, y, K, w);
            AssertClose((1 + w) * cond - w * uncond, guided, $"w = {w}", atol: 1e-5 * (1 + 2 * w));
        }
        Assert.Equal(3, calls);                              // one network call per guided prediction ...
        Assert.Equal(2 * x.shape[0], batchSeen);             // ... on the doubled batch [x; x]

        // The sampler-facing delegate: w = 0 is a single plain conditional pass; w ≠ 0 the batched one.
        calls = 0;
        AssertClose(cond, ClassifierFreeGuidance.Guide(model, y, K, 0)(x, t), "Guide(w = 0)");
        Assert.Equal(x.shape[0], batchSeen);
        AssertClose(3 * cond - 2 * uncond, ClassifierFreeGuidance.Guide(model, y, K, 2)(x, t), "Guide(w = 2)", atol: 5e-5);
        Assert.Equal(2, calls);

        // diffusers' guidance_scale s = 1 + w.
        Assert.Equal(6.5, ClassifierFreeGuidance.FromGuidanceScale(7.5));
        Assert.Equal(1.0, ClassifierFreeGuidance.ToGuidanceScale(0));
    }

    /// <summary>
    /// x̂_0 and v̂ are affine in ε̂ for fixed (x_t, t) and the guidance weights sum to 1, so guiding a model's x_0 or v
    /// output gives exactly the x̂_0 or v̂ of the guided ε̃: the sampler sees the same step whatever the parameterisation.
    /// </summary>
    [Theory]
    [InlineData(Prediction.Start)]
    [InlineData(Prediction.Velocity)]
    public void GuidingX0OrVOutputsEqualsGuidingEpsilon(Prediction prediction)
    {
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 100);
        using var g = new Generator(5);
        var xt = randn([6, 1, 4, 4], generator: g);
        var t = tensor(new long[] { 0, 10, 40, 60, 90, 99 });
        var outCond = randn([6, 1, 4, 4], generator: g);
        var outUncond = randn([6, 1, 4, 4], generator: g);
        const double w = 2.5;

        Tensor Eps(Tensor output) => ForwardProcess.StartAndNoise(s, xt, t, output, prediction, clipStart: false).Noise;
        var guidedInOwnParameterisation = Eps(ClassifierFreeGuidance.Combine(outCond, outUncond, w));
        var guidedInEpsilon = ClassifierFreeGuidance.Combine(Eps(outCond), Eps(outUncond), w);
        // ε from x_0 divides by √(1−ᾱ_t), large at t = 0 for the cosine schedule: compare relative to the size.
        double scale = guidedInEpsilon.abs().max().item<float>();
        AssertClose(guidedInEpsilon, guidedInOwnParameterisation, $"{prediction}", atol: 2e-6 * Math.Max(1, scale));
    }

    /// <summary>
    /// Analytic check of guided sampling, no training: for x_0 ~ N(μ_y, s²I) the optimal ε is affine in μ_y
    /// (ε* = √(1−ᾱ)(x − √ᾱ μ)/(ᾱ s² + 1 − ᾱ)), so (1 + w) ε*(μ_c) − w ε*(μ_∅) = ε*(μ_c + w(μ_c − μ_∅)).
    /// (1) Guided sampling must equal, sample for sample (same seed), unguided sampling of the shifted Gaussian — for any
    /// sampler, however coarse. (2) With all T steps, guided samples of class c have mean μ_c + w(μ_c − μ_∅) and std s.
    /// Two classes share one batch (labels per image).
    /// </summary>
    [Theory]
    [InlineData("ddim-50", 1.5)]
    [InlineData("ddim-200", 0.0)]
    [InlineData("ddim-200", 1.5)]
    [InlineData("ddim-200", -1.0)]
    [InlineData("ddpm", 1.5)]
    [InlineData("dpm++-20", 1.5)]
    [InlineData("dpm++-20", -1.0)]
    public void GuidedSamplingOfGaussianClassesShiftsTheMeanByWTimesTheClassOffset(string samplerName, double w)
    {
        double[] mu = [0.3, -0.2, 0.05];          // μ for class 0, class 1, and ∅ (index 2)
        const double sd = 0.2;
        const int nullClass = 2, perClass = 2048;
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 200);   // ᾱ_T ≈ 0: x_T ~ N(0, I) is the right prior
        Tensor OptimalEps(Tensor xt, Tensor t, Tensor m)
        {
            var ab = s.Extract(s.AlphasCumprod, t, xt.shape);
            return (1 - ab).sqrt() * (xt - ab.sqrt() * m.view(-1, 1, 1, 1)) / (ab * (sd * sd) + 1 - ab);
        }
        ConditionalDenoisingModel optimal = (xt, t, y) => OptimalEps(xt, t, tensor(mu, dtype: ScalarType.Float32).index_select(0, y));
        ISampler sampler = samplerName switch
        {
            "ddpm" => new DdpmSampler(s, clipDenoised: false),
            "ddim-50" => new DdimSampler(s, 50, clipDenoised: false),
            "dpm++-20" => new DpmSolverPlusPlus(s, 20, clipDenoised: false),
            _ => new DdimSampler(s, 200, clipDenoised: false),
        };
        var classes = cat([zeros(perClass, dtype: ScalarType.Int64), ones(perClass, dtype: ScalarType.Int64)]);
        long[] shape = [2 * perClass, 1, 2, 2];
        using var guided = sampler.Sample(ClassifierFreeGuidance.Guide(optimal, classes, nullClass, w), shape, new Generator(3));

        // (1) the same sampler, unguided, on the Gaussian with the shifted mean μ_c + w(μ_c − μ_∅)
        var shifted = tensor(new[] { mu[0] + w * (mu[0] - mu[2]), mu[1] + w * (mu[1] - mu[2]) }, dtype: ScalarType.Float32).index_select(0, classes);
        using var reference = sampler.Sample((xt, t) => OptimalEps(xt, t, shifted), shape, new Generator(3));
        double diff = (guided.Samples - reference.Samples).abs().max().item<float>();
        Assert.True(diff < 1e-4, $"{samplerName} w={w}: guided samples differ from the shifted-mean model's by {diff:g3}");

        // (2) the moments, when the sampler takes every step (or is DPM-Solver++, second order)
        if (samplerName == "ddim-50") return;
        for (int c = 0; c < 2; c++)
        {
            var xs = guided.Samples[(c * perClass)..((c + 1) * perClass)];
            double mean = xs.mean().item<float>(), std = xs.std().item<float>();
            double expected = mu[c] + w * (mu[c] - mu[nullClass]);
            double tol = 5 * sd / Math.Sqrt(4.0 * perClass) + 0.005;    // sampling error + discretisation
            Assert.True(Math.Abs(mean - expected) < tol, $"{samplerName} w={w} class {c}: mean {mean:F4}, expected {expected:F4} ± {tol:F4}");
            Assert.True(Math.Abs(std - sd) < 0.12 * sd, $"{samplerName} w={w} class {c}: std {std:F4}, expected {sd}");
        }
    }

    [Fact]
    public void LabelDropoutReplacesLabelsWithTheNullClassAtRateP()
    {
        const int n = 200_000;
        var labels = arange(n, dtype: ScalarType.Int64) % 10;
        foreach (var p in new[] { 0.1, 0.25 })
        {
            using var g = new Generator(0);
            var dropped = ClassDropout.Apply(labels, p, 10, g);
            var isNull = dropped == 10;
            double rate = isNull.to(ScalarType.Float64).mean().item<double>();
            double sigma = Math.Sqrt(p * (1 - p) / n);
            Assert.True(Math.Abs(rate - p) < 4 * sigma, $"p = {p}: measured rate {rate:F5} (±{4 * sigma:F5})");
            Assert.True(dropped.masked_select(isNull.logical_not()).equal(labels.masked_select(isNull.logical_not())).all().item<bool>(), "kept labels must be unchanged");
            using var g2 = new Generator(0);
            Assert.True(dropped.equal(ClassDropout.Apply(labels, p, 10, g2)).all().item<bool>(), "seeded dropout must repeat");
        }
        Assert.Equal(0, (ClassDropout.Apply(labels, 0, 10) == 10).sum().item<long>());
        Assert.Equal(n, (ClassDropout.Apply(labels, 1, 10) == 10).sum().item<long>());
        Assert.Throws<ArgumentOutOfRangeException>(() => ClassDropout.Apply(labels, 1.5, 10));
    }

    /// <summary>The labels the class embedding actually sees during a seeded training run: a fraction p of them is ∅.</summary>
    [Fact]
    public void SeededTrainingRunFeedsTheNullLabelAtRateP()
    {
        using var data = TrainingTests.TinyData(64);
        const double p = 0.3;
        var options = new TrainingOptions
        {
            Steps = 25, BatchSize = 64, LearningRate = 1e-3, WarmupSteps = 0, EmaDecay = 0, CheckpointEvery = 1000, Seed = 9, ClassDropout = p,
        };
        using var trainer = new Trainer(TrainingTests.TinyModel(numClasses: 4), options, data);
        var embedding = trainer.Model.modules().OfType<Embedding>().Single();
        long seen = 0, nulls = 0;
        var hook = embedding.register_forward_hook((_, input, output) =>
        {
            seen += input.numel();
            nulls += (input == 4).sum().item<long>();
            return output;
        });
        trainer.Train();
        hook.remove();
        double rate = (double)nulls / seen, sigma = Math.Sqrt(p * (1 - p) / seen);
        Assert.Equal(25 * 64, seen);
        Assert.True(Math.Abs(rate - p) < 4 * sigma, $"measured ∅ rate {rate:F4} over {seen} labels, expected {p} ± {4 * sigma:F4}");
    }

    [Fact]
    public void GuidedDdimWithATinyUnetRunsAndIsDeterministic()
    {
        using var net = TinyConditionalUnet();
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 50);
        var sampler = new DdimSampler(s, 6);
        var classes = tensor(new long[] { 0, 1, 2, 0, 1, 2 });
        ConditionalDenoisingModel model = (x, t, y) => net.forward(x, t, y);
        Tensor Run(double w)
        {
            using var g = new Generator(21);
            using var r = sampler.Sample(ClassifierFreeGuidance.Guide(model, classes, K, w), [6, 1, 8, 8], g);
            return r.Samples.clone();
        }
        var a = Run(2);
        Assert.True(a.isfinite().all().item<bool>());
        Assert.True(a.equal(Run(2)).all().item<bool>(), "same seed, same guided samples");
        Assert.False(a.equal(Run(0)).all().item<bool>(), "guidance must change the samples");
    }

    [Fact]
    public void BadGuidanceInputsGiveClearErrors()
    {
        ConditionalDenoisingModel model = (x, _, _) => x;
        var x = zeros(2, 1, 4, 4);
        var t = zeros(2, dtype: ScalarType.Int64);
        Assert.Contains("≥ −1", Assert.Throws<ArgumentOutOfRangeException>(() => ClassifierFreeGuidance.Guide(model, tensor(new long[] { 0, 1 }), K, -1.5)).Message);
        Assert.Contains("≥ −1", Assert.Throws<ArgumentOutOfRangeException>(() => ClassifierFreeGuidance.Combine(x, x, double.NaN)).Message);
        Assert.Contains("labels must be 0..2", Assert.Throws<ArgumentOutOfRangeException>(() => ClassifierFreeGuidance.Guide(model, tensor(new long[] { 0, 4 }), K, 1)).Message);
        Assert.Contains("class-conditional", Assert.Throws<ArgumentOutOfRangeException>(() => ClassifierFreeGuidance.Guide(model, tensor(new long[] { 0, 0 }), 0, 1)).Message);
        Assert.Contains("one label per image", Assert.Throws<ArgumentException>(() => ClassifierFreeGuidance.Guide(model, tensor(new long[] { 0, 1, 2 }), K, 1)(x, t)).Message);
    }
}

/// <summary><c>sample --class k|all --guidance w</c> as a user runs it.</summary>
public class GuidanceCliTests
{
    [Fact]
    public void ConditionalTrainThenGuidedSampleOneRowPerClass()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        var train = Cli.TrainTiny(dir.Path, run, "--conditional", "--class-dropout", "0.2", "--samples", "0", "--threads", "1");
        var info = Checkpoint.ReadInfo(Path.Combine(run, "model.ckpt"));
        Assert.Equal(10, info.Model.Unet.NumClasses);
        Assert.Equal(0.2, info.Training.ClassDropout);

        // --class all: one row per class; --count 25 is rounded down to 2 per class (20 images, 2 columns).
        var all = Cli.Run(dir.Path, "sample", "--checkpoint", run, "--count", "25", "--class", "all", "--guidance", "2", "--sampler", "ddim",
            "--steps", "3", "--threads", "1", "--out", dir["all.png"]);
        Assert.True(all.ExitCode == 0, all.All);
        Assert.Contains("2 per class", all.Stdout);
        Assert.Contains("guidance w=2", all.Stdout);
        using (var png = SixLabors.ImageSharp.Image.Load<SixLabors.ImageSharp.PixelFormats.Rgb24>(dir["all.png"]))
        {
            Assert.Equal(2 + 2 * 58, png.Width);
            Assert.Equal(2 + 10 * 58, png.Height);
        }

        var one = Cli.Run(dir.Path, "sample", "--checkpoint", run, "--count", "4", "--class", "7", "--guidance", "0.5", "--sampler", "ddim",
            "--steps", "3", "--threads", "1", "--out", dir["seven.png"]);
        Assert.True(one.ExitCode == 0, one.All);

        foreach (var (args, expected) in new (string[], string)[]
                 {
                     (["--class", "10"], "knows classes 0..9"),
                     (["--class", "shoes"], "give a class index"),
                     (["--guidance", "-2"], "w must be ≥ −1"),
                 })
        {
            var bad = Cli.Run(dir.Path, ["sample", "--checkpoint", run, "--count", "2", "--out", dir["bad.png"], .. args]);
            Assert.Equal(2, bad.ExitCode);
            Assert.Contains(expected, bad.Stderr);
            Assert.Single(bad.Stderr.Trim().Split('\n'));
        }
    }

    [Fact]
    public void GuidanceOnAnUnconditionalCheckpointIsRefused()
    {
        using var dir = TestSetup.Temp();
        var shipped = Path.Combine(TestSetup.RepoRoot, "data", "checkpoints", "fashion-mnist-ddpm.ckpt");
        var r = Cli.Run(dir.Path, "sample", "--checkpoint", shipped, "--guidance", "1", "--out", dir["x.png"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--guidance needs a class-conditional model", r.Stderr);
        var c = Cli.Run(dir.Path, "sample", "--checkpoint", shipped, "--class", "3", "--out", dir["x.png"]);
        Assert.Equal(2, c.ExitCode);
        Assert.Contains("this model is unconditional", c.Stderr);
        Assert.False(File.Exists(dir["x.png"]));
    }
}
