using System.Text.Json.Serialization;
using Diffusion.Forward;

namespace Diffusion.Sampling;

/// <summary>The variance σ²_t of each reverse step (DDPM §3.2: both give similar results).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ReverseVariance>))]
public enum ReverseVariance
{
    /// <summary>σ²_t = β_t ("fixed large"): right when x_0 ~ N(0, I).</summary>
    Beta,
    /// <summary>σ²_t = β̃_t = β_t(1−ᾱ_{t−1})/(1−ᾱ_t) ("fixed small"): right when x_0 is a single point.</summary>
    BetaTilde,
    /// <summary>
    /// σ²_t = exp(v log β_t + (1−v) log β̃_t), v from the network's second half of output channels (Improved DDPM eq. 15).
    /// Needs a model trained with <see cref="VarianceType.Learned"/>.
    /// </summary>
    Learned,
}

/// <summary>
/// DDPM ancestral sampling, Algorithm 2 of Ho et al. (2020):
/// x_T ~ N(0, I); for t = T..1: z ~ N(0, I) if t &gt; 1 else 0;
/// x_{t−1} = 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε_θ(x_t, t)) + σ_t z.
/// With <see cref="ClipDenoised"/>, x̂_0 is clamped to [−1, 1] and the mean is the posterior mean μ̃_t(x_t, x̂_0),
/// which equals the formula above when nothing is clamped.
/// </summary>
public sealed class DdpmSampler : ISampler
{
    /// <summary>The sampler kind "ddpm" (all T steps) / "ddpm:N" (respaced to N, Improved DDPM §4) of <see cref="SamplerSpec"/>.</summary>
    public static readonly SamplerKind Kind = new("ddpm", "ddpm (all T steps) or ddpm:N (respaced to N steps)", DefaultSteps: null,
        UsesVariance: true, UsesEta: false,
        Create: (spec, schedule, prediction) => spec.Steps is { } k && k < schedule.Timesteps
            ? Respaced(schedule, k, prediction, spec.Variance, spec.Clip)
            : new DdpmSampler(schedule, prediction, spec.Variance, spec.Clip));

    readonly bool ownsSchedule;

    /// <summary>
    /// DDPM on <paramref name="schedule"/> (not owned). <paramref name="modelTimesteps"/>: the network's time step for each
    /// step of a respaced schedule (null: the same index).
    /// </summary>
    public DdpmSampler(NoiseSchedule schedule, Prediction prediction = Prediction.Epsilon,
        ReverseVariance variance = ReverseVariance.BetaTilde, bool clipDenoised = true, int[]? modelTimesteps = null)
        : this(schedule, prediction, variance, clipDenoised, modelTimesteps, ownsSchedule: false) { }

    DdpmSampler(NoiseSchedule schedule, Prediction prediction, ReverseVariance variance, bool clipDenoised, int[]? modelTimesteps,
        bool ownsSchedule)
    {
        Schedule = schedule;
        Prediction = prediction;
        Variance = variance;
        ClipDenoised = clipDenoised;
        ModelTimesteps = CheckModelTimesteps(modelTimesteps, schedule);
        Plan = new TimestepPlan(Enumerable.Range(0, schedule.Timesteps).Reverse().Select(ModelTimestep).ToArray());
        this.ownsSchedule = ownsSchedule;
    }

    /// <summary>The schedule the steps run on (respaced: K steps with recomputed betas).</summary>
    public NoiseSchedule Schedule { get; }
    public Prediction Prediction { get; }
    public ReverseVariance Variance { get; }
    public bool ClipDenoised { get; }
    /// <summary>
    /// The time step the network is called with at each step of <see cref="Schedule"/> (null: the same index). A
    /// respaced schedule (<see cref="Respaced"/>) has fewer steps than the network was trained on.
    /// </summary>
    public int[]? ModelTimesteps { get; }
    public TimestepPlan Plan { get; }
    public string Name => $"ddpm-{Schedule.Timesteps}";
    public int Steps => Schedule.Timesteps;

    /// <summary>
    /// DDPM with <paramref name="steps"/> of the <paramref name="original"/> schedule's T steps, evenly spaced, with the
    /// betas recomputed (Improved DDPM §4). The sampler owns the new schedule and disposes it with itself.
    /// Stride 1 (steps = T) is the ordinary sampler.
    /// </summary>
    public static DdpmSampler Respaced(NoiseSchedule original, int steps, Prediction prediction = Prediction.Epsilon,
        ReverseVariance variance = ReverseVariance.BetaTilde, bool clipDenoised = true)
    {
        var (schedule, kept) = Respacing.Respace(original, steps);
        return new DdpmSampler(schedule, prediction, variance, clipDenoised, kept, ownsSchedule: true);
    }

