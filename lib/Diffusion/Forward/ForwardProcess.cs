namespace Diffusion.Forward;

/// <summary>
/// The forward (noising) process of DDPM and the identities that link x_0, x_t, ε and v.
/// Every method takes t as a LongTensor [B] of indices 0..T−1 and broadcasts the schedule terms over x.
/// </summary>
public static class ForwardProcess
{
    /// <summary>One step of q(x_t | x_{t−1}) = N(√(1−β_t) x_{t−1}, β_t I), sampled with the given noise.</summary>
    public static Tensor QStep(NoiseSchedule s, Tensor xPrev, Tensor t, Tensor noise)
    {
        using var scope = NewDisposeScope();
        var beta = s.Extract(s.Betas, t, xPrev.shape);
        // x_t = √(1 − β_t) x_{t−1} + √β_t ε
        return ((1 - beta).sqrt() * xPrev + beta.sqrt() * noise).MoveToOuterDisposeScope();
    }

    /// <summary>q(x_t | x_0) in closed form: x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε  (DDPM eq. 4).</summary>
    public static Tensor QSample(NoiseSchedule s, Tensor x0, Tensor t, Tensor noise)
    {
        using var scope = NewDisposeScope();
        var sqrtAlphaBar = s.Extract(s.SqrtAlphasCumprod, t, x0.shape);
        var sqrtOneMinusAlphaBar = s.Extract(s.SqrtOneMinusAlphasCumprod, t, x0.shape);
        return (sqrtAlphaBar * x0 + sqrtOneMinusAlphaBar * noise).MoveToOuterDisposeScope();
    }

