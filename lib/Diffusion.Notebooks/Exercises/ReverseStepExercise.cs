using Diffusion.Platform;

namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 06, exercise <c>reverse-step</c>: one step of Algorithm 2 with σ_t² = β_t,
/// x_{t−1} = 1/√α_t·(x_t − β_t/√(1 − ᾱ_t)·ε_θ) + σ_t·z (z = 0 at the last step), checked against
/// <see cref="DdpmSampler.Step"/> (σ² = β, no clipping) fed with the same ε_θ and the same z.
/// </summary>
public static class ReverseStepExercise
{
    public const string Id = "reverse-step";

    /// <summary>One case; z is drawn from a generator seeded with <paramref name="ZSeed"/>, which the library's step gets too.</summary>
    internal sealed record Input(NoiseSchedule S, Tensor Xt, int T, Tensor EpsTheta, Tensor Z, ulong ZSeed);

    /// <summary>
    /// Runs <paramref name="learner"/>(s, xt, t, epsTheta, z) for the first, a middle, the second-to-last and the last
    /// step of two schedules (and β = 0.999, where 1/√α_t ≈ 31.6), compares with the library, shows the verdict and
    /// returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<NoiseSchedule, Tensor, int, Tensor, Tensor, Tensor> learner, bool show = true)
    {
        using var schedules = new ScheduleCases(ScheduleKind.Linear);
        var (linear, cosine, short10) = (schedules.Linear, schedules.Cosine, schedules.Short);
        Case<Input> C(string description, NoiseSchedule s, ulong seed, int t, params long[] shape) => new(description, () =>
        {
            var g = new Generator(seed);
            var xt = randn(shape, generator: g);
            var eps = randn(shape, generator: g) * 0.8;
            ulong zSeed = seed + 1000;
            return new Input(s, xt, t, eps, Compute.Randn(shape, new Generator(zSeed)), zSeed);
        });
        var exercise = Spec([
            C("linear schedule, T = 1000; t = 999 (the first reverse step, from pure noise); x_t of shape [2, 1, 4, 4]", linear, 41, 999, 2, 1, 4, 4),
            C("linear schedule, T = 1000; t = 500", linear, 42, 500, 2, 1, 4, 4),
            C("linear schedule, T = 1000; t = 1 (the second-to-last step)", linear, 43, 1, 2, 1, 4, 4),
            C("linear schedule, T = 1000; t = 0 (the last step: z = 0, whatever z you are given)", linear, 44, 0, 2, 1, 4, 4),
            C("cosine schedule, T = 500; t = 499 (β = 0.999, so 1/√α_t ≈ 31.6)", cosine, 45, 499, 2, 1, 3, 3),
            C("cosine schedule, T = 500; t = 0 (the last step)", cosine, 46, 0, 2, 1, 3, 3),
            C("linear schedule, T = 10; t = 4; 2 RGB images of shape [3, 3, 3]", short10, 47, 4, 2, 3, 3, 3),
        ]);
        return Checker.Run(exercise, learner is null ? null : i => learner(i.S, i.Xt, i.T, i.EpsTheta, i.Z), show);
    }

    /// <summary>A reverse step with chosen pieces: coef·(x_t − c·ε_θ) (or the bracket's variants) + noise·z.</summary>
    static Tensor Step(Input i, int shift = 0, Func<double, double>? sigma = null, bool noiseAtLast = false, bool paperCondition = false,
        Func<int, double>? recip = null, Func<int, double>? epsCoef = null, int epsSign = -1, int zSign = 1, bool bracketOnlyX = false)
    {
        int t = i.T + shift;
        if (t < 0 || t >= i.S.Timesteps) throw new IndexOutOfRangeException();
        var s = i.S;
        double r = recip?.Invoke(t) ?? 1 / Math.Sqrt(s.Alphas[t]);
        double c = epsCoef?.Invoke(t) ?? s.Betas[t] / Math.Sqrt(1 - s.AlphasCumprod[t]);
        var mean = bracketOnlyX ? r * i.Xt + epsSign * c * i.EpsTheta : r * (i.Xt + epsSign * c * i.EpsTheta);
        bool addNoise = noiseAtLast || (paperCondition ? i.T > 1 : i.T > 0);
        if (!addNoise) return mean;
        double sd = sigma?.Invoke(s.Betas[t]) ?? Math.Sqrt(s.Betas[t]);
        return mean + zSign * sd * i.Z;
    }

