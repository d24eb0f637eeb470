namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 01, exercise <c>q-step</c>: one step of the forward process,
/// x_t = √(1 − β_t)·x_{t−1} + √β_t·ε, checked against <see cref="ForwardProcess.QStep"/>.
/// </summary>
public static class QStepExercise
{
    public const string Id = "q-step";

    /// <summary>
    /// Runs <paramref name="learner"/>(s, xPrev, t, noise) on several seeded cases (t = 0, t = T − 1, mixed t in a batch,
    /// other schedules), compares with the library, shows the verdict (unless <paramref name="show"/> is false) and
    /// returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<NoiseSchedule, Tensor, Tensor, Tensor, Tensor> learner, bool show = true) =>
        NoisedImageCases.Check(ScheduleKind.Linear, Cases, Spec, learner, show);

    static List<Case<NoisedImages>> Cases(NoisedImageCases cases) =>
    [
        .. cases.LinearEnds(1, "the first step, β = 0.0001", "the last step, β = 0.02"),
        cases.Case("cosine schedule, T = 500; t = [0, 250, 498, 499] (the last β is clipped to 0.999)", cases.Cosine, 4, [0, 250, 498, 499], 1, 3, 3),
        cases.Case("linear schedule, T = 10; 5 RGB images of shape [3, 2, 2] at t = [9, 0, 4, 4, 1]", cases.Short, 5, [9, 0, 4, 4, 1], 3, 2, 2),
    ];

    static Exercise<NoisedImages> Spec(IReadOnlyList<Case<NoisedImages>> cases)
    {
        static Tensor B(NoisedImages i, int shift = 0) => At(i.S.Betas, i.T, i.X.shape, shift);
        static Tensor AlphaBar(NoisedImages i) => At(i.S.AlphasCumprod, i.T, i.X.shape);
        return new Exercise<NoisedImages>(Id, "Exercise q-step (one forward step)", "MyQStep", "ForwardProcess.QStep")
        {
            Cases = cases,
            Reference = i => ForwardProcess.QStep(i.S, i.X, i.T, i.Noise),
            Mistakes =
            [
                new("alpha-bar", "You used ᾱ_t — that is the jump from x_0 straight to x_t (notebook 02). One step uses only " +
                    "this step's β_t: x_t = √(1 − β_t)·x_{t−1} + √β_t·ε, with β_t = s.Betas at index t.",
                    i => AlphaBar(i).sqrt() * i.X + (1 - AlphaBar(i)).sqrt() * i.Noise),
                new("variance-not-std", "The coefficients are standard deviations: take square roots, √(1 − β_t) and √β_t. " +
                    "(1 − β_t) and β_t are the variances.",
                    i => (1 - B(i)) * i.X + B(i) * i.Noise),
                new("missing-sqrt-noise", "The noise is scaled by √β_t, its standard deviation, not by β_t.",
                    i => (1 - B(i)).sqrt() * i.X + B(i) * i.Noise),
                new("missing-sqrt-signal", "x_{t−1} is scaled by √(1 − β_t), not by (1 − β_t).",
                    i => (1 - B(i)) * i.X + B(i).sqrt() * i.Noise),
                new("no-shrink", "Keep only √(1 − β_t) of x_{t−1}: without that factor the variance grows by β_t at every step " +
                    "instead of staying at 1.",
                    i => i.X + B(i).sqrt() * i.Noise),
                new("swapped", "The two coefficients are swapped: x_{t−1} gets √(1 − β_t) (close to 1), the noise gets √β_t (small).",
                    i => B(i).sqrt() * i.X + (1 - B(i)).sqrt() * i.Noise),
                new("wrong-sign", "Add the noise, don't subtract it. (−√β_t·ε has the same distribution, but the check hands " +
                    "you the ε to use, so x_t must be √(1 − β_t)·x_{t−1} + √β_t·ε exactly.)",
                    i => (1 - B(i)).sqrt() * i.X - B(i).sqrt() * i.Noise),
                new("off-by-one-prev", "You took β from index t − 1. Index t is the step to take: Betas[t]. (The code counts " +
                    "t = 0…T − 1 where the paper counts 1…T, but the arrays are indexed the same way: no shift is needed.)",
                    i => (1 - B(i, -1)).sqrt() * i.X + B(i, -1).sqrt() * i.Noise),
                new("off-by-one-next", "You took β from index t + 1. Index t is the step to take: Betas[t]. (The code counts " +
                    "t = 0…T − 1 where the paper counts 1…T, but the arrays are indexed the same way: no shift is needed.)",
                    i => (1 - B(i, 1)).sqrt() * i.X + B(i, 1).sqrt() * i.Noise),
                SameT<NoisedImages>("β_t", "s.Extract(s.Betas, t, xPrev.shape)", plural: false, i => (1 - AtFirst(i.S.Betas, i.T, i.X.shape)).sqrt() * i.X + AtFirst(i.S.Betas, i.T, i.X.shape).sqrt() * i.Noise),
            ],
            GenericHint = "Compare with the formula term by term: x_t = √(1 − β_t)·x_{t−1} + √β_t·ε, where β_t is s.Betas at " +
                          "index t, for each image its own (s.Extract(s.Betas, t, xPrev.shape) gives a [B, 1, 1, 1] tensor).",
            ShapeHint = PerImageShapeHint("x_{t−1}", "s.Extract(s.Betas, t, xPrev.shape)", "β_t"),
            DescribeIndex = (i, ix) => DescribeImage(i.T, ix, t => $"β_t = {Checker.Fmt(i.S.Betas[t])}",
                $"x_(t−1) = {Value(i.X, ix)} and ε = {Value(i.Noise, ix)}"),
        };
    }
}
