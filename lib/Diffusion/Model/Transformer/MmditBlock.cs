using static TorchSharp.torch.nn;

namespace Diffusion.Model.Transformer;

/// <summary>
/// Joint attention over two token sequences with separate weights (SD3's MMDiT; diffusers' <c>JointAttnProcessor2_0</c>
/// in attention_processor.py): image tokens x use <c>to_q</c>, <c>to_k</c>, <c>to_v</c>, <c>to_out</c>, text tokens use
/// <c>add_q_proj</c>, <c>add_k_proj</c>, <c>add_v_proj</c>, <c>to_add_out</c>; the queries, keys and values of both are
/// concatenated along the sequence and one softmax runs over the joint sequence, so every image token attends to every
/// text token and vice versa. The output is split back into the two sequences. (diffusers names the output map
/// <c>to_out.0</c>, a list with a dropout after it; here it is the map itself, <c>to_out</c>.)
/// <para>
/// With <c>contextPreOnly</c> (SD3's last block) the text tokens only give keys and values: the text stream ends here,
/// so there are no text queries and no <c>to_add_out</c>, and the text output is null. (diffusers keeps an
/// <c>add_q_proj</c> in that block whose output it discards; it is left out here.)
/// </para>
/// </summary>
public sealed class JointAttention : Module<Tensor, Tensor, (Tensor Image, Tensor Text)>
{
    readonly Linear to_q, to_k, to_v, to_out;
    readonly Linear add_k_proj, add_v_proj;
    readonly Linear? add_q_proj, to_add_out;

    public long Heads { get; }
    /// <summary>True when the text tokens give only keys and values (the last MMDiT block).</summary>
    public bool ContextPreOnly { get; }

    public JointAttention(long dim, long heads, bool contextPreOnly = false) : base(nameof(JointAttention))
    {
        if (dim % heads != 0) throw new ArgumentException($"the hidden size {dim} must be divisible by the number of heads {heads}");
        Heads = heads;
        ContextPreOnly = contextPreOnly;
        to_q = Linear(dim, dim); to_k = Linear(dim, dim); to_v = Linear(dim, dim); to_out = Linear(dim, dim);
        add_k_proj = Linear(dim, dim); add_v_proj = Linear(dim, dim);
        if (!contextPreOnly)
        {
            add_q_proj = Linear(dim, dim);
            to_add_out = Linear(dim, dim);
        }
        RegisterComponents();
    }

    /// <summary>x [B, N, D] (image), context [B, M, D] (text) → ([B, N, D], [B, M, D]; the text part null if context-pre-only).</summary>
    public override (Tensor Image, Tensor Text) forward(Tensor x, Tensor context) => forward(x, context, null);

    /// <summary>
    /// As <see cref="forward(Tensor, Tensor)"/>, with <paramref name="contextMask"/> [B, M] true for real text tokens:
    /// padding tokens are given weight 0 as keys (image tokens are always attended). Null = every token, as SD3 does.
    /// </summary>
    public (Tensor Image, Tensor Text) forward(Tensor x, Tensor context, Tensor? contextMask)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[1];
        Tensor Heads(Linear map, Tensor input) => TokenAttention.SplitHeads(map.call(input), this.Heads);
        // [B, heads, N + M, d]: image tokens first, then text tokens (diffusers' order)
        var q = add_q_proj is null ? Heads(to_q, x) : cat([Heads(to_q, x), Heads(add_q_proj, context)], 2);
        var k = cat([Heads(to_k, x), Heads(add_k_proj, context)], 2);
        var v = cat([Heads(to_v, x), Heads(add_v_proj, context)], 2);
        Tensor? mask = null;
        if (contextMask is not null)
        {
            if (contextMask.dim() != 2 || contextMask.shape[0] != x.shape[0] || contextMask.shape[1] != context.shape[1])
                throw new ArgumentException($"the text mask must be [batch, tokens] = [{x.shape[0]}, {context.shape[1]}], got [{string.Join(", ", contextMask.shape)}]");
            // [B, 1, 1, N + M]: true = may be attended; the same for every head and query
            mask = cat([ones(x.shape[0], n, dtype: ScalarType.Bool, device: x.device), contextMask.to(ScalarType.Bool).to(x.device)], 1)
                .view(x.shape[0], 1, 1, -1);
        }
        var joint = TokenAttention.MergeHeads(TokenAttention.Attend(q, k, v, mask));   // [B, N (+ M), D]
        if (to_add_out is null) return (to_out.call(joint).MoveToOuterDisposeScope(), null!);
        var image = to_out.call(joint[.., ..(int)n]);
        var text = to_add_out.call(joint[.., (int)n..]);
        return (image.MoveToOuterDisposeScope(), text.MoveToOuterDisposeScope());
    }
}

/// <summary>
/// diffusers' AdaLayerNormZero / AdaLayerNormContinuous as MMDiT uses them: SiLU then one linear map <c>linear</c> of the
/// conditioning vector c to <see cref="Chunks"/> vectors of width D, zero-initialised (adaLN-Zero), in diffusers' order.
/// </summary>
public sealed class AdaLayerNormZero : Module<Tensor, Tensor[]>
{
    readonly Linear linear;

    public long Chunks { get; }

