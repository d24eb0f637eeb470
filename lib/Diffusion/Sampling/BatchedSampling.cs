using Diffusion.Forward;

namespace Diffusion.Sampling;

/// <summary>Progress over many batches: images finished of total, and the step within the current batch.</summary>
public readonly record struct BatchedSamplingProgress(int ImagesDone, int Total, int Batch, int Batches, int Step, int StepsPerBatch)
{
    /// <summary>Sampling steps done over all batches (of Batches · StepsPerBatch).</summary>
    public int StepsDone => Batch * StepsPerBatch + Step;
}

/// <summary>Draws many samples in batches (memory stays bounded) with one seeded generator: the same seed gives the same images.</summary>
public static class BatchedSampling
{
    /// <summary>
    /// <paramref name="count"/> samples of <paramref name="imageShape"/> [C, H, W], <paramref name="batchSize"/> at a time, on the CPU.
    /// <paramref name="modelForBatch"/> gives the model for the images start..start+length−1 (e.g. with their class labels).
    /// </summary>
    public static Tensor Sample(ISampler sampler, Func<int, int, DenoisingModel> modelForBatch, long[] imageShape, int count,
        int batchSize, int seed, Device? device = null, IProgress<BatchedSamplingProgress>? progress = null,
        CancellationToken cancel = default) =>
        Sample((model, shape, generator, inner) =>
        {
            using var result = sampler.Sample(model, shape, generator, device, 0, inner, cancel);
            using var scope = NewDisposeScope();
            return result.Samples.detach().clone().MoveToOuterDisposeScope();
        }, sampler.Steps, modelForBatch, imageShape, count, batchSize, seed, progress);

    /// <summary>
    /// The same for any sampling method: <paramref name="sampleBatch"/>(model, shape, generator, progress) draws one batch
    /// (the result is the caller's) in <paramref name="stepsPerBatch"/> steps — how the flow samplers batch too.
    /// </summary>
    public static Tensor Sample(Func<DenoisingModel, long[], Generator, IProgress<SamplingProgress>?, Tensor> sampleBatch, int stepsPerBatch,
        Func<int, int, DenoisingModel> modelForBatch, long[] imageShape, int count, int batchSize, int seed,
        IProgress<BatchedSamplingProgress>? progress = null)
    {
        if (count < 1) throw new ArgumentException($"count must be ≥ 1, got {count}");
        if (batchSize < 1) throw new ArgumentException($"batch size must be ≥ 1, got {batchSize}");
        using var generator = new Generator((ulong)seed);
        var parts = new List<Tensor>();
        try
        {
            int batches = (count + batchSize - 1) / batchSize;
            for (int start = 0, batch = 0; start < count; start += batchSize, batch++)
            {
                int length = Math.Min(batchSize, count - start);
                var model = modelForBatch(start, length);
                var inner = progress is null ? null
                    : new Relay(p => progress.Report(new BatchedSamplingProgress(start, count, batch, batches, p.Step, p.Total)));
                using var samples = sampleBatch(model, [length, .. imageShape], generator, inner);
                using (NewDisposeScope()) parts.Add(samples.detach().cpu().clone().MoveToOuterDisposeScope());
                progress?.Report(new BatchedSamplingProgress(start + length, count, batch + 1, batches, 0, stepsPerBatch));
            }
            return cat(parts, 0);
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }

    sealed class Relay(Action<SamplingProgress> report) : IProgress<SamplingProgress>
    {
        public void Report(SamplingProgress value) => report(value);
    }
}
