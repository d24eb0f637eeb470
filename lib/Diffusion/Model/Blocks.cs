using static TorchSharp.torch.nn;

namespace Diffusion.Model;

/// <summary>A block that takes a feature map and the time embedding.</summary>
public abstract class TimeBlock(string name) : Module<Tensor, Tensor, Tensor>(name);

/// <summary>Weight-standardised 3×3 conv → GroupNorm → (optional scale/shift) → SiLU.</summary>
public sealed class Block : Module<Tensor, Tensor>
{
    readonly WeightStandardizedConv2d proj;
    readonly GroupNorm norm;
    readonly SiLU act;

    public Block(long dim, long dimOut, long groups) : base(nameof(Block))
    {
        proj = new WeightStandardizedConv2d(dim, dimOut, 3, 1);
        norm = Layers.GroupNorm(groups, dimOut);
        act = SiLU();
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Forward(x, null, null);

    /// <summary>h = SiLU(GroupNorm(conv(x)) · (scale + 1) + shift).</summary>
    public Tensor Forward(Tensor x, Tensor? scale, Tensor? shift)
    {
        using var scope = NewDisposeScope();
        var h = norm.call(proj.call(x));
        if (scale is not null && shift is not null) h = h * (scale + 1) + shift;
        return act.call(h).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The Wide-ResNet block of the annotated notebook: the time embedding, through SiLU and a linear layer, becomes a
/// per-channel scale and shift applied after the first block's normalisation; output = block2(block1(x)) + res_conv(x).
/// </summary>
public sealed class ResnetBlock : TimeBlock
{
    readonly Sequential mlp;
    readonly Block block1, block2;
    readonly Module<Tensor, Tensor> res_conv;

    public ResnetBlock(long dim, long dimOut, long timeEmbDim, long groups) : base(nameof(ResnetBlock))
    {
        mlp = Sequential(SiLU(), Linear(timeEmbDim, dimOut * 2));
        block1 = new Block(dim, dimOut, groups);
        block2 = new Block(dimOut, dimOut, groups);
        res_conv = dim != dimOut ? new PointwiseConv2d(dim, dimOut) : Identity();
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor timeEmb)
    {
        using var scope = NewDisposeScope();
        var ss = mlp.call(timeEmb).unsqueeze(-1).unsqueeze(-1).chunk(2, dim: 1);
        var h = block1.Forward(x, ss[0], ss[1]);
        h = block2.call(h);
        return (h + res_conv.call(x)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// ConvNeXt block (Liu et al. 2022) as in the annotated notebook: depthwise 7×7 conv, + time (GELU, linear),
/// GroupNorm(1), 3×3 conv to dim_out·mult, GELU, GroupNorm(1), 3×3 conv to dim_out; plus res_conv(x).
/// </summary>
public sealed class ConvNextBlock : TimeBlock
{
    readonly Sequential mlp;
    readonly SafeConv2d ds_conv;
    readonly Sequential net;
    readonly Module<Tensor, Tensor> res_conv;

    public ConvNextBlock(long dim, long dimOut, long timeEmbDim, long mult) : base(nameof(ConvNextBlock))
    {
        mlp = Sequential(GELU(), Linear(timeEmbDim, dim));
        ds_conv = new SafeConv2d(dim, dim, 7, padding: 3, groups: dim);
        net = Sequential(
            Layers.GroupNorm(1, dim),
            new SafeConv2d(dim, dimOut * mult, 3, padding: 1),
            GELU(),
            Layers.GroupNorm(1, dimOut * mult),
            new SafeConv2d(dimOut * mult, dimOut, 3, padding: 1));
        res_conv = dim != dimOut ? new PointwiseConv2d(dim, dimOut) : Identity();
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor timeEmb)
    {
        using var scope = NewDisposeScope();
        var h = ds_conv.call(x) + mlp.call(timeEmb).unsqueeze(-1).unsqueeze(-1);
        h = net.call(h);
        return (h + res_conv.call(x)).MoveToOuterDisposeScope();
    }
}
