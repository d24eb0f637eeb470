using static TorchSharp.torch;

namespace Diffusion.Sampling;

/// <summary>The loop both samplers share: x_T ~ N(0, I), one dispose scope per step, snapshots, progress.</summary>
static class SamplingLoop
{
    public static SamplingResult Run(long[] shape, Generator? generator, Device? device, int captureEvery,
        IProgress<SamplingProgress>? progress, CancellationToken cancel, int[] timesteps, Func<Tensor, int, Tensor> step)
    {
        if (shape.Length != 4) throw new ArgumentException("sample shape must be [batch, channels, height, width]");
        if (captureEvery < 0) throw new ArgumentOutOfRangeException(nameof(captureEvery), "must be ≥ 0");
        var intermediates = new List<Tensor>();
        var intermediateTimesteps = new List<int>();
        Tensor x;
        using (no_grad())
        {
            x = Platform.Compute.Randn(shape, generator, device).DetachFromDisposeScope();
            if (captureEvery > 0)
            {
                intermediates.Add(x.clone().DetachFromDisposeScope());
                intermediateTimesteps.Add(timesteps.Length > 0 ? timesteps[0] : -1);
            }
            try
            {
                for (int i = 0; i < timesteps.Length; i++)
                {
                    cancel.ThrowIfCancellationRequested();
                    using (var scope = NewDisposeScope())
                    {
                        var next = step(x, i).MoveToOuterDisposeScope();
                        x.Dispose();
                        x = next.DetachFromDisposeScope();
                    }
                    bool last = i == timesteps.Length - 1;
                    if (captureEvery > 0 && ((i + 1) % captureEvery == 0 || last))
                    {
                        intermediates.Add(x.clone().DetachFromDisposeScope());
                        intermediateTimesteps.Add(last ? -1 : timesteps[i + 1]);
                    }
                    progress?.Report(new SamplingProgress(i + 1, timesteps.Length, timesteps[i]));
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
