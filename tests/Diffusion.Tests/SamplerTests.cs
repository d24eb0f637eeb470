
namespace Diffusion.Tests;

/// <summary>
/// Samplers driven by the exact optimal noise predictor of a Gaussian dataset: no training involved.
/// For x_0 ~ N(μ, s²I): x_t ~ N(√ᾱ_t μ, ᾱ_t s² + 1 − ᾱ_t) and E[ε | x_t] = √(1−ᾱ_t)(x_t − √ᾱ_t μ)/(ᾱ_t s² + 1 − ᾱ_t).
/// A correct sampler must then return samples with mean ≈ μ and standard deviation ≈ s.
/// </summary>
public class SamplerTests
{
    const double Mu = 0.4, Sd = 0.25;

    static DenoisingModel OptimalEpsilon(NoiseSchedule s) => (xt, t) =>
    {
        var ab = s.Extract(s.AlphasCumprod, t, xt.shape);
        return (1 - ab).sqrt() * (xt - ab.sqrt() * Mu) / (ab * (Sd * Sd) + 1 - ab);
    };

    static (double Mean, double Std) Stats(Tensor x) => (x.mean().item<float>(), x.std().item<float>());

    public static TheoryData<string> Samplers() => new() { "ddpm-betatilde", "ddpm-beta", "ddim-50", "ddim-200-eta1", "ddim-1000" };

