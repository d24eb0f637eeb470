namespace Diffusion.Schedules;

/// <summary>
/// The time steps a sampler visits, from high to low: 0-based indices of the schedule the network was trained on
/// (τ_S &gt; … &gt; τ_1). Shared by DDPM (all T, or respaced), DDIM and any later solver: the loop calls the network with
/// <c>Timesteps[i]</c>, and the sampler's <c>Step(output, x_t, i, …)</c> reads its coefficients at <c>Timesteps[i]</c> and
/// <see cref="Next"/>(i). Respacing is a plan of fewer time steps, not another schedule.
/// </summary>
public sealed class TimestepPlan
{
    /// <summary>The kept time steps, strictly descending, 0-based indices of the original schedule.</summary>
    public int[] Timesteps { get; }
    /// <summary>The number of steps (network evaluations).</summary>
    public int Count => Timesteps.Length;

    public TimestepPlan(int[] timesteps)
    {
        ArgumentNullException.ThrowIfNull(timesteps);
        if (timesteps.Length == 0) throw new ArgumentException("a plan needs at least one time step", nameof(timesteps));
        for (int i = 0; i < timesteps.Length; i++)
        {
            if (timesteps[i] < 0) throw new ArgumentOutOfRangeException(nameof(timesteps), $"time step {timesteps[i]} is negative");
            if (i > 0 && timesteps[i] >= timesteps[i - 1])
                throw new ArgumentException("planned time steps must be strictly decreasing (from the noisiest)", nameof(timesteps));
        }
        Timesteps = (int[])timesteps.Clone();
    }

    /// <summary>
    /// The library's check of a number of planned steps: between 1 and T. Samplers and <see cref="Respacing"/> call it on
    /// their arguments; a user's request is checked (or clamped, announced) before that by <c>SamplerSpec.Validate</c>.
    /// </summary>
    public static int CheckStepCount(int steps, int timesteps, string paramName = "steps") =>
        steps >= 1 && steps <= timesteps ? steps
            : throw new ArgumentOutOfRangeException(paramName, steps, $"the number of sampling steps must be between 1 and T = {timesteps}");

    /// <summary>Every step T−1, …, 0 (Algorithm 2).</summary>
    public static TimestepPlan All(int timesteps) => new(Enumerable.Range(0, timesteps).Reverse().ToArray());

    /// <summary><paramref name="steps"/> of T steps, evenly spaced (<see cref="Respacing.EvenlySpaced"/>), from T−1 down to 0.</summary>
    public static TimestepPlan EvenlySpaced(int timesteps, int steps) =>
        new(Respacing.EvenlySpaced(timesteps, steps).Reverse().ToArray());

    /// <summary>The planned step i that visits time step <paramref name="timestep"/>.</summary>
    public int IndexOf(int timestep) => Array.IndexOf(Timesteps, timestep) is var i and >= 0 ? i
        : throw new ArgumentOutOfRangeException(nameof(timestep), timestep, "this plan does not visit that time step");

    /// <summary>The time step after step <paramref name="i"/>: τ_{i+1}, or −1 after the last (ᾱ_{−1} = 1, the clean image).</summary>
    public int Next(int i) => i + 1 < Count ? Timesteps[i + 1] : -1;
}
