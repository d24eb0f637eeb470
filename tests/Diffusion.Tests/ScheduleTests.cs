
namespace Diffusion.Tests;

public class ScheduleTests
{
    public static TheoryData<ScheduleKind, int> Kinds()
    {
        var d = new TheoryData<ScheduleKind, int>();
        foreach (var k in Enum.GetValues<ScheduleKind>())
            foreach (var t in new[] { 10, 300, 1000 })
                d.Add(k, t);
        return d;
    }

    [Fact]
    public void LinearQuadraticSigmoidMatchTheirDefinitions()
    {
        const int T = 200;
        var lin = BetaSchedules.Linear(T);
        var quad = BetaSchedules.Quadratic(T);
        var sig = BetaSchedules.Sigmoid(T);
        for (int i = 0; i < T; i++)
        {
            double u = i / (double)(T - 1);                      // position in [0, 1]
            Near(1e-4 + u * (0.02 - 1e-4), lin[i], 1e-15);
            double r = Math.Sqrt(1e-4) + u * (Math.Sqrt(0.02) - Math.Sqrt(1e-4));
            Near(r * r, quad[i], 1e-15);
            double z = -6 + 12 * u;
            Near(1e-4 + (0.02 - 1e-4) / (1 + Math.Exp(-z)), sig[i], 1e-15);
        }
        Near(1e-4, lin[0], 1e-15);
        Near(0.02, lin[^1], 1e-15);
        Near(0.02, quad[^1], 1e-15);
    }