    static ISampler Make(string name, NoiseSchedule s) => name switch
    {
        "ddpm-betatilde" => new DdpmSampler(s, variance: ReverseVariance.BetaTilde, clipDenoised: false),
        "ddpm-beta" => new DdpmSampler(s, variance: ReverseVariance.Beta, clipDenoised: false),
        "ddim-50" => new DdimSampler(s, 50, clipDenoised: false),
        "ddim-200-eta1" => new DdimSampler(s, 200, eta: 1, clipDenoised: false),
        "ddim-1000" => new DdimSampler(s, 1000, clipDenoised: false),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Samplers))]
    public void OptimalPredictorOfAGaussianDatasetRecoversItsMeanAndStd(string name)
    {
        using var s = new NoiseSchedule(ScheduleKind.Linear, 1000);
        var sampler = Make(name, s);
        using var g = new Generator(42);
        const int N = 4096 * 4;
        using var result = sampler.Sample(OptimalEpsilon(s), [4096, 1, 2, 2], g);
        var (mean, std) = Stats(result.Samples);

        // 1) Close to the data distribution N(μ, s²) (coarse DDIM loses a little spread, so 12% on the std).
        Assert.True(Math.Abs(mean - Mu) < 0.01, $"{name}: mean {mean:F4}, expected {Mu}");
        Assert.True(Math.Abs(std - Sd) < 0.12 * Sd, $"{name}: std {std:F4}, expected {Sd}");

        // 2) Equal, within sampling error, to the exact mean and std of this discrete sampler, propagated in float64:
        //    every step maps x linearly, so mean and variance follow in closed form (independent of the tensor code).
        var (exactMean, exactStd) = ExactMoments(s, name);
        double meanTol = 5 * exactStd / Math.Sqrt(N), stdTol = 5 * exactStd / Math.Sqrt(2.0 * N);
        Assert.True(Math.Abs(mean - exactMean) < meanTol, $"{name}: mean {mean:F5} vs exact {exactMean:F5} ± {meanTol:F5}");
        Assert.True(Math.Abs(std - exactStd) < stdTol, $"{name}: std {std:F5} vs exact {exactStd:F5} ± {stdTol:F5}");
    }

    /// <summary>
    /// Exact mean and std after sampling from x_T ~ N(0, 1) with the optimal predictor, by scalar algebra:
    /// x̂_0 = μ + c (x − √ᾱ μ), c = √ᾱ s²/(ᾱ s² + 1 − ᾱ); ε̂ = (x − √ᾱ x̂_0)/√(1−ᾱ); then the sampler's update.
    /// </summary>
    static (double Mean, double Std) ExactMoments(NoiseSchedule s, string name)
    {
        int T = s.Timesteps;
        double m = 0, v = 1;
        void Ddim(int[] ts, double eta)
        {
            for (int i = 0; i < ts.Length; i++)
            {
                double a = s.AlphasCumprod[ts[i]], ap = i + 1 < ts.Length ? s.AlphasCumprod[ts[i + 1]] : 1;
                double c = Math.Sqrt(a) * Sd * Sd / (a * Sd * Sd + 1 - a);
                double sigma = eta * Math.Sqrt((1 - ap) / (1 - a)) * Math.Sqrt(1 - a / ap);
                double dir = Math.Sqrt(Math.Max(1 - ap - sigma * sigma, 0));
                double x0Mean = Mu + c * (m - Math.Sqrt(a) * Mu);
                double epsMean = (m - Math.Sqrt(a) * x0Mean) / Math.Sqrt(1 - a);
                double k = Math.Sqrt(ap) * c + dir * (1 - Math.Sqrt(a) * c) / Math.Sqrt(1 - a);   // d x_prev / d x
                m = Math.Sqrt(ap) * x0Mean + dir * epsMean;
                v = k * k * v + sigma * sigma;
            }
        }
        void Ddpm(bool largeVariance)
        {
            for (int t = T - 1; t >= 0; t--)
            {
                double a = s.AlphasCumprod[t];
                double c = Math.Sqrt(a) * Sd * Sd / (a * Sd * Sd + 1 - a);
                double x0Mean = Mu + c * (m - Math.Sqrt(a) * Mu);
                double k = s.PosteriorMeanCoef1[t] * c + s.PosteriorMeanCoef2[t];
                m = s.PosteriorMeanCoef1[t] * x0Mean + s.PosteriorMeanCoef2[t] * m;
                v = k * k * v + (t == 0 ? 0 : largeVariance ? s.Betas[t] : s.PosteriorVariance[t]);
            }
        }
        switch (name)
        {
            case "ddpm-betatilde": Ddpm(false); break;
            case "ddpm-beta": Ddpm(true); break;
            case "ddim-50": Ddim(TimestepPlan.EvenlySpaced(T, 50).Timesteps, 0); break;
            case "ddim-200-eta1": Ddim(TimestepPlan.EvenlySpaced(T, 200).Timesteps, 1); break;
            case "ddim-1000": Ddim(TimestepPlan.EvenlySpaced(T, 1000).Timesteps, 0); break;
        }
        return (m, Math.Sqrt(v));
    }

    [Fact]
    public void AWrongPredictorIsCaught()
    {
        // The same check fails for a predictor with the sign of ε flipped: the test can tell right from wrong.
        using var s = new NoiseSchedule(ScheduleKind.Linear, 1000);
        var right = OptimalEpsilon(s);
        using var g = new Generator(42);
        using var result = new DdimSampler(s, 50, clipDenoised: false).Sample((x, t) => -right(x, t), [1024, 1, 2, 2], g);
        var (mean, std) = Stats(result.Samples);
        Assert.False(Math.Abs(mean - Mu) < 0.01 && Math.Abs(std - Sd) < 0.1, $"mean {mean}, std {std}");
    }

    [Fact]
    public void DdimWithEtaOneOnEveryStepIsDdpmWithBetaTilde()
    {
        // σ² = (1−ᾱ_{t−1})/(1−ᾱ_t)·(1 − ᾱ_t/ᾱ_{t−1}) = β̃_t, and both draw the same noise in the same order.
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 100);
        var model = OptimalEpsilon(s);
        using var g1 = new Generator(9);
        using var g2 = new Generator(9);
        using var ddpm = new DdpmSampler(s, variance: ReverseVariance.BetaTilde, clipDenoised: false).Sample(model, [64, 1, 3, 3], g1);
        using var ddim = new DdimSampler(s, 100, eta: 1, clipDenoised: false).Sample(model, [64, 1, 3, 3], g2);
        Assert.True(allclose(ddpm.Samples, ddim.Samples, rtol: 1e-4, atol: 1e-4),
            $"max difference {(ddpm.Samples - ddim.Samples).abs().max().item<float>()}");
    }

    [Fact]
    public void DdpmStepWithoutClippingIsAlgorithmTwo()
    {
        using var s = new NoiseSchedule(ScheduleKind.Linear, 300);
        var model = OptimalEpsilon(s);
        var sampler = new DdpmSampler(s, variance: ReverseVariance.Beta, clipDenoised: false);
        foreach (int t in new[] { 299, 150, 1, 0 })
        {
            var x = randn(16, 1, 2, 2, generator: new Generator(1));
            var got = sampler.StepAt(model, x, t, new Generator(2));
            // Algorithm 2 by hand: x_{t−1} = 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε_θ) + σ_t z, σ²_t = β_t, z = 0 at t = 0.
            var eps = model(x, full([16], t, dtype: ScalarType.Int64));
            var mean = (x - s.Betas[t] / s.SqrtOneMinusAlphasCumprod[t] * eps) * s.SqrtRecipAlphas[t];
            var z = randn(16, 1, 2, 2, generator: new Generator(2));
            var expected = t > 0 ? mean + Math.Sqrt(s.Betas[t]) * z : mean;
            Assert.True(allclose(got, expected, rtol: 1e-4, atol: 1e-5), $"t={t}");
        }
    }

    [Fact]
    public void SamplingIsSeededAndCapturesTheReverseProcess()
    {
        using var s = new NoiseSchedule(ScheduleKind.Linear, 50);
        var model = OptimalEpsilon(s);
        var sampler = new DdpmSampler(s);
        using var a = sampler.Sample(model, [4, 1, 3, 3], new Generator(5), captureEvery: 10);
        using var b = sampler.Sample(model, [4, 1, 3, 3], new Generator(5));
        using var c = sampler.Sample(model, [4, 1, 3, 3], new Generator(6));
        Assert.True(a.Samples.equal(b.Samples).all().item<bool>());
        Assert.False(a.Samples.equal(c.Samples).all().item<bool>());
        Assert.Equal(new[] { 49, 39, 29, 19, 9, -1 }, a.IntermediateTimesteps);
        Assert.True(a.Intermediates[^1].equal(a.Samples).all().item<bool>());
        // With clipping, the final samples stay inside the data range.
        Assert.True(a.Samples.abs().max().item<float>() <= 1.0f + 1e-6f);
    }

    [Fact]
    public void DdimTimestepsSpanTheScheduleFromTheNoisiestStep()
    {
        Assert.Equal(new[] { 999, 666, 333, 0 }, TimestepPlan.EvenlySpaced(1000, 4).Timesteps);
        var ts = TimestepPlan.EvenlySpaced(1000, 50).Timesteps;
        Assert.Equal(50, ts.Length);
        Assert.Equal(999, ts[0]);
        Assert.Equal(0, ts[^1]);
        Assert.True(ts.Zip(ts.Skip(1)).All(p => p.First > p.Second));
        Assert.Equal(Enumerable.Range(0, 10).Reverse(), TimestepPlan.EvenlySpaced(10, 10).Timesteps);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DdimSampler(new NoiseSchedule(ScheduleKind.Linear, 10), 11));
    }

    [Theory]
    [InlineData(ReverseVariance.Beta)]
    [InlineData(ReverseVariance.BetaTilde)]
    public void RespacedDdpmStepReadsItsCoefficientsAtThePlansTwoTimes(ReverseVariance variance)
    {
        // Improved DDPM §4 by hand, from the original schedule only: step t → t′ of a respaced plan has
        // β′ = 1 − ᾱ_t/ᾱ_t′, β̃′ = β′(1 − ᾱ_t′)/(1 − ᾱ_t), μ̃ = β′√ᾱ_t′/(1 − ᾱ_t) x̂_0 + (1 − ᾱ_t′)√(1 − β′)/(1 − ᾱ_t) x_t.
        // An x_0-predicting network, so that x̂_0 is its output exactly and only the step's coefficients are compared.
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 200);
        DenoisingModel model = (x, t) => 0.4 + 0.5 * (x * 0.3 - t.to(ScalarType.Float32).reshape(-1, 1, 1, 1) / 400).tanh();
        using var sampler = DdpmSampler.Respaced(s, 9, Prediction.Start, variance, clipDenoised: false);
        Assert.Equal(TimestepPlan.EvenlySpaced(200, 9).Timesteps, sampler.Plan.Timesteps);
        for (int i = 0; i < sampler.Plan.Count; i++)
        {
            int t = sampler.Plan.Timesteps[i], next = sampler.Plan.Next(i);
            double ab = s.AlphasCumprod[t], abPrev = next >= 0 ? s.AlphasCumprod[next] : 1.0;
            double beta = 1 - ab / abPrev, betaTilde = beta * (1 - abPrev) / (1 - ab);
            var x32 = randn(16, 1, 2, 2, generator: new Generator(1));
            var x = x32.to(ScalarType.Float64);                                    // the sampler's input, exactly
            var x0 = model(x32, full([16], t, dtype: ScalarType.Int64)).to(ScalarType.Float64);
            var mean = beta * Math.Sqrt(abPrev) / (1 - ab) * x0 + (1 - abPrev) * Math.Sqrt(1 - beta) / (1 - ab) * x;
            var z = randn(16, 1, 2, 2, generator: new Generator(2)).to(ScalarType.Float64);
            var expected = next >= 0 ? mean + Math.Sqrt(variance == ReverseVariance.Beta ? beta : betaTilde) * z : mean;
            var got = sampler.StepAt(model, x32, t, new Generator(2)).to(ScalarType.Float64);
            Assert.True(allclose(got, expected, rtol: 1e-5, atol: 1e-5), $"t={t} → {next}: {(got - expected).abs().max().item<double>()}");
        }
    }

    [Fact]
    public void RespacedDdpmWithBetaTildeIsDdimWithEtaOneOnTheSamePlan()
    {
        // DDIM §4.1: η = 1 gives σ² = (1 − ᾱ_t′)/(1 − ᾱ_t)(1 − ᾱ_t/ᾱ_t′) = β̃′, and the same mean: one process, two derivations.
        using var s = new NoiseSchedule(ScheduleKind.Linear, 300);
        var model = OptimalEpsilon(s);
        using var ddpm = DdpmSampler.Respaced(s, 12, variance: ReverseVariance.BetaTilde, clipDenoised: false);
        using var ddim = new DdimSampler(s, ddpm.Plan, eta: 1, clipDenoised: false);
        var seen = new List<long>();
        using var a = ddpm.Sample((x, t) => { seen.Add(t[0].item<long>()); return model(x, t); }, [256, 1, 2, 2], new Generator(3));
        using var b = ddim.Sample(model, [256, 1, 2, 2], new Generator(3));
        Assert.Equal(ddpm.Plan.Timesteps.Select(t => (long)t), seen);        // the network sees the plan's time steps
        Assert.True(allclose(a.Samples, b.Samples, rtol: 1e-3, atol: 1e-4), $"max difference {(a.Samples - b.Samples).abs().max().item<float>()}");
    }

    [Fact]
    public void TheBoundOfARespacedChainNeedsItsOwnSchedule()
    {
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 40);
        using var respaced = DdpmSampler.Respaced(s, 8);
        var x0 = zeros(2, 1, 2, 2);
        Assert.Throws<ArgumentException>(() => Likelihood.Evaluate((x, t) => zeros_like(x), respaced, x0));
    }
}
