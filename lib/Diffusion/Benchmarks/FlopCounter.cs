using Diffusion.Model;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

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
            switch (m)
            {
                case Conv2d conv:
                {
                    var r = conv.register_forward_hook((_, _, output) =>
                    {
                        long k = conv.kernel_size.Aggregate(1L, (a, b) => a * b);
                        flops += 2.0 * output.numel() * (conv.in_channels / conv.groups) * k;
                        return output;
                    });
                    removers.Add(r.remove);
                    break;
                }
                case PointwiseConv2d pointwise:
                {
                    var r = pointwise.register_forward_hook((_, _, output) =>
                    {
                        flops += 2.0 * output.numel() * pointwise.InChannels;
                        return output;
                    });
                    removers.Add(r.remove);
                    break;
                }
                case SafeConv2d or WeightStandardizedConv2d:
                {
                    var w = m.parameters().First();           // [out, in/groups, k, k]; SafeConv2d's zero padding is not counted
                    var r = ((nn.Module<Tensor, Tensor>)m).register_forward_hook((_, _, output) =>
                    {
                        flops += 2.0 * output.numel() * w.shape[1] * w.shape[2] * w.shape[3];
                        return output;
                    });
                    removers.Add(r.remove);
                    break;
                }
                case Linear linear:
                {
                    var r = linear.register_forward_hook((_, _, output) =>
                    {
                        flops += 2.0 * output.numel() * linear.in_features;
                        return output;
                    });
                    removers.Add(r.remove);
                    break;
                }
                case Attention attention:
                {
                    var r = attention.register_forward_hook((_, input, output) =>
                    {
                        // q·kᵀ and attn·v: 2 · (b·h) · n² · d each, h·d = hidden channels
                        double n = input.shape[2] * input.shape[3];
                        flops += 2 * 2.0 * input.shape[0] * attention.HiddenDim * n * n;
                        return output;
                    });
                    removers.Add(r.remove);
                    break;
                }
                case LinearAttention linearAttention:
                {
                    var r = linearAttention.register_forward_hook((_, input, output) =>
                    {
                        // What forward computes (it calls neither to_qkv nor to_out's 1×1 convolution, so no other hook
                        // sees these): [q; k] = W x (2·hidden·c per pixel), k xᵀ (hidden·c per pixel), P_h = (W_out W_v)ᵀ
                        // (h·c·d·c), M = (k xᵀ) P (hidden·c·c per image), y = M q (c·hidden per pixel).
                        double n = input.shape[2] * input.shape[3], b = input.shape[0], c = input.shape[1];
                        double hidden = linearAttention.HiddenDim;
                        flops += 2.0 * b * n * c * hidden * 4;
                        flops += 2.0 * hidden * c * c + 2.0 * b * hidden * c * c;
                        return output;
                    });
                    removers.Add(r.remove);
                    break;
                }
            }
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
}
