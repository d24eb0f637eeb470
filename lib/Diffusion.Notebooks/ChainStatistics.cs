using Diffusion.Schedules;

namespace Diffusion.Notebooks;

/// <summary>
/// Notebook 01's experiment: runs a batch through all T steps of the forward process q(x_t | x_{t−1}) and records the
/// mean and standard deviation of x_t over the whole batch at every step, so that the notebook can compare them with the
/// recursion m_t = √(1−β_t)·m_{t−1}, v_t = (1−β_t)·v_{t−1} + β_t.
/// </summary>
public static class ChainStatistics
{
    /// <summary>Means[t] and Stds[t] of x_t over every pixel of the batch, t = 0…T (index 0 is x_0).</summary>
    public sealed record Trace(string Name, double[] Means, double[] Stds, long Pixels);

    /// <summary>
    /// Applies <see cref="ForwardProcess.QStep"/> T times to <paramref name="x0"/> with noise from a generator seeded
    /// with <paramref name="seed"/> (the same seed gives the same noise for every input of the same shape).
    /// </summary>
    public static Trace Follow(string name, NoiseSchedule s, Tensor x0, int seed)
    {
        var means = new double[s.Timesteps + 1];
        var stds = new double[s.Timesteps + 1];
        var g = new Generator((ulong)seed);
        var x = x0.to(ScalarType.Float32).clone();
        means[0] = x.mean().item<float>();
        stds[0] = Math.Sqrt(x.var().item<float>());
        for (int t = 0; t < s.Timesteps; t++)
        {
            using var scope = NewDisposeScope();
            var next = ForwardProcess.QStep(s, x, full(new long[] { x.shape[0] }, t, dtype: ScalarType.Int64), randn(x.shape, generator: g))
                .MoveToOuterDisposeScope();
            x.Dispose();
            x = next;
            means[t + 1] = x.mean().item<float>();
            stds[t + 1] = Math.Sqrt(x.var().item<float>());
        }
        long pixels = x.numel();
        x.Dispose();
        return new Trace(name, means, stds, pixels);
    }
}
