namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 02, exercise <c>q-sample</c>: the closed form x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε, checked against
/// <see cref="ForwardProcess.QSample"/>.
/// </summary>
public static class QSampleExercise
{
    public const string Id = "q-sample";

    /// <summary>
    /// Runs <paramref name="learner"/>(s, x0, t, noise) on several seeded cases (t = 0, t = T − 1, mixed t in a batch,
    /// other schedules), compares with the library, shows the verdict and returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<NoiseSchedule, Tensor, Tensor, Tensor, Tensor> learner, bool show = true) =>
        NoisedImageCases.Check(ScheduleKind.Quadratic, Cases, Spec, learner, show);

    static Exercise<NoisedImages> Spec(IReadOnlyList<Case<NoisedImages>> cases)
    {
        static Tensor Ab(NoisedImages i, int shift = 0) => At(i.S.AlphasCumprod, i.T, i.X.shape, shift);
        static Tensor Beta(NoisedImages i) => At(i.S.Betas, i.T, i.X.shape);
        static Tensor AbPrev(NoisedImages i) => At(i.S.AlphasCumprodPrev, i.T, i.X.shape);
        const string offByOne = "The code counts t = 0…T − 1 where the paper counts 1…T, and the schedule arrays follow the code: " +
                                "ᾱ_t for index t is AlphasCumprod[t] (s.Extract(s.SqrtAlphasCumprod, t, x0.shape)). No shift is needed.";
        return new Exercise<NoisedImages>(Id, "Exercise q-sample (the closed form q(x_t | x_0))", "MyQSample", "ForwardProcess.QSample")
        {
            Reference = i => ForwardProcess.QSample(i.S, i.X, i.T, i.Noise),
            Cases = cases,
            Mistakes =
            [
                new("missing-sqrt", "√ᾱ_t and √(1 − ᾱ_t) are standard deviations; ᾱ_t and 1 − ᾱ_t are variances. Take the square " +
                    "roots (or use the terms SqrtAlphasCumprod and SqrtOneMinusAlphasCumprod).",
                    i => Ab(i) * i.X + (1 - Ab(i)) * i.Noise),
                new("missing-sqrt-noise", "The noise is scaled by √(1 − ᾱ_t), its standard deviation, not by 1 − ᾱ_t.",
                    i => Ab(i).sqrt() * i.X + (1 - Ab(i)) * i.Noise),
                new("missing-sqrt-signal", "x_0 is scaled by √ᾱ_t, not by ᾱ_t.",
                    i => Ab(i) * i.X + (1 - Ab(i)).sqrt() * i.Noise),
                new("one-minus-sqrt", "√(1 − ᾱ_t) is not 1 − √ᾱ_t: take the square root of 1 − ᾱ_t (SqrtOneMinusAlphasCumprod).",
                    i => Ab(i).sqrt() * i.X + (1 - Ab(i).sqrt()) * i.Noise),
                new("one-step", "That is a single step q(x_t | x_{t−1}) from notebook 01 (β_t or α_t of this step only). The closed " +
                    "form uses ᾱ_t = α_1·α_2·…·α_t, the product over every step so far: AlphasCumprod.",
                    i => (1 - Beta(i)).sqrt() * i.X + Beta(i).sqrt() * i.Noise),
                new("off-by-one-prev", "You used ᾱ_{t−1} (AlphasCumprodPrev, or index t − 1). " + offByOne,
                    i => AbPrev(i).sqrt() * i.X + (1 - AbPrev(i)).sqrt() * i.Noise),
                new("off-by-one-next", "You used ᾱ at index t + 1. " + offByOne,
                    i => Ab(i, 1).sqrt() * i.X + (1 - Ab(i, 1)).sqrt() * i.Noise),
                new("swapped", "The coefficients are swapped: x_0 gets √ᾱ_t (close to 1 at small t), the noise √(1 − ᾱ_t).",
                    i => (1 - Ab(i)).sqrt() * i.X + Ab(i).sqrt() * i.Noise),
                new("wrong-sign", "Add the noise, don't subtract it. (−√(1 − ᾱ_t)·ε has the same distribution, but the check " +
                    "hands you the ε to use, and training needs exactly this x_t: the network learns to find that ε.)",
                    i => Ab(i).sqrt() * i.X - (1 - Ab(i)).sqrt() * i.Noise),
                SameT<NoisedImages>("ᾱ_t", "s.Extract(s.SqrtAlphasCumprod, t, x0.shape)", plural: false, i => AtFirst(i.S.SqrtAlphasCumprod, i.T, i.X.shape) * i.X + AtFirst(i.S.SqrtOneMinusAlphasCumprod, i.T, i.X.shape) * i.Noise),
            ],
            GenericHint = "Compare with the boxed formula term by term: x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε, with ᾱ_t picked per image " +
                          "at index t: s.Extract(s.SqrtAlphasCumprod, t, x0.shape) and s.Extract(s.SqrtOneMinusAlphasCumprod, t, x0.shape).",
            ShapeHint = PerImageShapeHint("x_0", "s.Extract(s.SqrtAlphasCumprod, t, x0.shape)"),
            DescribeIndex = (i, ix) => DescribeImage(i.T, ix, t => $"ᾱ_t = {Checker.Fmt(i.S.AlphasCumprod[t])}",
                $"x_0 = {Value(i.X, ix)} and ε = {Value(i.Noise, ix)}"),
        };
    }

    static List<Case<NoisedImages>> Cases(NoisedImageCases cases) =>
    [
        .. cases.LinearEnds(11, "ᾱ_0 = 1 − β_1: almost no noise", "the last step"),
        cases.Case("linear schedule, T = 1000; 4 images at t = [10, 300, 300, 700]", cases.Linear, 14, [10, 300, 300, 700], 1, 3, 3),
        cases.Case("cosine schedule, T = 500; t = [0, 250, 499] (ᾱ_T is almost 0)", cases.Cosine, 15, [0, 250, 499], 1, 3, 3),
        cases.Case("quadratic schedule, T = 10; 4 RGB images of shape [3, 2, 2] at t = [9, 0, 5, 1]", cases.Short, 16, [9, 0, 5, 1], 3, 2, 2),
    ];
}
