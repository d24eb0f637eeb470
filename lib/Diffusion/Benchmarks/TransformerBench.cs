using Diffusion.Forward;
using System.Diagnostics;
using System.Globalization;
using Diffusion.Flow;
using Diffusion.Model.Transformer;

namespace Diffusion.Benchmarks;

/// <summary>Training throughput of one network configuration: a median step time and the matmul FLOP/s it reaches.</summary>
/// <param name="Name">What the row shows.</param>
/// <param name="Parameters">Trainable parameters.</param>
/// <param name="BatchSize">Images per step.</param>
/// <param name="MedianStepMs">Median wall time of one step (forward, backward, AdamW).</param>
/// <param name="ImagesPerSecond">BatchSize / step time.</param>
/// <param name="ForwardGflopsPerImage">Forward GFLOP of one image (2 per multiply–add).</param>
/// <param name="AchievedGflops">3 × forward FLOPs × images/s: the FLOP rate of the step, counted as <see cref="Bench.Training"/> counts it.</param>
/// <param name="MatmulGflops">Median GFLOP/s of a 2048² matmul timed between this row's steps (the same load as the steps saw).</param>
/// <param name="MatmulShare">AchievedGflops / MatmulGflops.</param>
public sealed record NetworkThroughput(string Name, long Parameters, int BatchSize, double MedianStepMs, double ImagesPerSecond,
    double ForwardGflopsPerImage, double AchievedGflops, double MatmulGflops, double MatmulShare);

/// <summary>The rows of one <see cref="TransformerBench.Run"/> and the matmul speed they are compared with.</summary>
public sealed record TransformerBenchResults(double MatmulGflops, int Threads, IReadOnlyList<NetworkThroughput> Rows)
{
    /// <summary>A table: one line per configuration, with its share of the in-process matmul FLOP/s.</summary>
    public IEnumerable<string> Summary()
    {
        var c = CultureInfo.InvariantCulture;
        yield return string.Create(c, $"matmul 2048² fp32: {MatmulGflops:F0} GFLOP/s ({Threads} threads); training steps (forward, backward, AdamW), median;");
        yield return "each row's share is of the matmul timed between its own steps";
        yield return $"{"configuration",-54} {"params",9} {"batch",5} {"ms/step",8} {"img/s",7} {"GFLOP/img",9} {"GFLOP/s",8} {"matmul",7} {"share",6}";
        foreach (var r in Rows)
            yield return string.Create(c,
                $"{r.Name,-54} {r.Parameters,9:N0} {r.BatchSize,5} {r.MedianStepMs,8:F0} {r.ImagesPerSecond,7:F1} {r.ForwardGflopsPerImage,9:F3} {r.AchievedGflops,8:F1} {r.MatmulGflops,7:F0} {r.MatmulShare,6:P0}");
    }
}

/// <summary>
/// The speed of diffusion transformers on this machine: timed training steps of <see cref="Dit"/> configurations on
/// Fashion-MNIST-sized pixels (1×28×28) and on the autoencoder's latents (4×8×8), with the rectified-flow loss, beside
/// the default U-Net at the same batch, each as a share of the matmul FLOP/s measured in the same process. A DiT's cost
/// is almost all matrix products on [B·N, D] activations, so this share says how much of the machine it uses. On a
/// shared machine the speed of both changes from minute to minute, so each row times a 2048² matmul after each of its
/// training steps and divides by that median: the share compares the two under the same load.
/// </summary>
public static class TransformerBench
{
    /// <summary>The configurations <see cref="Run"/> times: pixel DiTs of two shapes, latent DiTs, a tiny one for <c>--quick</c>.</summary>
    public static IReadOnlyList<(string Name, DitConfig Config, int Batch)> Configurations(bool quick) => quick
        ? [("DiT tiny (--quick): 28², patch 4, D 32, depth 1", new DitConfig(PatchSize: 4, Hidden: 32, Depth: 1, Heads: 2), 16)]
        : [
            ("DiT pixels: patch 2, D 128, depth 6 (196 tokens)", DitConfig.Small, 64),
            ("DiT pixels: patch 4, D 256, depth 6 (49 tokens)", new DitConfig(PatchSize: 4, Hidden: 256, Depth: 6, Heads: 4), 64),
            ("DiT pixels: patch 4, D 256, depth 6 (49 tokens)", new DitConfig(PatchSize: 4, Hidden: 256, Depth: 6, Heads: 4), 128),
            ("DiT pixels: patch 4, D 192, depth 6 (49 tokens)", new DitConfig(PatchSize: 4, Hidden: 192, Depth: 6, Heads: 4), 64),
            ("DiT latents 4×8²: patch 1, D 192, depth 6 (64 tokens)", new DitConfig(ImageSize: 8, Channels: 4, PatchSize: 1, Hidden: 192, Depth: 6, Heads: 4), 64),
            ("DiT latents 4×8²: patch 2, D 256, depth 6 (16 tokens)", new DitConfig(ImageSize: 8, Channels: 4, PatchSize: 2, Hidden: 256, Depth: 6, Heads: 4), 64),
        ];

