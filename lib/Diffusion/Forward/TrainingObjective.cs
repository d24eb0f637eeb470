namespace Diffusion.Forward;

/// <summary>
/// What a diffusion model is trained to do, as a value the trainers consult instead of assuming it: how a training
/// example's time and noise are drawn, what the network's target is, and the loss between target and prediction. DDPM's
/// Algorithm 1 (ε, x₀ or v on a discrete schedule) is <see cref="DdpmObjective"/>; rectified flow (the velocity
/// ε − x₀ on t ∈ [0, 1]) is <see cref="RectifiedFlowObjective"/>. A trainer prepares the batch (data, flips,
/// labels) and the network call; the objective does the rest.
/// </summary>
public abstract class TrainingObjective
{
    /// <summary>
    /// The loss of <paramref name="model"/>, called as model(x_t, t), on the clean batch <paramref name="x0"/>; every
    /// random draw comes from <paramref name="generator"/>, in an order the objective fixes (a seed repeats the loss).
    /// </summary>
    public abstract Tensor Loss(Func<Tensor, Tensor, Tensor> model, Tensor x0, Generator? generator);
}

/// <summary>
/// DDPM's objective (Ho et al. 2020, Algorithm 1): t ~ Uniform{0..T−1} and ε ~ N(0, I) (<see cref="DenoisingLoss.Draw"/>),
/// x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε, and the distance of the network's output to the target of <see cref="Prediction"/>
/// (<see cref="DenoisingLoss.Compute"/>, min-SNR-weighted when γ &gt; 0) — or, for a learned variance, Improved DDPM's
/// L_hybrid = L_simple + κ L_vlb (<see cref="HybridLoss"/>). The schedule is borrowed, not owned.
/// </summary>
public sealed class DdpmObjective(NoiseSchedule schedule, Prediction prediction = Prediction.Epsilon, LossType loss = LossType.L2,
    double minSnrGamma = 0, VarianceType variance = VarianceType.Fixed, double vlbWeight = HybridLoss.DefaultLambda) : TrainingObjective
{
    public NoiseSchedule Schedule { get; } = schedule ?? throw new ArgumentNullException(nameof(schedule));
    public Prediction Prediction { get; } = prediction;
    public LossType Distance { get; } = loss;
    /// <summary>γ of min-SNR-γ (0 = off).</summary>
    public double MinSnrGamma { get; } = minSnrGamma;
    public VarianceType Variance { get; } = variance;
    /// <summary>κ of L_hybrid (learned variance only).</summary>
    public double VlbWeight { get; } = vlbWeight;

    /// <summary>Algorithm 1's inside with its draws: t first, then ε, both from <paramref name="generator"/>.</summary>
    public override Tensor Loss(Func<Tensor, Tensor, Tensor> model, Tensor x0, Generator? generator)
    {
        using var scope = NewDisposeScope();
        var (t, noise) = DenoisingLoss.Draw(Schedule, x0.shape, generator, x0.device);
        return Loss(model, x0, t, noise).MoveToOuterDisposeScope();
    }

    /// <summary>The loss for given t and ε (L_simple, or L_hybrid's total for a learned variance).</summary>
    public Tensor Loss(Func<Tensor, Tensor, Tensor> model, Tensor x0, Tensor t, Tensor noise) => Variance == VarianceType.Learned
        ? HybridLoss.Compute(model, Schedule, x0, t, noise, Prediction, Distance, VlbWeight, MinSnrGamma).Total
        : DenoisingLoss.Compute(model, Schedule, x0, t, noise, Prediction, Distance, MinSnrGamma);
}
