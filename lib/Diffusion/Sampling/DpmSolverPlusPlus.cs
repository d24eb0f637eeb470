using Diffusion.Forward;

namespace Diffusion.Sampling;

/// <summary>
/// DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", arXiv 2211.01095, Algorithm 2): the probability-flow ODE solved in
/// the log-SNR λ_t = log(√ᾱ_t/√(1−ᾱ_t)) with the data prediction x̂_0. Its exact solution from t_{i−1} to t_i is
/// x_{t_i} = (√(1−ᾱ_{t_i})/√(1−ᾱ_{t_{i−1}})) x_{t_{i−1}} + √(1−ᾱ_{t_i}) ∫ e^λ x̂_0(λ) dλ (λ from λ_{t_{i−1}} to λ_{t_i});
/// the multistep method extrapolates x̂_0 linearly in λ from the
/// last two network outputs (second order), where DDIM holds it constant (first order). Deterministic, one network
/// evaluation per step; the first step (no history yet) and the last are first order.
/// <para>Steps are spread evenly in λ by default (DPM-Solver's "logSNR" skip type, which its authors suggest for small
/// images). Spread evenly in t, as DDIM, the last step of a cosine schedule jumps from λ ≈ 1–2 to λ_0 ≈ 4.7 with
/// r_i = h_{i−1}/h_i ≈ 0.2: the linear extrapolation of x̂_0 is then taken far beyond the interval it was fitted on.</para>
/// </summary>
public sealed class DpmSolverPlusPlus : ISampler
{
    /// <summary>The sampler kind "dpm++:N" of <see cref="SamplerSpec"/> (N steps, default 20).</summary>
    public static readonly SamplerKind Kind = new("dpm++", "dpm++:N (N steps, DPM-Solver++ 2M)", DefaultSteps: 20, UsesVariance: false,
        UsesEta: false, Create: (spec, schedule, prediction, steps) => new DpmSolverPlusPlus(schedule, steps, prediction, spec.Clip));

    public NoiseSchedule Schedule { get; }
    public Prediction Prediction { get; }
    public bool ClipDenoised { get; }
    public int Steps { get; }
    /// <summary>The time steps visited, from T−1 down to 0.</summary>
    public TimestepPlan Plan { get; }
    public string Name => Spacing == TimestepSpacing.LogSnr ? $"dpm++-{Steps}" : $"dpm++-even-{Steps}";

    // Multistep state: x̂_0 and ᾱ of the previous step (null before the first step).
    Tensor? previousStart;
    double previousAlphaBar;

    /// <summary>The time steps visited: uniform in λ (default) or <see cref="TimestepSpacing.Even"/> in t (as DDIM).</summary>
    public TimestepSpacing Spacing { get; }

    public DpmSolverPlusPlus(NoiseSchedule schedule, int steps, Prediction prediction = Prediction.Epsilon, bool clipDenoised = true,
        TimestepSpacing spacing = TimestepSpacing.LogSnr)
    {
        TimestepPlan.CheckStepCount(steps, schedule.Timesteps);
        Schedule = schedule;
        Prediction = prediction;
        ClipDenoised = clipDenoised;
        Spacing = spacing;
        Plan = spacing switch
        {
            TimestepSpacing.Even => TimestepPlan.EvenlySpaced(schedule.Timesteps, steps),
            TimestepSpacing.LogSnr => new TimestepPlan(LogSnrSpaced(schedule, steps)),
            _ => throw new ArgumentOutOfRangeException(nameof(spacing), spacing, null),
        };
        Steps = Plan.Count;
    }

    /// <summary>
    /// λ below which a step is not worth a network call: SNR = e^{2λ} ≈ 4·10⁻⁵, x_t holds almost nothing of x_0. The
    /// cosine schedule's last step has λ ≈ −9 (β clipped at 0.999); diffusers clips the same end (lambda_min_clipped).
    /// </summary>
    public const double LambdaMin = -5.1;

