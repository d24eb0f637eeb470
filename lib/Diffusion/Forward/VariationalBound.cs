namespace Diffusion.Forward;

/// <summary>
/// The terms of the variational bound (DDPM eq. 5), in bits per dimension:
/// L_vlb = L_0 + L_1 + … + L_{T−1} + L_T with
/// L_T = KL(q(x_T | x_0) ‖ N(0, I)), L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) and
/// L_0 = −log p_θ(x_0 | x_1), the discretised Gaussian decoder of DDPM §3.3.
/// Also the learned variance of Improved DDPM (Nichol &amp; Dhariwal 2021, eq. 15).
/// Code indices t = 0..T−1 are the paper's 1..T, so the decoder term is at t = 0.
/// </summary>
public static class VariationalBound
{
    /// <summary>ln 2: nats → bits.</summary>
    public const double Ln2 = 0.69314718055994531;

    /// <summary>
    /// KL(N(μ₁, e^{ℓ₁}) ‖ N(μ₂, e^{ℓ₂})) per element, in nats, from means and log variances:
    /// ½ (−1 + ℓ₂ − ℓ₁ + e^{ℓ₁−ℓ₂} + (μ₁ − μ₂)² e^{−ℓ₂}).
    /// </summary>
    public static Tensor NormalKl(Tensor mean1, Tensor logVar1, Tensor mean2, Tensor logVar2)
    {
        using var scope = NewDisposeScope();
        var kl = 0.5 * (-1.0 + logVar2 - logVar1 + (logVar1 - logVar2).exp() + (mean1 - mean2).square() * (-logVar2).exp());
        return kl.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Φ(x), the standard normal CDF, by the tanh approximation ½(1 + tanh(√(2/π)(x + 0.044715 x³))) used by the DDPM and
    /// Improved DDPM reference code (absolute error below 3·10⁻⁴), so that bits/dim are comparable with theirs.
    /// </summary>
    public static Tensor ApproxStandardNormalCdf(Tensor x)
    {
        using var scope = NewDisposeScope();
        return (0.5 * (1.0 + (Math.Sqrt(2.0 / Math.PI) * (x + 0.044715 * x.pow(3))).tanh())).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// log p(x) per element for data x on the 256 levels of [−1, 1] (bin width 2/255) under N(mean, e^{2·logScale})
    /// discretised (DDPM §3.3): the Gaussian mass of [x − 1/255, x + 1/255], with the edge bins stretched to −∞ and +∞,
    /// so that the 256 probabilities sum to 1.
    /// </summary>
    public static Tensor DiscretizedGaussianLogLikelihood(Tensor x, Tensor mean, Tensor logScale)
    {
        using var scope = NewDisposeScope();
        var centred = x - mean;
        var invStd = (-logScale).exp();
        var cdfPlus = ApproxStandardNormalCdf(invStd * (centred + 1.0 / 255));
        var cdfMin = ApproxStandardNormalCdf(invStd * (centred - 1.0 / 255));
        var logCdfPlus = cdfPlus.clamp(min: 1e-12).log();                 // first bin: Φ(upper edge)
        var logOneMinusCdfMin = (1.0 - cdfMin).clamp(min: 1e-12).log();   // last bin: 1 − Φ(lower edge)
        var logDelta = (cdfPlus - cdfMin).clamp(min: 1e-12).log();        // inner bins: Φ(upper) − Φ(lower)
        var logProbs = where(x < -0.999, logCdfPlus, where(x > 0.999, logOneMinusCdfMin, logDelta));
        return logProbs.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Improved DDPM eq. 15: Σ_θ = exp(v log β_t + (1 − v) log β̃_t), the network's raw output mapped from [−1, 1] to
    /// v = (output + 1)/2 (the output is not clamped; values outside extrapolate, as in the paper's code).
    /// log β̃_t is the clipped log (β̃_0 = 0 borrows β̃_1). Returns log Σ_θ, shaped like <paramref name="vOutput"/>.
    /// </summary>
    public static Tensor LearnedLogVariance(NoiseSchedule s, Tensor t, Tensor vOutput)
    {
        using var scope = NewDisposeScope();
        var logBeta = s.Extract(s.Betas, t, vOutput.shape).log();
        var logBetaTilde = s.Extract(s.PosteriorLogVarianceClipped, t, vOutput.shape);
        return LearnedLogVariance(logBeta, logBetaTilde, vOutput).MoveToOuterDisposeScope();
    }

    /// <summary>log Σ_θ from log β and log β̃ (broadcast over x) and the network's raw u output in [−1, 1].</summary>
    public static Tensor LearnedLogVariance(Tensor logBeta, Tensor logBetaTilde, Tensor vOutput)
    {
        using var scope = NewDisposeScope();
        var v = (vOutput + 1) / 2;
        // log Σ_θ = v log β_t + (1 − v) log β̃_t                                          (Improved DDPM eq. 15)
        return (v * logBeta + (1 - v) * logBetaTilde).MoveToOuterDisposeScope();
    }

    /// <summary>Mean over every dimension but the batch: [B, ...] → [B].</summary>
    public static Tensor MeanPerImage(Tensor x) => x.flatten(1).mean([1]);

    /// <summary>
    /// One term of the bound per image, in bits/dim: L_{t−1} = KL(q(x_{t−1}|x_t, x_0) ‖ N(mean, e^{logVar})) for t &gt; 0,
    /// and the decoder L_0 = −log p_θ(x_0|x_1) at t = 0 (DDPM eq. 5, §3.3). [B]
    /// </summary>
    public static Tensor TermBitsPerDim(NoiseSchedule s, Tensor x0, Tensor xt, Tensor t, Tensor modelMean, Tensor modelLogVariance)
    {
        using var scope = NewDisposeScope();
        var (trueMean, _, trueLogVar) = ForwardProcess.QPosterior(s, x0, xt, t);
        var kl = MeanPerImage(NormalKl(trueMean, trueLogVar, modelMean, modelLogVariance)) / Ln2;
        var decoderNll = -MeanPerImage(DiscretizedGaussianLogLikelihood(x0, modelMean, 0.5 * modelLogVariance)) / Ln2;
        return where(t == 0, decoderNll, kl).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// L_T = KL(q(x_T | x_0) ‖ N(0, I)) per image, in bits/dim: the price of starting from pure noise; no parameters. [B]
    /// </summary>
    public static Tensor PriorBitsPerDim(NoiseSchedule s, Tensor x0)
    {
        using var scope = NewDisposeScope();
        var t = full([x0.shape[0]], s.Timesteps - 1, dtype: ScalarType.Int64, device: x0.device);
        var (mean, variance) = ForwardProcess.QMeanVariance(s, x0, t);
        var kl = NormalKl(mean, variance.log(), zeros_like(mean), zeros_like(mean));
        return (MeanPerImage(kl) / Ln2).MoveToOuterDisposeScope();
    }
}
