using static TorchSharp.torch.nn;

namespace Diffusion.Model;

// Field names in these modules are snake_case on purpose: TorchSharp names parameters after the fields, and these
// names then match the annotated notebook's PyTorch state_dict (e.g. "downs.0.0.block1.proj.weight").

/// <summary>Small helpers for building layers.</summary>
public static class Layers
{
    /// <summary>
    /// GroupNorm with γ = 1 and β = 0. TorchSharp 0.107 leaves GroupNorm's weight and bias uninitialised
    /// (torch.empty; values such as 1e28 or NaN were seen), so every GroupNorm in the course is made here.
    /// </summary>
    public static GroupNorm GroupNorm(long groups, long channels, double eps = 1e-5)
    {
        var norm = nn.GroupNorm(groups, channels, eps);
        using (no_grad())
        {
            norm.weight!.fill_(1);
            norm.bias!.fill_(0);            // not zero_(): in TorchSharp 0.107 it returns a new, undisposed wrapper
        }
        return norm;
    }

    /// <summary>LayerNorm with γ = 1 and β = 0 set explicitly, as <see cref="GroupNorm"/> does (the text encoder's norm).</summary>
    public static LayerNorm LayerNorm(long dim)
    {
        var norm = nn.LayerNorm(dim);
        using (no_grad())
        {
            norm.weight!.fill_(1);
            norm.bias!.fill_(0);
        }
        return norm;
    }

    /// <summary>Number of trainable parameters of a module.</summary>
    public static long ParameterCount(this Module module) => module.parameters().Sum(p => p.numel());
}

/// <summary>
/// Sinusoidal position embeddings (Transformer, Vaswani et al. 2017) for the time step t:
/// emb(t)_i = sin(t·ω_i) for i &lt; d/2 and cos(t·ω_{i−d/2}) after, with ω_i = 10000^(−i/(d/2−1)).
/// </summary>
public sealed class SinusoidalPositionEmbeddings : Module<Tensor, Tensor>
{
    public long Dim { get; }

    public SinusoidalPositionEmbeddings(long dim) : base(nameof(SinusoidalPositionEmbeddings))
    {
        if (dim < 4 || dim % 2 != 0) throw new ArgumentException($"embedding size must be even and ≥ 4, got {dim}");
        Dim = dim;
    }

    public override Tensor forward(Tensor time)
    {
        using var scope = NewDisposeScope();
        long half = Dim / 2;
        double step = Math.Log(10000) / (half - 1);
        // ω_i = exp(−i · ln(10000)/(d/2 − 1))
        var freqs = exp(arange(half, dtype: ScalarType.Float32, device: time.device) * -step);
        var args = time.to(ScalarType.Float32).unsqueeze(1) * freqs.unsqueeze(0);
        return cat([args.sin(), args.cos()], dim: -1).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// 3×3 convolution with weight standardisation (Qiao et al. 2019): each output filter is normalised to zero mean and
/// unit variance before the convolution; works well with GroupNorm.
/// </summary>
public sealed class WeightStandardizedConv2d : Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter bias;
    readonly long padding;

    public WeightStandardizedConv2d(long inChannels, long outChannels, long kernelSize = 3, long padding = 1)
        : base(nameof(WeightStandardizedConv2d))
    {
        this.padding = padding;
        // Same initialisation as nn.Conv2d: kaiming_uniform(a=√5) for weights, U(±1/√fan_in) for biases.
        weight = new Parameter(empty(outChannels, inChannels, kernelSize, kernelSize));
        bias = new Parameter(empty(outChannels));
        init.kaiming_uniform_(weight, a: Math.Sqrt(5));
        double bound = 1 / Math.Sqrt(inChannels * kernelSize * kernelSize);
        init.uniform_(bias, -bound, bound);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        const double eps = 1e-5;
        var mean = weight.mean([1, 2, 3], keepdim: true);
        var variance = weight.var([1, 2, 3], unbiased: false, keepdim: true);
        // ŵ = (w − mean) / √(var + ε)
        var normalized = (weight - mean) * (variance + eps).rsqrt();
        return SafeConv2d.Convolve(x, normalized, bias, padding).MoveToOuterDisposeScope();
    }
}

/// <summary>x + fn(x): the residual (skip) connection that lets gradients flow straight through deep networks.</summary>
public sealed class Residual : Module<Tensor, Tensor>
{
    readonly Module<Tensor, Tensor> fn;
    public Residual(Module<Tensor, Tensor> fn) : base(nameof(Residual))
    {
        this.fn = fn;
        RegisterComponents();
    }
    public override Tensor forward(Tensor x)
    {
        using var y = fn.call(x);
        return y + x;
    }
}

/// <summary>fn(GroupNorm(1, dim)(x)): normalise before the layer (as in Transformers' pre-LN).</summary>
public sealed class PreNorm : Module<Tensor, Tensor>
{
    readonly Module<Tensor, Tensor> fn;
    readonly GroupNorm norm;
    public PreNorm(long dim, Module<Tensor, Tensor> fn) : base(nameof(PreNorm))
    {
        this.fn = fn;
        norm = Layers.GroupNorm(1, dim);
        RegisterComponents();
    }
    public override Tensor forward(Tensor x)
    {
        using var normalized = norm.call(x);
        return fn.call(normalized);
    }
}
