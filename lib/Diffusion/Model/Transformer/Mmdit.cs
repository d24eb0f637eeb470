using static TorchSharp.torch.nn;

namespace Diffusion.Model.Transformer;

/// <summary>
/// The sizes of a <see cref="MiniSd3"/>: the latent it denoises, its MMDiT width and depth, and the text encoder's
/// outputs it reads (per-token features of width <see cref="ContextDim"/>, <see cref="ContextLength"/> tokens, and a
/// pooled prompt vector of width <see cref="PooledDim"/>). The defaults fit the course's autoencoder (4×8×8 latents) and
/// mini-CLIP (16 tokens of width 64, a 64-wide pooled embedding).
/// </summary>
/// <param name="ImageSize">Height and width of the latent.</param>
/// <param name="Channels">Latent channels (SD3: 16; the course's autoencoder: 4).</param>
/// <param name="PatchSize">p: (ImageSize/p)² image tokens.</param>
/// <param name="Hidden">D, the width of both token streams (divisible by 4 and by Heads).</param>
/// <param name="Depth">MMDiT blocks; the last one is context-pre-only (SD3: 24 for 2B; here a handful).</param>
/// <param name="Heads">Attention heads.</param>
/// <param name="MlpRatio">The MLP's hidden width over D.</param>
/// <param name="ContextDim">Width of the text encoder's token features (diffusers' joint_attention_dim).</param>
/// <param name="ContextLength">Text tokens per prompt (for the FLOP estimate; the module accepts any length).</param>
/// <param name="PooledDim">Width of the pooled prompt vector (diffusers' pooled_projection_dim).</param>
public sealed record MiniSd3Config(int ImageSize = 8, int Channels = 4, int PatchSize = 1, int Hidden = 128, int Depth = 4,
    int Heads = 4, double MlpRatio = 4.0, int ContextDim = 64, int ContextLength = 16, int PooledDim = 64)
{
    public int Tokens => (ImageSize / PatchSize) * (ImageSize / PatchSize);
    public int MlpHidden => (int)(Hidden * MlpRatio);

    /// <summary>Throws one clear error for sizes that do not fit together.</summary>
    public MiniSd3Config Validate()
    {
        if (ImageSize < 1 || Channels < 1 || PatchSize < 1 || Depth < 1 || Heads < 1 || Hidden < 4 || ContextDim < 1
            || ContextLength < 1 || PooledDim < 1 || !(MlpRatio > 0))
            throw new ArgumentException($"the mini SD3's sizes must be positive (at least one block): {this}");
        DitConfig.CheckTokenSizes("latent", ImageSize, PatchSize, Hidden, Heads);
        return this;
    }

    /// <summary>
    /// Trainable parameters from the layer shapes (D = Hidden, M = MLP width, P = p², C_t = ContextDim, C_p = PooledDim):
    /// patch embedding D·C·P + D; time MLP 256·D + D + D² + D; pooled-text MLP C_p·D + D + D² + D; context embedder
    /// C_t·D + D; every block but the last: two streams of (adaLN 6D² + 6D, q/k/v/out 4(D² + D), MLP 2DM + M + D); the
    /// last block: the image stream as before, the text stream adaLN 2D² + 2D and k/v 2(D² + D); norm_out 2D² + 2D;
    /// proj_out D·P·C + P·C. The fixed position embedding is a buffer.
    /// </summary>
    public long ParameterCountFormula()
    {
        long d = Hidden, m = MlpHidden, p2 = PatchSize * PatchSize;
        long embed = d * Channels * p2 + d;
        long time = TimestepEmbedder.FrequencySize * d + d + d * d + d;
        long pooled = PooledDim * d + d + d * d + d;
        long context = ContextDim * d + d;
        long stream = 6 * d * d + 6 * d + 4 * (d * d + d) + 2 * d * m + m + d;
        long last = stream + 2 * d * d + 2 * d + 2 * (d * d + d);
        long output = 2 * d * d + 2 * d + d * p2 * Channels + p2 * Channels;
        return embed + time + pooled + context + (Depth - 1) * 2 * stream + last + output;
    }

    /// <summary>
    /// Multiply–add FLOPs (2 per multiply–add) of one forward pass for one image with <see cref="ContextLength"/> text
    /// tokens (N image tokens, L text tokens): per block the two streams' linear maps (2N(4D² + 2DM) and the same for L),
    /// the joint attention's two products 2·2·(N + L)²·D and the two modulations; the last block has no text queries,
    /// output or MLP (2L·2D² for its keys and values, attention 2·2·N(N + L)·D). Element-wise work is left out; a
    /// training step costs about 3× this.
    /// </summary>
    public double ForwardFlopsPerImage()
    {
        double d = Hidden, n = Tokens, l = ContextLength, m = MlpHidden, p2 = PatchSize * PatchSize;
        double streamLinear = 4 * d * d + 2 * d * m;
        double full = 2 * n * streamLinear + 2 * l * streamLinear + 2 * 2 * (n + l) * (n + l) * d + 2 * 2 * d * 6 * d;
        double last = 2 * n * streamLinear + 2 * l * 2 * d * d + 2 * 2 * n * (n + l) * d + 2 * d * 6 * d + 2 * d * 2 * d;
        double embed = 2 * n * d * Channels * p2 + 2 * l * ContextDim * d;
        double conditioning = 2 * (TimestepEmbedder.FrequencySize * d + d * d) + 2 * (PooledDim * d + d * d);
        double output = 2 * d * 2 * d + 2 * n * d * p2 * Channels;
        return embed + conditioning + (Depth - 1) * full + last + output;
    }
}

