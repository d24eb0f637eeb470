using static TorchSharp.torch.nn;

namespace Diffusion.Model;

/// <summary>One resolution level of a U-Net as the walk through the levels sees it.</summary>
public interface IUnetLevel
{
    TimeBlock Block1 { get; }
    TimeBlock Block2 { get; }
    /// <summary>Residual(PreNorm(LinearAttention)), or Identity at levels without attention.</summary>
    Module<Tensor, Tensor> Attention { get; }
    /// <summary>Downsample or Upsample (a 3×3 convolution at the innermost/outermost level).</summary>
    Module<Tensor, Tensor> Resample { get; }
}

/// <summary>
/// How the course's U-Nets (<see cref="Unet"/> and the text-conditioned <c>Diffusion.TextToImage.TextUnet</c>) are put together
/// from a <see cref="UnetConfig"/>: the channels of each level, the time-embedding MLP, the ResNet or ConvNeXt blocks,
/// a level's linear attention, the changes of resolution, and the walk down and up the levels with the skip connections.
/// Each part is built when asked for, so a network that asks in the same order draws the same initial weights.
/// </summary>
public sealed class UnetLayout
{
    readonly UnetConfig config;
    readonly (int In, int Out)[] inOut;

    public UnetLayout(UnetConfig config)
    {
        this.config = config;
        var dims = config.Dims();
        inOut = dims[..^1].Zip(dims[1..]).ToArray();
        MidDim = dims[^1];
    }

    /// <summary>Resolution levels (0 = full resolution).</summary>
    public int Levels => inOut.Length;
    /// <summary>Channels at the innermost resolution (the middle blocks).</summary>
    public int MidDim { get; }
    /// <summary>Channels a level's down path works at (<c>In</c>) and hands to the next level (<c>Out</c>); the up path runs the other way.</summary>
    public (int In, int Out) Channels(int level) => inOut[level];

    /// <summary>1×1 convolution from the image channels to the first level's width.</summary>
    public PointwiseConv2d InitConv() => new(config.Channels, config.ResolvedInitDim);

    /// <summary>t ─ sinusoidal embedding ─ Linear ─ GELU ─ Linear.</summary>
    public Sequential TimeMlp() => Sequential(
        new SinusoidalPositionEmbeddings(config.Dim),
        Linear(config.Dim, config.TimeDim),
        GELU(),
        Linear(config.TimeDim, config.TimeDim));

    /// <summary>A ResNet or ConvNeXt block (as the config says) from <paramref name="dimIn"/> to <paramref name="dimOut"/> channels, reading the time embedding.</summary>
    public TimeBlock Block(long dimIn, long dimOut) => config.Block == BlockType.ResNet
        ? new ResnetBlock(dimIn, dimOut, config.TimeDim, config.ResnetBlockGroups)
        : new ConvNextBlock(dimIn, dimOut, config.TimeDim, config.ConvNextMult);

    /// <summary>One of a level's two blocks on the way down.</summary>
    public TimeBlock DownBlock(int level) => Block(inOut[level].In, inOut[level].In);

    /// <summary>One of a level's two blocks on the way up (its input: the path concatenated with a skip).</summary>
    public TimeBlock UpBlock(int level) => Block(inOut[level].Out + inOut[level].In, inOut[level].Out);

    /// <summary>A middle block (innermost resolution).</summary>
    public TimeBlock MidBlock() => Block(MidDim, MidDim);

    /// <summary>Residual(PreNorm(LinearAttention)) where the config asks for it at <paramref name="level"/>, otherwise Identity.</summary>
    public Module<Tensor, Tensor> LinearAttentionAt(int level, long channels) => config.HasLinearAttention(level)
        ? new Residual(new PreNorm(channels, new LinearAttention(channels, config.AttentionHeads, config.AttentionDimHead)))
        : Identity();

    /// <summary>The down path's change of resolution after <paramref name="level"/> (a 3×3 convolution at the innermost level).</summary>
    public Module<Tensor, Tensor> Downsample(int level) => level == Levels - 1
        ? new SafeConv2d(inOut[level].In, inOut[level].Out, 3, padding: 1)
        : Resampling.Downsample(inOut[level].In, inOut[level].Out);

    /// <summary>The up path's change of resolution after <paramref name="level"/> (a 3×3 convolution at level 0).</summary>
    public Module<Tensor, Tensor> Upsample(int level) => level == 0
        ? new SafeConv2d(inOut[level].Out, inOut[level].In, 3, padding: 1)
        : Resampling.Upsample(inOut[level].Out, inOut[level].In);

    /// <summary>The block after the up path (its input: the path concatenated with the output of init_conv).</summary>
    public TimeBlock FinalBlock() => Block(config.ResolvedInitDim * 2, config.Dim);

    /// <summary>1×1 convolution to the output channels.</summary>
    public PointwiseConv2d FinalConv() => new(config.Dim, config.ResolvedOutDim);

    /// <summary>
    /// The down path: per level, block 1 (its output kept for a skip connection), block 2, attention, then
    /// <paramref name="afterAttention"/> if any (the text U-Net's spatial transformer), kept for a skip too, then the change of resolution.
    /// </summary>
    public static Tensor Down<TLevel>(IEnumerable<TLevel> levels, Tensor x, Tensor t, Stack<Tensor> skips,
        Func<TLevel, Tensor, Tensor>? afterAttention = null) where TLevel : IUnetLevel
    {
        foreach (var level in levels)
        {
            x = level.Block1.call(x, t);
            skips.Push(x);
            x = level.Block2.call(x, t);
            x = level.Attention.call(x);
            if (afterAttention is not null) x = afterAttention(level, x);
            skips.Push(x);
            x = level.Resample.call(x);
        }
        return x;
    }

    /// <summary>The up path: per level, each block reads the path concatenated with a skip (last kept first), then attention, <paramref name="afterAttention"/>, the change of resolution.</summary>
    public static Tensor Up<TLevel>(IEnumerable<TLevel> levels, Tensor x, Tensor t, Stack<Tensor> skips,
        Func<TLevel, Tensor, Tensor>? afterAttention = null) where TLevel : IUnetLevel
    {
        foreach (var level in levels)
        {
            x = level.Block1.call(cat([x, skips.Pop()], dim: 1), t);
            x = level.Block2.call(cat([x, skips.Pop()], dim: 1), t);
            x = level.Attention.call(x);
            if (afterAttention is not null) x = afterAttention(level, x);
            x = level.Resample.call(x);
        }
        return x;
    }
}
