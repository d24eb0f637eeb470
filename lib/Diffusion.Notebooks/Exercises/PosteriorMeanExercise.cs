namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 03, exercise <c>posterior-mean</c>: μ̃_t = β_t √ᾱ_{t−1}/(1 − ᾱ_t)·x_0 + (1 − ᾱ_{t−1}) √α_t/(1 − ᾱ_t)·x_t,
/// checked against the mean of <see cref="ForwardProcess.QPosterior"/>.
/// </summary>
public static class PosteriorMeanExercise
{
    public const string Id = "posterior-mean";

    internal sealed record Input(NoiseSchedule S, Tensor X0, Tensor Xt, Tensor T);

    /// <summary>
    /// Runs <paramref name="learner"/>(s, x0, xt, t) on several seeded cases (t = 0 where μ̃ = x_0, t = T − 1, mixed t,
    /// other schedules), compares with the library, shows the verdict and returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<NoiseSchedule, Tensor, Tensor, Tensor, Tensor> learner, bool show = true)
    {
        using var cases = new ScheduleCases<Input>(ScheduleKind.Cosine, (s, g, shape, tt) =>
        {
            var x0 = Images(g, shape);
            // x_t drawn from q(x_t | x_0), as in training and sampling
            return new Input(s, x0, ForwardProcess.QSample(s, x0, tt, Noise(g, shape)), tt);
        });
        var exercise = Spec([
            cases.Case("linear schedule, T = 1000; 4 images of shape [1, 3, 3] at t = [1, 2, 500, 999]", cases.Linear, 21, [1, 2, 500, 999], 1, 3, 3),
            cases.Case("linear schedule, T = 1000; t = 0 for both images (the first step: μ̃ is x_0 itself)", cases.Linear, 22, [0, 0], 1, 3, 3),
            cases.Case("linear schedule, T = 1000; t = 999 = T − 1 for both images", cases.Linear, 23, [999, 999], 1, 3, 3),
            cases.Case("cosine schedule, T = 500; t = [0, 1, 250, 499] (the last β is clipped to 0.999)", cases.Cosine, 24, [0, 1, 250, 499], 1, 2, 2),
            cases.Case("cosine schedule, T = 10; 3 RGB images of shape [3, 2, 2] at t = [9, 3, 1]", cases.Short, 25, [9, 3, 1], 3, 2, 2),
        ]);
        return Checker.Run(exercise, learner is null ? null : i => learner(i.S, i.X0, i.Xt, i.T), show);
    }

