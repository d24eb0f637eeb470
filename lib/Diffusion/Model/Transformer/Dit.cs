using static TorchSharp.torch.nn;

namespace Diffusion.Model.Transformer;

/// <summary>
/// The sizes of a <see cref="Dit"/>. DiT's own models are named by size and patch, e.g. DiT-S/2 = hidden 384, depth 12,
/// 6 heads, patch 2 (Peebles &amp; Xie 2023, Table 1); a Fashion-MNIST-sized one is far smaller (see <see cref="Small"/>).
/// </summary>
/// <param name="ImageSize">Height and width of the input (pixels, or latent cells).</param>
/// <param name="Channels">Input channels (1 for Fashion-MNIST pixels, the autoencoder's latent channels for latents).</param>
/// <param name="PatchSize">p: each token is a p×p patch; (ImageSize/p)² tokens.</param>
/// <param name="Hidden">D, the token width (divisible by 4 for the 2-D position embedding, and by Heads).</param>
/// <param name="Depth">The number of DiT blocks.</param>
/// <param name="Heads">Attention heads per block.</param>
/// <param name="MlpRatio">The MLP's hidden width over D (4 in DiT).</param>
/// <param name="NumClasses">0 for an unconditional model; K adds a label embedding with K + 1 rows (the last = no label, for guidance).</param>
/// <param name="LearnSigma">Output 2C channels (DiT's learned variance, Improved DDPM's [ε, u]); off for rectified flow.</param>
public sealed record DitConfig(int ImageSize = 28, int Channels = 1, int PatchSize = 2, int Hidden = 128, int Depth = 6,
    int Heads = 4, double MlpRatio = 4.0, int NumClasses = 0, bool LearnSigma = false)
{
    /// <summary>A DiT for 28×28 Fashion-MNIST pixels: patch 2 (196 tokens), hidden 128, depth 6, 4 heads.</summary>
    public static DitConfig Small { get; } = new();

    public int OutChannels => LearnSigma ? 2 * Channels : Channels;
    public int Tokens => (ImageSize / PatchSize) * (ImageSize / PatchSize);
    public int MlpHidden => (int)(Hidden * MlpRatio);

    /// <summary>Throws one clear error for sizes that do not fit together.</summary>
    public DitConfig Validate()
    {
        if (ImageSize < 1 || Channels < 1 || PatchSize < 1 || Depth < 0 || Heads < 1 || Hidden < 4 || NumClasses < 0 || !(MlpRatio > 0))
            throw new ArgumentException($"DiT sizes must be positive: {this}");
        CheckTokenSizes("image", ImageSize, PatchSize, Hidden, Heads);
        return this;
    }

    /// <summary>
    /// The sizes every transformer on patches needs to fit together: the patch size divides the side, the width is
    /// divisible by 4 (the 2-D sine–cosine position embedding) and by the number of heads.
    /// </summary>
    internal static void CheckTokenSizes(string input, int side, int patchSize, int hidden, int heads)
    {
        if (side % patchSize != 0)
            throw new ArgumentException($"the patch size {patchSize} must divide the {input} size {side}: use one of {string.Join(", ", Enumerable.Range(1, side).Where(p => side % p == 0))}");
        if (hidden % 4 != 0)
            throw new ArgumentException($"the hidden size {hidden} must be divisible by 4 (the 2-D position embedding)");
        if (hidden % heads != 0)
            throw new ArgumentException($"the hidden size {hidden} must be divisible by the number of heads {heads}");
    }

    /// <summary>
    /// The number of trainable parameters, counted from the layer shapes (D = Hidden, M = MLP width, P = p²):
    /// patch embedding D·C·P + D; time embedding 256·D + D + D² + D; label table (K + 1)·D; per block: qkv 3D² + 3D,
    /// proj D² + D, MLP 2·D·M + M + D, adaLN 6D² + 6D; final layer 2D² + 2D + D·P·C_out + P·C_out. The fixed position
    /// embedding is a buffer, not a parameter.
    /// </summary>
    public long ParameterCountFormula()
    {
        long d = Hidden, m = MlpHidden, p2 = PatchSize * PatchSize;
        long embed = d * Channels * p2 + d;
        long time = TimestepEmbedder.FrequencySize * d + d + d * d + d;
        long labels = NumClasses > 0 ? (NumClasses + 1) * d : 0;
        long block = 3 * d * d + 3 * d + d * d + d + 2 * d * m + m + d + 6 * d * d + 6 * d;
        long final = 2 * d * d + 2 * d + d * p2 * OutChannels + p2 * OutChannels;
        return embed + time + labels + Depth * block + final;
    }

    /// <summary>
    /// Multiply–add FLOPs (2 per multiply–add) of one forward pass for one image: the linear maps and attention's two
    /// products per block (q kᵀ and weights·v: 2·2·N²·D), the patch embedding, the final layer and the conditioning.
    /// Element-wise work (norms, softmax, GELU) is left out, as is usual. A training step costs about 3× this.
    /// </summary>
    public double ForwardFlopsPerImage()
    {
        double d = Hidden, n = Tokens, m = MlpHidden, p2 = PatchSize * PatchSize;
        double perBlock = 2 * n * (3 * d * d + d * d + 2 * d * m) + 2 * 2 * n * n * d + 2 * d * 6 * d;
        double embed = 2 * n * d * Channels * p2;
        double final = 2 * n * d * p2 * OutChannels + 2 * d * 2 * d;
        double time = 2 * (TimestepEmbedder.FrequencySize * d + d * d);
        return embed + time + Depth * perBlock + final;
    }
}

/// <summary>DiT's LabelEmbedder: a table of K + 1 class vectors (the last row is "no label", ∅, for guidance).</summary>
public sealed class LabelEmbedder : Module<Tensor, Tensor>
{
    readonly Embedding embedding_table;

