namespace Diffusion.Evaluation;

/// <summary>
/// How N samples of x_t, all made from one clean image x_0, compare with q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I).
/// </summary>
/// <param name="Left">How much of x_0 is left: the per-pixel sample means projected onto x_0, Σ_p x_0,p m_p / Σ_p x_0,p². Theory √ᾱ_t.</param>
/// <param name="Variance">The per-pixel sample variances, averaged over the pixels. Theory 1 − ᾱ_t.</param>
/// <param name="ZLeft">(Left − √ᾱ_t) in standard errors, √((1 − ᾱ_t)/(N Σ_p x_0,p²)).</param>
/// <param name="ZVariance">(Variance − (1 − ᾱ_t)) in standard errors, (1 − ᾱ_t)·√(2/(N − 1))/√P for P pixels.</param>
/// <param name="WorstPixel">The largest |m_p − √ᾱ_t x_0,p| over the pixels, in standard errors √((1 − ᾱ_t)/N).</param>
public sealed record ForwardMoments(double Left, double Variance, double ZLeft, double ZVariance, double WorstPixel);

/// <summary>The Monte-Carlo statistics of notebook 02 §2: sample moments of x_t against the closed form, with their standard errors.</summary>
public static class ForwardMomentCheck
{
    /// <summary>
    /// <paramref name="samples"/> [N, C, H, W]: N draws of x_t from the one image <paramref name="x0"/> [1, C, H, W];
    /// <paramref name="alphaBar"/> = ᾱ_t of their time.
    /// </summary>
    public static ForwardMoments Measure(Tensor samples, Tensor x0, double alphaBar)
    {
        if (samples.dim() != 4 || x0.dim() != 4 || x0.shape[0] != 1 || !samples.shape.Skip(1).SequenceEqual(x0.shape.Skip(1)))
            throw new ArgumentException($"expected samples [N, C, H, W] of one image [1, C, H, W]; got [{string.Join(", ", samples.shape)}] and [{string.Join(", ", x0.shape)}]");
        if (!(alphaBar > 0 && alphaBar < 1)) throw new ArgumentOutOfRangeException(nameof(alphaBar), alphaBar, "ᾱ_t must lie in (0, 1)");
        using var scope = NewDisposeScope();
        long n = samples.shape[0], pixels = x0.numel();
        if (n < 2) throw new ArgumentException("at least two samples are needed for a variance");
        var image = x0[0].to(ScalarType.Float64);
        var values = samples.to(ScalarType.Float64);
        double sumSq = image.pow(2).sum().item<double>();
        var meanImage = values.mean(new long[] { 0 });
        double left = (meanImage * image).sum().item<double>() / sumSq;
        double variance = values.var(new long[] { 0 }).mean().item<double>();
        double seLeft = Math.Sqrt((1 - alphaBar) / (n * sumSq));
        double seVariance = (1 - alphaBar) * Math.Sqrt(2.0 / (n - 1)) / Math.Sqrt(pixels);
        double worst = ((meanImage - Math.Sqrt(alphaBar) * image).abs().max() / Math.Sqrt((1 - alphaBar) / n)).item<double>();
        return new ForwardMoments(left, variance, (left - Math.Sqrt(alphaBar)) / seLeft, (variance - (1 - alphaBar)) / seVariance, worst);
    }
}