/// <summary>
/// diffusers' CombinedTimestepTextProjEmbeddings (SD3's <c>time_text_embed</c>): the conditioning vector
/// c = MLP(sinusoid(t)) + MLP(pooled text), with <c>timestep_embedder.linear_1/linear_2</c> and
/// <c>text_embedder.linear_1/linear_2</c> (SiLU between). The sinusoid is the course's
/// <see cref="SinusoidalPositionEmbeddings"/> with 256 frequencies (diffusers orders it [cos, sin]; the names and shapes
/// match, the input order does not).
/// </summary>
public sealed class TimestepTextEmbedding : Module<Tensor, Tensor, Tensor>
{
    readonly SinusoidalPositionEmbeddings time_proj;
    readonly TwoLayerMlp timestep_embedder, text_embedder;

    public TimestepTextEmbedding(long hidden, long pooledDim) : base(nameof(TimestepTextEmbedding))
    {
        time_proj = new SinusoidalPositionEmbeddings(TimestepEmbedder.FrequencySize);
        timestep_embedder = new TwoLayerMlp(TimestepEmbedder.FrequencySize, hidden);
        text_embedder = new TwoLayerMlp(pooledDim, hidden);
        RegisterComponents();
    }

    /// <summary>t [B] (network time, t·1000 for rectified flow), pooled [B, C_p] → c [B, D].</summary>
    public override Tensor forward(Tensor t, Tensor pooled)
    {
        using var scope = NewDisposeScope();
        var frequencies = time_proj.call(t).to(pooled.dtype);
        return (timestep_embedder.call(frequencies) + text_embedder.call(pooled)).MoveToOuterDisposeScope();
    }

    /// <summary>linear_1 → SiLU → linear_2 (diffusers' TimestepEmbedding and PixArtAlphaTextProjection).</summary>
    sealed class TwoLayerMlp : Module<Tensor, Tensor>
    {
        readonly Linear linear_1, linear_2;

        public TwoLayerMlp(long inFeatures, long hidden) : base(nameof(TwoLayerMlp))
        {
            linear_1 = Linear(inFeatures, hidden);
            linear_2 = Linear(hidden, hidden);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            return linear_2.call(functional.silu(linear_1.call(x))).MoveToOuterDisposeScope();
        }
    }
}

/// <summary>
/// diffusers' PatchEmbed as SD3 uses it (<c>pos_embed</c>): the p×p patch projection <c>proj</c> (a linear map of each
/// patch, the weight in the convolution's shape) plus the fixed 2-D sine–cosine position embedding, the buffer
/// <c>pos_embed</c>.
/// </summary>
public sealed class PatchPositionEmbed : Module<Tensor, Tensor>
{
    readonly PatchProjection proj;
    readonly Tensor pos_embed;

    public PatchPositionEmbed(long imageSize, long patchSize, long inChannels, long hidden) : base(nameof(PatchPositionEmbed))
    {
        proj = new PatchProjection(patchSize, inChannels, hidden);
        using var positions = Patches.SinCosPositions(hidden, imageSize / patchSize, imageSize / patchSize);
        pos_embed = positions.unsqueeze(0);
        RegisterComponents();
    }

