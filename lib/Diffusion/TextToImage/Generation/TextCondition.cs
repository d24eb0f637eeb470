using Diffusion.Forward;
using Diffusion.Sampling;

namespace Diffusion.TextToImage;

/// <summary>
/// The encoded prompts of a sampling run: the frozen text encoder's token features of every prompt and, in the last row,
/// of the empty prompt "" — the "no text" condition ∅. A prompt is then an index into this table, and classifier-free
/// guidance runs through the library's class-label path unchanged (<see cref="ClassifierFreeGuidance.Guide"/>, with the
/// empty prompt's row as its "no label" index): one batched pass on [z_t; z_t] with texts [c; ∅],
/// ε̃ = (1 + w) ε_θ(z_t, c) − w ε_θ(z_t, ∅). Owns its tensors: dispose it.
/// </summary>
public sealed class TextCondition : IDisposable
{
    /// <summary>Token features [P + 1, L, Dim]: the prompts, then the empty prompt.</summary>
    public Tensor Context { get; }
    /// <summary>The attention masks [P + 1, L] (true = token).</summary>
    public Tensor Mask { get; }
    /// <summary>The prompts as given (without the empty one at the end).</summary>
    public IReadOnlyList<string> Prompts { get; }
    /// <summary>The row of the empty prompt: ∅, the "no label" index of the guidance path.</summary>
    public int EmptyIndex => Prompts.Count;

    TextCondition(Tensor context, Tensor mask, IReadOnlyList<string> prompts)
    {
        Context = context.DetachFromDisposeScope();
        Mask = mask.DetachFromDisposeScope();
        Prompts = prompts;
    }

    /// <summary>Encodes <paramref name="prompts"/> and the empty prompt with the (frozen) text encoder, without gradients.</summary>
    public static TextCondition Encode(TextEncoder encoder, WordTokenizer tokenizer, IReadOnlyList<string> prompts, Device? device = null)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var all = prompts.Append("").ToArray();
        var (ids, mask) = PromptTokens.Encode(tokenizer, all, encoder.Config.ContextLength, device);
        encoder.eval();
        var context = encoder.call(ids, mask);
        return new TextCondition(context.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope(), prompts.ToArray());
    }

    /// <summary>The network as the guidance path sees it: (z_t, t, prompt index) → prediction, the index selecting its row.</summary>
    public ConditionalDenoisingModel AsConditional(TextUnet unet) => (x, t, index) =>
    {
        using var scope = NewDisposeScope();
        var i = index.to(ScalarType.Int64).to(Context.device);
        return unet.forward(x, t, Context.index_select(0, i), Mask.index_select(0, i)).MoveToOuterDisposeScope();
    };

    /// <summary>
    /// The guided denoiser for a batch whose image b shows prompt <paramref name="promptIndex"/>[b] (0..P−1, or
    /// <see cref="EmptyIndex"/> for unconditional), with guidance weight <paramref name="w"/> (0 = the conditional model
    /// alone, −1 = the empty prompt's; Stable Diffusion's guidance_scale 7.5 is w = 6.5).
    /// </summary>
    public DenoisingModel Guided(TextUnet unet, Tensor promptIndex, double w) =>
        ClassifierFreeGuidance.Guide(AsConditional(unet), promptIndex, EmptyIndex, w);

    public void Dispose()
    {
        Context.Dispose();
        Mask.Dispose();
    }
}