    /// <summary>
    /// Median time of a DiT training step on random data of the configuration's shape: the rectified-flow loss
    /// ‖(ε − x₀) − v̂(x_t, t)‖² with logit-normal t, backward, AdamW; each step in its own dispose scope.
    /// </summary>
    public static NetworkThroughput DitTraining(string name, DitConfig config, int batchSize, int steps = 10, int warmup = 3, int seed = 0)
    {
        using var net = new Dit(config);
        using var g = new Generator((ulong)seed);
        var (ms, matmul) = TimeSteps(net, (x, t) => net.call(x, t * RectifiedFlow.NetworkTimeScale),
            [batchSize, config.Channels, config.ImageSize, config.ImageSize], g, steps, warmup);
        return Row(name, net.ParameterCount(), batchSize, ms, config.ForwardFlopsPerImage(), matmul);
    }

    /// <summary>The same step for a U-Net (random images, the same loss), so the DiT rows have a peer measured alike.</summary>
    public static NetworkThroughput UnetTraining(string name, UnetConfig config, int size, int batchSize, int steps = 10, int warmup = 3, int seed = 0)
    {
        using var net = new Unet(config);
        using var g = new Generator((ulong)seed);
        var (ms, matmul) = TimeSteps(net, (x, t) => net.call(x, (t * 999).to(ScalarType.Int64)), [batchSize, config.Channels, size, size], g, steps, warmup);
        return Row(name, net.ParameterCount(), batchSize, ms, FlopCounter.ForwardFlopsPerImage(net, config.Channels, size), matmul);
    }

    /// <summary>
    /// The DiT table of <c>bench</c>: matmul GFLOP/s, then each of <see cref="Configurations"/> and, unless quick, the
    /// U-Net <paramref name="unetPeer"/> (the default run's network) at batch 64 on 28×28 pixels.
    /// </summary>
    public static TransformerBenchResults Run(UnetConfig? unetPeer, bool quick, Action<string> log, int steps = 10)
    {
        log("matmul 2048×2048 fp32 …");
        double matmul = Bench.MatmulGflops();
        var rows = new List<NetworkThroughput>();
        if (unetPeer is not null && !quick)
        {
            log("training: U-Net peer, batch 64 …");
            rows.Add(UnetTraining($"U-Net pixels: dim {unetPeer.Dim}, mults {string.Join(",", unetPeer.DimMults)}", unetPeer, 28, 64, steps));
        }
        foreach (var (name, config, batch) in Configurations(quick))
        {
            log($"training: {name}, batch {batch} …");
            rows.Add(DitTraining(name, config, batch, quick ? 2 : steps, quick ? 1 : 3));
        }
        return new TransformerBenchResults(matmul, get_num_threads(), rows);
    }

    static NetworkThroughput Row(string name, long parameters, int batchSize, double ms, double forwardFlops, double matmulGflops)
    {
        double ips = batchSize * 1000 / ms;
        double gflopsPerImage = forwardFlops / 1e9;
        double achieved = 3 * gflopsPerImage * ips;        // a training step ≈ three forward passes
        return new NetworkThroughput(name, parameters, batchSize, ms, ips, gflopsPerImage, achieved, matmulGflops, achieved / matmulGflops);
    }

    /// <summary>
    /// Median milliseconds of <paramref name="steps"/> training steps after <paramref name="warmup"/> untimed ones, and
    /// the median GFLOP/s of a 2048² matmul timed after each timed step.
    /// </summary>
    internal static (double StepMs, double MatmulGflops) TimeSteps(nn.Module net, Func<Tensor, Tensor, Tensor> model, long[] shape, Generator g, int steps, int warmup)
    {
        net.train();
        using var optimizer = optim.AdamW(net.parameters(), 1e-4);
        using var a = randn(2048, 2048, generator: g);
        using var b = randn(2048, 2048, generator: g);
        var times = new List<double>();
        var matmulRates = new List<double>();
        for (int i = 0; i < warmup + steps; i++)
        {
            using var scope = NewDisposeScope();
            var x0 = randn(shape, generator: g);
            var noise = randn(shape, generator: g);
            var t = RectifiedFlow.SampleTimes(shape[0], FlowTimeDistribution.LogitNormal, g);
            var sw = Stopwatch.StartNew();
            var (xt, target) = RectifiedFlow.TrainingPair(x0, noise, t);
            var loss = nn.functional.mse_loss(model(xt, t), target);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            if (i < warmup) continue;
            times.Add(sw.Elapsed.TotalMilliseconds);
            sw.Restart();
            matmul(a, b).Dispose();
            matmulRates.Add(2.0 * 2048 * 2048 * 2048 / sw.Elapsed.TotalSeconds / 1e9);
        }
        return (Bench.Median(times), Bench.Median(matmulRates));
    }
}