    static Exercise<Input> Spec(IReadOnlyList<Case<Input>> cases)
    {
        static Tensor Term(Input i, double[] values, int shift = 0) => At(values, i.T, i.Xt.shape, shift);
        // μ from given coefficient tensors
        static Tensor Mean(Input i, Tensor beta, Tensor abPrev, Tensor alpha, Tensor ab, bool sqrtAbPrev = true, bool sqrtAlpha = true) =>
            beta * (sqrtAbPrev ? abPrev.sqrt() : abPrev) / (1 - ab) * i.X0 + (1 - abPrev) * (sqrtAlpha ? alpha.sqrt() : alpha) / (1 - ab) * i.Xt;
        static Tensor Right(Input i, int shift = 0) => Mean(i, Term(i, i.S.Betas, shift), Term(i, i.S.AlphasCumprodPrev, shift),
            Term(i, i.S.Alphas, shift), Term(i, i.S.AlphasCumprod, shift));
        const string offByOne = "The code counts t = 0…T − 1 where the paper counts 1…T, and every schedule array follows the code: " +
                                "β_t, α_t, ᾱ_t and ᾱ_{t−1} for index t are Betas[t], Alphas[t], AlphasCumprod[t] and AlphasCumprodPrev[t].";
        return new Exercise<Input>(Id, "Exercise posterior-mean (μ̃_t)", "MyPosteriorMean", "ForwardProcess.QPosterior")
        {
            Reference = i => ForwardProcess.QPosterior(i.S, i.X0, i.Xt, i.T).Mean,
            Cases = cases,
            // The learner builds the weights from float32 terms: at t = 0, 1 − ᾱ_0 ≈ β_0 ≈ 1e-4 keeps only three or four
            // digits in float32 (0.9999 is stored as 0.99989998), so a right answer is off by up to ~4e-4 relative there.
            // The library computes its coefficients in float64. Known mistakes are matched at this same tolerance, not
            // 10× looser: at t = 0 some of them (e.g. the swapped weights) differ from the right answer by only ~0.005.
            Rtol = 1e-3,
            MistakeTolerance = 1,
            Mistakes =
            [
                new("swapped", "The two weights are swapped: the one with β_t·√ᾱ_{t−1} belongs to x_0, the one with " +
                    "(1 − ᾱ_{t−1})·√α_t to x_t.",
                    i => Term(i, i.S.PosteriorMeanCoef1) * i.Xt + Term(i, i.S.PosteriorMeanCoef2) * i.X0),
                new("alpha-bar-t", "Both weights use ᾱ_{t−1}, the value one step earlier (AlphasCumprodPrev, with ᾱ_{−1} = 1), " +
                    "not ᾱ_t. The denominators are 1 − ᾱ_t.",
                    i => Mean(i, Term(i, i.S.Betas), Term(i, i.S.AlphasCumprod), Term(i, i.S.Alphas), Term(i, i.S.AlphasCumprod))),
                new("missing-sqrt-alpha-bar-prev", "x_0's weight has a square root: β_t·√ᾱ_{t−1}/(1 − ᾱ_t).",
                    i => Mean(i, Term(i, i.S.Betas), Term(i, i.S.AlphasCumprodPrev), Term(i, i.S.Alphas), Term(i, i.S.AlphasCumprod), sqrtAbPrev: false)),
                new("missing-sqrt-alpha", "x_t's weight has a square root: (1 − ᾱ_{t−1})·√α_t/(1 − ᾱ_t).",
                    i => Mean(i, Term(i, i.S.Betas), Term(i, i.S.AlphasCumprodPrev), Term(i, i.S.Alphas), Term(i, i.S.AlphasCumprod), sqrtAlpha: false)),
                new("alpha-bar-for-alpha", "x_t's weight has √α_t of this single step (Alphas), not √ᾱ_t.",
                    i => Mean(i, Term(i, i.S.Betas), Term(i, i.S.AlphasCumprodPrev), Term(i, i.S.AlphasCumprod), Term(i, i.S.AlphasCumprod))),
                new("beta-tilde-for-beta", "x_0's weight has β_t, the forward step's variance (Betas), not β̃_t.",
                    i => Mean(i, Term(i, i.S.PosteriorVariance), Term(i, i.S.AlphasCumprodPrev), Term(i, i.S.Alphas), Term(i, i.S.AlphasCumprod))),
                new("off-by-one-prev", "You took every term from index t − 1. " + offByOne, i => Right(i, -1)),
                new("off-by-one-next", "You took every term from index t + 1. " + offByOne, i => Right(i, 1)),
                SameT<Input>("the terms", "s.Extract(s.PosteriorMeanCoef1, t, xt.shape)", plural: true, i => AtFirst(i.S.PosteriorMeanCoef1, i.T, i.Xt.shape) * i.X0 + AtFirst(i.S.PosteriorMeanCoef2, i.T, i.Xt.shape) * i.Xt),
            ],
            GenericHint = "μ̃_t = β_t·√ᾱ_{t−1}/(1 − ᾱ_t)·x_0 + (1 − ᾱ_{t−1})·√α_t/(1 − ᾱ_t)·x_t, with each term picked per image " +
                          "at index t: s.Extract(s.Betas, t, xt.shape), s.Alphas, s.AlphasCumprod and s.AlphasCumprodPrev.",
            ShapeHint = PerImageShapeHint("x_t", "s.Extract(s.PosteriorMeanCoef1, t, xt.shape)"),
            DescribeIndex = (i, ix) => DescribeImage(i.T, ix,
                t => $"β_t = {Checker.Fmt(i.S.Betas[t])}, ᾱ_t = {Checker.Fmt(i.S.AlphasCumprod[t])}, ᾱ_(t−1) = {Checker.Fmt(i.S.AlphasCumprodPrev[t])}",
                $"x_0 = {Value(i.X0, ix)} and x_t = {Value(i.Xt, ix)}"),
        };
    }
}