    /// <summary>Mean √ᾱ_t x_0 and variance 1 − ᾱ_t of q(x_t | x_0).</summary>
    public static (Tensor Mean, Tensor Variance) QMeanVariance(NoiseSchedule s, Tensor x0, Tensor t)
    {
        using var scope = NewDisposeScope();
        var mean = s.Extract(s.SqrtAlphasCumprod, t, x0.shape) * x0;
        var variance = (1 - s.Extract(s.AlphasCumprod, t, x0.shape)).expand_as(x0);
        return (mean.MoveToOuterDisposeScope(), variance.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The posterior q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I) with
    /// μ̃_t = β_t √ᾱ_{t−1}/(1−ᾱ_t) x_0 + (1−ᾱ_{t−1}) √α_t/(1−ᾱ_t) x_t   (DDPM eq. 6–7).
    /// </summary>
    public static (Tensor Mean, Tensor Variance, Tensor LogVarianceClipped) QPosterior(NoiseSchedule s, Tensor x0, Tensor xt, Tensor t)
    {
        using var scope = NewDisposeScope();
        var mean = s.Extract(s.PosteriorMeanCoef1, t, xt.shape) * x0
                 + s.Extract(s.PosteriorMeanCoef2, t, xt.shape) * xt;
        var variance = s.Extract(s.PosteriorVariance, t, xt.shape).expand_as(xt);
        var logVariance = s.Extract(s.PosteriorLogVarianceClipped, t, xt.shape).expand_as(xt);
        return (mean.MoveToOuterDisposeScope(), variance.MoveToOuterDisposeScope(), logVariance.MoveToOuterDisposeScope());
    }

    /// <summary>x_0 = (x_t − √(1−ᾱ_t) ε)/√ᾱ_t = √(1/ᾱ_t) x_t − √(1/ᾱ_t − 1) ε  (eq. 4 solved for x_0).</summary>
    public static Tensor PredictStartFromNoise(NoiseSchedule s, Tensor xt, Tensor t, Tensor noise) =>
        Coefficients.Scoped(s, t, xt.shape, c => c.StartFromNoise(xt, noise));

    /// <summary>ε = (√(1/ᾱ_t) x_t − x_0)/√(1/ᾱ_t − 1)  (eq. 4 solved for ε).</summary>
    public static Tensor PredictNoiseFromStart(NoiseSchedule s, Tensor xt, Tensor t, Tensor x0) =>
        Coefficients.Scoped(s, t, xt.shape, c => c.NoiseFromStart(xt, x0));

    /// <summary>The velocity v = √ᾱ_t ε − √(1−ᾱ_t) x_0 (Salimans &amp; Ho 2022).</summary>
    public static Tensor Velocity(NoiseSchedule s, Tensor x0, Tensor t, Tensor noise) =>
        Coefficients.Scoped(s, t, x0.shape, c => c.SqrtAlphaBar * noise - c.SqrtOneMinusAlphaBar * x0);

    /// <summary>x_0 = √ᾱ_t x_t − √(1−ᾱ_t) v.</summary>
    public static Tensor PredictStartFromVelocity(NoiseSchedule s, Tensor xt, Tensor t, Tensor v) =>
        Coefficients.Scoped(s, t, xt.shape, c => c.StartFromVelocity(xt, v));

    /// <summary>
    /// The one place a network output becomes both estimates (x̂_0, ε̂), whatever the network was trained to predict
    /// (ε, x_0 or v), and the one place x̂_0 is clipped: with <paramref name="clipStart"/>, x̂_0 is clamped to
    /// [−<paramref name="range"/>, <paramref name="range"/>] (the data range: 1 for pixels in [−1, 1]) and ε̂ recomputed
    /// from it. t is a LongTensor [B] of time steps of <paramref name="s"/>.
    /// </summary>
    public static (Tensor Start, Tensor Noise) StartAndNoise(NoiseSchedule s, Tensor xt, Tensor t, Tensor output,
        Prediction prediction, bool clipStart, double range = 1.0)
    {
        using var scope = NewDisposeScope();
        var (start, noise) = StartAndNoise(xt, output, prediction, Coefficients.At(s, t, xt.shape), clipStart, range);
        return (start.MoveToOuterDisposeScope(), noise.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// <see cref="StartAndNoise(NoiseSchedule, Tensor, Tensor, Tensor, Prediction, bool, double)"/> at one ᾱ for the whole
    /// batch (a sampler's step): the same formulas, with the terms computed from <paramref name="alphaBar"/> as
    /// <see cref="NoiseSchedule"/> computes them.
    /// </summary>
    public static (Tensor Start, Tensor Noise) StartAndNoise(Tensor xt, Tensor output, double alphaBar, Prediction prediction,
        bool clipStart, double range = 1.0)
    {
        using var scope = NewDisposeScope();
        var (start, noise) = StartAndNoise(xt, output, prediction, Coefficients.At(alphaBar, xt), clipStart, range);
        return (start.MoveToOuterDisposeScope(), noise.MoveToOuterDisposeScope());
    }

    /// <summary>√ᾱ_t, √(1−ᾱ_t), 1/√ᾱ_t and √(1/ᾱ_t − 1), as float32 tensors that broadcast over x.</summary>
    readonly record struct Coefficients(Tensor SqrtAlphaBar, Tensor SqrtOneMinusAlphaBar, Tensor SqrtRecipAlphaBar, Tensor SqrtRecipm1AlphaBar)
    {
        /// <summary>Per image, from the schedule's float32 terms at t ([B, 1, 1, …]).</summary>
        public static Coefficients At(NoiseSchedule s, Tensor t, long[] shape) => new(
            s.Extract(s.SqrtAlphasCumprod, t, shape), s.Extract(s.SqrtOneMinusAlphasCumprod, t, shape),
            s.Extract(s.SqrtRecipAlphasCumprod, t, shape), s.Extract(s.SqrtRecipm1AlphasCumprod, t, shape));

        /// <summary>
        /// One ᾱ for the batch: 0-dimensional tensors holding the values <see cref="NoiseSchedule"/> would hold, float32
        /// (as its tensors) unless x is float64.
        /// </summary>
        public static Coefficients At(double alphaBar, Tensor x) => new(
            Scalar(Math.Sqrt(alphaBar), x), Scalar(Math.Sqrt(1 - alphaBar), x),
            Scalar(1 / Math.Sqrt(alphaBar), x), Scalar(Math.Sqrt(1 / alphaBar - 1), x));

        /// <summary>f of the coefficients at t, computed in its own dispose scope (the result is the caller's).</summary>
        public static Tensor Scoped(NoiseSchedule s, Tensor t, long[] shape, Func<Coefficients, Tensor> f)
        {
            using var scope = NewDisposeScope();
            return f(At(s, t, shape)).MoveToOuterDisposeScope();
        }

        // x_0 = √(1/ᾱ_t) x_t − √(1/ᾱ_t − 1) ε                                                    (eq. 4 solved for x_0)
        public Tensor StartFromNoise(Tensor xt, Tensor eps) => SqrtRecipAlphaBar * xt - SqrtRecipm1AlphaBar * eps;
        // ε = (√(1/ᾱ_t) x_t − x_0)/√(1/ᾱ_t − 1)                                                  (eq. 4 solved for ε)
        public Tensor NoiseFromStart(Tensor xt, Tensor x0) => (SqrtRecipAlphaBar * xt - x0) / SqrtRecipm1AlphaBar;
        // x_0 = √ᾱ_t x_t − √(1−ᾱ_t) v                                                         (Salimans & Ho 2022)
        public Tensor StartFromVelocity(Tensor xt, Tensor v) => SqrtAlphaBar * xt - SqrtOneMinusAlphaBar * v;

        static Tensor Scalar(double value, Tensor x) => torch.tensor(value, dtype: ScalarType.Float64)
            .to(x.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32).to(x.device);
    }

    static (Tensor Start, Tensor Noise) StartAndNoise(Tensor xt, Tensor output, Prediction prediction, Coefficients c,
        bool clipStart, double range)
    {
        using var scope = NewDisposeScope();
        Tensor x0, eps;
        switch (prediction)
        {
            // alias(): a new handle owned by this scope. Returning `output` itself would move the caller's tensor one
            // scope outwards (MoveToOuterDisposeScope acts on the scope that owns it), one leaked tensor per step.
            case Prediction.Epsilon:
                eps = output.alias();
                x0 = c.StartFromNoise(xt, eps);
                break;
            case Prediction.Start:
                x0 = output.alias();
                eps = c.NoiseFromStart(xt, x0);
                break;
            case Prediction.Velocity:
                x0 = c.StartFromVelocity(xt, output);
                eps = c.NoiseFromStart(xt, x0);
                break;
            default: throw new ArgumentOutOfRangeException(nameof(prediction), prediction, null);
        }
        if (clipStart)
        {
            x0 = x0.clamp(-range, range);
            eps = c.NoiseFromStart(xt, x0);
        }
        return (x0.MoveToOuterDisposeScope(), eps.MoveToOuterDisposeScope());
    }
}
