using Diffusion.Data;
using Diffusion.Sampling;
using Diffusion.Training;
using System.Globalization;
using System.Text.Json;

namespace Diffusion.Benchmarks;

/// <summary>How long <see cref="MachineBench.Run"/> measures the course's U-Net (<see cref="Recipe.CourseUnet"/>, the
/// shipped checkpoints') and <c>train</c>'s default network (<see cref="Recipe.Default"/>'s): timed training steps per
/// configuration and the step counts of the two memory measurements. <see cref="Quick"/> swaps in a tiny network
/// everywhere: it checks that the benchmark runs, it measures nothing.</summary>
public sealed record MachineBenchSettings(int TimedSteps = 10, int MemorySteps = 1000, int SamplingMemorySteps = 1000, bool Quick = false);

/// <summary>The numbers of one <see cref="MachineBench.Run"/>, as JSON (one line) and as the summary table.</summary>
public sealed class MachineBenchResults
{
    public required double MatmulGflops { get; init; }
    public required IReadOnlyList<TrainingThroughput> Training { get; init; }
    public required double SamplingStepsPerSecond { get; init; }
    public required int SampledImages { get; init; }
    public required double DdimSeconds { get; init; }
    public required double DdpmSeconds { get; init; }
    public required List<(int Step, long Bytes)> TrainingMemory { get; init; }
    public required List<(int Step, long Bytes)> SamplingMemory { get; init; }
    public required int Threads { get; init; }

    static double Growth(List<(int Step, long Bytes)> m) => 100.0 * (m[^1].Bytes - m[0].Bytes) / m[0].Bytes;

    /// <summary>The JSON line (its keys are those earlier bench runs wrote).</summary>
    public string Json()
    {
        static Dictionary<string, long> Mb(List<(int Step, long Bytes)> m) =>
            m.ToDictionary(x => x.Step.ToString(CultureInfo.InvariantCulture), x => x.Bytes / 1_000_000);
        var results = new Dictionary<string, object?>
        {
            ["machine"] = $"{Environment.ProcessorCount} cores, {Environment.OSVersion}, .NET {Environment.Version}",
            ["threads"] = Threads,
            ["matmul_gflops"] = Math.Round(MatmulGflops, 1),
            ["training"] = Training,
            ["sampling_steps_per_s_batch64"] = Math.Round(SamplingStepsPerSecond, 2),
            ["ddim50_seconds"] = Math.Round(DdimSeconds, 1),
            ["ddpm500_seconds"] = double.IsNaN(DdpmSeconds) ? null : Math.Round(DdpmSeconds, 1),
            ["training_rss_mb"] = Mb(TrainingMemory),
            ["training_rss_growth_percent"] = Math.Round(Growth(TrainingMemory), 2),
            ["sampling_rss_mb"] = Mb(SamplingMemory),
            ["sampling_rss_growth_percent"] = Math.Round(Growth(SamplingMemory), 2),
        };
        return JsonSerializer.Serialize(results);
    }

    /// <summary>The summary: matmul speed, a table of training configurations (share of matmul FLOP/s), sampling, memory.</summary>
    public IEnumerable<string> Summary()
    {
        var c = CultureInfo.InvariantCulture;
        yield return $"matmul 2048² fp32: {MatmulGflops:F0} GFLOP/s ({Threads} threads)";
        yield return $"{"configuration",-52} {"batch",5} {"ms/step",8} {"img/s",7} {"GFLOP/img",9} {"GFLOP/s",8} {"of matmul",9}";
        foreach (var t in Training)
            yield return string.Create(c,
                $"{t.Name,-52} {t.BatchSize,5} {t.MedianStepMs,8:F0} {t.ImagesPerSecond,7:F1} {t.ForwardGflopsPerImage,9:F3} {t.AchievedGflops,8:F1} {t.AchievedGflops / MatmulGflops,9:P0}");
        yield return string.Create(c,
            $"sampling: {SamplingStepsPerSecond:F2} network evaluations/s at batch 64; {SampledImages} images: DDIM-50 {DdimSeconds:F1} s, DDPM-500 {DdpmSeconds:F1} s");
        yield return string.Create(c,
            $"memory: training RSS {TrainingMemory[0].Bytes / 1e6:F0} MB at step {TrainingMemory[0].Step} → {TrainingMemory[^1].Bytes / 1e6:F0} MB at step {TrainingMemory[^1].Step} ({Growth(TrainingMemory):+0.0;-0.0}%); " +
            $"sampling {SamplingMemory[0].Bytes / 1e6:F0} → {SamplingMemory[^1].Bytes / 1e6:F0} MB ({Growth(SamplingMemory):+0.0;-0.0}%)");
    }
}