    /// <summary>
    /// <paramref name="steps"/> time steps from T−1 down to 0, the ones after T−1 nearest to λ evenly spaced from
    /// max(λ_{T−1}, <see cref="LambdaMin"/>) to λ_0 (DPM-Solver's "logSNR" skip type), kept distinct; descending.
    /// </summary>
    public static int[] LogSnrSpaced(NoiseSchedule schedule, int steps)
    {
        int T = schedule.Timesteps;
        TimestepPlan.CheckStepCount(steps, T);
        var lambdas = schedule.AlphasCumprod.Select(Lambda).ToArray();
        double lo = Math.Max(lambdas[T - 1], LambdaMin), hi = lambdas[0];
        var ts = new int[steps];
        ts[0] = T - 1;
        for (int i = 1; i < steps; i++)
        {
            // λ*_i = λ_min + (λ_0 − λ_min) i/(N−1); t_i = the time step whose λ is nearest
            double target = lo + (hi - lo) * i / (steps - 1);
            int nearest = 0;
            for (int t = 1; t < T; t++)
                if (Math.Abs(lambdas[t] - target) < Math.Abs(lambdas[nearest] - target)) nearest = t;
            // strictly below the previous step, and room left for the remaining steps down to 0
            ts[i] = Math.Max(Math.Min(nearest, ts[i - 1] - 1), steps - 1 - i);
        }
        return ts;
    }

    /// <summary>The log-SNR λ = log(√ᾱ/√(1−ᾱ)) = ½ log(ᾱ/(1−ᾱ)).</summary>
    public static double Lambda(double alphaBar) => 0.5 * Math.Log(alphaBar / (1 - alphaBar));

    /// <summary>
    /// First-order step from t_{i−1} (ᾱ = <paramref name="alphaBarS"/>) to t_i (ᾱ = <paramref name="alphaBarT"/>)
    /// (DPM-Solver++ eq. 8 with x̂_0 held constant; it is DDIM with η = 0):
    /// x_{t_i} = (√(1−ᾱ_{t_i})/√(1−ᾱ_{t_{i−1}})) x_{t_{i−1}} − √ᾱ_{t_i} (e^{−h_i} − 1) x̂_0, h_i = λ_{t_i} − λ_{t_{i−1}}.
    /// For ᾱ_{t_i} = 1 (h_i = ∞) it is x̂_0.
    /// </summary>
    public static Tensor FirstOrderUpdate(Tensor xs, Tensor start, double alphaBarS, double alphaBarT)
    {
        if (alphaBarT >= 1) return start.alias();
        double sigmaS = Math.Sqrt(1 - alphaBarS), sigmaT = Math.Sqrt(1 - alphaBarT), alphaT = Math.Sqrt(alphaBarT);
        // h_i = λ_{t_i} − λ_{t_{i−1}}
        double h = Lambda(alphaBarT) - Lambda(alphaBarS);
        // x_{t_i} = (√(1−ᾱ_{t_i})/√(1−ᾱ_{t_{i−1}})) x_{t_{i−1}} − √ᾱ_{t_i} (e^{−h_i} − 1) x̂_0     (DPM-Solver++ eq. 8, k = 1)
        return sigmaT / sigmaS * xs - alphaT * (Math.Exp(-h) - 1) * start;
    }

