using static TorchSharp.torch.nn;

namespace Diffusion.TextToImage;

/// <summary>
/// Stable Diffusion's spatial transformer (Rombach et al. 2022, §3.3; LDM's <c>SpatialTransformer</c>): the feature map
/// [B, C, H, W] becomes H·W tokens, each pixel a query, and one pre-norm transformer block reads the text:
/// <code>
/// h = proj_in(GroupNorm(x)) as [B, H·W, C]
/// h = h + SelfAttention(LN(h))                    pixels look at each other
/// h = h + CrossAttention(LN(h), text, mask)       pixels look at the words: softmax(QKᵀ/√d + mask) V, Q from h, K and V from the text
/// h = h + FeedForward(LN(h))
/// y = x + proj_out(h) as [B, C, H, W]
/// </code>
/// proj_out starts at zero (LDM's <c>zero_module</c>), so an untrained block is the identity and the U-Net starts as the
/// plain course U-Net; <c>zeroInitOutput: false</c> keeps a random proj_out (for tests that need the text to matter).
/// </summary>
public sealed class SpatialTransformer : Module<Tensor, Tensor, Tensor?, Tensor>
{
    readonly GroupNorm norm;
    readonly Linear proj_in, proj_out;
    readonly LayerNorm norm1, norm2, norm3;
    readonly CrossAttention attn1, attn2;
    readonly Sequential ff;

    public long Channels { get; }
    public long ContextDim { get; }

    public SpatialTransformer(long channels, long contextDim, long heads, long dimHead, long groups, bool zeroInitOutput = true)
        : base(nameof(SpatialTransformer))
    {
        if (channels % groups != 0) throw new ArgumentException($"{channels} channels cannot be split into {groups} GroupNorm groups");
        Channels = channels;
        ContextDim = contextDim;
        norm = Layers.GroupNorm(groups, channels);
        proj_in = Linear(channels, channels);
        norm1 = Layers.LayerNorm(channels);
        attn1 = new CrossAttention(channels, channels, heads, dimHead);
        norm2 = Layers.LayerNorm(channels);
        attn2 = new CrossAttention(channels, contextDim, heads, dimHead);
        norm3 = Layers.LayerNorm(channels);
        ff = Sequential(Linear(channels, 4 * channels), GELU(), Linear(4 * channels, channels));
        proj_out = Linear(channels, channels);
        if (zeroInitOutput)
            using (no_grad())
            {
                proj_out.weight!.fill_(0);
                proj_out.bias!.fill_(0);
            }
        RegisterComponents();
    }

    /// <summary>
    /// The cross-attention (pixels → words): <c>CrossAttn.Weights(CrossAttentionInput(x), text, mask)</c> is the attention
    /// map of a prompt over the feature map's pixels, [B, heads, H·W, L].
    /// </summary>
    public CrossAttention CrossAttn => attn2;
    /// <summary>The self-attention (pixels → pixels).</summary>
    public CrossAttention SelfAttn => attn1;

    /// <summary>
    /// When true, every forward keeps its cross-attention weights in <see cref="LastCrossAttention"/> (for attention maps in
    /// the notebook; off in training and sampling).
    /// </summary>
    public bool RecordCrossAttention { get; set; }

    /// <summary>The cross-attention weights of the last forward while <see cref="RecordCrossAttention"/> was on:
    /// [B, heads, H·W, L], detached, owned by this module (replaced at the next recorded call, freed by <see cref="ClearRecorded"/>).</summary>
    public Tensor? LastCrossAttention { get; private set; }

    /// <summary>Frees <see cref="LastCrossAttention"/>.</summary>
    public void ClearRecorded()
    {
        LastCrossAttention?.Dispose();
        LastCrossAttention = null;
    }

    /// <summary>The feature map as tokens after GroupNorm and proj_in, then the self-attention residual: what the cross-attention's queries read.</summary>
    public Tensor CrossAttentionInput(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = Tokens(x);
        var n = norm1.call(h);
        h = h + attn1.call(n, n, null);
        return norm2.call(h).MoveToOuterDisposeScope();
    }

    /// <summary>x [B, C, H, W], the text's token features [B, L, ContextDim] and its mask [B, L] (true = token) → [B, C, H, W].</summary>
    public override Tensor forward(Tensor x, Tensor context, Tensor? mask)
    {
        if (x.dim() != 4 || x.shape[1] != Channels)
            throw new ArgumentException($"the spatial transformer expects [batch, {Channels}, height, width], got [{string.Join(", ", x.shape)}]");
        if (context.dim() != 3 || context.shape[0] != x.shape[0] || context.shape[2] != ContextDim)
            throw new ArgumentException($"the text context must be [{x.shape[0]}, tokens, {ContextDim}], got [{string.Join(", ", context.shape)}]");
        using var scope = NewDisposeScope();
        long b = x.shape[0], c = x.shape[1], hh = x.shape[2], ww = x.shape[3];
        var h = Tokens(x);
        var n1 = norm1.call(h);
        // h ← h + SelfAttention(LN(h))
        h = h + attn1.call(n1, n1, null);
        // h ← h + CrossAttention(LN(h), text, mask): softmax(Q Kᵀ/√d + mask) V
        var n2 = norm2.call(h);
        if (RecordCrossAttention)
        {
            LastCrossAttention?.Dispose();
            LastCrossAttention = attn2.Weights(n2, context, mask).detach().DetachFromDisposeScope();
        }
        h = h + attn2.call(n2, context, mask);
        // h ← h + FF(LN(h))
        h = h + ff.call(norm3.call(h));
        // "b (h w) c -> b c h w", then the residual around the whole block
        var y = proj_out.call(h).transpose(1, 2).reshape(b, c, hh, ww);
        return (x + y).MoveToOuterDisposeScope();
    }

    /// <summary>proj_in(GroupNorm(x)) as tokens: "b c h w -> b (h w) c".</summary>
    Tensor Tokens(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = norm.call(x).flatten(2).transpose(1, 2);
        return proj_in.call(h).MoveToOuterDisposeScope();
    }
}
