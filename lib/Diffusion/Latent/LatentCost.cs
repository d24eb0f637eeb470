using System.Diagnostics;
using Diffusion.Benchmarks;
using Diffusion.Data;

namespace Diffusion.Latent;

/// <summary>Measured cost of one diffusion model (pixel or latent) at one batch size.</summary>
public sealed record DiffusionCost(string Name, string Input, long Parameters, int BatchSize, double TrainStepMs,
    double SamplingStepMs, double ForwardGflopsPerImage, double DecodeMs, double DecodeGflopsPerImage);

/// <summary>
/// Pixel diffusion vs latent diffusion, measured the same way: the library's <see cref="Bench"/> times training steps
/// (the course's <c>Trainer</c>, forward + backward + AdamW + EMA) and sampling steps (one no-grad forward), and
/// <see cref="FlopCounter"/> counts the network's FLOPs per image. The latent model also pays one decoder pass per
/// sample at the very end (not per step).
/// </summary>
public static class LatentCost
{
    public static DiffusionCost Measure(string name, UnetConfig unet, ImageDataset data, int batchSize,
        Autoencoder? decoder = null, int steps = 5, int warmup = 2)
    {
        var training = Bench.Training(name, unet with { NumClasses = 0 }, data, batchSize, steps, warmup);
        using var net = new Unet(unet with { NumClasses = 0 });
        double samplingMs = 1000 / Bench.SamplingStepsPerSecond(net, unet.Channels, data.Height, batchSize, steps);
        double decodeMs = 0, decodeGflops = 0;
        if (decoder is not null)
        {
            var c = decoder.Config;
            decoder.eval();
            var times = new List<double>();
            using (no_grad())
                for (int i = 0; i < steps + 1; i++)
                {
                    using var scope = NewDisposeScope();
                    var z = randn(batchSize, c.LatentChannels, c.LatentSize, c.LatentSize);
                    var sw = Stopwatch.StartNew();
                    decoder.Decode(z);
                    if (i > 0) times.Add(sw.Elapsed.TotalMilliseconds);
                }
            decodeMs = Bench.Median(times);
            decodeGflops = FlopCounter.ForwardFlops(decoder.DecoderNet,
                () => decoder.DecoderNet.call(zeros(1, c.LatentChannels, c.LatentSize, c.LatentSize))) / 1e9;
        }
        return new DiffusionCost(name, $"{data.Height}×{data.Width}×{data.Channels}", training.Parameters, batchSize,
            training.MedianStepMs, samplingMs, training.ForwardGflopsPerImage, decodeMs, decodeGflops);
    }
}