    /// <summary>
    /// Second-order multistep step from t_{i−1} to t_i with x̂_0 at t_{i−1} and at the step before, t_{i−2}
    /// (ᾱ = <paramref name="alphaBarPrevious"/>) (Algorithm 2): r_i = h_{i−1}/h_i,
    /// D_i = (1 + 1/(2r_i)) x̂_0(t_{i−1}) − 1/(2r_i) x̂_0(t_{i−2}),
    /// x_{t_i} = (√(1−ᾱ_{t_i})/√(1−ᾱ_{t_{i−1}})) x_{t_{i−1}} − √ᾱ_{t_i} (e^{−h_i} − 1) D_i.
    /// </summary>
    public static Tensor SecondOrderUpdate(Tensor xs, Tensor start, Tensor previousStart, double alphaBarPrevious,
        double alphaBarS, double alphaBarT)
    {
        if (alphaBarT >= 1) return start.alias();
        double sigmaS = Math.Sqrt(1 - alphaBarS), sigmaT = Math.Sqrt(1 - alphaBarT), alphaT = Math.Sqrt(alphaBarT);
        double lambdaS = Lambda(alphaBarS);
        // h_i = λ_{t_i} − λ_{t_{i−1}}, h_{i−1} = λ_{t_{i−1}} − λ_{t_{i−2}}, r_i = h_{i−1}/h_i
        double h = Lambda(alphaBarT) - lambdaS, r = (lambdaS - Lambda(alphaBarPrevious)) / h;
        using var scope = NewDisposeScope();
        // D_i = (1 + 1/(2r_i)) x̂_0(t_{i−1}) − 1/(2r_i) x̂_0(t_{i−2}): x̂_0 extrapolated linearly in λ to the middle of the step
        var d = (1 + 1 / (2 * r)) * start - 1 / (2 * r) * previousStart;
        // x_{t_i} = (√(1−ᾱ_{t_i})/√(1−ᾱ_{t_{i−1}})) x_{t_{i−1}} − √ᾱ_{t_i} (e^{−h_i} − 1) D_i          (Algorithm 2)
        return (sigmaT / sigmaS * xs - alphaT * (Math.Exp(-h) - 1) * d).MoveToOuterDisposeScope();
    }

    /// <summary>Forgets the previous step's x̂_0, so the next step is a first step.</summary>
    public void Reset()
    {
        previousStart?.Dispose();
        previousStart = null;
    }

    /// <summary>
    /// x at the next planned time step from x_t at step <paramref name="i"/> (t = Plan.Timesteps[i]) and the network's output
    /// there; after the last step, the clean image (ᾱ = 1). Keeps x̂_0 for the next step: call <see cref="Reset"/> (or
    /// start at i = 0) before a new trajectory.
    /// </summary>
    /// <remarks>
    /// The end point is ᾱ = 1 (no noise left), as in DDIM here and diffusers' final_sigmas_type = "zero": after the last planned
    /// step (t = 0) the sampler returns x̂_0. There λ = ∞, so r = 0 and the second-order correction is undefined; diffusers
    /// also takes a first-order step there. First-order at ᾱ_t = 1 is exactly x̂_0, the same last step DDPM and DDIM take.
    /// </remarks>
    public Tensor Step(Tensor modelOutput, Tensor xt, int i, Generator? generator = null)
    {
        if (i == 0) Reset();
        int t = Plan.Timesteps[i], tNext = Plan.Next(i);
        double alphaBar = Schedule.AlphasCumprod[t];
        double alphaBarNext = tNext >= 0 ? Schedule.AlphasCumprod[tNext] : 1.0;
        using var scope = NewDisposeScope();
        var (start, _) = ForwardProcess.StartAndNoise(xt, ModelOutput.Prediction(modelOutput, xt.shape[1]), alphaBar, Prediction,
            ClipDenoised);
        var next = previousStart is null || alphaBarNext >= 1
            ? FirstOrderUpdate(xt, start, alphaBar, alphaBarNext)
            : SecondOrderUpdate(xt, start, previousStart, previousAlphaBar, alphaBar, alphaBarNext);
        previousStart?.Dispose();
        previousStart = start.detach().clone().DetachFromDisposeScope();
        previousAlphaBar = alphaBar;
        return next.MoveToOuterDisposeScope();
    }

    /// <summary>Releases the multistep state.</summary>
    public void Dispose() => Reset();
}

/// <summary>How a solver spreads its steps over the schedule.</summary>
public enum TimestepSpacing
{
    /// <summary>Evenly in t, from T−1 down to 0 (<see cref="Respacing.EvenlySpaced"/>, as DDIM).</summary>
    Even,
    /// <summary>Evenly in the log-SNR λ (DPM-Solver's "logSNR"): more steps where the noise is low.</summary>
    LogSnr,
}