    /// <summary>[B, C, H, W] → [B, N, D].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return (proj.call(x) + pos_embed.to(x.dtype).to(x.device)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A miniature Stable Diffusion 3 network (Esser et al. 2024, "Scaling Rectified Flow Transformers", §4, Fig. 2;
/// diffusers' SD3Transformer2DModel, transformer_sd3.py), reading the course's mini-CLIP:
/// <list type="number">
/// <item>patchify the latent and add the fixed 2-D position embedding (<c>pos_embed</c>): N image tokens of width D;</item>
/// <item>project the text encoder's per-token features to width D (<c>context_embedder</c>): L text tokens;</item>
/// <item>the conditioning vector c = MLP(sinusoid(t)) + MLP(pooled prompt vector) (<c>time_text_embed</c>) — the
/// prompt reaches the network twice, as tokens in the attention and as a global vector in every modulation;</item>
/// <item><see cref="MiniSd3Config.Depth"/> <see cref="MmditBlock"/>s (<c>transformer_blocks.N</c>): separate weights
/// for the two streams, one joint attention over both; the last block carries only the image stream on;</item>
/// <item>adaLN with shift and scale from c (<c>norm_out</c>, diffusers' order scale, shift), a linear map of each token to
/// its patch (<c>proj_out</c>), unpatchify.</item>
/// </list>
/// Initialised as DiT: xavier-uniform linear maps with zero biases, N(0, 0.02²) for the time and pooled-text MLPs, zero
/// modulations and a zero output map, so a fresh network outputs zeros and every block is the identity on both streams.
/// For classifier-free guidance the "no text" input is the encoding of the empty prompt "" — its token features and its
/// pooled vector (<c>TextToImage.MiniSd3Prompts</c>), as the course's text-to-image model does.
/// </summary>
public sealed class MiniSd3 : Module<Tensor, Tensor, Tensor, Tensor, Tensor>
{
    readonly PatchPositionEmbed pos_embed;
    readonly TimestepTextEmbedding time_text_embed;
    readonly Linear context_embedder;
    readonly ModuleList<MmditBlock> transformer_blocks;
    readonly AdaLayerNormZero norm_out;
    readonly Linear proj_out;

    public MiniSd3Config Config { get; }

    public MiniSd3(MiniSd3Config config) : base(nameof(MiniSd3))
    {
        Config = (config ?? throw new ArgumentNullException(nameof(config))).Validate();
        pos_embed = new PatchPositionEmbed(config.ImageSize, config.PatchSize, config.Channels, config.Hidden);
        time_text_embed = new TimestepTextEmbedding(config.Hidden, config.PooledDim);
        context_embedder = Linear(config.ContextDim, config.Hidden);
        transformer_blocks = new ModuleList<MmditBlock>(Enumerable.Range(0, config.Depth)
            .Select(i => new MmditBlock(config.Hidden, config.Heads, config.MlpRatio, contextPreOnly: i == config.Depth - 1)).ToArray());
        norm_out = new AdaLayerNormZero(config.Hidden, 2);
        proj_out = Linear(config.Hidden, config.PatchSize * config.PatchSize * config.Channels);
        RegisterComponents();
        Initialise();
    }

    /// <summary>DiT's initialize_weights, applied to SD3's layers.</summary>
    void Initialise()
    {
        Dit.InitialiseLinears(this,
            zero: name => name.Contains("norm1", StringComparison.Ordinal) || name.StartsWith("norm_out", StringComparison.Ordinal) || name == "proj_out",
            small: name => name.StartsWith("time_text_embed", StringComparison.Ordinal));
    }

    /// <summary>
    /// The velocity (or whatever it was trained to predict) for latents x [B, C, H, W] at network time t [B] (the flow
    /// objective passes t·1000), text token features <paramref name="context"/> [B, L, ContextDim] and pooled prompt
    /// vectors <paramref name="pooled"/> [B, PooledDim]; every text token is attended.
    /// </summary>
    public override Tensor forward(Tensor x, Tensor t, Tensor context, Tensor pooled) => forward(x, t, context, pooled, null);

    /// <summary>As <see cref="forward(Tensor, Tensor, Tensor, Tensor)"/>, with the text mask [B, L] (true = token): padding is not attended.</summary>
    public Tensor forward(Tensor x, Tensor t, Tensor context, Tensor pooled, Tensor? mask)
    {
        var c0 = Config;
        if (x.dim() != 4 || x.shape[1] != c0.Channels || x.shape[2] != c0.ImageSize || x.shape[3] != c0.ImageSize)
            throw new ArgumentException($"this mini SD3 takes latents [B, {c0.Channels}, {c0.ImageSize}, {c0.ImageSize}], got [{string.Join(", ", x.shape)}]");
        long b = x.shape[0];
        if (context.dim() != 3 || context.shape[0] != b || context.shape[2] != c0.ContextDim)
            throw new ArgumentException($"the text features must be [{b}, tokens, {c0.ContextDim}], got [{string.Join(", ", context.shape)}]");
        if (pooled.dim() != 2 || pooled.shape[0] != b || pooled.shape[1] != c0.PooledDim)
            throw new ArgumentException($"the pooled text vectors must be [{b}, {c0.PooledDim}], got [{string.Join(", ", pooled.shape)}]");
        using var scope = NewDisposeScope();
        var image = pos_embed.call(x);                                        // [B, N, D]
        var text = context_embedder.call(context);                            // [B, L, D]
        var c = time_text_embed.call(t, pooled);                              // [B, D]
        foreach (var block in transformer_blocks) (image, text) = block.forward(image, text, c, mask);
        var m = norm_out.call(c);                                             // scale, shift
        var patches = proj_out.call(AdaLayerNorm.NormModulate(image, m[1], m[0]));
        return Patches.Unpatchify(patches, c0.PatchSize, c0.Channels).MoveToOuterDisposeScope();
    }
}