    public LabelEmbedder(long numClasses, long hidden) : base(nameof(LabelEmbedder))
    {
        embedding_table = Embedding(numClasses + 1, hidden);
        RegisterComponents();
    }

    public override Tensor forward(Tensor classes) => embedding_table.call(classes);
}

/// <summary>
/// The diffusion transformer (Peebles &amp; Xie 2023, "Scalable Diffusion Models with Transformers";
/// facebookresearch/DiT models.py): patchify the input into tokens (<see cref="PatchEmbed"/>) plus a fixed 2-D
/// sine–cosine position embedding; condition on c = embed(t) (+ embed(y)) through adaLN-Zero in every
/// <see cref="DitBlock"/>; map each token back to its patch (<see cref="FinalLayer"/>) and unpatchify. Its cost is
/// matrix products on [B·N, D] activations. Initialised as DiT: xavier-uniform linear maps with zero biases, N(0, 0.02²)
/// for the time MLP and the label table, zero adaLN maps and a zero final layer — a fresh DiT outputs zeros.
/// </summary>
public sealed class Dit : Module<Tensor, Tensor, Tensor>, IDenoisingNetwork
{
    readonly PatchEmbed x_embedder;
    readonly TimestepEmbedder t_embedder;
    readonly LabelEmbedder? y_embedder;
    readonly Tensor pos_embed;
    readonly ModuleList<DitBlock> blocks;
    readonly FinalLayer final_layer;

    public DitConfig Config { get; }

    public Dit(DitConfig config) : base(nameof(Dit))
    {
        Config = (config ?? throw new ArgumentNullException(nameof(config))).Validate();
        long grid = config.ImageSize / config.PatchSize;
        x_embedder = new PatchEmbed(config.PatchSize, config.Channels, config.Hidden);
        t_embedder = new TimestepEmbedder(config.Hidden);
        y_embedder = config.NumClasses > 0 ? new LabelEmbedder(config.NumClasses, config.Hidden) : null;
        using (var positions = Patches.SinCosPositions(config.Hidden, grid, grid)) pos_embed = positions.unsqueeze(0);
        blocks = new ModuleList<DitBlock>(Enumerable.Range(0, config.Depth).Select(_ => new DitBlock(config.Hidden, config.Heads, config.MlpRatio)).ToArray());
        final_layer = new FinalLayer(config.Hidden, config.PatchSize, config.OutChannels);
        RegisterComponents();
        Initialise();
    }

    /// <summary>DiT's initialize_weights (the patch embedding initialises itself).</summary>
    void Initialise()
    {
        InitialiseLinears(this, zero: name => name.Contains("adaLN_modulation") || name.StartsWith("final_layer.linear", StringComparison.Ordinal));
        using var noGrad = no_grad();
        foreach (var (name, p) in named_parameters())
            if (name is "t_embedder.mlp.0.weight" or "t_embedder.mlp.2.weight" or "y_embedder.embedding_table.weight")
                init.normal_(p, 0, 0.02);
    }

    /// <summary>
    /// DiT's initialize_weights for the linear maps of <paramref name="root"/>, in module order: the weights of the maps
    /// <paramref name="zero"/> names are 0 (adaLN-Zero and the output map), of those <paramref name="small"/> names drawn
    /// from N(0, 0.02²), of the others Xavier-uniform; every bias 0.
    /// </summary>
    internal static void InitialiseLinears(Module root, Func<string, bool> zero, Func<string, bool>? small = null)
    {
        using var noGrad = no_grad();
        foreach (var (name, module) in root.named_modules())
            if (module is Linear linear)
            {
                if (zero(name)) linear.weight!.fill_(0);
                else if (small?.Invoke(name) == true) init.normal_(linear.weight!, 0, 0.02);
                else init.xavier_uniform_(linear.weight!);
                linear.bias?.fill_(0);
            }
    }

    /// <summary>The prediction for x [B, C, H, W] at network time t [B], unconditional (or "no label" ∅ for a class-conditional DiT).</summary>
    public override Tensor forward(Tensor x, Tensor t) => forward(x, t, null);

    /// <summary>
    /// The prediction for x [B, C, H, W] at network time t [B] (float; the flow objective passes t·1000) and labels
    /// <paramref name="classes"/> [B] (0..K−1, or K for "no label"; null = K for every image).
    /// </summary>
    public Tensor forward(Tensor x, Tensor t, Tensor? classes)
    {
        if (x.dim() != 4 || x.shape[1] != Config.Channels || x.shape[2] != Config.ImageSize || x.shape[3] != Config.ImageSize)
            throw new ArgumentException($"this DiT takes [B, {Config.Channels}, {Config.ImageSize}, {Config.ImageSize}], got [{string.Join(", ", x.shape)}]");
        if (classes is not null && y_embedder is null)
            throw new ArgumentException("this DiT has no class conditioning (NumClasses = 0): pass no labels");
        using var scope = NewDisposeScope();
        var tokens = x_embedder.call(x) + pos_embed.to(x.device);             // [B, N, D]
        var c = t_embedder.call(t);                                            // [B, D]
        if (y_embedder is not null)
        {
            var y = classes?.to(ScalarType.Int64).to(x.device) ?? full([x.shape[0]], Config.NumClasses, dtype: ScalarType.Int64, device: x.device);
            c = c + y_embedder.call(y);
        }
        foreach (var block in blocks) tokens = block.call(tokens, c);
        var patches = final_layer.call(tokens, c);                             // [B, N, p·p·C_out]
        return Patches.Unpatchify(patches, Config.PatchSize, Config.OutChannels).MoveToOuterDisposeScope();
    }
}
