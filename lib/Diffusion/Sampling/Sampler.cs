using static TorchSharp.torch;

namespace Diffusion.Sampling;

/// <summary>The network as a sampler sees it: model(x_t, t) → its prediction (ε, x_0 or v).</summary>
public delegate Tensor DenoisingModel(Tensor xt, Tensor t);

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

/// <summary>A reverse-process sampler (DDPM or DDIM); the model and schedule are given, not owned.</summary>
public interface ISampler
{
    /// <summary>A short name for logs and file names, e.g. "ddpm-1000" or "ddim-50".</summary>
    string Name { get; }
    /// <summary>Network evaluations per sample.</summary>
    int Steps { get; }

    /// <summary>
    /// Runs the reverse process from x_T ~ N(0, I) of <paramref name="shape"/>.
    /// </summary>
    /// <param name="captureEvery">Keep a snapshot of x every this many steps (0 = none; first and last always kept when &gt; 0).</param>
    SamplingResult Sample(DenoisingModel model, long[] shape, Generator? generator = null, Device? device = null,
        int captureEvery = 0, IProgress<SamplingProgress>? progress = null, CancellationToken cancel = default);
}
