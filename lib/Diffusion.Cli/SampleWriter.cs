using System.Diagnostics;
using System.Globalization;
using Diffusion.Forward;
using Diffusion.Model;
using Diffusion.Sampling;
using Diffusion.Schedules;
using Diffusion.Training;
using Diffusion.Visuals;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Cli;

/// <summary>What to sample and where to write it (shared by train and sample).</summary>
sealed record SampleRequest
{
    public int Count { get; init; } = 64;
    public string Sampler { get; init; } = "ddpm";
    /// <summary>DDIM steps (ignored by DDPM, which always takes T steps).</summary>
    public int DdimSteps { get; init; } = 50;
    /// <summary>DDPM steps (null: all T; fewer: respaced, Improved DDPM §4).</summary>
    public int? DdpmSteps { get; init; }
    public double Eta { get; init; }
    public ReverseVariance Variance { get; init; } = ReverseVariance.BetaTilde;
    public bool Clip { get; init; } = true;
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
    public static ISampler CreateSampler(NoiseSchedule schedule, Prediction prediction, SampleRequest r) =>
        r.Sampler.ToLowerInvariant() switch
        {
            "ddpm" when r.DdpmSteps is { } k && k < schedule.Timesteps => DdpmSampler.Respaced(schedule, k, prediction, r.Variance, r.Clip),
            "ddpm" => new DdpmSampler(schedule, prediction, r.Variance, r.Clip),
            "ddim" => new DdimSampler(schedule, Math.Min(r.DdimSteps, schedule.Timesteps), r.Eta, prediction, r.Clip),
            _ => throw new CliException($"--sampler {r.Sampler}: use ddpm or ddim"),
        };

    /// <summary>Samples with <paramref name="model"/>, writes the grid PNG (and GIF); returns the seconds spent sampling.</summary>
    public static double Write(Unet model, DiffusionModelConfig config, SampleRequest r, Device device)
    {
        if (r.Count < 1) throw new CliException($"--count must be ≥ 1, got {r.Count}");
        using var schedule = new NoiseSchedule(BetaSchedules.Create(config.Schedule, config.Timesteps));
        if (r.Variance == ReverseVariance.Learned && config.Variance != VarianceType.Learned)
            throw new CliException("--variance learned needs a model trained with --learn-variance; this one has a fixed variance. Use beta or beta-tilde.");
        var sampler = CreateSampler(schedule, config.Prediction, r);
        using var generator = new Generator((ulong)r.Seed);

        if (!double.IsFinite(r.Guidance) || r.Guidance < ClassifierFreeGuidance.MinWeight)
            throw new CliException($"--guidance {r.Guidance.ToString(CultureInfo.InvariantCulture)}: w must be ≥ −1 (0 = plain conditional, −1 = unconditional, " +
                                   "larger = stronger class identity; diffusers' guidance_scale s is w = s − 1)");
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
            classes = r.Class is { } only
                ? full([count], only, dtype: ScalarType.Int64)
                : ClassifierFreeGuidance.OneRowPerClass(k, count / k);
            classes = classes.to(device);
        }
        else if (r.Class is not null)
            throw new CliException("--class was given but this model is unconditional (trained without --conditional); drop --class, or use a conditional checkpoint");
        else if (r.Guidance != 0)
            throw new CliException("--guidance needs a class-conditional model, but this checkpoint is unconditional (trained without --conditional); " +
                                   "drop --guidance, or train with --conditional");

        var shape = new long[] { count, config.Unet.Channels, config.ImageSize, config.ImageSize };
        int captureEvery = r.GifPath is null ? 0 : Math.Max(1, sampler.Steps / Math.Max(1, r.GifFrames));
        var sw = Stopwatch.StartNew();
        SamplingResult? result = null;
        // Classifier-free guidance (w ≠ 0): one forward pass on [x; x] with labels [c; ∅] per step.
        DenoisingModel denoiser = classes is null
            ? (x, t) => model.forward(x, t, null)
            : ClassifierFreeGuidance.Guide((x, t, y) => model.forward(x, t, y), classes, config.Unet.NumClasses, r.Guidance);
        string guided = classes is null ? "" : string.Create(CultureInfo.InvariantCulture, $", guidance w={r.Guidance:0.###}");
        ConsoleProgress.Run($"sampling {count} images ({sampler.Name}{guided})", sampler.Steps, report =>
        {
            var progress = new SyncProgress<SamplingProgress>(p => report(p.Step, $"t={p.Timestep}"));
            result = sampler.Sample(denoiser, shape, generator, device, captureEvery, progress);
        });
        double seconds = sw.Elapsed.TotalSeconds;
        using (result)
        {
            int columns = (int)Math.Ceiling(Math.Sqrt(count));
            if (classes is not null && r.Class is null) columns = Math.Max(1, count / config.Unet.NumClasses);
            ImageGrid.SaveGridPng(result!.Samples, r.PngPath, columns, padding: 2, scale: 2);
            Console.WriteLine($"wrote {r.PngPath} ({count} samples, {sampler.Name}{guided}, {seconds.ToString("F1", CultureInfo.InvariantCulture)} s)");
            if (r.GifPath is not null)
            {
                ImageGrid.SaveAnimationGif(result.Intermediates, r.GifPath, columns, scale: 2);
                Console.WriteLine($"wrote {r.GifPath} ({result.Intermediates.Count} frames of the reverse process)");
            }
        }
        classes?.Dispose();
        return seconds;
    }
}

/// <summary>IProgress that reports on the calling thread (Progress&lt;T&gt; would post to the thread pool).</summary>
sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
