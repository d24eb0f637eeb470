namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 08, exercise <c>guided-noise</c>: the classifier-free guided prediction ε̃ = (1 + w)·ε_c − w·ε_∅, checked
/// against <see cref="ClassifierFreeGuidance.Combine"/>.
/// </summary>
public static class GuidedNoiseExercise
{
    public const string Id = "guided-noise";

    internal sealed record Input(Tensor Conditional, Tensor Unconditional, double W);

    /// <summary>
    /// Runs <paramref name="learner"/>(epsCond, epsUncond, w) for w = 2, 0 (plain conditional), −1 (unconditional),
    /// 7.5 and 0.5, compares with the library, shows the verdict and returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<Tensor, Tensor, double, Tensor> learner, bool show = true)
    {
        Case<Input> C(string description, ulong seed, double w, params long[] shape) => new(description, () =>
        {
            var g = new Generator(seed);
            return new Input(Noise(g, shape), Noise(g, shape), w);
        });
        var exercise = Spec([
            C("w = 2; ε_c and ε_∅ of shape [2, 1, 4, 4]", 81, 2, 2, 1, 4, 4),
            C("w = 0 (plain conditional sampling: ε̃ = ε_c)", 82, 0, 2, 1, 4, 4),
            C("w = −1 (the label is ignored: ε̃ = ε_∅)", 83, -1, 2, 1, 4, 4),
            C("w = 7.5; 3 RGB images of shape [3, 2, 2]", 84, 7.5, 3, 3, 2, 2),
            C("w = 0.5", 85, 0.5, 4, 1, 3, 3),
        ]);
        return Checker.Run(exercise, learner is null ? null : i => learner(i.Conditional, i.Unconditional, i.W), show);
    }

    static Exercise<Input> Spec(IReadOnlyList<Case<Input>> cases) =>
        new(Id, "Exercise guided-noise (ε̃ = (1 + w)·ε_c − w·ε_∅)", "MyGuidedNoise", "ClassifierFreeGuidance.Combine")
    {
        Reference = i => ClassifierFreeGuidance.Combine(i.Conditional, i.Unconditional, i.W),
        Cases = cases,
        Mistakes =
        [
            new("scale-convention", "That is ε_∅ + w·(ε_c − ε_∅), the guidance-scale convention, where the scale s = 1 + w. " +
                "With the course's w the formula is ε̃ = ε_∅ + (1 + w)·(ε_c − ε_∅) = (1 + w)·ε_c − w·ε_∅: at w = 0 it must give ε_c.",
                i => i.Unconditional + i.W * (i.Conditional - i.Unconditional)),
            new("swapped", "ε_c and ε_∅ are swapped: the conditional prediction gets the weight 1 + w, the unconditional one −w " +
                "(guidance pushes away from the unconditional prediction).",
                i => (1 + i.W) * i.Unconditional - i.W * i.Conditional),
            new("plus", "Subtract w·ε_∅, don't add it: ε̃ = (1 + w)·ε_c − w·ε_∅ (the two weights sum to 1).",
                i => (1 + i.W) * i.Conditional + i.W * i.Unconditional),
            new("missing-one", "The conditional prediction is weighted 1 + w, not w: (1 + w)·ε_c − w·ε_∅.",
                i => i.W * i.Conditional - i.W * i.Unconditional),
            new("difference-only", "(1 + w)·ε_c − w·ε_∅ = ε_c + w·(ε_c − ε_∅): the difference is added to ε_c, not returned alone.",
                i => i.Conditional - i.Unconditional),
        ],
        GenericHint = "ε̃ = (1 + w)·ε_c − w·ε_∅, element by element: w = 0 gives ε_c, w = −1 gives ε_∅.",
        ShapeHint = "ε̃ has the shape of ε_c.",
        DescribeIndex = (i, ix) => $"position {Checker.ShapeText(ix)} with w = {Checker.Fmt(i.W)}, " +
                                   $"where ε_c = {Value(i.Conditional, ix)} and ε_∅ = {Value(i.Unconditional, ix)}",
    };
}
