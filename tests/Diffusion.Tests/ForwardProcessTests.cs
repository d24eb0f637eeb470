
namespace Diffusion.Tests;

public class ForwardProcessTests
{
    /// <summary>n images in [−1, 1) of size×size, their noise and t uniform in [0, T), all from one seeded generator.</summary>
    static (Tensor X0, Tensor Eps, Tensor T) SeededBatch(ulong seed, int n, int size, int T)
    {
        var g = new Generator(seed);
        var x0 = rand([n, 1, size, size], generator: g) * 2 - 1;
        var eps = randn([n, 1, size, size], generator: g);
        return (x0, eps, randint(0, T, [n], generator: g));
    }

    [Theory]
    [InlineData(ScheduleKind.Linear, 37)]
    [InlineData(ScheduleKind.Cosine, 80)]
    public void ClosedFormMatchesIteratedSingleStepsStatistically(ScheduleKind kind, int t)
    {
        // x_0 fixed per column; N independent chains of t single steps vs N one-shot samples of q(x_t | x_0).
        using var s = new NoiseSchedule(kind, 100);
        const int N = 200_000;
        using var scope = NewDisposeScope();
        var g = new Generator(7);
        var x0 = tensor(new float[] { -0.8f, 0.0f, 0.5f, 1.0f }).reshape(1, 4, 1, 1).expand(N, 4, 1, 1).contiguous();

        var x = x0.clone();
        for (int step = 0; step <= t; step++)
            x = ForwardProcess.QStep(s, x, full([N], step, dtype: ScalarType.Int64), randn(x.shape, generator: g));
        var oneShot = ForwardProcess.QSample(s, x0, full([N], t, dtype: ScalarType.Int64), randn(x0.shape, generator: g));

        double ab = s.AlphasCumprod[t];
        foreach (var (sample, label) in new[] { (x, "iterated"), (oneShot, "closed form") })
        {
            var mean = sample.mean([0]).flatten().data<float>().ToArray();
            var variance = sample.var([0]).flatten().data<float>().ToArray();
            var x0s = new[] { -0.8, 0.0, 0.5, 1.0 };
            for (int j = 0; j < 4; j++)
            {
                double expectedMean = Math.Sqrt(ab) * x0s[j], expectedVar = 1 - ab;
                double meanTol = 5 * Math.Sqrt(expectedVar / N);                 // 5 standard errors
                double varTol = 5 * expectedVar * Math.Sqrt(2.0 / (N - 1));
                Assert.True(Math.Abs(mean[j] - expectedMean) < meanTol, $"{label}: mean {mean[j]} vs {expectedMean} ± {meanTol}");
                Assert.True(Math.Abs(variance[j] - expectedVar) < varTol, $"{label}: var {variance[j]} vs {expectedVar} ± {varTol}");
            }
        }
    }

    [Fact]
    public void PosteriorEqualsBayesRuleProductOfGaussians()
    {
        // q(x_{t−1} | x_t, x_0) ∝ N(x_t; √α_t x_{t−1}, β_t) · N(x_{t−1}; √ᾱ_{t−1} x_0, 1 − ᾱ_{t−1}):
        // precision = α_t/β_t + 1/(1 − ᾱ_{t−1}); mean = (√α_t x_t/β_t + √ᾱ_{t−1} x_0/(1 − ᾱ_{t−1})) / precision.
        using var s = new NoiseSchedule(ScheduleKind.Linear, 1000);
        foreach (int t in new[] { 1, 10, 500, 999 })
        {
            double x0 = 0.3, xt = -1.2;
            double a = s.Alphas[t], b = s.Betas[t], abPrev = s.AlphasCumprod[t - 1];
            double precision = a / b + 1 / (1 - abPrev);
            double mean = (Math.Sqrt(a) * xt / b + Math.Sqrt(abPrev) * x0 / (1 - abPrev)) / precision;
            var tt = tensor(new long[] { t });
            var (m, v, logv) = ForwardProcess.QPosterior(s, tensor(new[] { (float)x0 }).reshape(1, 1, 1, 1), tensor(new[] { (float)xt }).reshape(1, 1, 1, 1), tt);
            Assert.Equal(mean, m.item<float>(), 4);
            Assert.Equal(1 / precision, v.item<float>(), 1e-6 * Math.Max(1, 1 / precision));
            Assert.Equal(Math.Log(1 / precision), logv.item<float>(), 3);
        }
    }

