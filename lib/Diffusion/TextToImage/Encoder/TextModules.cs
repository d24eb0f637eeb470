using static TorchSharp.torch.nn;

namespace Diffusion.TextToImage;

/// <summary>
/// Multi-head attention of the queries x [B, N, C] over a context [B, M, D] (Vaswani et al. 2017):
/// per head, softmax(q kᵀ/√d + mask) v with q = W_q x, k = W_k c, v = W_v c, then W_out over the heads. With the context
/// = x it is self-attention; with the text encoder's tokens as context it is Stable Diffusion's cross-attention, where
/// every pixel (a query) picks the words (keys) it listens to. <c>mask</c> [B, M] is true for real tokens; padding gets
/// weight exactly 0.
/// </summary>
public sealed class CrossAttention : Module<Tensor, Tensor, Tensor?, Tensor>
{
    readonly Linear to_q, to_k, to_v, to_out;

    public AttentionHeads Heads { get; }

    public CrossAttention(long queryDim, long contextDim, long heads = 4, long dimHead = 16) : base(nameof(CrossAttention))
    {
        Heads = new AttentionHeads(heads, dimHead);
        to_q = Linear(queryDim, Heads.Hidden, hasBias: false);
        to_k = Linear(contextDim, Heads.Hidden, hasBias: false);
        to_v = Linear(contextDim, Heads.Hidden, hasBias: false);
        to_out = Linear(Heads.Hidden, queryDim);
        RegisterComponents();
    }

    /// <summary>The attention weights [B, heads, N, M]: row i is how query i spreads over the context (sums to 1).</summary>
    public Tensor Weights(Tensor x, Tensor context, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        return AttentionWeights(Split(to_q.call(x)), Split(to_k.call(context)), mask).MoveToOuterDisposeScope();
    }

    /// <summary>W_out · concat_heads(softmax(q kᵀ/√d + mask) v): [B, N, C].</summary>
    public override Tensor forward(Tensor x, Tensor context, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var attn = Weights(x, context, mask);
        var v = Split(to_v.call(context));
        // out_i = Σ_j attn_ij v_j, heads side by side                                        "b h n m, b h m d -> b n (h d)"
        var output = matmul(attn, v).permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[1], Heads.Hidden);
        return to_out.call(output).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// softmax(q kᵀ/√d + mask) over the context axis, for queries q [B, …, N, d] and keys k [B, …, M, d] (any number of
    /// head axes between), d = q's last size; <paramref name="mask"/> [B, M] is true for real tokens, and a false
    /// position gets −∞ before the softmax, so weight exactly 0. The math of every <see cref="CrossAttention"/>.
    /// </summary>
    public static Tensor AttentionWeights(Tensor q, Tensor k, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        // sim_ij = q_i · k_j / √d                                                             "b h n d, b h m d -> b h n m"
        var sim = matmul(q, k.transpose(-2, -1)) * (1 / Math.Sqrt(q.shape[^1]));
        if (mask is not null)
        {
            if (mask.dim() != 2 || mask.shape[0] != k.shape[0] || mask.shape[1] != k.shape[^2])
                throw new ArgumentException($"the mask must be [batch, tokens] = [{k.shape[0]}, {k.shape[^2]}], got [{string.Join(", ", mask.shape)}]");
            // "b m -> b 1 … 1 m": the same mask for every head and every query
            var view = new long[sim.dim()];
            Array.Fill(view, 1L);
            view[0] = mask.shape[0];
            view[^1] = mask.shape[1];
            sim = sim.masked_fill(mask.logical_not().view(view), float.NegativeInfinity);
        }
        return sim.softmax(-1).MoveToOuterDisposeScope();
    }

    /// <summary>Attention(Q, K, V) = softmax(Q Kᵀ/√d + mask) V for q [B, …, N, d], k [B, …, M, d], v [B, …, M, d_v], mask [B, M] (true = token).</summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        return matmul(AttentionWeights(q, k, mask), v).MoveToOuterDisposeScope();
    }

    /// <summary>[B, N, heads·d] → [B, heads, N, d].</summary>
    Tensor Split(Tensor t) => t.view(t.shape[0], t.shape[1], Heads.Count, Heads.Dim).permute(0, 2, 1, 3);
}

/// <summary>A pre-norm Transformer block: x + SelfAttention(LN(x)), then x + MLP(LN(x)) with a GELU MLP of 4× width.</summary>
public sealed class TransformerBlock : Module<Tensor, Tensor?, Tensor>
{
    readonly LayerNorm ln_1, ln_2;
    readonly CrossAttention attn;
    readonly Sequential mlp;

