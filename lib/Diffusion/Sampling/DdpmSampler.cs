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
    /// σ²_t = exp(u log β_t + (1−u) log β̃_t), u from the network's second half of output channels (Improved DDPM eq. 15).
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
/// <para>Step i goes from t = Plan.Timesteps[i] to t′ = Plan.Next(i) and reads every coefficient from ᾱ_t and ᾱ_t′.
/// With every step planned, β of the step is the schedule's β_t; with fewer (respaced, Improved DDPM §4) it is
/// β′ = 1 − ᾱ_t/ᾱ_t′, the β that keeps ᾱ at the planned steps unchanged.</para>
/// </summary>
public sealed class DdpmSampler : ISampler
{
    /// <summary>The sampler kind "ddpm" (all T steps) / "ddpm:N" (respaced to N, Improved DDPM §4) of <see cref="SamplerSpec"/>.</summary>
    public static readonly SamplerKind Kind = new("ddpm", "ddpm (all T steps) or ddpm:N (respaced to N steps)", DefaultSteps: null,
        UsesVariance: true, UsesEta: false,
        Create: (spec, schedule, prediction, steps) => Respaced(schedule, steps, prediction, spec.Variance, spec.Clip));

    /// <summary>
    /// One step of the reverse chain: ᾱ at its time step t, ᾱ at the next planned one t′ (1 after the last) and the
    /// step's β. Its terms follow from them as <see cref="NoiseSchedule"/>'s terms follow from β (the same expressions,
    /// so with every step planned they are the schedule's values to the last bit).
    /// </summary>
    readonly record struct ChainStep(double AlphaBar, double AlphaBarPrev, double Beta)
    {
        /// <summary>β̃ = β (1 − ᾱ_t′)/(1 − ᾱ_t)                                                          (DDPM eq. 7)</summary>
        public double PosteriorVariance => Beta * (1 - AlphaBarPrev) / (1 - AlphaBar);
        /// <summary>μ̃ = β √ᾱ_t′/(1 − ᾱ_t) x̂_0 + (1 − ᾱ_t′) √α/(1 − ᾱ_t) x_t, α = 1 − β           (DDPM eq. 7)</summary>
        public double MeanCoefStart => Beta * Math.Sqrt(AlphaBarPrev) / (1 - AlphaBar);
        public double MeanCoefX => (1 - AlphaBarPrev) * Math.Sqrt(1 - Beta) / (1 - AlphaBar);
    }

    readonly ChainStep[] chain;

    /// <summary>
    /// DDPM on every step of <paramref name="schedule"/> (not owned). <paramref name="modelTimesteps"/> (for the
    /// variational bound of a respaced chain, <see cref="Likelihood"/>): <paramref name="schedule"/> is a respaced
    /// schedule (<see cref="Respacing.Respace(NoiseSchedule, int[])"/>) and its step j is the network's time step
    /// modelTimesteps[j]; the plan then holds those time steps.
    /// </summary>
    public DdpmSampler(NoiseSchedule schedule, Prediction prediction = Prediction.Epsilon,
        ReverseVariance variance = ReverseVariance.BetaTilde, bool clipDenoised = true, int[]? modelTimesteps = null)
        : this(schedule, TimestepPlan.All(schedule.Timesteps), prediction, variance, clipDenoised)
    {
        if (modelTimesteps is null) return;
        if (modelTimesteps.Length != schedule.Timesteps)
            throw new ArgumentException($"one model time step per schedule step: {modelTimesteps.Length} given for T = {schedule.Timesteps}", nameof(modelTimesteps));
        // The chain stays every step of the (respaced) schedule; only the network's time steps change.
        ModelTimesteps = (int[])modelTimesteps.Clone();
        Plan = new TimestepPlan(modelTimesteps.Reverse().ToArray());
    }

