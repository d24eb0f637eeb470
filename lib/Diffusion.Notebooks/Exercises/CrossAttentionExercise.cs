using Diffusion.TextToImage;

namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 11, exercise <c>cross-attention</c>: Attention(Q, K, V) = softmax(Q Kᵀ/√d + mask) V with a padding mask,
/// checked against <see cref="CrossAttention.Attend"/>, the math of every cross-attention of the text U-Net.
/// </summary>
public static class CrossAttentionExercise
{
    public const string Id = "cross-attention";

    internal sealed record Input(Tensor Q, Tensor K, Tensor V, Tensor Mask);

    /// <summary>
    /// Runs <paramref name="learner"/>(q, k, v, mask) on seeded queries [B, N, d], keys [B, M, d], values [B, M, d_v] and
    /// padding masks [B, M] (true = real token), compares with the library, shows the verdict and returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<Tensor, Tensor, Tensor, Tensor, Tensor> learner, bool show = true)
    {
        // lengths[b] = real tokens of prompt b (the rest of its M positions is padding)
        Case<Input> C(string description, ulong seed, long n, long d, long dv, double spread, params int[] lengths) => new(description, () =>
        {
            var g = new Generator(seed);
            long b = lengths.Length, m = lengths.Max() + (description.Contains("no padding") ? 0 : 2);
            var q = Noise(g, b, n, d) * spread;
            var k = Noise(g, b, m, d) * spread;
            var v = Noise(g, b, m, dv);
            var mask = tensor(lengths.SelectMany(l => Enumerable.Range(0, (int)m).Select(j => j < l)).ToArray()).reshape(b, m);
            return new Input(q, k, v, mask);
        });
        var exercise = Spec([
            C("1 prompt of 3 tokens padded to 5; 4 queries (pixels), d = 8, d_v = 6", 111, 4, 8, 6, 1, 3),
            C("2 prompts of 4 and 2 tokens padded to 6; 6 queries, d = 16, d_v = 3", 112, 6, 16, 3, 1, 4, 2),
            C("1 prompt, no padding (mask all true); 3 queries, 3 tokens, d = 4", 113, 3, 4, 4, 1, 3),
            C("3 prompts of 1, 5 and 3 tokens; 64 queries (an 8×8 grid), d = 64, larger q and k (peaked softmax)", 114, 64, 64, 8, 2, 1, 5, 3),
        ]);
        return Checker.Run(exercise, learner is null ? null : i => learner(i.Q, i.K, i.V, i.Mask), show);
    }

    /// <summary>q kᵀ as [B, N, M].</summary>
    static Tensor Scores(Input i) => matmul(i.Q, i.K.transpose(-2, -1));

    /// <summary>Padding (mask false) set to <paramref name="fill"/>, for every query.</summary>
    static Tensor Masked(Tensor scores, Tensor mask, double fill) => scores.masked_fill(mask.logical_not().unsqueeze(1), fill);

    static double SqrtD(Input i) => Math.Sqrt(i.Q.shape[^1]);

    static Exercise<Input> Spec(IReadOnlyList<Case<Input>> cases) =>
        new(Id, "Exercise cross-attention (softmax(Q Kᵀ/√d + mask) V)", "MyCrossAttention", "CrossAttention.Attend")
    {
        Reference = i => CrossAttention.Attend(i.Q, i.K, i.V, i.Mask),
        Cases = cases,
        Mistakes =
        [
            new("missing-scale", "The scores are q·k without the factor 1/√d. Divide Q Kᵀ by √d (d = q's last size) before the " +
                "softmax: without it, large d makes the scores large and the softmax nearly one-hot.",
                i => Masked(Scores(i), i.Mask, double.NegativeInfinity).softmax(-1).matmul(i.V)),
            new("scale-by-d", "You divided the scores by d; the scale is 1/√d (the standard deviation of q·k for unit-variance q and k is √d).",
                i => Masked(Scores(i) / i.Q.shape[^1], i.Mask, double.NegativeInfinity).softmax(-1).matmul(i.V)),
            new("mask-ignored", "The padding positions got attention weight: apply the mask before the softmax — " +
                "scores.masked_fill(mask.logical_not().unsqueeze(1), float.NegativeInfinity) — so that e^−∞ = 0 leaves them out.",
                i => (Scores(i) / SqrtD(i)).softmax(-1).matmul(i.V)),
            new("mask-inverted", "The mask is true for real tokens and false for padding: fill the positions where it is FALSE " +
                "(mask.logical_not()), not where it is true.",
                i => (Scores(i) / SqrtD(i)).masked_fill(i.Mask.unsqueeze(1), double.NegativeInfinity).softmax(-1).matmul(i.V)),
            new("mask-inverted", "The mask is true for real tokens and false for padding: fill the positions where it is FALSE " +
                "(mask.logical_not()), not where it is true.",
                i => (Scores(i) / SqrtD(i)).masked_fill(i.Mask.unsqueeze(1), -1e9).softmax(-1).matmul(i.V)),
            new("mask-after-softmax", "Zeroing the padding's weights after the softmax leaves rows that no longer sum to 1. Mask the " +
                "scores with −∞ before the softmax; then the real tokens' weights sum to 1 by themselves.",
                i => ((Scores(i) / SqrtD(i)).softmax(-1) * i.Mask.unsqueeze(1).to(ScalarType.Float32)).matmul(i.V)),
            // over the queries (dim 1 of [B, N, M]). With −∞ on the padding that gives NaN everywhere (a padded column is −∞
            // for every query), which the NaN verdict reports with the generic hint below; with −1e9 the column becomes uniform.
            new("softmax-wrong-axis", "The softmax ran over the queries (dim 1 of the [B, N, M] scores). It must run over the " +
                "tokens, the last axis (softmax(-1)): each pixel's weights over the words sum to 1.",
                i => Masked(Scores(i) / SqrtD(i), i.Mask, -1e9).softmax(1).matmul(i.V)),
            new("weights-not-values", "Those are the attention weights [B, N, M]. Multiply them by v (weights.matmul(v)) to get the " +
                "output [B, N, d_v]: each query's weighted mean of the values.",
                i => Masked(Scores(i) / SqrtD(i), i.Mask, double.NegativeInfinity).softmax(-1)),
        ],
        GenericHint = "scores = q.matmul(k.transpose(-2, -1)) / √d, of shape [B, N, M]; fill the padding (mask false) with " +
                      "float.NegativeInfinity for every query (mask.logical_not().unsqueeze(1)); softmax(-1) over the tokens; then .matmul(v). " +
                      "(NaN everywhere usually means a softmax over the queries: a padded column is −∞ for every query.)",
        ShapeHint = "The output has one row per query and the values' width: [B, N, d_v].",
        DescribeIndex = (i, ix) => $"prompt {ix[0]} ({i.Mask[ix[0]].sum().item<long>()} real tokens of {i.Mask.shape[1]}), query {ix[1]}, value channel {ix[2]}",
    };
}
