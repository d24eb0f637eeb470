using System.Text.Json;
using static TorchSharp.torch.nn;

namespace Diffusion.TextToImage;

/// <summary>
/// The shape of the text-conditioned U-Net: the course's <see cref="UnetConfig"/> (unconditional: NumClasses 0) plus where
/// the spatial transformers go and how wide the text is.
/// </summary>
public sealed record TextUnetConfig
{
    /// <summary>
    /// The course U-Net underneath. Default: the latent U-Net of notebook 10 (dim 28, dim_mults 1,2,4 on the 4×8×8
    /// latents), without its linear attention — the spatial transformers take its place.
    /// </summary>
    public UnetConfig Unet { get; init; } = new() { Dim = 28, DimMults = [1, 2, 4], Channels = 4, LinearAttentionLevels = [] };
    /// <summary>Width of the text encoder's token features (<see cref="TextEncoderConfig.Dim"/>).</summary>
    public int ContextDim { get; init; } = 64;
    /// <summary>Levels (0 = full resolution) whose down and up blocks end with a spatial transformer; the middle always has one.</summary>
    public int[] TransformerLevels { get; init; } = [1, 2];
    public int Heads { get; init; } = 4;
    public int DimHead { get; init; } = 16;
    /// <summary>
    /// Also add a projection of the prompt's pooled features (the masked mean of its tokens) to the time embedding, as
    /// SDXL does with its pooled text embedding: every ResNet block then hears the whole prompt, the cross-attention
    /// places its words. false = cross-attention only, as in Stable Diffusion 1.x.
    /// </summary>
    public bool PooledText { get; init; } = true;
    /// <summary>Start every spatial transformer's proj_out at zero (LDM's zero_module): the untrained network ignores the text.</summary>
    public bool ZeroInitTransformers { get; init; } = true;

    public void Validate()
    {
        Unet.Validate();
        if (Unet.NumClasses != 0) throw new ArgumentException("the text U-Net is conditioned on text, not on class labels: set Unet.NumClasses = 0");
        if (ContextDim is < 1 or > 4096) throw new ArgumentException($"ContextDim must be 1..4096, got {ContextDim}");
        if (Heads is < 1 or > 64 || DimHead is < 1 or > 512) throw new ArgumentException($"Heads must be 1..64 and DimHead 1..512, got {Heads} and {DimHead}");
        if (TransformerLevels is null || TransformerLevels.Length > UnetConfig.MaxLevels || TransformerLevels.Any(l => l < 0 || l >= Unet.Levels))
            throw new ArgumentException($"TransformerLevels must name levels 0..{Unet.Levels - 1}, got [{string.Join(",", TransformerLevels ?? [])}]");
    }

    static readonly JsonSerializerOptions Json = new() { WriteIndented = false };
    public string ToJson() => JsonSerializer.Serialize(this, Json);
}

/// <summary>
/// The U-Net of Stable Diffusion in miniature: the course's U-Net (<see cref="Unet"/>: ResNet blocks with the time
/// embedding, skip connections, pixel-unshuffle down and nearest up) with a <see cref="SpatialTransformer"/> after the
/// two blocks of the levels in <see cref="TextUnetConfig.TransformerLevels"/> and in the middle, each reading the frozen
/// text encoder's token features through cross-attention with the prompt's padding mask. It predicts ε (or x_0, v) of a
/// latent; the empty prompt "" is the "no text" condition ∅ of classifier-free guidance.
/// <code>
/// z ─ init_conv ─┬─ [ResBlock, ResBlock, (SpatialTransformer ← text), Down] ─ mid: ResBlock, SpatialTransformer ← text, ResBlock ─ [… Up] ─┬─ final ─ ε̂
/// t ─ sinusoidal ─ MLP ─ (+ Linear(pooled text)) ─▶ every ResBlock
/// </code>
/// </summary>
public sealed class TextUnet : Module
{
    public TextUnetConfig Config { get; }

    // Registered under the course U-Net's names (UnetTrunk.Register): text_to_time, mid_transformer and the levels' transformers are new.
    readonly UnetTrunk<TextUnetLevel, Linear, SpatialTransformer> trunk;

