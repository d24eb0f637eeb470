namespace Diffusion.Schedules;

/// <summary>The four β schedules of the course, by name.</summary>
public enum ScheduleKind { Linear, Quadratic, Cosine, Sigmoid }

/// <summary>The names of the β schedules (<c>train --schedule</c>).</summary>
public static class ScheduleKinds
{
    public static readonly NameTable<ScheduleKind> Names = new(
        ("linear", ScheduleKind.Linear), ("quadratic", ScheduleKind.Quadratic), ("cosine", ScheduleKind.Cosine), ("sigmoid", ScheduleKind.Sigmoid));
}

/// <summary>
/// Variance schedules β_1..β_T, computed in float64. Index i of the returned array is the schedule at t = i + 1
/// in the paper's 1-based notation (the code uses t = 0..T-1 like every PyTorch implementation).
/// </summary>
public static class BetaSchedules
{
    /// <summary>Ho et al. (2020): β_1 = 1e-4 rising linearly to β_T = 0.02 (the annotated notebook's default).</summary>
    public const double DefaultBetaStart = 1e-4, DefaultBetaEnd = 0.02;

    /// <summary>Nichol &amp; Dhariwal (2021), eq. 17: offset s = 0.008; β clipped to at most 0.999.</summary>
    public const double CosineOffset = 0.008, CosineMaxBeta = 0.999;

    public static double[] Create(ScheduleKind kind, int timesteps) => kind switch
    {
        ScheduleKind.Linear => Linear(timesteps),
        ScheduleKind.Quadratic => Quadratic(timesteps),
        ScheduleKind.Cosine => Cosine(timesteps),
        ScheduleKind.Sigmoid => Sigmoid(timesteps),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown schedule"),
    };

    /// <summary>β_t = linspace(β_start, β_end, T).</summary>
    public static double[] Linear(int timesteps, double betaStart = DefaultBetaStart, double betaEnd = DefaultBetaEnd)
    {
        CheckTimesteps(timesteps);
        return Linspace(betaStart, betaEnd, timesteps);
    }

    /// <summary>β_t = linspace(√β_start, √β_end, T)².</summary>
    public static double[] Quadratic(int timesteps, double betaStart = DefaultBetaStart, double betaEnd = DefaultBetaEnd)
    {
        CheckTimesteps(timesteps);
        return Linspace(Math.Sqrt(betaStart), Math.Sqrt(betaEnd), timesteps).Select(b => b * b).ToArray();
    }

    /// <summary>β_t = σ(linspace(-6, 6, T))·(β_end − β_start) + β_start.</summary>
    public static double[] Sigmoid(int timesteps, double betaStart = DefaultBetaStart, double betaEnd = DefaultBetaEnd)
    {
        CheckTimesteps(timesteps);
        return Linspace(-6, 6, timesteps).Select(x => 1 / (1 + Math.Exp(-x)) * (betaEnd - betaStart) + betaStart).ToArray();
    }

    /// <summary>
    /// Cosine schedule: ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T) + s)/(1 + s) · π/2), β_t = 1 − ᾱ(t)/ᾱ(t−1), clipped to ≤ 0.999
    /// (the clip keeps β_T away from 1, where ᾱ(T) = 0 would make β_T = 1).
    /// </summary>
    public static double[] Cosine(int timesteps, double s = CosineOffset, double maxBeta = CosineMaxBeta)
    {
        CheckTimesteps(timesteps);
        double F(int t) => Math.Pow(Math.Cos(((double)t / timesteps + s) / (1 + s) * Math.PI / 2), 2);
        var betas = new double[timesteps];
        for (int t = 1; t <= timesteps; t++)
            betas[t - 1] = Math.Min(1 - F(t) / F(t - 1), maxBeta);
        return betas;
    }

    static double[] Linspace(double start, double end, int n)
    {
        if (n == 1) return [start];
        var r = new double[n];
        for (int i = 0; i < n; i++) r[i] = start + (end - start) * i / (n - 1);
        return r;
    }

    internal static void CheckTimesteps(int timesteps)
    {
        if (timesteps < 1)
            throw new ArgumentOutOfRangeException(nameof(timesteps), timesteps,
                "the number of diffusion steps T must be at least 1 (typical values: 200 to 1000)");
    }
}
