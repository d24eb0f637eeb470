namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 07, exercise <c>ddim-step</c>: one deterministic DDIM step (η = 0),
/// x̂_0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev)·ε, checked against
/// <see cref="DdimSampler.Step"/> (no clipping) fed with the same ε.
/// </summary>
public static class DdimStepExercise
{
    public const string Id = "ddim-step";

    internal sealed record Input(NoiseSchedule S, Tensor Xt, Tensor Eps, int T, int TPrev)
    {
        public double AlphaBar => S.AlphasCumprod[T];
        public double AlphaBarPrev => TPrev >= 0 ? S.AlphasCumprod[TPrev] : 1;
    }

    /// <summary>
    /// Runs <paramref name="learner"/>(xt, eps, ᾱ_t, ᾱ_prev) for a first, a middle and the last jump of a respaced
    /// schedule, compares with the library, shows the verdict and returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<Tensor, Tensor, double, double, Tensor> learner, bool show = true)
    {
        using var cosine = new NoiseSchedule(ScheduleKind.Cosine, 500);
        using var linear = new NoiseSchedule(ScheduleKind.Linear, 1000);
        Case<Input> C(string description, NoiseSchedule s, ulong seed, int t, int tPrev, params long[] shape) => new(description, () =>
        {
            var g = new Generator(seed);
            return new Input(s, Noise(g, shape), Noise(g, shape) * 0.9f, t, tPrev);
        });
        var exercise = Spec([
            C("cosine schedule, T = 500; the jump t = 499 → 449 (the first of 10 steps); x_t of shape [2, 1, 4, 4]", cosine, 71, 499, 449, 2, 1, 4, 4),
            C("cosine schedule, T = 500; the jump t = 250 → 200", cosine, 72, 250, 200, 2, 1, 4, 4),
            C("cosine schedule, T = 500; the last jump t = 49 → 0", cosine, 73, 49, 0, 2, 1, 4, 4),
            C("linear schedule, T = 1000; t = 0 → the end (ᾱ_prev = 1: x_prev is x̂_0 itself)", linear, 74, 0, -1, 2, 1, 3, 3),
            C("linear schedule, T = 1000; t = 600 → 300; 2 RGB images of shape [3, 2, 2]", linear, 75, 600, 300, 2, 3, 2, 2),
        ]);
        return Checker.Run(exercise, learner is null ? null : i => learner(i.Xt, i.Eps, i.AlphaBar, i.AlphaBarPrev), show);
    }

    static Exercise<Input> Spec(IReadOnlyList<Case<Input>> cases)
    {
        static Tensor X0(Input i, double ab) => (i.Xt - Math.Sqrt(1 - ab) * i.Eps) / Math.Sqrt(ab);
        return new Exercise<Input>(Id, "Exercise ddim-step (one deterministic DDIM step)", "MyDdimStep", "DdimSampler.Step")
        {
            Reference = i =>
            {
                using var ddim = new DdimSampler(i.S, new TimestepPlan(i.TPrev >= 0 ? [i.T, i.TPrev] : [i.T]), eta: 0, clipDenoised: false);
                return ddim.Step(i.Eps, i.Xt, 0);
            },
            Cases = cases,
            Atol = 1e-4,
            Mistakes =
            [
                new("returned-x0", "That is x̂_0, the prediction of the clean image. The step goes on: put x̂_0 back at the earlier " +
                    "noise level, x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev)·ε.",
                    i => X0(i, i.AlphaBar)),
                new("missing-sqrt", "ᾱ and 1 − ᾱ are variances; the coefficients are their square roots: " +
                    "x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev)·ε, and x̂_0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t.",
                    i => i.AlphaBarPrev * ((i.Xt - (1 - i.AlphaBar) * i.Eps) / i.AlphaBar) + (1 - i.AlphaBarPrev) * i.Eps),
                new("swapped-alphas", "ᾱ_t and ᾱ_prev are swapped: x̂_0 is recovered with ᾱ_t (the level x_t is at), and then " +
                    "re-noised with ᾱ_prev (the level the step goes to).",
                    i => Math.Sqrt(i.AlphaBar) * X0(i, i.AlphaBarPrev) + Math.Sqrt(1 - i.AlphaBar) * i.Eps),
                new("no-noise-term", "Deterministic does not mean noiseless: DDIM puts the same predicted ε back, scaled to the " +
                    "earlier level, + √(1 − ᾱ_prev)·ε. (Only fresh random noise σ·z is left out when η = 0.)",
                    i => Math.Sqrt(i.AlphaBarPrev) * X0(i, i.AlphaBar)),
                new("x0-without-noise", "x̂_0 inverts x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε: subtract the noise before dividing, " +
                    "x̂_0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t.",
                    i => Math.Sqrt(i.AlphaBarPrev) * (i.Xt / Math.Sqrt(i.AlphaBar)) + Math.Sqrt(1 - i.AlphaBarPrev) * i.Eps),
            ],
            GenericHint = "Two lines: x̂_0 = (x_t − √(1 − ᾱ_t)·ε)/√ᾱ_t, then x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev)·ε " +
                          "(Math.Sqrt on the doubles, then scalar × tensor).",
            ShapeHint = "x_prev has the shape of x_t.",
            DescribeIndex = (i, ix) => $"position {Checker.ShapeText(ix)} with ᾱ_t = {Checker.Fmt(i.AlphaBar)} and ᾱ_prev = " +
                                       $"{Checker.Fmt(i.AlphaBarPrev)}, where x_t = {Value(i.Xt, ix)} and ε = {Value(i.Eps, ix)}",
        };
    }
}
