namespace Diffusion.Flow;

/// <summary>
/// The times a flow sampler visits, as diffusers' <c>FlowMatchEulerDiscreteScheduler.set_timesteps</c> computes them
/// (huggingface/diffusers, src/diffusers/schedulers/scheduling_flow_match_euler_discrete.py; the static-shift path,
/// no Karras/exponential/beta sigmas, no terminal stretch). There σ is rectified flow's t (1 = noise, 0 = data):
/// <list type="number">
/// <item>at construction: σ_train = shift(k/N) for k = N, …, 1 (N = num_train_timesteps), so σ_max = 1 and
/// σ_min = shift(1/N);</item>
/// <item>set_timesteps(n): timesteps = linspace(σ_max·N, σ_min·N, n), σ = shift(timesteps/N) — the shift is applied to
/// σ_min a second time, as diffusers does — then σ_n = 0 is appended, and the network's time step is σ·N;</item>
/// <item>shift(σ) = s·σ/(1 + (s − 1)·σ) (SD3 §5.3.2, eq. 23 with s = √(m/n)); s &gt; 1 spends more steps at high noise,
/// which SD3 uses for large images (s = 3 at 1024²). s = 1 is the identity.</item>
/// </list>
/// Euler then steps x ← x + (σ_{i+1} − σ_i) v̂ (diffusers' <c>step</c>): one index space, step i reads σ_i and σ_{i+1}.
/// </summary>
public sealed class FlowMatchSchedule
{
    /// <summary>N of diffusers' num_train_timesteps (1000): the network's time step is σ·N.</summary>
    public int TrainTimesteps { get; }
    /// <summary>The shift s (1 = none).</summary>
    public double Shift { get; }
    /// <summary>σ_0 = 1 &gt; σ_1 &gt; … &gt; σ_{n−1} &gt; σ_n = 0: the times visited, rectified flow's t, n + 1 values.</summary>
    public IReadOnlyList<double> Sigmas { get; }
    /// <summary>The number of steps n (Euler: network evaluations).</summary>
    public int Steps => Sigmas.Count - 1;

    /// <summary>The schedule of <paramref name="steps"/> steps with shift <paramref name="shift"/> (diffusers' set_timesteps).</summary>
    public FlowMatchSchedule(int steps, double shift = 1.0, int trainTimesteps = 1000)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "a flow sampler needs at least 1 step");
        if (!(shift > 0) || double.IsInfinity(shift)) throw new ArgumentOutOfRangeException(nameof(shift), shift, "the shift must be a finite number > 0 (1 = no shift)");
        if (trainTimesteps < 2) throw new ArgumentOutOfRangeException(nameof(trainTimesteps), trainTimesteps, "num_train_timesteps must be ≥ 2");
        TrainTimesteps = trainTimesteps;
        Shift = shift;
        double sigmaMax = ShiftSigma(1.0, shift);
        double sigmaMin = ShiftSigma(1.0 / trainTimesteps, shift);
        var sigmas = new double[steps + 1];
        for (int i = 0; i < steps; i++)
        {
            // np.linspace(σ_max·N, σ_min·N, n): the last point exactly σ_min·N
            double timestep = steps == 1 ? sigmaMax * trainTimesteps
                : i == steps - 1 ? sigmaMin * trainTimesteps
                : sigmaMax * trainTimesteps + i * (sigmaMin - sigmaMax) * trainTimesteps / (steps - 1);
            sigmas[i] = ShiftSigma(timestep / trainTimesteps, shift);
        }
        sigmas[steps] = 0;
        Sigmas = sigmas;
    }

    /// <summary>The schedule visiting exactly <paramref name="sigmas"/> (descending, in (0, 1]); σ = 0 is appended.</summary>
    public FlowMatchSchedule(IReadOnlyList<double> sigmas, int trainTimesteps = 1000)
    {
        ArgumentNullException.ThrowIfNull(sigmas);
        if (sigmas.Count == 0) throw new ArgumentException("a flow schedule needs at least one time", nameof(sigmas));
        for (int i = 0; i < sigmas.Count; i++)
        {
            if (!(sigmas[i] > 0 && sigmas[i] <= 1)) throw new ArgumentOutOfRangeException(nameof(sigmas), sigmas[i], "times must be in (0, 1]");
            if (i > 0 && sigmas[i] >= sigmas[i - 1]) throw new ArgumentException("times must be strictly decreasing (from the noisiest)", nameof(sigmas));
        }
        TrainTimesteps = trainTimesteps;
        Shift = 1;
        Sigmas = [.. sigmas, 0.0];
    }

    /// <summary>diffusers' static shift: s·σ/(1 + (s − 1)·σ).</summary>
    public static double ShiftSigma(double sigma, double shift) => shift * sigma / (1 + (shift - 1) * sigma);

    /// <summary>
    /// diffusers' resolution-dependent shift (<c>_time_shift_exponential</c>, used by Flux and SD3.5 with
    /// use_dynamic_shifting): e^μ/(e^μ + (1/t − 1)^σ). With σ = 1 it is <see cref="ShiftSigma"/> with s = e^μ.
    /// </summary>
    public static double TimeShiftExponential(double mu, double sigma, double t) => Math.Exp(mu) / (Math.Exp(mu) + Math.Pow(1 / t - 1, sigma));

    /// <summary>The network's time step at step i, σ_i·N (diffusers' <c>timesteps[i]</c>).</summary>
    public double Timestep(int i) => Sigmas[i] * TrainTimesteps;

    /// <summary>σ_{i+1} − σ_i (negative: the ODE runs from t = 1 to t = 0).</summary>
    public double Delta(int i) => Sigmas[i + 1] - Sigmas[i];
}
