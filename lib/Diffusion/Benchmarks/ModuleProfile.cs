using System.Diagnostics;
using System.Globalization;

namespace Diffusion.Benchmarks;

/// <summary>Time of one kind of layer in a training step: forward, and forward + backward (milliseconds, summed over its instances).</summary>
public sealed record LayerTime(string Kind, int Count, double ForwardMs, double ForwardBackwardMs);

/// <summary>A training step split into its parts, and the layers' share of it.</summary>
public sealed record StepProfile(int BatchSize, double ForwardMs, double BackwardMs, double OptimizerMs, IReadOnlyList<LayerTime> Layers)
{
    public double StepMs => ForwardMs + BackwardMs + OptimizerMs;
}

/// <summary>
/// Where the time of a U-Net training step goes (TorchSharp has no profiler). One forward pass records the input shape of
/// every layer; each layer is then run alone on a random input of that shape, forward and forward + backward (input and
/// weight gradients), and the medians are summed per kind. Attention layers are timed whole (their inner 1×1
/// convolutions are not counted twice); what the table leaves out (adds, concatenations, the time MLP) is the
/// difference to the whole step.
/// </summary>
public static class ModuleProfile
{
    public static StepProfile Run(UnetConfig config, int batchSize, int size, int repeats = 5)
    {
        using var net = new Unet(config);
        net.train();
        var shapes = RecordInputShapes(net, config.Channels, size);
        var layers = shapes.GroupBy(s => Kind(s.Module))
            .Select(g =>
            {
                double fwd = 0, both = 0;
                foreach (var (module, shape) in g)
                {
                    long[] batched = [batchSize, .. shape[1..]];
                    var (f, fb) = TimeLayer(module, batched, repeats);
                    fwd += f;
                    both += fb;
                }
                return new LayerTime(g.Key, g.Count(), fwd, both);
            })
            .OrderByDescending(l => l.ForwardBackwardMs).ToList();

        var (forward, backward, optimizer) = TimeStep(net, config.Channels, batchSize, size, repeats);
        return new StepProfile(batchSize, forward, backward, optimizer, layers);
    }

    /// <summary>The profiles of <paramref name="configs"/> on 28×28 images as printable lines.</summary>
    public static IEnumerable<string> Report(IEnumerable<(string Name, UnetConfig Config)> configs, int batchSize, int repeats)
    {
        foreach (var (name, config) in configs)
        {
            var p = Run(config, batchSize, 28, repeats);
            yield return string.Create(CultureInfo.InvariantCulture,
                $"{name}, batch {batchSize}: step {p.StepMs:F0} ms = forward {p.ForwardMs:F0} + backward {p.BackwardMs:F0} + AdamW {p.OptimizerMs:F0} ({batchSize * 1000 / p.StepMs:F1} img/s)");
            yield return $"  {"layer",-34} {"count",5} {"fwd ms",8} {"fwd+bwd ms",10} {"of step",8}";
            foreach (var l in p.Layers)
                yield return string.Create(CultureInfo.InvariantCulture,
                    $"  {l.Kind,-34} {l.Count,5} {l.ForwardMs,8:F1} {l.ForwardBackwardMs,10:F1} {l.ForwardBackwardMs / p.StepMs,8:P0}");
            double rest = p.ForwardMs + p.BackwardMs - p.Layers.Sum(l => l.ForwardBackwardMs);
            yield return string.Create(CultureInfo.InvariantCulture, $"  {"rest (adds, cat, time MLP, loss)",-34} {"",5} {"",8} {rest,10:F1} {rest / p.StepMs,8:P0}");
        }
    }

    static string Kind(nn.Module m) => m switch
    {
        WeightStandardizedConv2d => "3×3 conv, weight-standardised",
        SafeConv2d s => $"{s.KernelSize}×{s.KernelSize} conv",
        PointwiseConv2d => "1×1 conv",
        GroupNorm => "GroupNorm",
        LinearAttention => "linear attention (whole)",
        Attention => "attention (whole)",
        _ => m.GetType().Name,
    };

    static bool IsTimed(nn.Module m) => m is WeightStandardizedConv2d or SafeConv2d or PointwiseConv2d or GroupNorm or SiLU
        or GELU or LinearAttention or Attention or PixelUnshuffle or Upsample;

    /// <summary>(layer, input shape) of every timed layer, in the order of one forward pass on one image.</summary>
    static List<(nn.Module<Tensor, Tensor> Module, long[] Shape)> RecordInputShapes(Unet net, int channels, int size)
    {
        var inside = new HashSet<nn.Module>();
        foreach (var m in net.modules())
            if (m is LinearAttention or Attention)
                foreach (var c in m.modules()) if (!ReferenceEquals(c, m)) inside.Add(c);
        var seen = new List<(nn.Module<Tensor, Tensor>, long[])>();
        var removers = new List<Action>();
        foreach (var m in net.modules())
        {
            if (!IsTimed(m) || inside.Contains(m) || m is not nn.Module<Tensor, Tensor> layer) continue;
            var h = layer.register_forward_pre_hook((_, x) =>
            {
                seen.Add((layer, x.shape));
                return x;
            });
            removers.Add(h.remove);
        }
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            net.call(zeros(1, channels, size, size), zeros(1, dtype: ScalarType.Int64));
        }
        finally
        {
            foreach (var r in removers) r();
        }
        return seen;
    }

    static (double Forward, double ForwardBackward) TimeLayer(nn.Module<Tensor, Tensor> layer, long[] shape, int repeats)
    {
        var fwd = new List<double>();
        var both = new List<double>();
        for (int i = 0; i < repeats + 1; i++)
        {
            using var scope = NewDisposeScope();
            var x = randn(shape).requires_grad_();
            var sw = Stopwatch.StartNew();
            var y = layer.call(x);
            double f = sw.Elapsed.TotalMilliseconds;
            var grad = randn_like(y);
            sw.Restart();
            y.backward([grad]);
            double b = sw.Elapsed.TotalMilliseconds;
            if (i == 0) continue;                                   // warm-up
            fwd.Add(f);
            both.Add(f + b);
        }
        layer.zero_grad();
        return (Bench.Median(fwd), Bench.Median(both));
    }

    static (double Forward, double Backward, double Optimizer) TimeStep(Unet net, int channels, int batchSize, int size, int repeats)
    {
        using var optimizer = optim.AdamW(net.parameters(), 1e-4);
        var fwd = new List<double>();
        var bwd = new List<double>();
        var opt = new List<double>();
        for (int i = 0; i < repeats + 1; i++)
        {
            using var scope = NewDisposeScope();
            var x = randn(batchSize, channels, size, size);
            var t = randint(0, 500, [batchSize], dtype: ScalarType.Int64);
            var eps = randn_like(x);
            var sw = Stopwatch.StartNew();
            // L = ‖ε − ε_θ(x, t)‖²
            var loss = nn.functional.mse_loss(net.call(x, t), eps);
            double f = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            optimizer.zero_grad();
            loss.backward();
            double b = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            optimizer.step();
            double o = sw.Elapsed.TotalMilliseconds;
            if (i == 0) continue;
            fwd.Add(f);
            bwd.Add(b);
            opt.Add(o);
        }
        return (Bench.Median(fwd), Bench.Median(bwd), Bench.Median(opt));
    }
}
