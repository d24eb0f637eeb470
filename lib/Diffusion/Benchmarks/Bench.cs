using System.Diagnostics;
using Diffusion.Data;
using Diffusion.Sampling;
using Diffusion.Training;

namespace Diffusion.Benchmarks;

/// <summary>Throughput of training steps for one U-Net configuration.</summary>
public sealed record TrainingThroughput(string Name, long Parameters, int BatchSize, double MedianStepMs,
    double ImagesPerSecond, double ForwardGflopsPerImage, double AchievedGflops);

/// <summary>Measurements behind the CLI's <c>bench</c> command. Every number is a median over repeated runs.</summary>
public static class Bench
{
    /// <summary>Median GFLOP/s of an n×n fp32 matrix product in this process (the machine's reference speed).</summary>
    public static double MatmulGflops(int n = 2048, int repeats = 7)
    {
        using var scope = NewDisposeScope();
        var a = randn(n, n);
        var b = randn(n, n);
        matmul(a, b).Dispose();                                           // warm-up
        var times = new List<double>();
        for (int i = 0; i < repeats; i++)
        {
            var sw = Stopwatch.StartNew();
            matmul(a, b).Dispose();
            times.Add(sw.Elapsed.TotalSeconds);
        }
        return 2.0 * n * n * n / Median(times) / 1e9;
    }

    /// <summary>
    /// Training throughput of <paramref name="unet"/> with the library's Trainer on real data: median step time over
    /// <paramref name="steps"/> steps after <paramref name="warmup"/> warm-up steps.
    /// </summary>
    public static TrainingThroughput Training(string name, UnetConfig unet, ImageDataset data, int batchSize, int steps = 10, int warmup = 3)
    {
        var config = new DiffusionModelConfig { Unet = unet, ImageSize = data.Height, Timesteps = 1000 };
        using var trainer = new Trainer(config, new TrainingOptions { Steps = steps + warmup, BatchSize = batchSize, EmaDecay = 0.995 }, data);
        for (int i = 0; i < warmup; i++) trainer.TrainStep();
        var times = new List<double>();
        for (int i = 0; i < steps; i++)
        {
            var sw = Stopwatch.StartNew();
            trainer.TrainStep();
            times.Add(sw.Elapsed.TotalMilliseconds);
        }
        double ms = Median(times);
        double ips = batchSize * 1000 / ms;
        double gflopsPerImage = FlopCounter.ForwardFlopsPerImage(trainer.Model, unet.Channels, data.Height) / 1e9;
        // A training step costs about three forward passes (forward, and backward through activations and weights).
        return new TrainingThroughput(name, trainer.Model.ParameterCount(), batchSize, ms, ips, gflopsPerImage, 3 * gflopsPerImage * ips);
    }

    /// <summary>Network evaluations per second while sampling (no gradients), batch of <paramref name="batchSize"/>.</summary>
    public static double SamplingStepsPerSecond(Unet net, int channels, int size, int batchSize, int steps = 10)
    {
        net.eval();
        using var noGrad = no_grad();
        var times = new List<double>();
        for (int i = 0; i < steps + 2; i++)
        {
            using var scope = NewDisposeScope();
            var x = randn(batchSize, channels, size, size);
            var t = full([batchSize], 10, dtype: ScalarType.Int64);
            var sw = Stopwatch.StartNew();
            net.call(x, t);
            if (i >= 2) times.Add(sw.Elapsed.TotalSeconds);
        }
        return 1 / Median(times);
    }

    /// <summary>Wall time of a full sampling run (seconds).</summary>
    public static double SamplingSeconds(ISampler sampler, Unet net, long[] shape, int seed = 0)
    {
        net.eval();
        using var g = new Generator((ulong)seed);
        var sw = Stopwatch.StartNew();
        using var result = sampler.Sample((x, t) => net.call(x, t), shape, g);
        return sw.Elapsed.TotalSeconds;
    }

    /// <summary>Resident memory of this process in bytes (after a GC, so only native growth remains visible).</summary>
    public static long ResidentBytes()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using var p = Process.GetCurrentProcess();
        p.Refresh();
        return p.WorkingSet64;
    }

    /// <summary>Resident memory while training: after each step in <paramref name="at"/> (ascending).</summary>
    public static List<(int Step, long Bytes)> TrainingMemory(UnetConfig unet, ImageDataset data, int batchSize, int[] at,
        Action<int>? onStep = null)
    {
        var config = new DiffusionModelConfig { Unet = unet, ImageSize = data.Height, Timesteps = 1000 };
        using var trainer = new Trainer(config, new TrainingOptions { Steps = at[^1], BatchSize = batchSize }, data);
        var result = new List<(int, long)>();
        foreach (var stop in at)
        {
            while (trainer.Step < stop)
            {
                trainer.TrainStep();
                onStep?.Invoke(trainer.Step);
            }
            result.Add((stop, ResidentBytes()));
        }
        return result;
    }

    /// <summary>Resident memory across a long sampling loop: after each step in <paramref name="at"/>.</summary>
    public static List<(int Step, long Bytes)> SamplingMemory(Unet net, int channels, int size, int batchSize, int[] at)
    {
        using var schedule = new NoiseSchedule(ScheduleKind.Linear, at[^1]);
        var sampler = new DdpmSampler(schedule);
        var result = new List<(int, long)>();
        var marks = new HashSet<int>(at);
        using var g = new Generator(0);
        var progress = new Reporter(p =>
        {
            if (marks.Contains(p.Step)) result.Add((p.Step, ResidentBytes()));
        });
        net.eval();
        using var r = sampler.Sample((x, t) => net.call(x, t), [batchSize, channels, size, size], g, progress: progress);
        return result;
    }

    sealed class Reporter(Action<SamplingProgress> report) : IProgress<SamplingProgress>
    {
        public void Report(SamplingProgress value) => report(value);
    }

    internal static double Median(List<double> xs)
    {
        var s = xs.Order().ToList();
        return s.Count % 2 == 1 ? s[s.Count / 2] : (s[s.Count / 2 - 1] + s[s.Count / 2]) / 2;
    }
}
