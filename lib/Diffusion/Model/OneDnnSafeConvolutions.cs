using static TorchSharp.torch.nn;

namespace Diffusion.Model;

// The work-arounds for libtorch 2.10's oneDNN convolutions (README, "NaN from oneDNN convolutions on some CPUs"):
// drop-in replacements for nn.Conv2d with the same parameter names, shapes and initialisation.

/// <summary>
/// nn.Conv2d with the same parameters (names, shapes, initialisation), whose channel counts are padded with zeros to
/// multiples of 16 inside the call. Why: libtorch 2.10's oneDNN convolutions returned NaN at random on this
/// project's CPU (AMD EPYC, family 26) whenever a channel count was not a multiple of 16 — 7–29 of 30 seeded training
/// steps of the U-Net with dim 8, 24 or 28, none with dim 16, 32 or 48 (oneDNN pads such channels in its blocked
/// layouts; the padding evidently was not always zero). The zero channels change nothing in the result
/// (SafeConv2dTests compares with an unpadded convolution) and cost (32/28)² more multiply-adds at 28 channels.
/// </summary>
public sealed class SafeConv2d : Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter? bias;
    readonly long padding, groups;

    public SafeConv2d(long inChannels, long outChannels, long kernelSize, long padding = 0, long groups = 1, bool hasBias = true)
        : base(nameof(SafeConv2d))
    {
        this.padding = padding;
        this.groups = groups;
        weight = new Parameter(empty(outChannels, inChannels / groups, kernelSize, kernelSize));
        init.kaiming_uniform_(weight, a: Math.Sqrt(5));                  // as nn.Conv2d
        if (hasBias)
        {
            bias = new Parameter(empty(outChannels));
            double bound = 1 / Math.Sqrt(inChannels / groups * kernelSize * kernelSize);
            init.uniform_(bias, -bound, bound);
        }
        RegisterComponents();
    }

    public long KernelSize => weight.shape[2];

    public override Tensor forward(Tensor x) => Convolve(x, weight, bias, padding, groups);

    /// <summary>Channels are padded to multiples of this before a convolution reaches oneDNN.</summary>
    public const long ChannelBlock = 16;

    /// <summary>
    /// DIFFUSION_CONV_PADDING=0 switches the padding off (a diagnostic: to see whether a CPU has the bug, e.g. with
    /// UnetTests.RepeatedTrainingPassesStayFinite).
    /// </summary>
    public static readonly bool PadChannels = Environment.GetEnvironmentVariable("DIFFUSION_CONV_PADDING") != "0";

    static long Pad(long channels) => (channels + ChannelBlock - 1) / ChannelBlock * ChannelBlock - channels;

    /// <summary>conv2d(x, weight, bias) with stride 1, computed with channel counts padded to multiples of 16.</summary>
    public static Tensor Convolve(Tensor x, Tensor weight, Tensor? bias, long padding, long groups = 1)
    {
        long cout = weight.shape[0], cin = x.shape[1];
        bool depthwise = groups > 1;
        if (depthwise && (groups != cin || cout != cin))
            throw new ArgumentException("SafeConv2d supports groups = 1 or depthwise convolutions (groups = in = out channels)");
        long padIn = Pad(cin), padOut = depthwise ? padIn : Pad(cout);
        if (padIn == 0 && padOut == 0 || !PadChannels)
            return functional.conv2d(x, weight, bias, padding: [padding, padding], groups: groups);
        using var scope = NewDisposeScope();
        // pad() lists dimensions from the last: (w, h, channels) for x; (kw, kh, in, out) for the weight.
        var xp = functional.pad(x, [0, 0, 0, 0, 0, padIn]);
        var wp = depthwise ? functional.pad(weight, [0, 0, 0, 0, 0, 0, 0, padOut])
                           : functional.pad(weight, [0, 0, 0, 0, 0, padIn, 0, padOut]);
        var bp = bias is null ? null : functional.pad(bias, [0, padOut]);
        var y = functional.conv2d(xp, wp, bp, padding: [padding, padding], groups: depthwise ? cin + padIn : 1);
        return y[.., ..(int)cout].contiguous().MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A 1×1 convolution — y[b,o,h,w] = Σ_c W[o,c] x[b,c,h,w] + bias[o] — computed as a matrix product. Same parameters
/// (names, shapes, initialisation) as <c>nn.Conv2d(in, out, 1)</c>, so checkpoints and PyTorch state_dicts are
/// interchangeable. Why not Conv2d: libtorch's oneDNN convolutions produced NaN at random on this project's CPU (see
/// <see cref="Diffusion.Platform.TorchNative.OneDnnEnabled"/>); as a matrix product the 1×1 convolutions avoid oneDNN.
/// </summary>
public sealed class PointwiseConv2d : Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter? bias;

    public PointwiseConv2d(long inChannels, long outChannels, bool hasBias = true) : base(nameof(PointwiseConv2d))
    {
        InChannels = inChannels;
        OutChannels = outChannels;
        weight = new Parameter(empty(outChannels, inChannels, 1, 1));
        init.kaiming_uniform_(weight, a: Math.Sqrt(5));                  // as nn.Conv2d
        if (hasBias)
        {
            bias = new Parameter(empty(outChannels));
            double bound = 1 / Math.Sqrt(inChannels);
            init.uniform_(bias, -bound, bound);
        }
        RegisterComponents();
    }

    public long InChannels { get; }
    public long OutChannels { get; }
    public Parameter Weight => weight;
    public Parameter? Bias => bias;

    public override Tensor forward(Tensor x) => Apply(x, weight, bias);

    /// <summary>The 1×1 convolution of <paramref name="x"/> with a [out, in, 1, 1] (or [out, in]) weight.</summary>
    public static Tensor Apply(Tensor x, Tensor weight, Tensor? bias = null)
    {
        using var scope = NewDisposeScope();
        // One GEMM over all positions, channels last: [b, h, w, c] · Wᵀ → [b, h, w, o]. Measured with `train --steps 25`
        // on 2 cores: 76 images/s for the default U-Net and 48 for the annotated one (linear attention at 28×28),
        // against 71 / 37 for a batched matmul W · x[b] and 36 for oneDNN's 1×1 convolution with padded channels.
        var y = functional.linear(x.permute(0, 2, 3, 1), weight.reshape(weight.shape[0], weight.shape[1]), bias);
        return y.permute(0, 3, 1, 2).contiguous().MoveToOuterDisposeScope();
    }
}
