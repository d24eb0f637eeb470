
namespace Diffusion.Tests;

/// <summary>
/// Improved DDPM (Nichol &amp; Dhariwal 2021): the variational-bound terms, the learned variance (eq. 15), the hybrid
/// loss (§3.1) and respaced sampling (§4), each checked against an independent computation or an identity.
/// </summary>
public class LearnedVarianceTests
{
    static double[] D(Tensor x) => x.to(ScalarType.Float64).cpu().data<double>().ToArray();

    [Fact]
    public void GaussianKlMatchesClosedFormInStandardDeviationsAndMonteCarlo()
    {
        double[] m1 = [0.3, -1.0, 2.0, 0.0], s1 = [0.5, 1.0, 0.1, 2.0], m2 = [0.0, -0.5, 2.2, 0.0], s2 = [1.0, 0.3, 0.2, 2.0];
        var kl = D(VariationalBound.NormalKl(tensor(m1), tensor(s1.Select(s => 2 * Math.Log(s)).ToArray()),
                                             tensor(m2), tensor(s2.Select(s => 2 * Math.Log(s)).ToArray())));
        var rng = new Random(1);
        for (int i = 0; i < m1.Length; i++)
        {
            // Textbook form: ln(σ₂/σ₁) + (σ₁² + (μ₁−μ₂)²)/(2σ₂²) − ½
            double exact = Math.Log(s2[i] / s1[i]) + (s1[i] * s1[i] + Math.Pow(m1[i] - m2[i], 2)) / (2 * s2[i] * s2[i]) - 0.5;
            Assert.Equal(exact, kl[i], 1e-5 * Math.Max(1, exact));
            // Monte-Carlo: E_{x~N(μ₁,σ₁²)}[log N(x; μ₁, σ₁²) − log N(x; μ₂, σ₂²)]
            const int N = 200_000;
            double sum = 0, sumSq = 0;
            for (int k = 0; k < N; k++)
            {
                double z = Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());
                double x = m1[i] + s1[i] * z;
                double d = -Math.Log(s1[i]) - 0.5 * z * z + Math.Log(s2[i]) + 0.5 * Math.Pow((x - m2[i]) / s2[i], 2);
                sum += d;
                sumSq += d * d;
            }
            double mean = sum / N, se = Math.Sqrt((sumSq / N - mean * mean) / N);
            Assert.True(Math.Abs(mean - kl[i]) < 5 * se + 1e-6, $"case {i}: Monte-Carlo KL {mean:F5} ± {se:F5}, formula {kl[i]:F5}");
        }
    }

    /// <summary>Φ by Simpson integration of the density from −12 (independent of the library's tanh approximation).</summary>
    static double Phi(double x)
    {
        if (x < -12) return 0;
        int n = 4000;
        double a = -12, h = (x - a) / n, sum = 0;
        for (int i = 0; i <= n; i++)
        {
            double u = a + i * h, f = Math.Exp(-0.5 * u * u) / Math.Sqrt(2 * Math.PI);
            sum += f * (i == 0 || i == n ? 1 : i % 2 == 1 ? 4 : 2);
        }
        return sum * h / 3;
    }

    [Theory]
    [InlineData(0.0, 0.05)]
    [InlineData(0.7, 0.01)]
    [InlineData(-0.98, 0.2)]
    [InlineData(1.3, 1.5)]
    [InlineData(0.2, 0.001)]
    public void DiscretisedDecoderSumsToOneOverThe256LevelsAndMatchesTheGaussianMass(double mean, double std)
    {
        // The 256 levels of [−1, 1]: x = k/127.5 − 1.
        var levels = arange(256, dtype: ScalarType.Float32) / 127.5f - 1;
        var logP = D(VariationalBound.DiscretizedGaussianLogLikelihood(levels, full(256, mean), full(256, Math.Log(std))));
        double total = logP.Sum(Math.Exp);
        Assert.True(Math.Abs(total - 1) < 1e-4, $"probabilities sum to {total}");
        for (int k = 1; k < 255; k += 17)
        {
            double x = k / 127.5 - 1;
            double exact = Phi((x + 1 / 255.0 - mean) / std) - Phi((x - 1 / 255.0 - mean) / std);
            if (exact < 1e-9) continue;   // the library floors at 1e-12
            Assert.True(Math.Abs(Math.Exp(logP[k]) - exact) < 1e-3, $"level {k}: p = {Math.Exp(logP[k]):G5}, exact Gaussian mass {exact:G5}");
        }
    }

    [Fact]
    public void LearnedLogVarianceInterpolatesBetweenLogBetaTildeAndLogBeta()
    {
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 100);
        var t = tensor(new long[] { 0, 1, 10, 50, 99 });
        foreach (var v in new[] { -1.0, -0.4, 0.0, 1.0 })
        {
            var logVar = D(VariationalBound.LearnedLogVariance(s, t, full([5, 1], v)));
            var ts = new[] { 0, 1, 10, 50, 99 };
            for (int i = 0; i < ts.Length; i++)
            {
                double frac = (v + 1) / 2;
                double tilde = ts[i] == 0 ? s.PosteriorVariance[1] : s.PosteriorVariance[ts[i]];
                double expected = frac * Math.Log(s.Betas[ts[i]]) + (1 - frac) * Math.Log(tilde);
                Assert.Equal(expected, logVar[i], 1e-4 * Math.Abs(expected));
            }
        }
    }

    [Theory]
    [InlineData(1.0, ReverseVariance.Beta)]
    [InlineData(-1.0, ReverseVariance.BetaTilde)]
    public void LearnedStepWithVAtItsEndsIsTheFixedStep(double v, ReverseVariance fixedVariance)
    {
        using var s = new NoiseSchedule(ScheduleKind.Linear, 200);
        using var g0 = new Generator(5);
        var xt = randn([3, 1, 4, 4], generator: g0);
        DenoisingModel eps = (x, t) => (x * 0.3 + t.to(ScalarType.Float32).reshape(-1, 1, 1, 1) / 400).tanh();
        DenoisingModel epsAndV = (x, t) => cat([eps(x, t), full_like(x, v)], 1);
        var learned = new DdpmSampler(s, variance: ReverseVariance.Learned, clipDenoised: false);
        var fixedOne = new DdpmSampler(s, variance: fixedVariance, clipDenoised: false);
        foreach (var t in new[] { 199, 100, 3, 1, 0 })
        {
            using var ga = new Generator(11);
            using var gb = new Generator(11);
            var a = learned.StepAt(epsAndV, xt, t, ga);
            var b = fixedOne.StepAt(eps, xt, t, gb);
            double diff = (a - b).abs().max().item<float>();
            Assert.True(diff < 1e-5, $"t={t}: learned step with v={v} differs from {fixedVariance} by {diff}");
        }
        // And the fixed sampler ignores the v half of a learned-variance output.
        using (var gc = new Generator(11))
        using (var gd = new Generator(11))
            Assert.Equal(0, (fixedOne.StepAt(epsAndV, xt, 50, gc) - fixedOne.StepAt(eps, xt, 50, gd)).abs().max().item<float>());
        Assert.Throws<ArgumentException>(() => learned.StepAt(eps, xt, 50));
    }

    [Fact]
    public void RespacingWithStrideOneReproducesTheScheduleAndTheSampler()
    {
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 120);
        var (same, kept) = Respacing.Respace(s, 120);
        using (same)
        {
            Assert.Equal(Enumerable.Range(0, 120), kept);
            for (int t = 0; t < 120; t++)
            {
                Assert.Equal(s.Betas[t], same.Betas[t], 1e-12);
                Assert.Equal(s.AlphasCumprod[t], same.AlphasCumprod[t], 1e-12);
                Assert.Equal(s.PosteriorVariance[t], same.PosteriorVariance[t], 1e-12);
            }
        }
        DenoisingModel eps = (x, t) => (x * 0.5 - t.to(ScalarType.Float32).reshape(-1, 1, 1, 1) / 300).sin();
        var respaced = DdpmSampler.Respaced(s, 120, variance: ReverseVariance.Beta);
        using var a = respaced.Sample(eps, [2, 1, 3, 3], new Generator(4));
        using var b = new DdpmSampler(s, variance: ReverseVariance.Beta).Sample(eps, [2, 1, 3, 3], new Generator(4));
        Assert.True((a.Samples - b.Samples).abs().max().item<float>() < 1e-5);
    }

    [Fact]
    public void RespacedScheduleKeepsTheCumulativeAlphasOfTheKeptSteps()
    {
        using var s = new NoiseSchedule(ScheduleKind.Linear, 1000);
        foreach (var k in new[] { 10, 25, 100 })
        {
            var (r, kept) = Respacing.Respace(s, k);
            using (r)
            {
                Assert.Equal(k, kept.Length);
                Assert.Equal(0, kept[0]);
                Assert.Equal(999, kept[^1]);
                for (int i = 0; i < k; i++) Assert.Equal(s.AlphasCumprod[kept[i]], r.AlphasCumprod[i], 1e-12);
                // The respaced sampler calls the network with the original time steps.
                var seen = new List<long>();
                var sampler = new DdpmSampler(r, modelTimesteps: kept);
                using var _ = sampler.Sample((x, t) => { seen.Add(t[0].item<long>()); return zeros_like(x); }, [1, 1, 2, 2], new Generator(0));
                Assert.Equal(kept.Reverse().Select(t => (long)t), seen);
            }
        }
    }

    [Fact]
    public void VlbGivesNoGradientToTheEpsilonOutputAndSimpleNoneToV()
    {
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 50);
        using var g = new Generator(2);
        var x0 = rand([4, 1, 4, 4], generator: g) * 2 - 1;
        var t = tensor(new long[] { 0, 3, 20, 49 });
        var noise = randn([4, 1, 4, 4], generator: g);
        var output = (randn([4, 2, 4, 4], generator: g) * 0.5).requires_grad_(true);
        Func<Tensor, Tensor, Tensor> model = (xt, tt) => output * 1.0;

        var terms = HybridLoss.Compute(model, s, x0, t, noise);
        terms.Vlb.backward();
        var grad = output.grad!;
        Assert.Equal(0, grad[.., 0].abs().max().item<float>());          // ε half: stop-gradient
        Assert.True(grad[.., 1].abs().max().item<float>() > 0);          // v half: trained by L_vlb

        output.grad!.zero_();
        HybridLoss.Compute(model, s, x0, t, noise).Simple.backward();
        Assert.Equal(0, output.grad![.., 1].abs().max().item<float>());  // L_simple does not see v
        Assert.True(output.grad![.., 0].abs().max().item<float>() > 0);

        // The hybrid total is L_simple + λ·T·mean_t L_t (bits/dim), recomputed here from the parts.
        using var again = HybridLoss.Compute(model, s, x0, t, noise, lambda: 0.5);
        var xt = ForwardProcess.QSample(s, x0, t, noise);
        var (x0Hat, _) = ForwardProcess.StartAndNoise(s, xt, t, output[.., ..1].detach(), Prediction.Epsilon, false);
        var (mean, _, _) = ForwardProcess.QPosterior(s, x0Hat, xt, t);
        var lt = VariationalBound.TermBitsPerDim(s, x0, xt, t, mean, VariationalBound.LearnedLogVariance(s, t, output[.., 1..].detach()));
        double expected = again.Simple.item<float>() + 0.5 * 50 * lt.mean().item<float>();
        Assert.Equal(expected, again.Total.item<float>(), 1e-4 * expected);
    }

    [Fact]
    public void TinySeededHybridTrainingRunLowersTheLoss()
    {
        using var data = TrainingTests.TinyData(4);
        var config = TrainingTests.TinyModel() is var m
            ? m with { Unet = m.Unet with { OutDim = 2 }, Variance = VarianceType.Learned }
            : null!;
        var options = new TrainingOptions
        {
            Steps = 60, BatchSize = 4, LearningRate = 3e-3, WarmupSteps = 5, EmaDecay = 0.9, CheckpointEvery = 1000, Seed = 3,
            RandomFlip = false,
        };
        using var trainer = new Trainer(config, options, data);
        Assert.Equal(2, trainer.Model.Config.ResolvedOutDim);
        trainer.Train();
        double first = trainer.LossHistory.Take(10).Average(l => l.Loss);
        double last = trainer.LossHistory.TakeLast(10).Average(l => l.Loss);
        Assert.True(last < 0.7 * first, $"hybrid loss fell only from {first:F3} to {last:F3}");
    }

    [Fact]
    public void WidenedNetworkStartsWithTheSameEpsilonAndVZero()
    {
        var fixedConfig = TrainingTests.TinyModel().Unet;
        manual_seed(1);
        using var source = new Unet(fixedConfig);
        using var target = new Unet(fixedConfig with { OutDim = 2 });
        WeightTransfer.Copy(source, target);
        source.eval();
        target.eval();
        using var g = new Generator(3);
        var x = randn([2, 1, 8, 8], generator: g);
        var t = tensor(new long[] { 4, 40 });
        using var _ = no_grad();
        var a = source.forward(x, t);
        var b = target.forward(x, t);
        Assert.True((a - b[.., ..1]).abs().max().item<float>() < 1e-6);
        Assert.Equal(0, b[.., 1..].abs().max().item<float>());
        using var other = new Unet(fixedConfig with { Dim = 16 });
        Assert.Throws<ArgumentException>(() => WeightTransfer.Copy(source, other));
    }

    [Fact]
    public void CheckpointsWithoutAVarianceSettingReadAsFixedAndALearnedConfigNeedsTwiceTheOutputs()
    {
        var info = Checkpoint.ReadInfo(Path.Combine(TestSetup.RepoRoot, "data", "checkpoints", "fashion-mnist-ddpm.ckpt"));
        Assert.Equal(VarianceType.Fixed, info.Model.Variance);
        var learned = info.Model with { Variance = VarianceType.Learned };
        Assert.Throws<ArgumentException>(learned.Validate);
        (learned with { Unet = learned.Unet with { OutDim = 2 } }).Validate();
        Assert.Contains(learned.DifferencesFrom(info.Model), d => d.StartsWith("Variance"));
    }

    [Fact]
    public void BitsPerDimIsThePriorPlusTheSumOfTheTermsPerImage()
    {
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 40);
        var (r, kept) = Respacing.Respace(s, 8);
        using (r)
        {
            using var g = new Generator(9);
            var x0 = randint(0, 256, [5, 1, 4, 4], generator: g).to(ScalarType.Float32) / 127.5f - 1;
            DenoisingModel eps = (x, t) => cat([x * 0.1, full_like(x, 0.3)], 1);
            var samplers = new[] { ReverseVariance.Beta, ReverseVariance.BetaTilde, ReverseVariance.Learned }
                .Select(v => new DdpmSampler(r, variance: v, modelTimesteps: kept)).ToList();
            var results = Likelihood.Evaluate(eps, samplers, x0, new Generator(1), batchSize: 2);
            foreach (var b in results)
            {
                Assert.Equal(8, b.Terms.Length);
                Assert.Equal(b.Total, b.Prior + b.Terms.Sum(), 1e-9);
                Assert.Equal(b.Total, b.PerImage.Average(), 1e-12);
                Assert.True(b.Terms.All(x => x >= 0 && double.IsFinite(x)));
            }
            // The prior term depends only on ᾱ_T and the data: for x_0 the KL to N(0, 1) in closed form.
            double aT = s.AlphasCumprod[^1];
            var x = D(x0);
            double prior = x.Select(v => 0.5 * (-1 - Math.Log(1 - aT) + (1 - aT) + aT * v * v)).Average() / Math.Log(2);
            Assert.Equal(prior, results[0].Prior, 1e-5);
        }
    }
}