    [Fact]
    public void StartNoiseAndVelocityIdentitiesInvertEachOther()
    {
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 300);
        using var scope = NewDisposeScope();
        var (x0, eps, t) = SeededBatch(3, 16, 8, 300);
        var xt = ForwardProcess.QSample(s, x0, t, eps);
        Assert.True(allclose(ForwardProcess.PredictStartFromNoise(s, xt, t, eps), x0, rtol: 1e-3, atol: 2e-3));
        Assert.True(allclose(ForwardProcess.PredictNoiseFromStart(s, xt, t, x0), eps, rtol: 1e-3, atol: 2e-3));
        var v = ForwardProcess.Velocity(s, x0, t, eps);
        Assert.True(allclose(ForwardProcess.PredictStartFromVelocity(s, xt, t, v), x0, rtol: 1e-4, atol: 1e-4));
        foreach (var p in Enum.GetValues<Prediction>())
        {
            var output = p switch { Prediction.Epsilon => eps, Prediction.Start => x0, _ => v };
            var (start, noise) = ForwardProcess.StartAndNoise(s, xt, t, output, p, clipStart: false);
            Assert.True(allclose(start, x0, rtol: 1e-3, atol: 2e-3), $"x0 from {p}");
            Assert.True(allclose(noise, eps, rtol: 1e-3, atol: 5e-3), $"ε from {p}");
        }
    }

    [Fact]
    public void PosteriorMeanFromStartEqualsAlgorithmTwoMeanFromNoise()
    {
        // μ̃_t(x_t, x_0) with x_0 = (x_t − √(1−ᾱ)ε)/√ᾱ equals 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε).
        using var s = new NoiseSchedule(ScheduleKind.Linear, 1000);
        using var scope = NewDisposeScope();
        var g = new Generator(11);
        var xt = randn([8, 1, 4, 4], generator: g);
        var eps = randn([8, 1, 4, 4], generator: g);
        var t = tensor(new long[] { 1, 2, 5, 50, 200, 600, 900, 999 });
        var x0 = ForwardProcess.PredictStartFromNoise(s, xt, t, eps);
        var (mu, _, _) = ForwardProcess.QPosterior(s, x0, xt, t);
        var beta = s.Extract(s.Betas, t, xt.shape);
        var algo2 = s.Extract(s.SqrtRecipAlphas, t, xt.shape)
                    * (xt - beta / s.Extract(s.SqrtOneMinusAlphasCumprod, t, xt.shape) * eps);
        Assert.True(allclose(mu, algo2, rtol: 1e-4, atol: 1e-4));
    }

    [Theory]
    [InlineData(Prediction.Epsilon)]
    [InlineData(Prediction.Start)]
    [InlineData(Prediction.Velocity)]
    public void LossIsZeroForAPerfectPredictionAndPositiveOtherwise(Prediction prediction)
    {
        using var s = new NoiseSchedule(ScheduleKind.Linear, 200);
        using var scope = NewDisposeScope();
        var (x0, eps, t) = SeededBatch(5, 8, 6, 200);
        // A perfect "network": it knows x_0 and ε, and returns the exact target for the x_t it is given.
        Tensor Perfect(Tensor xt, Tensor tt) => prediction switch
        {
            Prediction.Epsilon => ForwardProcess.PredictNoiseFromStart(s, xt, tt, x0),
            Prediction.Start => x0.alias(),
            _ => ForwardProcess.Velocity(s, x0, tt, ForwardProcess.PredictNoiseFromStart(s, xt, tt, x0)),
        };
        foreach (var loss in Enum.GetValues<LossType>())
        {
            var perfect = DenoisingLoss.Compute(Perfect, s, x0, t, eps, prediction, loss).item<float>();
            Assert.True(perfect < 1e-5, $"{loss}: {perfect}");
            var zero = DenoisingLoss.Compute((xt, tt) => zeros_like(xt), s, x0, t, eps, prediction, loss).item<float>();
            Assert.True(zero > 0.05, $"{loss} of a zero prediction: {zero}");
        }
        // L2 is the plain mean of squared errors against the target, computed by hand.
        var target = DenoisingLoss.Target(s, x0, t, eps, prediction);
        var byHand = target.pow(2).mean().item<float>();
        Assert.Equal(byHand, DenoisingLoss.Compute((xt, tt) => zeros_like(xt), s, x0, t, eps, prediction, LossType.L2).item<float>(), 5);
    }
}