    public TransformerBlock(long dim, long heads) : base(nameof(TransformerBlock))
    {
        if (dim % heads != 0) throw new ArgumentException($"the width {dim} must be divisible by the {heads} heads");
        ln_1 = Layers.LayerNorm(dim);
        attn = new CrossAttention(dim, dim, heads, dim / heads);
        ln_2 = Layers.LayerNorm(dim);
        mlp = Sequential(Linear(dim, 4 * dim), GELU(), Linear(4 * dim, dim));
        RegisterComponents();
    }

    public CrossAttention Attention => attn;

    public override Tensor forward(Tensor x, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var h = ln_1.call(x);
        x = x + attn.call(h, h, mask);
        x = x + mlp.call(ln_2.call(x));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>The shape of the text encoder (CLIP's text tower, in miniature).</summary>
public sealed record TextEncoderConfig
{
    /// <summary>Token ids 0..VocabularySize−1 (the tokenizer's <see cref="WordTokenizer.Count"/>).</summary>
    public int VocabularySize { get; init; } = WordTokenizer.ForCaptions().Count;
    /// <summary>Tokens per prompt, start and end included (longer prompts are cut).</summary>
    public int ContextLength { get; init; } = 16;
    public int Dim { get; init; } = 64;
    public int Heads { get; init; } = 4;
    public int Layers { get; init; } = 2;
    /// <summary>Width of the joint text–image space of the contrastive loss.</summary>
    public int EmbedDim { get; init; } = 64;

    public void Validate()
    {
        if (VocabularySize is < WordTokenizer.FirstWord + 1 or > 100_000) throw new ArgumentException($"the vocabulary needs the 4 special ids and a word, and at most 100 000 ids, got {VocabularySize}");
        if (ContextLength is < 2 or > 512) throw new ArgumentException($"the context needs room for start and end, and at most 512 tokens, got {ContextLength}");
        if (Dim is < 1 or > 1024 || Heads is < 1 or > 64 || Dim % Heads != 0) throw new ArgumentException($"Dim ({Dim}, at most 1024) must be a positive multiple of Heads ({Heads}, at most 64)");
        if (Layers is < 1 or > 24 || EmbedDim is < 1 or > 1024) throw new ArgumentException($"Layers must be 1..24 and EmbedDim 1..1024, got {Layers} and {EmbedDim}");
    }
}

/// <summary>
/// The text encoder: token + position embeddings, <see cref="TextEncoderConfig.Layers"/> pre-norm Transformer blocks
/// attending only to real tokens (padding masked), a final LayerNorm. <see cref="forward"/> gives one vector per token —
/// what the U-Net's cross-attention reads; <see cref="Embed"/> pools them into the joint space of the contrastive loss.
/// </summary>
public sealed class TextEncoder : Module<Tensor, Tensor, Tensor>
{
    readonly Embedding token_embedding;
    readonly Parameter positional_embedding;
    readonly ModuleList<TransformerBlock> blocks = new();
    readonly LayerNorm ln_final;
    readonly Linear text_projection;

    public TextEncoderConfig Config { get; }

    public TextEncoder(TextEncoderConfig config) : base(nameof(TextEncoder))
    {
        config.Validate();
        Config = config;
        token_embedding = Embedding(config.VocabularySize, config.Dim);
        positional_embedding = new Parameter(empty(config.ContextLength, config.Dim));
        using (no_grad()) positional_embedding.normal_(0, 0.01);
        for (int i = 0; i < config.Layers; i++) blocks.Add(new TransformerBlock(config.Dim, config.Heads));
        ln_final = Layers.LayerNorm(config.Dim);
        text_projection = Linear(config.Dim, config.EmbedDim, hasBias: false);
        RegisterComponents();
    }

    /// <summary>Token features [B, L, Dim] for ids [B, L] (int64) and the mask [B, L] (true = token).</summary>
    public override Tensor forward(Tensor ids, Tensor mask)
    {
        if (ids.dim() != 2 || ids.shape[1] != Config.ContextLength)
            throw new ArgumentException($"token ids must be [batch, {Config.ContextLength}], got [{string.Join(", ", ids.shape)}]");
        using var scope = NewDisposeScope();
        var x = token_embedding.call(ids) + positional_embedding;
        foreach (var block in blocks) x = block.call(x, mask);
        return ln_final.call(x).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The prompt's vector in the joint space: the mean of the real tokens' features (mask true), projected. CLIP takes
    /// the end token instead; in a one- or two-layer encoder the mean gives every word a direct path to the embedding,
    /// and the contrastive loss starts falling at once instead of after a long plateau.
    /// </summary>
    public Tensor Embed(Tensor tokens, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var m = mask.to(tokens.dtype).unsqueeze(-1);
        var mean = (tokens * m).sum(1) / m.sum(1).clamp_min(1);
        return text_projection.call(mean).MoveToOuterDisposeScope();
    }
}