    /// <summary>DDPM on <paramref name="plan"/>'s time steps of <paramref name="schedule"/> (not owned).</summary>
    public DdpmSampler(NoiseSchedule schedule, TimestepPlan plan, Prediction prediction = Prediction.Epsilon,
        ReverseVariance variance = ReverseVariance.BetaTilde, bool clipDenoised = true)
    {
        ArgumentNullException.ThrowIfNull(schedule);
        ArgumentNullException.ThrowIfNull(plan);
        if (plan.Timesteps[0] >= schedule.Timesteps)
            throw new ArgumentOutOfRangeException(nameof(plan), plan.Timesteps[0], $"the plan starts beyond the schedule's T = {schedule.Timesteps}");
        Schedule = schedule;
        Plan = plan;
        Prediction = prediction;
        Variance = variance;
        ClipDenoised = clipDenoised;
        bool every = plan.Count == schedule.Timesteps;
        chain = new ChainStep[plan.Count];
        for (int i = 0; i < plan.Count; i++)
        {
            int t = plan.Timesteps[i], next = plan.Next(i);
            double alphaBar = schedule.AlphasCumprod[t], alphaBarPrev = next >= 0 ? schedule.AlphasCumprod[next] : 1.0;
            // β′ = 1 − ᾱ_t/ᾱ_t′                                                                  (Improved DDPM §4)
            chain[i] = new ChainStep(alphaBar, alphaBarPrev, every ? schedule.Betas[t] : 1 - alphaBar / alphaBarPrev);
        }
    }

    /// <summary>The schedule whose ᾱ the steps read (not owned).</summary>
    public NoiseSchedule Schedule { get; }
    public Prediction Prediction { get; }
    public ReverseVariance Variance { get; }
    public bool ClipDenoised { get; }
    /// <summary>
    /// Only for a sampler built on a respaced schedule with model time steps: the network's time step for each step of
    /// <see cref="Schedule"/> (null otherwise).
    /// </summary>
    public int[]? ModelTimesteps { get; }
    public TimestepPlan Plan { get; }
    public string Name => $"ddpm-{Steps}";
    public int Steps => Plan.Count;

    /// <summary>
    /// DDPM on <paramref name="steps"/> of the <paramref name="original"/> schedule's T steps, evenly spaced, with
    /// β′ = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}} (Improved DDPM §4). Stride 1 (steps = T) is the ordinary sampler.
    /// </summary>
    public static DdpmSampler Respaced(NoiseSchedule original, int steps, Prediction prediction = Prediction.Epsilon,
        ReverseVariance variance = ReverseVariance.BetaTilde, bool clipDenoised = true) =>
        new(original, TimestepPlan.EvenlySpaced(original.Timesteps, steps), prediction, variance, clipDenoised);

    /// <summary>The network's time step for step <paramref name="t"/> of <see cref="Schedule"/> (see <see cref="ModelTimesteps"/>).</summary>
    public int ModelTimestep(int t) => ModelTimesteps is null ? t : ModelTimesteps[t];

    /// <summary>
    /// p_θ(x_{t−1} | x_t) = N(μ_θ, e^{log σ²}) of step t → t−1 of <see cref="Schedule"/> (every step, as the variational
    /// bound evaluates it): μ_θ = μ̃_t(x_t, x̂_0) (DDPM eq. 7, x̂_0 clipped if asked) and log σ² = log β_t, log β̃_t
    /// (clipped at t = 0) or the learned eq. 15. A learned-variance output has 2C channels. <paramref name="tBatch"/>
    /// indexes <see cref="Schedule"/>.
    /// </summary>
    public (Tensor Mean, Tensor LogVariance) Distribution(Tensor output, Tensor xt, Tensor tBatch)
    {
        using var scope = NewDisposeScope();
        var (predicted, v) = Split(output, xt.shape[1]);
        var (x0, _) = ForwardProcess.StartAndNoise(Schedule, xt, tBatch, predicted, Prediction, ClipDenoised);
        // μ̃_t(x_t, x̂_0) = β_t √ᾱ_{t−1}/(1−ᾱ_t) x̂_0 + (1−ᾱ_{t−1}) √α_t/(1−ᾱ_t) x_t      (DDPM eq. 7)
        var (mean, _, _) = ForwardProcess.QPosterior(Schedule, x0, xt, tBatch);
        var logVariance = Variance switch
        {
            ReverseVariance.Beta => Schedule.Extract(Schedule.Betas, tBatch, xt.shape).log().expand_as(xt),
            ReverseVariance.BetaTilde => Schedule.Extract(Schedule.PosteriorLogVarianceClipped, tBatch, xt.shape).expand_as(xt),
            ReverseVariance.Learned => VariationalBound.LearnedLogVariance(Schedule, tBatch, v!),
            _ => throw new ArgumentOutOfRangeException(nameof(Variance), Variance, null),
        };
        return (mean.MoveToOuterDisposeScope(), logVariance.MoveToOuterDisposeScope());
    }

