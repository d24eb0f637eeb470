namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 00b, exercise <c>gaussian-nll</c>: the negative log-likelihood of every pixel under N(μ, σ²) with one σ
/// per image, −log N(x; μ, σ²) = ½·log(2π) + log σ + (x − μ)²/(2σ²), checked against TorchSharp's
/// <c>torch.distributions.Normal(μ, σ).log_prob(x)</c>.
/// </summary>
public static class GaussianNllExercise
{
    public const string Id = "gaussian-nll";

    internal sealed record Input(Tensor X, Tensor Mean, Tensor Std);

    /// <summary>
    /// Runs <paramref name="learner"/>(x, mean, std) on seeded batches (std: one value per image, shape [B]; one batch
    /// with as many images as columns, where a missing reshape to [B, 1, 1, 1] does not throw), compares with
    /// TorchSharp's Normal distribution, shows the verdict and returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<Tensor, Tensor, Tensor, Tensor> learner, bool show = true)
    {
        Case<Input> C(string description, ulong seed, float[] std, params long[] imageShape) => new(description, () =>
        {
            var g = new Generator(seed);
            var shape = new[] { (long)std.Length }.Concat(imageShape).ToArray();
            return new Input(Images(g, shape), Images(g, shape) * 0.5f, tensor(std));
        });
        var exercise = Spec([
            C("2 images of shape [1, 3, 3], σ = [0.5, 2]", 1, [0.5f, 2f], 1, 3, 3),
            C("4 images of shape [1, 4, 4] (as many images as columns), σ = [0.1, 0.3, 1, 3]", 2, [0.1f, 0.3f, 1f, 3f], 1, 4, 4),
            C("3 RGB images of shape [3, 2, 5], σ = [1, 1, 1] (the standard normal's spread)", 3, [1f, 1f, 1f], 3, 2, 5),
        ]);
        return Checker.Run(exercise, learner is null ? null : i => learner(i.X, i.Mean, i.Std), show);
    }

    static Exercise<Input> Spec(IReadOnlyList<Case<Input>> cases)
    {
        static Tensor S(Input i) => i.Std.reshape(-1, 1, 1, 1);
        static Tensor Sq(Input i) => (i.X - i.Mean).pow(2);
        double halfLog2Pi = 0.5 * Math.Log(2 * Math.PI);
        return new Exercise<Input>(Id, "Exercise gaussian-nll (−log N(x; μ, σ²))", "MyGaussianNll", "torch.distributions.Normal(μ, σ).log_prob")
        {
            Reference = i => -distributions.Normal(i.Mean, S(i).expand_as(i.Mean)).log_prob(i.X),
            Cases = cases,
            Mistakes =
            [
                new("log-likelihood", "That is the log-likelihood log N(x; μ, σ²). The NEGATIVE log-likelihood is minus it " +
                    "(and a loss to minimise).",
                    i => -(halfLog2Pi + S(i).log() + Sq(i) / (2 * S(i).pow(2)))),
                new("no-reshape", "σ has one value per image, shape [B]. Against [B, C, H, W] it broadcasts along the LAST axis " +
                    "(the columns), not the images: reshape it to [B, 1, 1, 1] first, std.reshape(-1, 1, 1, 1).",
                    i => halfLog2Pi + i.Std.log() + Sq(i) / (2 * i.Std.pow(2))),
                new("missing-constant", "The density's normaliser 1/√(2πσ²) gives ½·log(2π) + log σ: the ½·log(2π) ≈ 0.919 is missing. " +
                    "(It does not change the minimiser, but it is part of the likelihood.)",
                    i => S(i).log() + Sq(i) / (2 * S(i).pow(2))),
                new("missing-log-sigma", "The normaliser 1/√(2πσ²) also gives log σ, which is missing. Without it a wider σ always " +
                    "looks better.",
                    i => halfLog2Pi + Sq(i) / (2 * S(i).pow(2))),
                new("missing-half", "The squared error is divided by 2σ², not σ²: (x − μ)²/(2σ²).",
                    i => halfLog2Pi + S(i).log() + Sq(i) / S(i).pow(2)),
                new("std-for-variance", "σ is the standard deviation: divide by 2σ² (std squared), and log σ = ½·log σ².",
                    i => halfLog2Pi + 0.5 * S(i).log() + Sq(i) / (2 * S(i))),
            ],
            GenericHint = "−log N(x; μ, σ²) = ½·log(2π) + log σ + (x − μ)²/(2σ²), element by element, with σ reshaped to " +
                          "[B, 1, 1, 1]: Math.Log(2 * Math.PI) / 2 + s.log() + (x − mean).pow(2) / (2 * s.pow(2)).",
            ShapeHint = "Return one value per pixel: the shape of x. (Reshape σ to [B, 1, 1, 1] so that it broadcasts over the pixels.)",
            DescribeIndex = (i, ix) => $"image {ix[0]} (σ = {Value(i.Std, ix[0])}), position {Checker.ShapeText(ix[1..])}, " +
                                       $"where x = {Value(i.X, ix)} and μ = {Value(i.Mean, ix)}",
        };
    }
}
