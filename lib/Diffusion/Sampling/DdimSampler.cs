using Diffusion.Forward;

namespace Diffusion.Sampling;

/// <summary>
/// DDIM (Song, Meng &amp; Ermon 2021), eq. 12: on a subsequence τ of the time steps,
/// x_{τ_{i−1}} = √ᾱ_{τ_{i−1}} x̂_0 + √(1 − ᾱ_{τ_{i−1}} − σ²) ε̂ + σ z, with
/// σ = η √((1−ᾱ_{τ_{i−1}})/(1−ᾱ_{τ_i})) √(1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}).
/// η = 0 is deterministic; η = 1 on every step is DDPM with σ² = β̃.
/// </summary>
public sealed class DdimSampler : ISampler
{
    /// <summary>The sampler kind "ddim:N" of <see cref="SamplerSpec"/> (N steps, default 50).</summary>
    public static readonly SamplerKind Kind = new("ddim", "ddim:N (N steps)", DefaultSteps: 50, UsesVariance: false, UsesEta: true,
        Create: (spec, schedule, prediction, steps) => new DdimSampler(schedule, steps, spec.Eta, prediction, spec.Clip));

    public NoiseSchedule Schedule { get; }
    public Prediction Prediction { get; }
    public int Steps { get; }
    public double Eta { get; }
    public bool ClipDenoised { get; }
    /// <summary>The time steps visited, τ_S, ..., τ_1 (evenly spaced, from T−1 down to 0).</summary>
    public TimestepPlan Plan { get; }
    public string Name => Eta == 0 ? $"ddim-{Steps}" : $"ddim-{Steps}-eta{Eta:0.##}";

    public DdimSampler(NoiseSchedule schedule, int steps, double eta = 0, Prediction prediction = Prediction.Epsilon,
        bool clipDenoised = true)
        : this(schedule, TimestepPlan.EvenlySpaced(schedule.Timesteps, steps), eta, prediction, clipDenoised) { }

    /// <summary>DDIM on any plan of time steps, e.g. one jump t → t′ with <c>new TimestepPlan([t, t′])</c>.</summary>
    public DdimSampler(NoiseSchedule schedule, TimestepPlan plan, double eta = 0, Prediction prediction = Prediction.Epsilon,
        bool clipDenoised = true)
    {
        ArgumentNullException.ThrowIfNull(plan);
        if (plan.Timesteps[0] >= schedule.Timesteps)
            throw new ArgumentOutOfRangeException(nameof(plan), plan.Timesteps[0], $"the plan starts beyond the schedule's T = {schedule.Timesteps}");
        if (!(eta >= 0)) throw new ArgumentOutOfRangeException(nameof(eta), eta, "η must be ≥ 0 (0 = deterministic, 1 = DDPM-like)");
        Schedule = schedule;
        Eta = eta;
        Prediction = prediction;
        ClipDenoised = clipDenoised;
        Plan = plan;
        Steps = Plan.Count;
    }

    public void Reset() { }

    /// <summary>One DDIM step from τ_i = Plan.Timesteps[<paramref name="i"/>] to the next planned step (after the last: ᾱ = 1).</summary>
    public Tensor Step(Tensor modelOutput, Tensor xt, int i, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        int t = Plan.Timesteps[i], tPrev = Plan.Next(i);
        var tBatch = full([xt.shape[0]], t, dtype: ScalarType.Int64, device: xt.device);
        var (x0, eps) = ForwardProcess.StartAndNoise(Schedule, xt, tBatch, ModelOutput.Prediction(modelOutput, xt.shape[1]),
            Prediction, ClipDenoised);

        double alphaBar = Schedule.AlphasCumprod[t];
        double alphaBarPrev = tPrev >= 0 ? Schedule.AlphasCumprod[tPrev] : 1.0;
        // σ = η √((1−ᾱ_prev)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev)                                (DDIM eq. 16)
        double sigma = Eta * Math.Sqrt((1 - alphaBarPrev) / (1 - alphaBar)) * Math.Sqrt(1 - alphaBar / alphaBarPrev);
        // x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z                           (DDIM eq. 12)
        var xPrev = Math.Sqrt(alphaBarPrev) * x0 + Math.Sqrt(Math.Max(1 - alphaBarPrev - sigma * sigma, 0)) * eps;
        if (sigma > 0)
            xPrev = xPrev + sigma * Platform.Compute.Randn(xt.shape, generator, xt.device);
        return xPrev.MoveToOuterDisposeScope();
    }

    /// <summary>Nothing to release: the schedule is the caller's.</summary>
    public void Dispose() { }
}
