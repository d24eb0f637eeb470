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
public sealed class Unet : Module<Tensor, Tensor, Tensor>, IDenoisingNetwork
{
    public UnetConfig Config { get; }

    // Registered under the PyTorch module's names (UnetTrunk.Register), so parameter names match the annotated notebook's state_dict.
    readonly UnetTrunk<UnetLevel, Embedding, Residual> trunk;

    public Unet(UnetConfig config) : base(nameof(Unet))
    {
        config.Validate();
        Config = config;
        var layout = new UnetLayout(config);
        trunk = new(layout,
            condition: () => config.NumClasses > 0 ? Embedding(config.NumClasses + 1, config.TimeDim) : null,   // last index = "no label" (for guidance)
            level: (i, down) => down
                ? new UnetLevel(layout.DownBlock(i), layout.DownBlock(i), layout.LinearAttentionAt(i, layout.Channels(i).In), layout.Downsample(i))
                : new UnetLevel(layout.UpBlock(i), layout.UpBlock(i), layout.LinearAttentionAt(i, layout.Channels(i).Out), layout.Upsample(i)),
            middle: midDim => new Residual(new PreNorm(midDim, new Attention(midDim, config.AttentionHeads, config.AttentionDimHead))));
        trunk.Register(this, conditionName: "class_emb", middleName: "mid_attn");
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
        if (classes is not null && trunk.Condition is null)
            throw new ArgumentException("class labels were given to an unconditional U-Net (NumClasses = 0)");

        using var scope = NewDisposeScope();
        var classEmbedding = trunk.Condition;
        Tensor Condition(Tensor t)
        {
            if (classEmbedding is null) return t;
            var y = classes ?? full([x.shape[0]], Config.NumClasses, dtype: ScalarType.Int64, device: x.device);
            return t + classEmbedding.call(y.to(ScalarType.Int64));
        }
        return trunk.Forward(x, time, Condition, trunk.Middle.call).MoveToOuterDisposeScope();
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
