namespace Diffusion.Training;

/// <summary>
/// Label dropout for classifier-free guidance (Ho &amp; Salimans 2022, Algorithm 1: "c ← ∅ with probability p_uncond"):
/// each label is replaced by the "no label" index ∅ independently with probability p, so one network learns both
/// ε_θ(x_t, c) and ε_θ(x_t, ∅). Ho &amp; Salimans found p_uncond = 0.1–0.2 best; the course trains with 0.1.
/// </summary>
public static class ClassDropout
{
    /// <param name="labels">LongTensor [B] of labels 0..K−1.</param>
    /// <param name="probability">p_uncond, in [0, 1].</param>
    /// <param name="nullClass">The "no label" index ∅ (the U-Net's NumClasses, K).</param>
    /// <param name="generator">Random numbers (drawn on the labels' device: keep them on the CPU for seeded runs).</param>
    public static Tensor Apply(Tensor labels, double probability, long nullClass, Generator? generator = null)
    {
        if (!(probability is >= 0 and <= 1)) throw new ArgumentOutOfRangeException(nameof(probability), probability, "must be in [0, 1]");
        using var scope = NewDisposeScope();
        // drop_i ~ Bernoulli(p): u_i ~ U[0, 1), dropped where u_i < p
        var drop = rand([labels.shape[0]], generator: generator) < probability;
        return where(drop, torch.tensor(nullClass), labels).MoveToOuterDisposeScope();
    }
}
