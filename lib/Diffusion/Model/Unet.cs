using static TorchSharp.torch.nn;
using TorchSharp.Utils;

namespace Diffusion.Model;

/// <summary>
/// The noise-prediction network ε_θ(x_t, t): the U-Net of The Annotated Diffusion Model (after lucidrains'
/// denoising-diffusion-pytorch), optionally class-conditional. It knows nothing about β or the sampler.
/// <code>
/// x ─ init_conv ─┬─ [ResBlock, ResBlock, Attn, Down] per level ─ mid: ResBlock, Attn, ResBlock ─ [ResBlock, ResBlock, Attn, Up] ─┬─ final ResBlock ─ 1×1 conv ─ ε̂
///                └─────────── skip connections: each down block's output is concatenated into its up block ─────────────┘
/// t ─ sinusoidal embedding ─ Linear ─ GELU ─ Linear ─ (+ class embedding) ─▶ every ResBlock
/// </code>
/// </summary>
public sealed class Unet : Module<Tensor, Tensor, Tensor>
{
    public UnetConfig Config { get; }

    // Field names mirror the PyTorch module so parameter names match the annotated notebook's state_dict.
    readonly PointwiseConv2d init_conv;
    readonly Sequential time_mlp;
    readonly Embedding? class_emb;
    readonly ModuleList<UnetLevel> downs = new();
    readonly ModuleList<UnetLevel> ups = new();
    readonly TimeBlock mid_block1, mid_block2;
    readonly Residual mid_attn;
    readonly TimeBlock final_res_block;
    readonly PointwiseConv2d final_conv;

    public Unet(UnetConfig config) : base(nameof(Unet))
    {
        config.Validate();
        Config = config;
        var layout = new UnetLayout(config);

        init_conv = layout.InitConv();
        time_mlp = layout.TimeMlp();
        if (config.NumClasses > 0)
            class_emb = Embedding(config.NumClasses + 1, config.TimeDim);   // last index = "no label" (for guidance)

        for (int i = 0; i < layout.Levels; i++)
            downs.Add(new UnetLevel(layout.DownBlock(i), layout.DownBlock(i), layout.LinearAttentionAt(i, layout.Channels(i).In), layout.Downsample(i)));

        int midDim = layout.MidDim;
        mid_block1 = layout.MidBlock();
        mid_attn = new Residual(new PreNorm(midDim, new Attention(midDim, config.AttentionHeads, config.AttentionDimHead)));
        mid_block2 = layout.MidBlock();

        for (int i = layout.Levels - 1; i >= 0; i--)
            ups.Add(new UnetLevel(layout.UpBlock(i), layout.UpBlock(i), layout.LinearAttentionAt(i, layout.Channels(i).Out), layout.Upsample(i)));

        final_res_block = layout.FinalBlock();
        final_conv = layout.FinalConv();
        RegisterComponents();
    }

    /// <summary>ε_θ(x_t, t) for an unconditional model (a conditional model gets the "no label" class).</summary>
    public override Tensor forward(Tensor x, Tensor time) => forward(x, time, null);

    /// <summary>
    /// ε_θ(x_t, t, y). <paramref name="classes"/>: LongTensor [B] of labels 0..NumClasses−1, or NumClasses for "no label";
    /// null means "no label" for every image.
    /// </summary>
    public Tensor forward(Tensor x, Tensor time, Tensor? classes)
    {
        if (x.dim() != 4 || x.shape[1] != Config.Channels)
            throw new ArgumentException(
                $"the U-Net expects images shaped [batch, {Config.Channels}, height, width], got [{string.Join(", ", x.shape)}]");
        if (time.dim() != 1 || time.shape[0] != x.shape[0])
            throw new ArgumentException($"t must be a 1-D tensor with one time step per image ({x.shape[0]}), got [{string.Join(", ", time.shape)}]");
        if (classes is not null && class_emb is null)
            throw new ArgumentException("class labels were given to an unconditional U-Net (NumClasses = 0)");

        using var scope = NewDisposeScope();
        x = init_conv.call(x);
        var r = x;
        var t = time_mlp.call(time);
        if (class_emb is not null)
        {
            var y = classes ?? full([x.shape[0]], Config.NumClasses, dtype: ScalarType.Int64, device: x.device);
            t = t + class_emb.call(y.to(ScalarType.Int64));
        }

        var skips = new Stack<Tensor>();
        x = UnetLayout.Down(downs, x, t, skips);
        x = mid_block1.call(x, t);
        x = mid_attn.call(x);
        x = mid_block2.call(x, t);
        x = UnetLayout.Up(ups, x, t, skips);

        x = final_res_block.call(cat([x, r], dim: 1), t);
        return final_conv.call(x).MoveToOuterDisposeScope();
    }

    /// <summary>Parameters per top-level module (init_conv, time_mlp, downs, mid_*, ups, final_*), in order.</summary>
    public IReadOnlyList<(string Name, long Parameters)> ParameterTable() =>
        named_children().Select(c => (c.name, c.module.ParameterCount())).ToList();
}

/// <summary>
/// One resolution level of the U-Net: two residual blocks, linear attention (or identity) and the change of resolution
/// (or, at the last level, a 3×3 convolution). Registered as "0" to "3", like the annotated notebook's
/// <c>nn.ModuleList([block1, block2, attn, downsample])</c>, so parameter names stay <c>downs.i.0.…</c> to <c>downs.i.3.…</c>.
/// </summary>
public sealed class UnetLevel : Module, IUnetLevel
{
    [ComponentName(Name = "0")] readonly TimeBlock block1;
    [ComponentName(Name = "1")] readonly TimeBlock block2;
    [ComponentName(Name = "2")] readonly Module<Tensor, Tensor> attention;
    [ComponentName(Name = "3")] readonly Module<Tensor, Tensor> resample;

    public UnetLevel(TimeBlock block1, TimeBlock block2, Module<Tensor, Tensor> attention, Module<Tensor, Tensor> resample)
        : base(nameof(UnetLevel))
    {
        (this.block1, this.block2, this.attention, this.resample) = (block1, block2, attention, resample);
        RegisterComponents();
    }

    public TimeBlock Block1 => block1;
    public TimeBlock Block2 => block2;
    public Module<Tensor, Tensor> Attention => attention;
    public Module<Tensor, Tensor> Resample => resample;
}

/// <summary>The U-Net's (and the autoencoder's) changes of resolution.</summary>
public static class Resampling
{
    /// <summary>Halve the resolution without losing pixels: 2×2 pixel unshuffle ("b c (h 2) (w 2) -> b (c 4) h w"), then 1×1 conv.</summary>
    public static Sequential Downsample(long dim, long dimOut) => Sequential(PixelUnshuffle(2), new PointwiseConv2d(dim * 4, dimOut));

    /// <summary>Double the resolution: nearest-neighbour upsampling, then 3×3 conv.</summary>
    public static Sequential Upsample(long dim, long dimOut) =>
        Sequential(nn.Upsample(scale_factor: [2.0, 2.0], mode: UpsampleMode.Nearest), new SafeConv2d(dim, dimOut, 3, padding: 1));
}