    /// <summary>[ε, u] → (ε, u) for a learned-variance output; (output, null) otherwise (an error if σ² = learned).</summary>
    (Tensor Prediction, Tensor? V) Split(Tensor output, long channels)
    {
        if (output.shape[1] == 2 * channels)
        {
            var (predicted, v) = HybridLoss.Split(output, channels);
            return (predicted, v);
        }
        if (Variance == ReverseVariance.Learned)
            throw new ArgumentException(
                $"σ² = learned needs a network trained with a learned variance (2·{channels} output channels, [ε, v]); this one outputs {output.shape[1]}. Use β or β̃.");
        return (output, null);
    }

    public void Reset() { }

    /// <summary>One reverse step x_t → x_t′ for the whole batch at planned step <paramref name="i"/> (t′ = Plan.Next(i)).</summary>
    public Tensor Step(Tensor modelOutput, Tensor xt, int i, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var step = chain[i];
        var (predicted, v) = Split(modelOutput, xt.shape[1]);
        var (x0, _) = ForwardProcess.StartAndNoise(xt, predicted, step.AlphaBar, Prediction, ClipDenoised);
        // μ̃(x_t, x̂_0) = β √ᾱ_t′/(1−ᾱ_t) x̂_0 + (1−ᾱ_t′) √α/(1−ᾱ_t) x_t                     (DDPM eq. 7)
        var mean = Coefficient(step.MeanCoefStart, xt) * x0 + Coefficient(step.MeanCoefX, xt) * xt;
        bool last = i == chain.Length - 1;
        if (last) return mean.MoveToOuterDisposeScope();        // Algorithm 2: z = 0 at the last step
        var z = Platform.Compute.Randn(xt.shape, generator, xt.device);
        if (Variance == ReverseVariance.Learned)
        {
            // log β̃ is clipped at the chain's last step (β̃ = 0 there), which is not taken here
            var shape = Enumerable.Repeat(1L, xt.shape.Length).ToArray();
            shape[0] = xt.shape[0];
            var logBeta = full(shape, step.Beta, dtype: ScalarType.Float32, device: xt.device).log();
            var logBetaTilde = full(shape, Math.Log(Math.Max(step.PosteriorVariance, 1e-20)), dtype: ScalarType.Float32, device: xt.device);
            var logVariance = VariationalBound.LearnedLogVariance(logBeta, logBetaTilde, v!);
            return (mean + (0.5 * logVariance).exp() * z).MoveToOuterDisposeScope();   // x_t′ = μ_θ + Σ_θ^{1/2} z
        }
        double sigma2 = Variance == ReverseVariance.Beta ? step.Beta : step.PosteriorVariance;
        // x_t′ = μ + σ z
        return (mean + Math.Sqrt(sigma2) * z).MoveToOuterDisposeScope();
    }

    /// <summary>A step's coefficient as a 0-dimensional tensor of x's type (float32 unless x is float64).</summary>
    static Tensor Coefficient(double value, Tensor x) => torch.tensor(value, dtype: ScalarType.Float64)
        .to(x.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32).to(x.device);

    /// <summary>Nothing to release: the schedule is the caller's.</summary>
    public void Dispose() { }
}
