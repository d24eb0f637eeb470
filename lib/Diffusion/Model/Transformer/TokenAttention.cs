using static TorchSharp.torch.nn;

namespace Diffusion.Model.Transformer;

/// <summary>
/// Multi-head softmax attention over token sequences: softmax(q kᵀ/√d) v per head (Vaswani et al. 2017).
/// <see cref="Attend(Tensor, Tensor, Tensor, Tensor?)"/> is the one place both transformer blocks call; it uses libtorch's fused
/// scaled_dot_product_attention unless <see cref="UseFusedKernel"/> is off, in which case it computes the products and
/// the softmax as written (the same numbers up to float rounding; DitTests compares them and times both).
/// </summary>
public static class TokenAttention
{
    /// <summary>Use torch.nn.functional.scaled_dot_product_attention (on by default).</summary>
    public static bool UseFusedKernel { get; set; } = true;

    /// <summary>q, k, v: [B, heads, N, d] (k and v may have another length M) → [B, heads, N, d].</summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v) => Attend(q, k, v, null);

    /// <summary>
    /// As <see cref="Attend(Tensor, Tensor, Tensor)"/>, with a boolean <paramref name="mask"/> broadcastable to
    /// [B, heads, N, M]: false keys get weight 0 (−∞ before the softmax). Null = every key.
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? mask) =>
        UseFusedKernel ? functional.scaled_dot_product_attention(q, k, v, mask) : Written(q, k, v, mask);

    /// <summary>softmax(q kᵀ/√d) v, step by step (false entries of <paramref name="mask"/> set to −∞ before the softmax).</summary>
    public static Tensor Written(Tensor q, Tensor k, Tensor v, Tensor? mask = null)
    {
        using var scope = NewDisposeScope();
        double scale = 1 / Math.Sqrt(q.shape[^1]);
        var scores = matmul(q, k.transpose(-2, -1)) * scale;
        if (mask is not null) scores = scores.masked_fill(mask.logical_not(), double.NegativeInfinity);
        return matmul(scores.softmax(-1), v).MoveToOuterDisposeScope();
    }

    /// <summary>[B, N, heads·d] → [B, heads, N, d].</summary>
    public static Tensor SplitHeads(Tensor x, long heads) =>
        x.view(x.shape[0], x.shape[1], heads, x.shape[2] / heads).transpose(1, 2);

    /// <summary>[B, heads, N, d] → [B, N, heads·d].</summary>
    public static Tensor MergeHeads(Tensor x) =>
        x.transpose(1, 2).reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3]);
}

/// <summary>
/// Self-attention over tokens as timm's Attention (DiT's <c>attn</c>): one linear map to q, k, v (<c>qkv</c>, with bias),
/// attention per head, and the output map <c>proj</c>.
/// </summary>
public sealed class SelfAttention : Module<Tensor, Tensor>
{
    readonly Linear qkv;
    readonly Linear proj;

    public long Heads { get; }

    public SelfAttention(long dim, long heads) : base(nameof(SelfAttention))
    {
        if (dim % heads != 0) throw new ArgumentException($"the hidden size {dim} must be divisible by the number of heads {heads}");
        Heads = heads;
        qkv = Linear(dim, 3 * dim, hasBias: true);
        proj = Linear(dim, dim, hasBias: true);
        RegisterComponents();
    }

    /// <summary>[B, N, D] → [B, N, D].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], d = x.shape[2];
        // [B, N, 3·D] → 3 × [B, heads, N, D/heads]   (timm: reshape(B, N, 3, heads, d).permute(2, 0, 3, 1, 4))
        var parts = qkv.call(x).view(b, n, 3, Heads, d / Heads).permute(2, 0, 3, 1, 4);
        var output = TokenAttention.Attend(parts[0], parts[1], parts[2]);
        return proj.call(TokenAttention.MergeHeads(output)).MoveToOuterDisposeScope();
    }
}

/// <summary>The transformer's MLP as timm's Mlp in DiT: fc1, GELU (tanh approximation), fc2.</summary>
public sealed class TokenMlp : Module<Tensor, Tensor>
{
    readonly Linear fc1;
    readonly Linear fc2;

    public TokenMlp(long dim, long hidden) : base(nameof(TokenMlp))
    {
        fc1 = Linear(dim, hidden, hasBias: true);
        fc2 = Linear(hidden, dim, hasBias: true);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return fc2.call(Gelu(fc1.call(x))).MoveToOuterDisposeScope();
    }

    /// <summary>GELU, tanh approximation (DiT's approx_gelu): x/2 · (1 + tanh(√(2/π)(x + 0.044715 x³))).</summary>
    internal static Tensor Gelu(Tensor x) => functional.gelu(x, TorchSharp.Modules.GELU.Approximate.tanh);
}

/// <summary>adaLN's modulation (DiT's <c>modulate</c>): x·(1 + scale) + shift, with one shift and scale per image.</summary>
public static class AdaLayerNorm
{
    /// <summary>LayerNorm over the last dimension without learnt affine parameters (ε = 1e-6), then x·(1 + scale) + shift.</summary>
    public static Tensor NormModulate(Tensor x, Tensor shift, Tensor scale)
    {
        using var scope = NewDisposeScope();
        var normalized = functional.layer_norm(x, [x.shape[^1]], eps: 1e-6);
        return (normalized * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)).MoveToOuterDisposeScope();
    }

    /// <summary>The gated residual of adaLN-Zero: x + gate·y, one gate [B, D] per image, broadcast over the tokens of y [B, N, D].</summary>
    public static Tensor GatedAdd(Tensor x, Tensor gate, Tensor y)
    {
        using var scope = NewDisposeScope();
        return (x + gate.unsqueeze(1) * y).MoveToOuterDisposeScope();
    }

    /// <summary>SiLU then a linear map of the conditioning vector to <paramref name="chunks"/> modulation vectors, zero-initialised (adaLN-Zero).</summary>
    public static Sequential Modulation(long dim, long chunks)
    {
        var linear = Linear(dim, chunks * dim, hasBias: true);
        using (no_grad())
        {
            linear.weight!.fill_(0);
            linear.bias!.fill_(0);
        }
        return Sequential(SiLU(), linear);
    }
}
