using static TorchSharp.torch.nn;

namespace Diffusion.Model.Transformer;

/// <summary>
/// Joint attention over two token sequences with separate weights (SD3's MMDiT; diffusers' <c>JointAttnProcessor2_0</c>
/// in attention_processor.py): image tokens x use <c>to_q</c>, <c>to_k</c>, <c>to_v</c>, <c>to_out</c>, text tokens use
/// <c>add_q_proj</c>, <c>add_k_proj</c>, <c>add_v_proj</c>, <c>to_add_out</c>; the queries, keys and values of both are
/// concatenated along the sequence and one softmax runs over the joint sequence, so every image token attends to every
/// text token and vice versa. The output is split back into the two sequences.
/// </summary>
public sealed class JointAttention : Module<Tensor, Tensor, (Tensor Image, Tensor Text)>
{
    readonly Linear to_q, to_k, to_v, to_out;
    readonly Linear add_q_proj, add_k_proj, add_v_proj, to_add_out;

    public long Heads { get; }

    public JointAttention(long dim, long heads) : base(nameof(JointAttention))
    {
        if (dim % heads != 0) throw new ArgumentException($"the hidden size {dim} must be divisible by the number of heads {heads}");
        Heads = heads;
        to_q = Linear(dim, dim); to_k = Linear(dim, dim); to_v = Linear(dim, dim); to_out = Linear(dim, dim);
        add_q_proj = Linear(dim, dim); add_k_proj = Linear(dim, dim); add_v_proj = Linear(dim, dim); to_add_out = Linear(dim, dim);
        RegisterComponents();
    }

    /// <summary>x [B, N, D] (image), context [B, M, D] (text) → ([B, N, D], [B, M, D]).</summary>
    public override (Tensor Image, Tensor Text) forward(Tensor x, Tensor context)
    {
        using var scope = NewDisposeScope();
        long n = x.shape[1];
        Tensor Heads(Linear map, Tensor input) => TokenAttention.SplitHeads(map.call(input), this.Heads);
        // [B, heads, N + M, d]: image tokens first, then text tokens (diffusers' order)
        var q = cat([Heads(to_q, x), Heads(add_q_proj, context)], 2);
        var k = cat([Heads(to_k, x), Heads(add_k_proj, context)], 2);
        var v = cat([Heads(to_v, x), Heads(add_v_proj, context)], 2);
        var joint = TokenAttention.MergeHeads(TokenAttention.Attend(q, k, v));   // [B, N + M, D]
        var image = to_out.call(joint[.., ..(int)n]);
        var text = to_add_out.call(joint[.., (int)n..]);
        return (image.MoveToOuterDisposeScope(), text.MoveToOuterDisposeScope());
    }
}

/// <summary>
/// An MMDiT block (Esser et al. 2024, "Scaling Rectified Flow Transformers", §4, Fig. 2; diffusers' JointTransformerBlock
/// in transformer_sd3.py): two DiT blocks, one for the image tokens and one for the text tokens, each with its own
/// adaLN-Zero modulation (<c>norm1</c>, <c>norm1_context</c>) and MLP (<c>ff</c>, <c>ff_context</c>), that share one
/// <see cref="JointAttention"/>. Both streams are modulated by the same conditioning vector c (SD3: time embedding +
/// pooled text embedding). Zero-initialised modulations make the block the identity on both streams at initialisation.
/// </summary>
public sealed class MmditBlock : Module<Tensor, Tensor, Tensor, (Tensor Image, Tensor Text)>
{
    readonly Sequential norm1, norm1_context;
    readonly JointAttention attn;
    readonly TokenMlp ff, ff_context;

    public MmditBlock(long hidden, long heads, double mlpRatio = 4.0) : base(nameof(MmditBlock))
    {
        norm1 = AdaLayerNorm.Modulation(hidden, 6);
        norm1_context = AdaLayerNorm.Modulation(hidden, 6);
        attn = new JointAttention(hidden, heads);
        ff = new TokenMlp(hidden, (long)(hidden * mlpRatio));
        ff_context = new TokenMlp(hidden, (long)(hidden * mlpRatio));
        RegisterComponents();
    }

    /// <summary>x [B, N, D] image tokens, context [B, M, D] text tokens, c [B, D] → both sequences updated.</summary>
    public override (Tensor Image, Tensor Text) forward(Tensor x, Tensor context, Tensor c)
    {
        using var scope = NewDisposeScope();
        // shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp for each stream (diffusers' AdaLayerNormZero order)
        var m = norm1.call(c).chunk(6, 1);
        var mc = norm1_context.call(c).chunk(6, 1);
        var (attnImage, attnText) = attn.call(AdaLayerNorm.NormModulate(x, m[0], m[1]), AdaLayerNorm.NormModulate(context, mc[0], mc[1]));
        x = x + m[2].unsqueeze(1) * attnImage;
        context = context + mc[2].unsqueeze(1) * attnText;
        x = x + m[5].unsqueeze(1) * ff.call(AdaLayerNorm.NormModulate(x, m[3], m[4]));
        context = context + mc[5].unsqueeze(1) * ff_context.call(AdaLayerNorm.NormModulate(context, mc[3], mc[4]));
        return (x.MoveToOuterDisposeScope(), context.MoveToOuterDisposeScope());
    }
}
