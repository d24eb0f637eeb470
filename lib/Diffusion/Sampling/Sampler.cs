namespace Diffusion.Sampling;

/// <summary>Samples and, if asked for, snapshots of x along the way. Owns its tensors: dispose it.</summary>
public sealed class SamplingResult : IDisposable
{
    /// <summary>The final x_0 estimates [B, C, H, W], in [−1, 1] if clipping was on.</summary>
    public required Tensor Samples { get; init; }
    /// <summary>Snapshots of x_t (first: pure noise x_T; last: the samples).</summary>
    public List<Tensor> Intermediates { get; } = new();
    /// <summary>The time step each snapshot is x_t of (0-based: T−1 for the initial noise x_T; −1 for the final samples).</summary>
    public List<int> IntermediateTimesteps { get; } = new();

    public void Dispose()
    {
        Samples.Dispose();
        foreach (var x in Intermediates) x.Dispose();
        Intermediates.Clear();
    }
}

/// <summary>Progress of a sampling loop: step (1-based) of total.</summary>
public readonly record struct SamplingProgress(int Step, int Total, int Timestep);

/// <summary>
/// A reverse-process scheduler in the diffusers sense: it turns the network's output at planned step i into the next x.
/// It never calls the network (<see cref="SamplingLoop"/> does). Dispose it: some keep tensors between steps.
/// </summary>
public interface ISampler : IDisposable
{
    /// <summary>A short name for logs and file names, e.g. "ddpm-1000" or "ddim-50".</summary>
    string Name { get; }
    /// <summary>The time steps visited; step i calls the network at Plan.Timesteps[i] and goes to Plan.Next(i).</summary>
    TimestepPlan Plan { get; }
    /// <summary>Network evaluations per sample.</summary>
    int Steps { get; }
    /// <summary>Clears multistep state (earlier outputs); the loop calls it before the first step.</summary>
    void Reset();
    /// <summary>
    /// x at the next planned step from x_t at step <paramref name="i"/> (an index into <see cref="Plan"/>) and the network's
    /// output there. A learned-variance output has 2C channels [ε, v]; a sampler that does not use v takes the first C.
    /// </summary>
    Tensor Step(Tensor modelOutput, Tensor xt, int i, Generator? generator);
}

/// <summary>Helpers for samplers.</summary>
public static class ModelOutput
{
    /// <summary>The prediction part of a network output for x of <paramref name="channels"/> channels: [ε, v] → ε.</summary>
    public static Tensor Prediction(Tensor output, long channels) =>
        output.shape[1] == 2 * channels ? Forward.HybridLoss.Split(output, channels).Prediction : output;
}
