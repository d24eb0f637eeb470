using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Forward;

/// <summary>What the network is trained to predict.</summary>
public enum Prediction
{
    /// <summary>ε, the noise that was added (DDPM's choice; L_simple).</summary>
    Epsilon,
    /// <summary>x_0, the clean image.</summary>
    Start,
    /// <summary>v = √ᾱ_t ε − √(1−ᾱ_t) x_0 (progressive distillation; stable at both ends of the schedule).</summary>
    Velocity,
}

/// <summary>The distance between prediction and target.</summary>
public enum LossType
{
    /// <summary>Mean absolute error.</summary>
    L1,
    /// <summary>Mean squared error: DDPM's L_simple with ε-prediction.</summary>
    L2,
    /// <summary>Huber (smooth L1, δ = 1): L2 near zero, L1 for large errors; the annotated notebook's choice.</summary>
    Huber,
}

/// <summary>The training objective: the inside of DDPM's Algorithm 1.</summary>
public static class DenoisingLoss
{
    /// <summary>The regression target for a prediction type: ε, x_0 or v.</summary>
    public static Tensor Target(NoiseSchedule s, Tensor x0, Tensor t, Tensor noise, Prediction prediction) => prediction switch
    {
        Prediction.Epsilon => noise.alias(),
        Prediction.Start => x0.alias(),
        Prediction.Velocity => ForwardProcess.Velocity(s, x0, t, noise),
        _ => throw new ArgumentOutOfRangeException(nameof(prediction), prediction, null),
    };

    /// <summary>Mean distance between a prediction and its target.</summary>
    public static Tensor Distance(Tensor predicted, Tensor target, LossType loss) => Distance(predicted, target, loss, nn.Reduction.Mean);

    /// <summary>The distance per image ([B]): the mean over every dimension but the first.</summary>
    public static Tensor DistancePerImage(Tensor predicted, Tensor target, LossType loss)
    {
        using var elementwise = Distance(predicted, target, loss, nn.Reduction.None);
        return elementwise.flatten(1).mean([1]);
    }

    static Tensor Distance(Tensor predicted, Tensor target, LossType loss, nn.Reduction reduction) => loss switch
    {
        LossType.L1 => F.l1_loss(predicted, target, reduction),
        LossType.L2 => F.mse_loss(predicted, target, reduction),
        LossType.Huber => F.smooth_l1_loss(predicted, target, reduction),
        _ => throw new ArgumentOutOfRangeException(nameof(loss), loss, null),
    };

    /// <summary>
    /// Min-SNR-γ loss weights per time step (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting
    /// Strategy", eq. 7 and its §3.4 forms): with SNR(t) = ᾱ_t/(1−ᾱ_t), an x_0-loss weighted by min(SNR, γ), written for
    /// the target the network predicts — ε: min(SNR, γ)/SNR, v: min(SNR, γ)/(SNR + 1), x_0: min(SNR, γ). Easy steps
    /// (small t, huge SNR) stop dominating the gradient; at SNR ≤ γ the ε weight is exactly 1.
    /// </summary>
    public static double[] MinSnrWeights(NoiseSchedule s, Prediction prediction, double gamma)
    {
        if (!(gamma > 0) || !double.IsFinite(gamma))
            throw new ArgumentOutOfRangeException(nameof(gamma), gamma, "min-SNR γ must be a positive number (the paper uses 5)");
        return s.SignalToNoise.Select(snr => prediction switch
        {
            Prediction.Epsilon => snr <= gamma ? 1.0 : gamma / snr,
            Prediction.Velocity => Math.Min(snr, gamma) / (snr + 1),
            Prediction.Start => Math.Min(snr, gamma),
            _ => throw new ArgumentOutOfRangeException(nameof(prediction), prediction, null),
        }).ToArray();
    }

    /// <summary>
    /// Algorithm 1's inside for given t and ε: x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε, then ‖target − model(x_t, t)‖ —
    /// with <paramref name="minSnrGamma"/> &gt; 0 each image's distance weighted by <see cref="MinSnrWeights"/> at its t.
    /// </summary>
    /// <param name="model">The network, called as model(x_t, t).</param>
    public static Tensor Compute(Func<Tensor, Tensor, Tensor> model, NoiseSchedule s, Tensor x0, Tensor t, Tensor noise,
        Prediction prediction = Prediction.Epsilon, LossType loss = LossType.L2, double minSnrGamma = 0)
    {
        using var scope = NewDisposeScope();
        var xt = ForwardProcess.QSample(s, x0, t, noise);
        var output = model(xt, t);
        var target = Target(s, x0, t, noise, prediction);
        return Weighted(output, target, s, t, prediction, loss, minSnrGamma).MoveToOuterDisposeScope();
    }

    /// <summary>The mean distance, or with γ &gt; 0 the mean of the min-SNR-weighted per-image distances.</summary>
    public static Tensor Weighted(Tensor predicted, Tensor target, NoiseSchedule s, Tensor t, Prediction prediction,
        LossType loss, double minSnrGamma)
    {
        if (minSnrGamma == 0) return Distance(predicted, target, loss);
        using var weights = tensor(MinSnrWeights(s, prediction, minSnrGamma).Select(w => (float)w).ToArray(), device: predicted.device);
        return (DistancePerImage(predicted, target, loss) * weights.gather(0, t.to(ScalarType.Int64))).mean();
    }

    /// <summary>
    /// Algorithm 1's random draws for a batch shaped <paramref name="shape"/>: first t ~ Uniform{0..T−1} (one per image),
    /// then ε ~ N(0, I), both from <paramref name="generator"/> in that order — every trainer draws them here, so a seed
    /// gives the same t and ε wherever Algorithm 1 runs. Drawn on the CPU (a seed gives the same numbers on every device),
    /// then moved to <paramref name="device"/>.
    /// </summary>
    public static (Tensor T, Tensor Noise) Draw(NoiseSchedule s, long[] shape, Generator? generator, Device device)
    {
        var t = randint(0, s.Timesteps, [shape[0]], dtype: ScalarType.Int64, generator: generator).to(device);
        var noise = Platform.Compute.Randn(shape, generator, device);
        return (t, noise);
    }

    /// <summary>
    /// Algorithm 1's inside with its random draws (<see cref="Draw"/>): t ~ Uniform{0..T−1}, ε ~ N(0, I), both from
    /// <paramref name="generator"/>.
    /// </summary>
    public static Tensor Sample(Func<Tensor, Tensor, Tensor> model, NoiseSchedule s, Tensor x0, Generator? generator = null,
        Prediction prediction = Prediction.Epsilon, LossType loss = LossType.L2)
    {
        return new DdpmObjective(s, prediction, loss).Loss(model, x0, generator);
    }
}