    static int[]? CheckModelTimesteps(int[]? map, NoiseSchedule s)
    {
        if (map is not null && map.Length != s.Timesteps)
            throw new ArgumentException($"one model time step per schedule step: {map.Length} given for T = {s.Timesteps}", nameof(map));
        return map;
    }

    /// <summary>The network's time step for schedule step <paramref name="t"/>.</summary>
    public int ModelTimestep(int t) => ModelTimesteps is null ? t : ModelTimesteps[t];

    /// <summary>
    /// p_θ(x_{t−1} | x_t) = N(μ_θ, e^{log σ²}) from a network output: μ_θ = μ̃_t(x_t, x̂_0) (DDPM eq. 7, x̂_0 clipped if asked)
    /// and log σ² = log β_t, log β̃_t (clipped at t = 0) or the learned eq. 15. A learned-variance output has 2C channels.
    /// <paramref name="tBatch"/> indexes <see cref="Schedule"/>.
    /// </summary>
    public (Tensor Mean, Tensor LogVariance) Distribution(Tensor output, Tensor xt, Tensor tBatch)
    {
        using var scope = NewDisposeScope();
        long channels = xt.shape[1];
        Tensor predicted = output, v = null!;
        if (output.shape[1] == 2 * channels) (predicted, v) = HybridLoss.Split(output, channels);
        else if (Variance == ReverseVariance.Learned)
            throw new ArgumentException(
                $"σ² = learned needs a network trained with a learned variance (2·{channels} output channels, [ε, v]); this one outputs {output.shape[1]}. Use β or β̃.");
        var (x0, _) = ForwardProcess.StartAndNoise(Schedule, xt, tBatch, predicted, Prediction, ClipDenoised);
        // μ̃_t(x_t, x̂_0) = β_t √ᾱ_{t−1}/(1−ᾱ_t) x̂_0 + (1−ᾱ_{t−1}) √α_t/(1−ᾱ_t) x_t      (DDPM eq. 7)
        var (mean, _, _) = ForwardProcess.QPosterior(Schedule, x0, xt, tBatch);
        var logVariance = Variance switch
        {
            ReverseVariance.Beta => Schedule.Extract(Schedule.Betas, tBatch, xt.shape).log().expand_as(xt),
            ReverseVariance.BetaTilde => Schedule.Extract(Schedule.PosteriorLogVarianceClipped, tBatch, xt.shape).expand_as(xt),
            ReverseVariance.Learned => VariationalBound.LearnedLogVariance(Schedule, tBatch, v),
            _ => throw new ArgumentOutOfRangeException(nameof(Variance), Variance, null),
        };
        return (mean.MoveToOuterDisposeScope(), logVariance.MoveToOuterDisposeScope());
    }

    public void Reset() { }

    /// <summary>One reverse step x_t → x_{t−1} for the whole batch at planned step <paramref name="i"/>.</summary>
    public Tensor Step(Tensor modelOutput, Tensor xt, int i, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        int t = Steps - 1 - i;                                   // the step's index into Schedule
        var tBatch = full([xt.shape[0]], t, dtype: ScalarType.Int64, device: xt.device);
        var (mean, logVariance) = Distribution(modelOutput, xt, tBatch);
        if (t == 0) return mean.MoveToOuterDisposeScope();       // Algorithm 2: z = 0 at the last step
        var z = Platform.Compute.Randn(xt.shape, generator, xt.device);
        if (Variance == ReverseVariance.Learned)
            return (mean + (0.5 * logVariance).exp() * z).MoveToOuterDisposeScope();   // x_{t−1} = μ_θ + Σ_θ^{1/2} z
        double sigma2 = Variance == ReverseVariance.Beta ? Schedule.Betas[t] : Schedule.PosteriorVariance[t];
        // x_{t−1} = μ + σ_t z
        return (mean + Math.Sqrt(sigma2) * z).MoveToOuterDisposeScope();
    }

    /// <summary>Disposes the schedule if this sampler made it (<see cref="Respaced"/>).</summary>
    public void Dispose()
    {
        if (ownsSchedule) Schedule.Dispose();
    }
}