    static Exercise<Input> Spec(IReadOnlyList<Case<Input>> cases)
    {
        const string offByOne = "Index t is the step being undone (the paper's t + 1, because the code counts 0…T − 1): use " +
                                "Alphas[t], Betas[t] and AlphasCumprod[t] — no shift is needed.";
        return new Exercise<Input>(Id, "Exercise reverse-step (one step of Algorithm 2)", "MyReverseStep", "DdpmSampler.Step")
        {
            Reference = i =>
            {
                using var sampler = new DdpmSampler(i.S, Prediction.Epsilon, ReverseVariance.Beta, clipDenoised: false);
                // The same z: the library draws it from a generator in the same state as the one that made i.Z.
                return sampler.Step(i.EpsTheta, i.Xt, sampler.Plan.IndexOf(i.T), new Generator(i.ZSeed));
            },
            Cases = cases,
            Mistakes =
            [
                new("beta-tilde", "This exercise uses σ_t² = β_t (Algorithm 2 with the \"fixed large\" variance, as in section 1). " +
                    "You used β̃_t (PosteriorVariance), the other choice of section 3.",
                    i => Step(i, sigma: _ => Math.Sqrt(i.S.PosteriorVariance[i.T]))),
                new("noise-at-last-step", "At the last step (t = 0 in code, the paper's t = 1) z = 0: return the mean without noise.",
                    i => Step(i, noiseAtLast: true)),
                new("paper-condition", "In code the last step is t = 0 (the paper's t = 1): add noise whenever t > 0. You skipped the " +
                    "noise at t = 1 too.",
                    i => Step(i, paperCondition: true)),
                new("variance-not-std", "σ_t is a standard deviation: add √β_t·z, not β_t·z.",
                    i => Step(i, sigma: b => b)),
                new("missing-sqrt-alpha", "Divide by √α_t (SqrtRecipAlphas is 1/√α_t), not by α_t.",
                    i => Step(i, recip: t => 1 / i.S.Alphas[t])),
                new("alpha-bar-for-alpha", "The factor in front is 1/√α_t of this one step (Alphas), not 1/√ᾱ_t.",
                    i => Step(i, recip: t => 1 / Math.Sqrt(i.S.AlphasCumprod[t]))),
                new("eps-coef-missing-sqrt", "The predicted noise is scaled by β_t/√(1 − ᾱ_t): a square root in the denominator.",
                    i => Step(i, epsCoef: t => i.S.Betas[t] / (1 - i.S.AlphasCumprod[t]))),
                new("eps-coef-alpha-bar", "The numerator of the noise's weight is β_t = 1 − α_t of this step, not 1 − ᾱ_t.",
                    i => Step(i, epsCoef: t => Math.Sqrt(1 - i.S.AlphasCumprod[t]))),
                new("wrong-sign-eps", "Subtract the predicted noise: x_t − β_t/√(1 − ᾱ_t)·ε_θ.",
                    i => Step(i, epsSign: 1)),
                new("wrong-sign-noise", "Add σ_t·z, don't subtract it. (−σ_t·z has the same distribution, but the check hands you " +
                    "the z to use.)",
                    i => Step(i, zSign: -1)),
                new("bracket", "1/√α_t multiplies the whole bracket (x_t − β_t/√(1 − ᾱ_t)·ε_θ), not only x_t.",
                    i => Step(i, bracketOnlyX: true)),
                new("no-recip", "Don't forget the factor 1/√α_t in front of the bracket.",
                    i => Step(i, recip: _ => 1)),
                new("off-by-one-prev", "You took the schedule terms from index t − 1. " + offByOne, i => Step(i, shift: -1)),
                new("off-by-one-next", "You took the schedule terms from index t + 1. " + offByOne, i => Step(i, shift: 1)),
            ],
            GenericHint = "x_{t−1} = 1/√α_t·(x_t − β_t/√(1 − ᾱ_t)·ε_θ) + √β_t·z, and without the + √β_t·z when t = 0. The " +
                          "numbers are s.Alphas[t], s.Betas[t] and s.AlphasCumprod[t] (doubles: t is the same for the whole batch).",
            ShapeHint = "The result must have the shape of x_t.",
            DescribeIndex = (i, ix) =>
                $"t = {i.T} (α_t = {Checker.Fmt(i.S.Alphas[i.T])}, ᾱ_t = {Checker.Fmt(i.S.AlphasCumprod[i.T])}, β_t = {Checker.Fmt(i.S.Betas[i.T])}), " +
                $"image {ix[0]}, position {Checker.ShapeText(ix[1..])}, where x_t = {Inputs.Value(i.Xt, ix)}, " +
                $"ε_θ = {Inputs.Value(i.EpsTheta, ix)} and z = {Inputs.Value(i.Z, ix)}",
        };
    }
}
