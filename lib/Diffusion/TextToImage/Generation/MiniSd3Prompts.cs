using Diffusion.Forward;
using Diffusion.Flow;
using Diffusion.Model.Transformer;
using Diffusion.Sampling;

namespace Diffusion.TextToImage;

/// <summary>
/// The encoded prompts of a sampling run for a <see cref="MiniSd3"/>: per prompt its token features, mask and pooled
/// vector, and in the last row those of the empty prompt "" — the "no text" condition ∅ of classifier-free guidance.
/// A prompt is an index into this table, so guidance runs through the class-label path (the empty row as "no label"),
/// one batched pass on [x; x] with texts [c; ∅]. Owns its tensors: dispose it.
/// </summary>
public sealed class MiniSd3Prompts : IDisposable
{
    /// <summary>Token features [P + 1, L, ContextDim]: the prompts, then the empty prompt.</summary>
    public Tensor Context { get; }
    /// <summary>Masks [P + 1, L] (true = token).</summary>
    public Tensor Mask { get; }
    /// <summary>Pooled vectors [P + 1, PooledDim].</summary>
    public Tensor Pooled { get; }
    /// <summary>The row of the empty prompt.</summary>
    public int EmptyIndex => (int)Context.shape[0] - 1;

    /// <summary>
    /// Takes (copies of) the table: rows 0..P−1 the prompts, row P the empty prompt, as a text encoder gives them
    /// (for the mini-CLIP: its token features, the tokenizer's mask, and TextEncoder.Embed of both for the pooled vector).
    /// </summary>
    public MiniSd3Prompts(Tensor context, Tensor mask, Tensor pooled)
    {
        if (context.dim() != 3 || mask.dim() != 2 || pooled.dim() != 2 || context.shape[0] < 1
            || mask.shape[0] != context.shape[0] || pooled.shape[0] != context.shape[0] || mask.shape[1] != context.shape[1])
            throw new ArgumentException($"the prompt table must be context [P + 1, L, C], mask [P + 1, L], pooled [P + 1, C_p]; got [{string.Join(", ", context.shape)}], [{string.Join(", ", mask.shape)}], [{string.Join(", ", pooled.shape)}]");
        using var scope = NewDisposeScope();
        Context = context.detach().clone().DetachFromDisposeScope();
        Mask = mask.to(ScalarType.Bool).clone().DetachFromDisposeScope();
        Pooled = pooled.detach().clone().DetachFromDisposeScope();
    }

    /// <summary>
    /// Encodes <paramref name="prompts"/> and the empty prompt with the frozen mini-CLIP text encoder, without gradients:
    /// its token features and masks (<see cref="TextCondition.Encode"/>, the table of the course's text-to-image model) and
    /// its pooled vectors <see cref="TextEncoder.Embed"/> (the projected mean of the real tokens' features).
    /// </summary>
    public static MiniSd3Prompts Encode(TextEncoder encoder, WordTokenizer tokenizer, IReadOnlyList<string> prompts, Device? device = null)
    {
        using var text = TextCondition.Encode(encoder, tokenizer, prompts, device);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        return new MiniSd3Prompts(text.Context, text.Mask, encoder.Embed(text.Context, text.Mask));
    }

    /// <summary>The network's prediction for x [B, C, H, W] at network time t [B], image b showing prompt <paramref name="index"/>[b] (0..P, P = ∅).</summary>
    public Tensor Predict(MiniSd3 net, Tensor x, Tensor t, Tensor index)
    {
        using var scope = NewDisposeScope();
        var i = index.to(ScalarType.Int64).to(Context.device);
        return net.forward(x, t, Context.index_select(0, i), Pooled.index_select(0, i), Mask.index_select(0, i)).MoveToOuterDisposeScope();
    }

    /// <summary>The network as the guidance path sees it: (x_t, t ∈ [0, 1], prompt index) → velocity; the network is called with t·1000.</summary>
    public ConditionalDenoisingModel AsConditional(MiniSd3 net) => RectifiedFlow.OnNetworkTime((x, t, index) => Predict(net, x, t, index));

    /// <summary>
    /// The guided velocity for a batch whose image b shows prompt <paramref name="promptIndex"/>[b] (or
    /// <see cref="EmptyIndex"/>): v̂ = (1 + w) v̂(x, c) − w v̂(x, ∅), one batched pass (<see cref="ClassifierFreeGuidance.Guide"/>).
    /// </summary>
    public DenoisingModel Guided(MiniSd3 net, Tensor promptIndex, double w) =>
        ClassifierFreeGuidance.Guide(AsConditional(net), promptIndex, EmptyIndex, w);

    public void Dispose()
    {
        Context.Dispose();
        Mask.Dispose();
        Pooled.Dispose();
    }
}
