using Diffusion.Model;

namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 04, exercise <c>sinusoidal-embedding</c>: emb(t) = [sin(t·ω_0) … sin(t·ω_{d/2−1}), cos(t·ω_0) … cos(t·ω_{d/2−1})]
/// with ω_i = 10000^(−i/(d/2−1)), checked against <see cref="SinusoidalPositionEmbeddings"/>.
/// </summary>
public static class SinusoidalEmbeddingExercise
{
    public const string Id = "sinusoidal-embedding";

    internal sealed record Input(Tensor Time, int Dim);

    /// <summary>
    /// Runs <paramref name="learner"/>(time, dim) — time: Int64 [B], result [B, dim] — for several sizes d (including
    /// the smallest, 4) and times up to 999, compares with the library, shows the verdict and returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<Tensor, int, Tensor> learner, bool show = true)
    {
        Case<Input> C(string description, int dim, params long[] t) => new(description, () => new Input(tensor(t, dtype: ScalarType.Int64), dim));
        var exercise = Spec([
            C("d = 28 (the course's U-Net), t = [0, 1, 2, 3]", 28, 0, 1, 2, 3),
            C("d = 28, t = [0, 50, 250, 499]", 28, 0, 50, 250, 499),
            C("d = 4, the smallest size: two frequencies, ω = 1 and 1/10000; t = [0, 1, 10, 100]", 4, 0, 1, 10, 100),
            C("d = 64, t = [999, 500, 7]", 64, 999, 500, 7),
            C("d = 10, a single t = [42]", 10, 42),
        ]);
        return Checker.Run(exercise, learner is null ? null : i => learner(i.Time.clone(), i.Dim), show);
    }

    /// <summary>The wrong embeddings: frequencies ω_i = exp(−i·step) (or +) for i &lt; count, then a layout of sin and cos.</summary>
    static Tensor Embed(Input i, double step, int count, int layout = 0, bool positive = false)
    {
        // Float32, as the library and a learner compute it: with a wrong (huge) frequency the rounding of t·ω matters.
        var freqs = exp(arange(count, dtype: ScalarType.Float32) * (positive ? step : -step));
        var args = i.Time.to(ScalarType.Float32).unsqueeze(1) * freqs.unsqueeze(0);
        return layout switch
        {
            0 => cat([args.sin(), args.cos()], -1),
            1 => cat([args.cos(), args.sin()], -1),
            2 => stack([args.sin(), args.cos()], -1).reshape(i.Time.shape[0], 2 * count),
            _ => cat([args.sin(), args.cos()], 0),
        };
    }

    static Exercise<Input> Spec(IReadOnlyList<Case<Input>> cases)
    {
        static int Half(Input i) => i.Dim / 2;
        static double Step(Input i) => Math.Log(10000) / (Half(i) - 1);
        return new Exercise<Input>(Id, "Exercise sinusoidal-embedding (the time embedding)", "MyEmbedding", "SinusoidalPositionEmbeddings")
        {
            Reference = i =>
            {
                using var module = new SinusoidalPositionEmbeddings(i.Dim);
                return module.call(i.Time);
            },
            Cases = cases,
            // sin and cos of float32 arguments up to 999 rad: a few 1e-5 of rounding either way.
            Atol = 5e-4, Rtol = 0,
            Mistakes =
            [
                new("sin-cos-swapped", "Sines first, then cosines: emb(t) = [sin(t·ω_0), …, sin(t·ω_{d/2−1}), cos(t·ω_0), …, cos(t·ω_{d/2−1})]. " +
                    "You put the cosines first.",
                    i => Embed(i, Step(i), Half(i), layout: 1)),
                new("interleaved", "All d/2 sines first, then all d/2 cosines (torch.cat along the last dimension), not interleaved " +
                    "sin, cos, sin, cos (the original Transformer's layout).",
                    i => Embed(i, Step(i), Half(i), layout: 2)),
                new("divide-by-half", "The exponent is −i/(d/2 − 1), so that the last frequency is exactly 1/10000: divide ln(10000) " +
                    "by d/2 − 1, not by d/2 (the Transformer's 10000^(2i/d) has d/2 in the denominator; this course, like the " +
                    "annotated notebook, uses d/2 − 1).",
                    i => Embed(i, Math.Log(10000) / Half(i), Half(i))),
                new("positive-exponent", "ω_i = 10000^(−i/(d/2−1)) gets smaller with i: the exponent is negative. With a positive one " +
                    "the frequencies grow to 10000 and the last components are noise.",
                    i => Embed(i, Step(i), Half(i), positive: true)),
                new("log10", "Use the natural logarithm: ω_i = exp(−i·ln(10000)/(d/2 − 1)), with Math.Log(10000), not Math.Log10.",
                    i => Embed(i, Math.Log10(10000) / (Half(i) - 1), Half(i))),
                new("full-dim-frequencies", "Use d/2 frequencies (i = 0 … d/2 − 1), each giving a sine and a cosine: d numbers per t. " +
                    "You used d frequencies, so the result has 2d columns.",
                    i => Embed(i, Math.Log(10000) / (i.Dim - 1), i.Dim)),
                new("cat-dim0", "Concatenate along the last dimension (dim: -1): each t's row holds its d/2 sines followed by its " +
                    "d/2 cosines. Along dimension 0 you stack the cosines below the sines as extra rows.",
                    i => Embed(i, Step(i), Half(i), layout: 3)),
            ],
            GenericHint = "For each t: d/2 frequencies ω_i = exp(−i·ln(10000)/(d/2 − 1)), i = 0 … d/2 − 1; the row is " +
                          "[sin(t·ω_0) … sin(t·ω_{d/2−1}), cos(t·ω_0) … cos(t·ω_{d/2−1})]. With tensors: args = t·ω as [B, d/2] " +
                          "(time.unsqueeze(1) * freqs.unsqueeze(0)), then cat([args.sin(), args.cos()], -1).",
            ShapeHint = "The result is [B, d]: one row per t, d/2 sines then d/2 cosines. Convert t to Float32 before " +
                        "multiplying (time.to(ScalarType.Float32)).",
            DescribeIndex = (i, ix) =>
            {
                long t = i.Time[ix[0]].item<long>();
                int half = Half(i), j = (int)ix[1], k = j % half;
                double w = Math.Exp(-k * Step(i));
                return $"row {ix[0]} (t = {t}), column {j}: {(j < half ? "sin" : "cos")}(t·ω_{k}) with ω_{k} = {Checker.Fmt(w)}";
            },
        };
    }
}