/// <summary>
/// The whole-machine benchmark of <c>bench</c>: libtorch's matmul FLOP/s, training throughput of the default and the
/// annotated U-Net, sampling speed (network evaluations/s, DDIM-50 and DDPM-500), and whether memory stays flat over
/// long training and sampling runs.
/// </summary>
public static class MachineBench
{
    public static MachineBenchResults Run(MachineBenchSettings s, ImageDataset data, Action<string> log)
    {
        bool q = s.Quick;
        int memN = q ? 110 : s.MemorySteps, sampN = q ? 110 : s.SamplingMemorySteps;
        log("matmul 2048×2048 fp32 …");
        double matmul = Bench.MatmulGflops();

        var tiny = new UnetConfig { Dim = 8, DimMults = [1, 2], LinearAttentionLevels = [1] };
        static string Levels(UnetConfig u) => u.LinearAttentionLevels is { } l ? string.Join(",", l) : "all";
        UnetConfig course = Recipe.CourseUnet, trainDefault = Recipe.Default.Model.Unet;
        var memoryModel = q ? tiny : course;
        int memoryBatch = q ? 8 : 64;
        var configs = q
            ? new (string Name, UnetConfig Config, int Batch)[] { ("tiny (--quick)", tiny, 16) }
            : [
                ($"course U-Net (dim {course.Dim}, attention levels {Levels(course)})", course, 64),
                ($"train's default (dim {trainDefault.Dim}, attention levels {Levels(trainDefault)})", trainDefault, 64),
                ("annotated (dim 28, linear attention everywhere)", new UnetConfig(), 64),
                ("annotated", new UnetConfig(), 128),
            ];
        var training = new List<TrainingThroughput>();
        foreach (var (name, config, batch) in configs)
        {
            log($"training: {name}, batch {batch} …");
            training.Add(Bench.Training(name, config, data, batch, q ? 2 : s.TimedSteps));
        }

        using var net = new Unet(memoryModel);
        log("sampling steps/s at batch 64 …");
        double stepsPerSecond = Bench.SamplingStepsPerSecond(net, 1, 28, 64, q ? 3 : 10);
        using var schedule = new NoiseSchedule(ScheduleKind.Cosine, 500);
        int images = q ? 8 : 64;
        log($"DDIM-50 and DDPM-500 for {images} images …");
        using var ddimSampler = new DdimSampler(schedule, q ? 5 : 50);
        using var ddpmSampler = new DdpmSampler(schedule);
        double ddim = Bench.SamplingSeconds(ddimSampler, net, [images, 1, 28, 28]);
        double ddpm = q ? double.NaN : Bench.SamplingSeconds(ddpmSampler, net, [images, 1, 28, 28]);

        log($"training memory to step {memN} …");
        var trainMem = Bench.TrainingMemory(memoryModel, data, memoryBatch, [100, memN], step => { if (step % 100 == 0) log($"  step {step}"); });
        log($"sampling memory over {sampN} steps …");
        var sampMem = Bench.SamplingMemory(net, 1, 28, memoryBatch, [100, sampN]);
        return new MachineBenchResults
        {
            MatmulGflops = matmul, Training = training, SamplingStepsPerSecond = stepsPerSecond, SampledImages = images,
            DdimSeconds = ddim, DdpmSeconds = ddpm, TrainingMemory = trainMem, SamplingMemory = sampMem,
            Threads = get_num_threads(),
        };
    }
}
