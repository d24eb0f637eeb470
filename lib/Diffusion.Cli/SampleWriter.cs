using Diffusion.Model;
using Diffusion.Visuals;

namespace Diffusion.Cli;

/// <summary>What to sample and where to write it (shared by train and sample).</summary>
sealed record SampleRequest
{
    public int Count { get; init; } = 64;
    /// <summary>The sampler as the command line names it ("ddpm", "dpm++:20", "euler:10"; see <see cref="ModelSampler"/>).</summary>
    public string Sampler { get; init; } = DdpmSampler.Kind.Name;
    /// <summary>η, σ²_t and clipping for a DDPM sampler.</summary>
    public Func<SamplerSpec, SamplerSpec>? SamplerOptions { get; init; }
    /// <summary>Clip the samples (x̂₀ at every step for DDPM's samplers, the result for a flow sampler) to [−1, 1].</summary>
    public bool Clip { get; init; } = true;
    /// <summary>For a model of latents: the autoencoder whose decoder turns them into pictures (null: a model of pixels).</summary>
    public LatentFile? Decoder { get; init; }
    /// <summary>How the model is named in errors (its file).</summary>
    public string Source { get; init; } = "this model";
    public int Seed { get; init; }
    public string PngPath { get; init; } = "samples.png";
    public string? GifPath { get; init; }
    public int GifFrames { get; init; } = 40;
    /// <summary>Class label for every sample of a conditional model (null = one row per class, or unconditional).</summary>
    public int? Class { get; init; }
    /// <summary>Classifier-free guidance weight w (see <see cref="ClassifierFreeGuidance"/>); 0 = plain conditional.</summary>
    public double Guidance { get; init; }
}

static class SampleWriter
{
    /// <summary>Samples with <paramref name="model"/>, writes the grid PNG (and GIF); returns the seconds spent sampling.</summary>
    public static double Write(IDenoisingNetwork model, DiffusionModelConfig config, SampleRequest r, Device device)
    {
        if (r.Count < 1) throw new CliException($"--count must be ≥ 1, got {r.Count}");
        r.Decoder?.CheckFits(config, r.Source);
        if (r.Decoder is null && config.Channels is not (1 or 3))
            throw new CliException($"{r.Source} makes {config.Channels}-channel tensors ({config.Data}), not pictures: a model of latents. " +
                                   "Give the autoencoder that decodes them with --autoencoder.");
        // Latents are not bounded to [−1, 1]: no clipping before the decoder (which clamps the pictures).
        using var sampler = ModelSampler.Create(config, r.Sampler, r.Source, r.SamplerOptions, clip: r.Clip && r.Decoder is null);
        Guidance.Check(r.Guidance, config.NumClasses);
        using var generator = new Generator((ulong)r.Seed);

        Tensor? classes = null;
        int count = r.Count;
        if (config.NumClasses > 0)
        {
            int k = config.NumClasses;
            if (r.Class is { } c && (c < 0 || c >= k))
                throw new CliException($"--class {c}: this model knows classes 0..{k - 1} ({string.Join(", ", config.ClassNames)}); give one of them or all");
            if (r.Class is null && count % k != 0)
            {
                // One row per class: --count is rounded down to a whole number of rows (at least one image per class).
                count = Math.Max(1, count / k) * k;
                Console.WriteLine($"--class all: {count} images, {count / k} per class (one grid row per class: {string.Join(", ", config.ClassNames)})");
            }
            // One class for all, or one grid row per class.
            var labels = r.Class is { } only
                ? full([count], only, dtype: ScalarType.Int64)
                : ClassifierFreeGuidance.OneRowPerClass(k, count / k);
            classes = labels.to(device);
            if (!ReferenceEquals(classes, labels)) labels.Dispose();
        }
        else if (r.Class is not null)
            throw new CliException("--class was given but this model is unconditional (trained without --conditional); drop --class, or use a conditional checkpoint");
        using var ownedClasses = classes;                                 // disposed on every way out, errors and Ctrl+C included

        var shape = new long[] { count, config.Channels, config.ImageSize, config.ImageSize };
        int captureEvery = r.GifPath is null ? 0 : Math.Max(1, sampler.Steps / Math.Max(1, r.GifFrames));
        var sw = Stopwatch.StartNew();
        // Classifier-free guidance (w ≠ 0): one forward pass on [x; x] with labels [c; ∅] per step.
        DenoisingModel denoiser = classes is null
            ? (x, t) => model.forward(x, t, null)
            : ClassifierFreeGuidance.Guide((x, t, y) => model.forward(x, t, y), classes, config.NumClasses, r.Guidance);
        string guided = classes is null ? "" : string.Create(CultureInfo.InvariantCulture, $", guidance w={r.Guidance:0.###}");
        var result = ConsoleProgress.Run($"sampling {count} images ({sampler.Name}{guided})", sampler.Steps, report =>
            sampler.Sample(denoiser, shape, generator, device, captureEvery,
                new SyncProgress<SamplingProgress>(p => report(p.Step, config.IsRectifiedFlow ? $"t={p.Timestep / RectifiedFlow.NetworkTimeScale:0.000}" : $"t={p.Timestep}"))));
        double seconds = sw.Elapsed.TotalSeconds;
        using (result)
        {
            // A model of latents: its samples and snapshots through the decoder (disposed with the list below).
            var decoded = r.Decoder is { } decoder ? result.Intermediates.Prepend(result.Samples).Select(decoder.Decode).ToList() : null;
            try
            {
                var pictures = decoded?[0] ?? result.Samples;
                var frames = decoded?.Skip(1).ToList() ?? result.Intermediates;
                int columns = (int)Math.Ceiling(Math.Sqrt(count));
                if (classes is not null && r.Class is null) columns = Math.Max(1, count / config.NumClasses);
                ImageGrid.SaveGridPng(pictures, r.PngPath, columns, padding: 2, scale: 2);
                Console.WriteLine($"wrote {r.PngPath} ({count} samples, {sampler.Name}{guided}{(decoded is null ? "" : ", decoded")}, {seconds.ToString("F1", CultureInfo.InvariantCulture)} s)");
                if (r.GifPath is not null)
                {
                    ImageGrid.SaveAnimationGif(frames, r.GifPath, columns, scale: 2);
                    Console.WriteLine($"wrote {r.GifPath} ({frames.Count} frames of the reverse process)");
                }
            }
            finally
            {
                foreach (var x in decoded ?? []) x.Dispose();
            }
        }
        return seconds;
    }
}

/// <summary>IProgress that reports on the calling thread (Progress&lt;T&gt; would post to the thread pool).</summary>
sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
