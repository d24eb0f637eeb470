using Diffusion.Forward;

namespace Diffusion.Sampling;

/// <summary>
/// The one sampling loop (the diffusers split): x_T ~ N(0, I); for each planned step i:
/// output = model(x_t, t_i); x = sampler.Step(output, x_t, i). One dispose scope per step, snapshots, progress.
/// Classifier-free guidance is a <see cref="DenoisingModel"/> (<see cref="ClassifierFreeGuidance.Guide"/>) called here.
/// </summary>
public static class SamplingLoop
{
    /// <summary>
    /// Runs the reverse process of <paramref name="sampler"/> with <paramref name="model"/> from x_T ~ N(0, I) of
    /// <paramref name="shape"/> [B, C, H, W].
    /// </summary>
    /// <param name="captureEvery">Keep a snapshot of x every this many steps (0 = none; first and last always kept when &gt; 0).</param>
    public static SamplingResult Sample(this ISampler sampler, DenoisingModel model, long[] shape, Generator? generator = null,
        Device? device = null, int captureEvery = 0, IProgress<SamplingProgress>? progress = null, CancellationToken cancel = default)
    {
        if (shape.Length != 4) throw new ArgumentException("sample shape must be [batch, channels, height, width]");
        if (captureEvery < 0) throw new ArgumentOutOfRangeException(nameof(captureEvery), "must be ≥ 0");
        var plan = sampler.Plan;
        var intermediates = new List<Tensor>();
        var intermediateTimesteps = new List<int>();
        sampler.Reset();
        Tensor x;
        using (no_grad())
        {
            x = Platform.Compute.Randn(shape, generator, device).DetachFromDisposeScope();
            if (captureEvery > 0)
            {
                intermediates.Add(x.clone().DetachFromDisposeScope());
                intermediateTimesteps.Add(plan.Timesteps[0]);
            }
            try
            {
                for (int i = 0; i < plan.Count; i++)
                {
                    cancel.ThrowIfCancellationRequested();
                    using (var scope = NewDisposeScope())
                    {
                        var t = full([x.shape[0]], plan.Timesteps[i], dtype: ScalarType.Int64, device: x.device);
                        var output = model(x, t);
                        var next = sampler.Step(output, x, i, generator).MoveToOuterDisposeScope();
                        x.Dispose();
                        x = next.DetachFromDisposeScope();
                    }
                    Platform.Compute.RecheckThreads();               // automatic thread count only; see Compute
                    bool last = i == plan.Count - 1;
                    if (captureEvery > 0 && ((i + 1) % captureEvery == 0 || last))
                    {
                        intermediates.Add(x.clone().DetachFromDisposeScope());
                        intermediateTimesteps.Add(plan.Next(i));
                    }
                    progress?.Report(new SamplingProgress(i + 1, plan.Count, plan.Timesteps[i]));
                }
            }
            catch
            {
                x.Dispose();
                foreach (var t in intermediates) t.Dispose();
                throw;
            }
        }
        var result = new SamplingResult { Samples = x };
        result.Intermediates.AddRange(intermediates);
        result.IntermediateTimesteps.AddRange(intermediateTimesteps);
        return result;
    }
}
