using Diffusion.Model;
using Diffusion.Visuals;

namespace Diffusion.Cli;

/// <summary>What to sample and where to write it (shared by train and sample).</summary>
sealed record SampleRequest
{
    public int Count { get; init; } = 64;
    /// <summary>The sampler: kind, steps, η, σ²_t, clipping.</summary>
    public SamplerSpec Sampler { get; init; } = new(DdpmSampler.Kind.Name);
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
    public static double Write(Unet model, DiffusionModelConfig config, SampleRequest r, Device device)
    {
        if (r.Count < 1) throw new CliException($"--count must be ≥ 1, got {r.Count}");
        var spec = r.Sampler.Validate(config.Timesteps, config.Variance == VarianceType.Learned, Console.WriteLine);
        Guidance.Check(r.Guidance, config.Unet.NumClasses);
        using var schedule = config.CreateSchedule();
        using var sampler = spec.Create(schedule, config.Prediction);
        using var generator = new Generator((ulong)r.Seed);

        Tensor? classes = null;
        int count = r.Count;
        if (config.Unet.NumClasses > 0)
        {
            int k = config.Unet.NumClasses;
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

        var shape = new long[] { count, config.Unet.Channels, config.ImageSize, config.ImageSize };
        int captureEvery = r.GifPath is null ? 0 : Math.Max(1, sampler.Steps / Math.Max(1, r.GifFrames));
        var sw = Stopwatch.StartNew();
        // Classifier-free guidance (w ≠ 0): one forward pass on [x; x] with labels [c; ∅] per step.
        DenoisingModel denoiser = classes is null
            ? (x, t) => model.forward(x, t, null)
            : ClassifierFreeGuidance.Guide((x, t, y) => model.forward(x, t, y), classes, config.Unet.NumClasses, r.Guidance);
        string guided = classes is null ? "" : string.Create(CultureInfo.InvariantCulture, $", guidance w={r.Guidance:0.###}");
        var result = ConsoleProgress.Run($"sampling {count} images ({sampler.Name}{guided})", sampler.Steps, report =>
            sampler.Sample(denoiser, shape, generator, device, captureEvery,
                new SyncProgress<SamplingProgress>(p => report(p.Step, $"t={p.Timestep}"))));
        double seconds = sw.Elapsed.TotalSeconds;
        using (result)
        {
            int columns = (int)Math.Ceiling(Math.Sqrt(count));
            if (classes is not null && r.Class is null) columns = Math.Max(1, count / config.Unet.NumClasses);
            ImageGrid.SaveGridPng(result.Samples, r.PngPath, columns, padding: 2, scale: 2);
            Console.WriteLine($"wrote {r.PngPath} ({count} samples, {sampler.Name}{guided}, {seconds.ToString("F1", CultureInfo.InvariantCulture)} s)");
            if (r.GifPath is not null)
            {
                ImageGrid.SaveAnimationGif(result.Intermediates, r.GifPath, columns, scale: 2);
                Console.WriteLine($"wrote {r.GifPath} ({result.Intermediates.Count} frames of the reverse process)");
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