    public TextUnet(TextUnetConfig config) : base(nameof(TextUnet))
    {
        config.Validate();
        Config = config;
        var u = config.Unet;
        var layout = new UnetLayout(u);

        SpatialTransformer NewTransformer(long channels) =>
            new(channels, config.ContextDim, config.Heads, config.DimHead, u.ResnetBlockGroups, config.ZeroInitTransformers);
        SpatialTransformer? TransformerAt(int level, long channels) => config.TransformerLevels.Contains(level) ? NewTransformer(channels) : null;
        // Levels without a transformer keep the course U-Net's linear attention where its config asks for it.
        Module<Tensor, Tensor> AttentionAt(int level, long channels) =>
            config.TransformerLevels.Contains(level) ? Identity() : layout.LinearAttentionAt(level, channels);
        TextUnetLevel Level(int i, bool down)
        {
            var (dimIn, dimOut) = layout.Channels(i);
            return down
                ? new TextUnetLevel(layout.DownBlock(i), layout.DownBlock(i), AttentionAt(i, dimIn), TransformerAt(i, dimIn), layout.Downsample(i))
                : new TextUnetLevel(layout.UpBlock(i), layout.UpBlock(i), AttentionAt(i, dimOut), TransformerAt(i, dimOut), layout.Upsample(i));
        }

        trunk = new(layout, condition: () => config.PooledText ? Linear(config.ContextDim, u.TimeDim) : null, level: Level, middle: dim => NewTransformer(dim));
        trunk.Register(this, conditionName: "text_to_time", middleName: "mid_transformer");
    }

    /// <summary>Every spatial transformer, down levels first, then the middle, then the up levels (for attention maps).</summary>
    public IEnumerable<SpatialTransformer> Transformers =>
        trunk.Downs.Select(l => l.Transformer).Append(trunk.Middle).Concat(trunk.Ups.Select(l => l.Transformer)).OfType<SpatialTransformer>();

    /// <summary>
    /// ε_θ(z_t, t, text): <paramref name="x"/> [B, C, H, W], <paramref name="time"/> [B], the text encoder's token features
    /// <paramref name="context"/> [B, L, ContextDim] and their mask [B, L] (true = token, false = padding, never attended).
    /// </summary>
    public Tensor forward(Tensor x, Tensor time, Tensor context, Tensor mask)
    {
        var u = Config.Unet;
        if (x.dim() != 4 || x.shape[1] != u.Channels)
            throw new ArgumentException($"the text U-Net expects [batch, {u.Channels}, height, width], got [{string.Join(", ", x.shape)}]");
        if (time.dim() != 1 || time.shape[0] != x.shape[0])
            throw new ArgumentException($"t must be a 1-D tensor with one time step per image ({x.shape[0]}), got [{string.Join(", ", time.shape)}]");
        if (context.dim() != 3 || context.shape[0] != x.shape[0] || context.shape[2] != Config.ContextDim)
            throw new ArgumentException($"the text must be token features [{x.shape[0]}, tokens, {Config.ContextDim}], got [{string.Join(", ", context.shape)}]");
        if (mask.dim() != 2 || mask.shape[0] != context.shape[0] || mask.shape[1] != context.shape[1] || mask.dtype != ScalarType.Bool)
            throw new ArgumentException($"the mask must be booleans [{context.shape[0]}, {context.shape[1]}], got {mask.dtype} [{string.Join(", ", mask.shape)}]");

        using var scope = NewDisposeScope();
        var textToTime = trunk.Condition;
        Tensor Condition(Tensor t)
        {
            if (textToTime is null) return t;
            // pooled = Σ_j m_j c_j / Σ_j m_j: the mean of the real tokens' features (padding left out)
            var m = mask.to(context.dtype).unsqueeze(-1);
            var pooled = (context * m).sum(1) / m.sum(1).clamp_min(1);
            return t + textToTime.call(pooled);
        }
        // After each level's blocks and attention, its spatial transformer (if it has one) reads the text.
        Tensor ReadText(TextUnetLevel level, Tensor h) => level.Transformer is { } st ? st.call(h, context, mask) : h;
        return trunk.Forward(x, time, Condition, h => trunk.Middle.call(h, context, mask), ReadText).MoveToOuterDisposeScope();
    }
}

/// <summary>One level of the <see cref="TextUnet"/>: two blocks, linear attention or identity, a spatial transformer or none, the change of resolution.</summary>
public sealed class TextUnetLevel : Module, IUnetLevel
{
    readonly TimeBlock block1, block2;
    readonly Module<Tensor, Tensor> attention;
    readonly SpatialTransformer? transformer;
    readonly Module<Tensor, Tensor> resample;

    public TextUnetLevel(TimeBlock block1, TimeBlock block2, Module<Tensor, Tensor> attention, SpatialTransformer? transformer,
        Module<Tensor, Tensor> resample) : base(nameof(TextUnetLevel))
    {
        (this.block1, this.block2, this.attention, this.transformer, this.resample) = (block1, block2, attention, transformer, resample);
        RegisterComponents();
    }

    public TimeBlock Block1 => block1;
    public TimeBlock Block2 => block2;
    public Module<Tensor, Tensor> Attention => attention;
    public SpatialTransformer? Transformer => transformer;
    public Module<Tensor, Tensor> Resample => resample;
}
