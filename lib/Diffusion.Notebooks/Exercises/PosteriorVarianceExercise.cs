namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 03, exercise <c>posterior-variance</c>: the array β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), t = 0…T − 1, from
/// the arrays β and ᾱ, checked against <see cref="NoiseSchedule.PosteriorVariance"/>.
/// </summary>
public static class PosteriorVarianceExercise
{
    public const string Id = "posterior-variance";

    internal sealed record Input(double[] Betas, double[] AlphasCumprod);

    /// <summary>
    /// Runs <paramref name="learner"/>(betas, alphasCumprod) on several schedules (a short made-up one with easy
    /// numbers, linear T = 1000, cosine T = 500 with its clipped last β, …), compares with the library, shows the
    /// verdict and returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<double[], double[], double[]> learner, bool show = true)
    {
        Case<Input> C(string description, Func<double[]> betas) => new(description, () =>
        {
            var b = betas();
            return new Input(b, CumulativeProduct(b));
        });
        var exercise = Spec([
            C("a made-up schedule with easy numbers: β = [0.1, 0.2, 0.3, 0.4] (T = 4)", () => [0.1, 0.2, 0.3, 0.4]),
            C("the linear schedule, T = 1000 (β from 0.0001 to 0.02)", () => BetaSchedules.Create(ScheduleKind.Linear, 1000)),
            C("the cosine schedule, T = 500 (the course's; its last β is clipped to 0.999)", () => BetaSchedules.Create(ScheduleKind.Cosine, 500)),
            C("the quadratic schedule, T = 50", () => BetaSchedules.Create(ScheduleKind.Quadratic, 50)),
            C("the sigmoid schedule, T = 10", () => BetaSchedules.Create(ScheduleKind.Sigmoid, 10)),
        ]);
        return Checker.Run(exercise, learner is null ? null : i => Float64(learner((double[])i.Betas.Clone(), (double[])i.AlphasCumprod.Clone())), show);
    }

    static Exercise<Input> Spec(IReadOnlyList<Case<Input>> cases)
    {
        // The wrong answers, computed in float64 from the same arrays.
        static Tensor Each(Input i, Func<int, double> f) => Float64(Enumerable.Range(0, i.Betas.Length).Select(f).ToArray());
        static double AbPrev(Input i, int t) => t == 0 ? 1 : i.AlphasCumprod[t - 1];
        return new Exercise<Input>(Id, "Exercise posterior-variance (β̃_t)", "MyPosteriorVariance", "NoiseSchedule.PosteriorVariance")
        {
            Reference = i => FromSchedule(i.Betas, s => s.PosteriorVariance),
            Cases = cases,
            Atol = 1e-12,
            Rtol = 1e-6,
            Mistakes =
            [
                new("beta", "You got β_t itself — the forward step's variance, not the posterior's. β̃_t = β_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t) " +
                    "is smaller: knowing x_0 leaves less to guess. (If you did write that formula: the numerator needs ᾱ_{t−1}, the " +
                    "value one step earlier; with ᾱ_t in both places it cancels to β_t.)",
                    i => Float64((double[])i.Betas.Clone())),
                new("first-step", "At t = 0 (the paper's t = 1) nothing has been noised yet: ᾱ_{−1} = 1, so β̃_0 = β_0·(1 − 1)/(1 − ᾱ_0) = 0. " +
                    "Your first entry is β_0 (it looks like you used ᾱ_0 as ᾱ_{−1}).",
                    i => Each(i, t => t == 0 ? i.Betas[0] : i.Betas[t] * (1 - AbPrev(i, t)) / (1 - i.AlphasCumprod[t]))),
                new("first-step-zero", "At t = 0 (the paper's t = 1) nothing has been noised yet: ᾱ_{−1} = 1 (an empty product), " +
                    "not 0, so β̃_0 = 0.",
                    i => Each(i, t => i.Betas[t] * (1 - (t == 0 ? 0 : i.AlphasCumprod[t - 1])) / (1 - i.AlphasCumprod[t]))),
                new("inverted", "The fraction is upside down: (1 − ᾱ_{t−1}) goes on top, (1 − ᾱ_t) below. β̃_t is never larger than β_t.",
                    i => Each(i, t => i.Betas[t] * (1 - i.AlphasCumprod[t]) / (1 - AbPrev(i, t)))),
                new("alpha-not-alpha-bar", "Use the cumulative products ᾱ (alphasCumprod), not the single-step α_t = 1 − β_t: " +
                    "β̃_t = β_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t).",
                    i => Each(i, t => i.Betas[t] * (t == 0 ? 0 : i.Betas[t - 1]) / i.Betas[t])),
                new("missing-beta", "Multiply by β_t: β̃_t = β_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t). The fraction alone is only the ratio β̃_t/β_t.",
                    i => Each(i, t => (1 - AbPrev(i, t)) / (1 - i.AlphasCumprod[t]))),
                new("skipped-first", "Return one value per t = 0…T − 1, T values in all, including β̃_0 = 0 at the start.",
                    i => Each(i, t => i.Betas[t] * (1 - AbPrev(i, t)) / (1 - i.AlphasCumprod[t]))[1..]),
            ],
            GenericHint = "β̃_t = β_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t) for every t = 0…T − 1, where ᾱ_{t−1} is alphasCumprod[t − 1], " +
                          "and 1 at t = 0 (nothing noised yet).",
            ShapeHint = "Return an array with one value per t: as long as betas.",
            DescribeIndex = (i, ix) =>
            {
                int t = (int)ix[0];
                return $"t = {t} (the paper's t = {t + 1}), where β_t = {Checker.Fmt(i.Betas[t])}, ᾱ_t = {Checker.Fmt(i.AlphasCumprod[t])} " +
                       $"and ᾱ_(t−1) = {(t == 0 ? "1 (nothing noised yet)" : Checker.Fmt(i.AlphasCumprod[t - 1]))}";
            },
        };
    }
}
