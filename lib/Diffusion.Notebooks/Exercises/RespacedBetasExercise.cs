namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 09, exercise <c>respaced-betas</c>: the betas of a respaced schedule, β′_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}} with
/// ᾱ_{τ_{−1}} = 1, checked against <see cref="Respacing.Respace(NoiseSchedule, int[])"/>.
/// </summary>
public static class RespacedBetasExercise
{
    public const string Id = "respaced-betas";

    internal sealed record Input(double[] Betas, double[] AlphasCumprod, int[] Kept);

    /// <summary>
    /// Runs <paramref name="learner"/>(alphasCumprod, kept) on evenly spaced and hand-picked subsequences of several
    /// schedules, compares with the library, shows the verdict and returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<double[], int[], double[]> learner, bool show = true)
    {
        Case<Input> C(string description, Func<double[]> betas, Func<int, int[]> kept) => new(description, () =>
        {
            var b = betas();
            return new Input(b, CumulativeProduct(b), kept(b.Length));
        });
        var exercise = Spec([
            C("a made-up schedule β = [0.1, 0.2, 0.3, 0.4, 0.5] (T = 5), keeping τ = [0, 2, 4]", () => [0.1, 0.2, 0.3, 0.4, 0.5], _ => [0, 2, 4]),
            C("the same schedule, keeping τ = [1, 3] (the first kept step is not 0)", () => [0.1, 0.2, 0.3, 0.4, 0.5], _ => [1, 3]),
            C("the cosine schedule, T = 500, 10 evenly spaced steps", () => BetaSchedules.Create(ScheduleKind.Cosine, 500), T => Respacing.EvenlySpaced(T, 10)),
            C("the linear schedule, T = 1000, keeping τ = [9, 99, 499, 999]", () => BetaSchedules.Create(ScheduleKind.Linear, 1000), _ => [9, 99, 499, 999]),
            C("the cosine schedule, T = 500, all 500 steps (respacing changes nothing)", () => BetaSchedules.Create(ScheduleKind.Cosine, 500), T => Respacing.EvenlySpaced(T, T)),
        ]);
        return Checker.Run(exercise, learner is null ? null
            : i => Float64(learner((double[])i.AlphasCumprod.Clone(), (int[])i.Kept.Clone())), show);
    }

    static Exercise<Input> Spec(IReadOnlyList<Case<Input>> cases)
    {
        static Tensor Each(Input i, Func<int, double> f) => Float64(Enumerable.Range(0, i.Kept.Length).Select(f).ToArray());
        static double Ab(Input i, int k) => i.AlphasCumprod[i.Kept[k]];
        static double AbPrev(Input i, int k) => k == 0 ? 1 : i.AlphasCumprod[i.Kept[k - 1]];
        return new Exercise<Input>(Id, "Exercise respaced-betas (β′ from ᾱ)", "MyRespacedBetas", "Respacing.Respace")
        {
            Reference = i => FromSchedule(i.Betas, s =>
            {
                using var respaced = Respacing.Respace(s, i.Kept);
                return respaced.Betas;
            }),
            Cases = cases,
            Atol = 1e-12,
            Rtol = 1e-9,
            Mistakes =
            [
                new("original-betas", "You took the original β at each kept step, 1 − ᾱ_τ/ᾱ_{τ−1}: that is one step of the old " +
                    "schedule. A step of the respaced schedule jumps from the previous KEPT step: β′_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}.",
                    i => Each(i, k => 1 - Ab(i, k) / (i.Kept[k] == 0 ? 1 : i.AlphasCumprod[i.Kept[k] - 1]))),
                new("ratio", "ᾱ_{τ_i}/ᾱ_{τ_{i−1}} is α′_i, the part that survives the step; β′_i = 1 − α′_i.",
                    i => Each(i, k => Ab(i, k) / AbPrev(i, k))),
                new("inverted", "The ratio is upside down: ᾱ_{τ_i} (the later, smaller one) goes on top, so that 0 < β′_i < 1.",
                    i => Each(i, k => 1 - AbPrev(i, k) / Ab(i, k))),
                new("difference", "Noise levels multiply, they don't add: ᾱ_{τ_i} = ᾱ_{τ_{i−1}}·(1 − β′_i), so β′_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}, " +
                    "not ᾱ_{τ_{i−1}} − ᾱ_{τ_i}.",
                    i => Each(i, k => AbPrev(i, k) - Ab(i, k))),
                new("first-from-zero", "Before the first kept step nothing is noised: ᾱ_{τ_{−1}} = 1, so β′_0 = 1 − ᾱ_{τ_0} " +
                    "(all the steps up to τ_0 in one), even when τ_0 is not 0.",
                    i => Each(i, k => k == 0 ? i.Betas[i.Kept[0]] : 1 - Ab(i, k) / AbPrev(i, k))),
            ],
            GenericHint = "β′_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}} for i = 0…K − 1, with ᾱ_{τ_i} = alphasCumprod[kept[i]] and 1 before the first.",
            ShapeHint = "Return one β′ per kept step: an array as long as kept.",
            DescribeIndex = (i, ix) =>
            {
                int k = (int)ix[0];
                return $"i = {k} (τ_i = {i.Kept[k]}), where ᾱ_(τ_i) = {Checker.Fmt(Ab(i, k))} and ᾱ_(τ_(i−1)) = " +
                       (k == 0 ? "1 (nothing noised yet)" : $"{Checker.Fmt(AbPrev(i, k))} (τ_(i−1) = {i.Kept[k - 1]})");
            },
        };
    }
}