    [Theory]
    [InlineData(50)]
    [InlineData(1000)]
    public void CosineScheduleReproducesItsAlphaBarWhereNotClipped(int T)
    {
        var s = new NoiseSchedule(ScheduleKind.Cosine, T);
        static double F(double t, int T) => Math.Pow(Math.Cos((t / T + 0.008) / 1.008 * Math.PI / 2), 2);
        for (int t = 0; t < T; t++)
        {
            if (s.Betas[t] >= BetaSchedules.CosineMaxBeta) { Assert.Equal(T - 1, t); continue; }   // only the last may clip
            // ᾱ_t (0-based) = f(t+1)/f(0), the schedule's defining formula (Nichol & Dhariwal eq. 17)
            Near(F(t + 1, T) / F(0, T), s.AlphasCumprod[t], 1e-12);
        }
        Near(BetaSchedules.CosineMaxBeta, s.Betas[^1], 1e-12);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void TermsMatchAnIndependentFloat64Computation(ScheduleKind kind, int T)
    {
        using var s = new NoiseSchedule(kind, T);
        var betas = BetaSchedules.Create(kind, T);
        double logProd = 0;
        for (int t = 0; t < T; t++)
        {
            double beta = betas[t], alpha = 1 - beta;
            double abPrev = Math.Exp(logProd);
            logProd += Math.Log(alpha);                                  // ᾱ via a sum of logs: a different path than the product
            double ab = Math.Exp(logProd);
            Near(alpha, s.Alphas[t], 1e-14);
            Near(ab, s.AlphasCumprod[t], 1e-12);
            Near(abPrev, s.AlphasCumprodPrev[t], 1e-12);
            Near(Math.Sqrt(ab), s.SqrtAlphasCumprod[t], 1e-12);
            Near(Math.Sqrt(1 - ab), s.SqrtOneMinusAlphasCumprod[t], 1e-12);
            Near(1 / Math.Sqrt(alpha), s.SqrtRecipAlphas[t], 1e-12);
            // Identities: √(1/ᾱ)² − √(1/ᾱ − 1)² = 1 and ᾱ_t = α_t ᾱ_{t−1}
            // (cancellation: the error of a difference of two numbers near 1/ᾱ scales with 1/ᾱ)
            Near(1.0, s.SqrtRecipAlphasCumprod[t] * s.SqrtRecipAlphasCumprod[t] - s.SqrtRecipm1AlphasCumprod[t] * s.SqrtRecipm1AlphasCumprod[t], 1e-14 / ab);
            Near(s.Alphas[t] * s.AlphasCumprodPrev[t], s.AlphasCumprod[t], 1e-14);
            // β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), and β̃_t ≤ β_t
            double posteriorVariance = beta * (1 - abPrev) / (1 - ab);
            Near(posteriorVariance, s.PosteriorVariance[t], 1e-12);
            Assert.True(s.PosteriorVariance[t] <= beta + 1e-15);
            // The two posterior-mean weights sum with the right scale: coef1·√ᾱ_t⁻¹ ... check by the defining formulas
            Near(beta * Math.Sqrt(abPrev) / (1 - ab), s.PosteriorMeanCoef1[t], 1e-12);
            Near((1 - abPrev) * Math.Sqrt(alpha) / (1 - ab), s.PosteriorMeanCoef2[t], 1e-12);
        }
        Assert.Equal(0.0, s.PosteriorVariance[0]);
        Near(Math.Log(s.PosteriorVariance[Math.Min(1, T - 1)]), s.PosteriorLogVarianceClipped[0], 1e-12);
    }

    [Fact]
    public void Float32TensorsHoldTheFloat64Values()
    {
        using var s = new NoiseSchedule(ScheduleKind.Linear, 1000);
        foreach (var (name, values) in s.Terms())
        {
            var stored = s.Term(name).data<float>().ToArray();
            Assert.Equal(values.Length, stored.Length);
            for (int i = 0; i < values.Length; i++)
                Assert.Equal((float)values[i], stored[i]);
        }
    }

    [Fact]
    public void ExtractGathersPerSampleAndBroadcasts()
    {
        using var s = new NoiseSchedule(ScheduleKind.Linear, 100);
        var t = tensor(new long[] { 0, 42, 99 });
        var e = s.Extract(s.SqrtAlphasCumprod, t, [3, 1, 28, 28]);
        Assert.Equal(new long[] { 3, 1, 1, 1 }, e.shape);
        var v = e.flatten().data<float>().ToArray();
        Assert.Equal((float)s.SqrtAlphasCumprod[0], v[0]);
        Assert.Equal((float)s.SqrtAlphasCumprod[42], v[1]);
        Assert.Equal((float)s.SqrtAlphasCumprod[99], v[2]);
    }

    [Fact]
    public void InvalidSchedulesAreRejectedClearly()
    {
        Assert.Contains("at least 1", Assert.Throws<ArgumentOutOfRangeException>(() => BetaSchedules.Linear(0)).Message);
        Assert.Contains("strictly between 0 and 1", Assert.Throws<ArgumentOutOfRangeException>(() => new NoiseSchedule([0.1, 1.0])).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new NoiseSchedule([0.1, double.NaN]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NoiseSchedule([0.0, 0.1]));
    }

    [Fact]
    public void AnnotatedSettingDoesNotReachNoiseButLongerOrCosineDoes()
    {
        // The annotated notebook uses linear β, T = 200: √ᾱ_T ≈ 0.36, far from pure noise.
        var short200 = new NoiseSchedule(ScheduleKind.Linear, 200);
        Assert.InRange(short200.SqrtAlphasCumprod[^1], 0.30, 0.40);
        Assert.True(new NoiseSchedule(ScheduleKind.Linear, 1000).SqrtAlphasCumprod[^1] < 0.01);
        Assert.True(new NoiseSchedule(ScheduleKind.Cosine, 200).SqrtAlphasCumprod[^1] < 0.01);
    }

    /// <summary>|expected − actual| ≤ tol·max(1, |expected|).</summary>
    static void Near(double expected, double actual, double tol) =>
        Assert.True(Math.Abs(expected - actual) <= tol * Math.Max(1, Math.Abs(expected)), $"expected {expected:R}, got {actual:R} (tolerance {tol})");
}
