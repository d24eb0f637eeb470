namespace Diffusion.Schedules;

/// <summary>
/// Sampling with fewer steps than the model was trained with (Improved DDPM, Nichol &amp; Dhariwal 2021, §4): keep a
/// subsequence τ_0 &lt; τ_1 &lt; … &lt; τ_{K−1} of the T time steps and recompute the betas so that the kept ᾱ's are unchanged:
/// β'_i = 1 − ᾱ_{τ_i} / ᾱ_{τ_{i−1}} (ᾱ_{τ_{−1}} = 1). Every other term (α, β̃, posterior coefficients) then follows
/// from β' as for any schedule, and the network is called with the original time step τ_i.
/// </summary>
public static class Respacing
{
    /// <summary>
    /// <paramref name="steps"/> time steps evenly spread over 0..T−1 (rounded, always including 0 and T−1), ascending.
    /// Stride 1 (steps = T) keeps every step.
    /// </summary>
    public static int[] EvenlySpaced(int timesteps, int steps)
    {
        TimestepPlan.CheckStepCount(steps, timesteps);
        if (steps == 1) return [timesteps - 1];
        var kept = new SortedSet<int>();
        for (int i = 0; i < steps; i++) kept.Add((int)Math.Round((double)i * (timesteps - 1) / (steps - 1)));
        return kept.ToArray();
    }

    /// <summary>The schedule of the kept steps <paramref name="kept"/> (ascending 0-based indices into <paramref name="s"/>).</summary>
    public static NoiseSchedule Respace(NoiseSchedule s, int[] kept)
    {
        ArgumentNullException.ThrowIfNull(kept);
        if (kept.Length == 0) throw new ArgumentException("keep at least one time step", nameof(kept));
        for (int i = 0; i < kept.Length; i++)
        {
            if (kept[i] < 0 || kept[i] >= s.Timesteps)
                throw new ArgumentOutOfRangeException(nameof(kept), $"time step {kept[i]} is outside 0..{s.Timesteps - 1}");
            if (i > 0 && kept[i] <= kept[i - 1])
                throw new ArgumentException("kept time steps must be strictly increasing", nameof(kept));
        }
        var betas = new double[kept.Length];
        double previous = 1.0;
        for (int i = 0; i < kept.Length; i++)
        {
            // β'_i = 1 − ᾱ_{τ_i} / ᾱ_{τ_{i−1}}                                   (Improved DDPM §4)
            betas[i] = 1 - s.AlphasCumprod[kept[i]] / previous;
            previous = s.AlphasCumprod[kept[i]];
        }
        return new NoiseSchedule(betas);
    }

    /// <summary>The schedule of <paramref name="steps"/> evenly spaced steps, and the original time steps it keeps.</summary>
    public static (NoiseSchedule Schedule, int[] Kept) Respace(NoiseSchedule s, int steps)
    {
        var kept = EvenlySpaced(s.Timesteps, steps);
        return (Respace(s, kept), kept);
    }
}