    public AdaLayerNormZero(long dim, long chunks) : base(nameof(AdaLayerNormZero))
    {
        Chunks = chunks;
        linear = Linear(dim, chunks * dim, hasBias: true);
        using (no_grad())
        {
            linear.weight!.fill_(0);
            linear.bias!.fill_(0);
        }
        RegisterComponents();
    }

    /// <summary>c [B, D] → <see cref="Chunks"/> × [B, D].</summary>
    public override Tensor[] forward(Tensor c) => linear.call(functional.silu(c)).chunk(Chunks, 1);
}

/// <summary>
/// The transformer MLP with diffusers' FeedForward names (<c>net.0.proj</c>, <c>net.2</c>): Linear → GELU (tanh
/// approximation, "gelu-approximate") → Linear. The same function as <see cref="TokenMlp"/>.
/// </summary>
public sealed class FeedForward : Module<Tensor, Tensor>
{
    readonly Sequential net;

    public FeedForward(long dim, long hidden) : base(nameof(FeedForward))
    {
        net = Sequential(new GeluProjection(dim, hidden), Identity(), Linear(hidden, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => net.call(x);

    /// <summary>diffusers' GELU module: its linear map <c>proj</c>, then GELU (tanh).</summary>
    sealed class GeluProjection : Module<Tensor, Tensor>
    {
        readonly Linear proj;

        public GeluProjection(long dim, long hidden) : base(nameof(GeluProjection))
        {
            proj = Linear(dim, hidden);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            return TokenMlp.Gelu(proj.call(x)).MoveToOuterDisposeScope();
        }
    }
}

/// <summary>
/// An MMDiT block (Esser et al. 2024, "Scaling Rectified Flow Transformers", §4, Fig. 2; diffusers' JointTransformerBlock
/// in attention.py): two DiT blocks, one for the image tokens and one for the text tokens, each with its own
/// adaLN-Zero modulation (<c>norm1</c>, <c>norm1_context</c>) and MLP (<c>ff</c>, <c>ff_context</c>), that share one
/// <see cref="JointAttention"/>. Both streams are modulated by the same conditioning vector c (SD3: time embedding +
/// pooled text embedding). Zero-initialised modulations make the block the identity on both streams at initialisation.
/// <para>
/// SD3's last block is context-pre-only: the text stream is not carried further, so its modulation gives only shift and
/// scale for the attention's input (diffusers' AdaLayerNormContinuous, <c>norm1_context</c> with 2·D outputs, in the
/// order scale, shift) and there is no <c>ff_context</c>; the block returns null for the text.
/// </para>
/// </summary>
public sealed class MmditBlock : Module<Tensor, Tensor, Tensor, (Tensor Image, Tensor Text)>
{
    readonly AdaLayerNormZero norm1, norm1_context;
    readonly JointAttention attn;
    readonly FeedForward ff;
    readonly FeedForward? ff_context;

    public bool ContextPreOnly { get; }

    public MmditBlock(long hidden, long heads, double mlpRatio = 4.0, bool contextPreOnly = false) : base(nameof(MmditBlock))
    {
        ContextPreOnly = contextPreOnly;
        long mlp = (long)(hidden * mlpRatio);
        norm1 = new AdaLayerNormZero(hidden, 6);
        norm1_context = new AdaLayerNormZero(hidden, contextPreOnly ? 2 : 6);
        attn = new JointAttention(hidden, heads, contextPreOnly);
        ff = new FeedForward(hidden, mlp);
        if (!contextPreOnly) ff_context = new FeedForward(hidden, mlp);
        RegisterComponents();
    }

    /// <summary>x [B, N, D] image tokens, context [B, M, D] text tokens, c [B, D] → both sequences updated.</summary>
    public override (Tensor Image, Tensor Text) forward(Tensor x, Tensor context, Tensor c) => forward(x, context, c, null);

    /// <summary>As <see cref="forward(Tensor, Tensor, Tensor)"/>, with the text tokens' mask [B, M] (true = token) for the joint attention.</summary>
    public (Tensor Image, Tensor Text) forward(Tensor x, Tensor context, Tensor c, Tensor? contextMask)
    {
        using var scope = NewDisposeScope();
        // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp for each stream (diffusers' AdaLayerNormZero order)
        var m = norm1.call(c);
        var mc = norm1_context.call(c);
        // context-pre-only: AdaLayerNormContinuous's order is scale, shift
        var normContext = ContextPreOnly ? AdaLayerNorm.NormModulate(context, mc[1], mc[0]) : AdaLayerNorm.NormModulate(context, mc[0], mc[1]);
        var (attnImage, attnText) = attn.forward(AdaLayerNorm.NormModulate(x, m[0], m[1]), normContext, contextMask);
        x = AdaLayerNorm.GatedAdd(x, m[2], attnImage);
        x = AdaLayerNorm.GatedAdd(x, m[5], ff.call(AdaLayerNorm.NormModulate(x, m[3], m[4])));
        if (ff_context is null) return (x.MoveToOuterDisposeScope(), null!);
        context = AdaLayerNorm.GatedAdd(context, mc[2], attnText);
        context = AdaLayerNorm.GatedAdd(context, mc[5], ff_context.call(AdaLayerNorm.NormModulate(context, mc[3], mc[4])));
        return (x.MoveToOuterDisposeScope(), context.MoveToOuterDisposeScope());
    }
}
