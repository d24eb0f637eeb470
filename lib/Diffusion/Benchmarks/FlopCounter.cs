namespace Diffusion.Benchmarks;

/// <summary>
/// Counts the floating-point operations of one forward pass (2 per multiply–add) of the layers that dominate a U-Net:
/// convolutions, linear layers, and the matrix products inside attention. Element-wise work (norms, activations,
/// softmax) is left out, as is usual for FLOP counts. A training step costs about 3× the forward pass.
/// </summary>
public static class FlopCounter
{
    /// <summary>Forward FLOPs for one image of the given shape.</summary>
    public static double ForwardFlopsPerImage(Unet net, int channels, int size) =>
        ForwardFlops(net, () => net.call(zeros(1, channels, size, size), zeros(1, dtype: ScalarType.Int64)));

    /// <summary>Forward FLOPs of the layers inside <paramref name="root"/> while <paramref name="run"/> runs (e.g. an autoencoder's decoder on one latent).</summary>
    public static double ForwardFlops(nn.Module root, Func<Tensor> run)
    {
        double flops = 0;
        var removers = new List<Action>();
        foreach (var m in root.modules())
        {
            if (m is not nn.Module<Tensor, Tensor> layer || Cost(m) is not { } cost) continue;
            var r = layer.register_forward_hook((_, input, output) =>
            {
                flops += cost(input, output);
                return output;
            });
            removers.Add(r.remove);
        }
        try
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            run();
        }
        finally
        {
            foreach (var remove in removers) remove();
        }
        return flops;
    }

    /// <summary>The forward FLOPs of one call of <paramref name="m"/> from its input and output; null for layers not counted.</summary>
    static Func<Tensor, Tensor, double>? Cost(nn.Module m) => m switch
    {
        Conv2d conv => (_, output) => 2.0 * output.numel() * (conv.in_channels / conv.groups) * conv.kernel_size.Aggregate(1L, (a, b) => a * b),
        PointwiseConv2d pointwise => (_, output) => 2.0 * output.numel() * pointwise.InChannels,
        // [out, in/groups, k, k]; SafeConv2d's zero padding is not counted
        SafeConv2d or WeightStandardizedConv2d when m.parameters().First() is var w =>
            (_, output) => 2.0 * output.numel() * w.shape[1] * w.shape[2] * w.shape[3],
        Linear linear => (_, output) => 2.0 * output.numel() * linear.in_features,
        // q·kᵀ and attn·v: 2 · (b·h) · n² · d each, h·d = hidden channels
        Attention attention => (input, _) =>
            2 * 2.0 * input.shape[0] * attention.Heads.Hidden * Math.Pow(input.shape[2] * input.shape[3], 2),
        // What forward computes (it calls neither to_qkv nor to_out's 1×1 convolution, so no other hook sees these):
        // [q; k] = W x (2·hidden·c per pixel), k xᵀ (hidden·c per pixel), P_h = (W_out W_v)ᵀ (h·c·d·c),
        // M = (k xᵀ) P (hidden·c·c per image), y = M q (c·hidden per pixel).
        LinearAttention linear => (input, _) =>
        {
            double n = input.shape[2] * input.shape[3], b = input.shape[0], c = input.shape[1], hidden = linear.Heads.Hidden;
            return 2.0 * b * n * c * hidden * 4 + 2.0 * hidden * c * c + 2.0 * b * hidden * c * c;
        },
        _ => null,
    };
}
