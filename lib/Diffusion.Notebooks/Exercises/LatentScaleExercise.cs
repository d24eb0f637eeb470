using Diffusion.Latent;

namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 10, exercise <c>latent-scale</c>: the latent scaling factor s = 1 / std(z) over every element of a batch of
/// latents, checked against <see cref="LatentSpace.ScalingFactor"/>.
/// </summary>
public static class LatentScaleExercise
{
    public const string Id = "latent-scale";

    internal sealed record Input(Tensor Latents);

    /// <summary>
    /// Runs <paramref name="learner"/>(latents) on seeded latents with a mean away from 0 and a different spread per
    /// channel, compares with the library, shows the verdict and returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<Tensor, double> learner, bool show = true)
    {
        // Big enough that dividing by n or by n − 1 inside the std differs by less than the tolerance.
        Case<Input> C(string description, ulong seed, double mean, double[] channelStd) => new(description, () =>
        {
            var g = new Generator(seed);
            var spread = tensor(channelStd, dtype: ScalarType.Float32).reshape(1, -1, 1, 1);
            return new Input(randn([256, channelStd.Length, 8, 8], generator: g) * spread + (float)mean);
        });
        var exercise = Spec([
            C("256 latents of shape [4, 8, 8], mean 0.5, channel standard deviations 0.9, 1.1, 0.8, 1.3", 101, 0.5, [0.9, 1.1, 0.8, 1.3]),
            C("256 latents of shape [4, 8, 8], mean 0, every channel with standard deviation 5.5 (like SD's VAE: s ≈ 0.18)", 102, 0, [5.5, 5.5, 5.5, 5.5]),
            C("256 latents of shape [2, 8, 8], mean −2, channel standard deviations 0.3 and 0.6", 103, -2, [0.3, 0.6]),
        ]);
        return Checker.Run(exercise, learner is null ? null : i => tensor(learner(i.Latents), dtype: ScalarType.Float64), show);
    }

    static Exercise<Input> Spec(IReadOnlyList<Case<Input>> cases)
    {
        static Tensor Of(double x) => tensor(x, dtype: ScalarType.Float64);
        static Tensor Z(Input i) => i.Latents.to(ScalarType.Float64);
        return new Exercise<Input>(Id, "Exercise latent-scale (s = 1 / std(z))", "MyScalingFactor", "LatentSpace.ScalingFactor")
        {
            Reference = i => Of(LatentSpace.ScalingFactor(i.Latents)),
            Cases = cases,
            Atol = 1e-6,
            Rtol = 1e-4,
            MistakeTolerance = 3,
            Mistakes =
            [
                new("std-not-inverse", "You returned std(z) itself. The factor multiplies the latents so that z·s has standard " +
                    "deviation 1: s = 1 / std(z).",
                    i => Of(Z(i).std().item<double>())),
                new("variance", "1 / var(z) scales the variance to 1/var(z), not to 1: take the square root, s = 1 / std(z).",
                    i => Of(1 / Z(i).var().item<double>())),
                new("not-centred", "That is 1 / √mean(z²), which ignores the mean of the latents. The standard deviation subtracts " +
                    "the mean first: z.std() does it.",
                    i => Of(1 / Z(i).pow(2).mean().sqrt().item<double>())),
                new("mean-abs", "1 / mean|z| is not 1 / std(z): use z.std().",
                    i => Of(1 / Z(i).abs().mean().item<double>())),
                new("max-abs", "1 / max|z| squeezes the latents into [−1, 1], like the pixels, but the diffusion needs unit VARIANCE " +
                    "(its noise is N(0, I)): s = 1 / std(z).",
                    i => Of(1 / Z(i).abs().max().item<double>())),
            ],
            GenericHint = "s = 1 / std(z), where std runs over every element of the batch (all images, channels and positions): " +
                          "1.0 / latents.std().item<float>().",
            ShapeHint = "Return one number.",
        };
    }
}
