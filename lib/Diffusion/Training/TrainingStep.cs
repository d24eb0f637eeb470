using Diffusion.Data;
using Diffusion.Forward;
using Diffusion.Platform;

namespace Diffusion.Training;

/// <summary>
/// The inside of DDPM's Algorithm 1 for one batch: x_0 ~ q(x_0); t ~ Uniform{0..T−1}; ε ~ N(0, I);
/// the loss of ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t) against its target (L_simple, or L_hybrid for a learned variance).
/// No optimiser here: <see cref="Trainer"/> takes the gradient step.
/// </summary>
public static class TrainingStep
{
    /// <summary>
    /// The loss of <paramref name="model"/> on the images <paramref name="indices"/> of <paramref name="data"/>, every
    /// random draw (flip, label dropout, t, ε) from <paramref name="generator"/>.
    /// </summary>
    public static Tensor Loss(Unet model, DiffusionModelConfig config, TrainingOptions options, NoiseSchedule schedule,
        ImageDataset data, Tensor indices, Generator generator, Device device)
    {
        // x_0 ~ q(x_0): a batch of training images in [−1, 1], randomly flipped
        var x0 = data.ModelInputs(indices);
        if (options.RandomFlip) x0 = Transforms.RandomHorizontalFlip(x0, generator);
        Tensor? classes = null;
        if (config.Unet.NumClasses > 0)
        {
            classes = data.Labels!.index_select(0, indices);
            // Classifier-free guidance training: drop the label ("no label" = NumClasses) with probability p.
            classes = ClassDropout.Apply(classes, options.ClassDropout, config.Unet.NumClasses, generator).to(device);
        }
        x0 = x0.to(device);
        // t ~ Uniform{0..T−1}, ε ~ N(0, I), drawn on the CPU from the run's generator
        var (t, noise) = DenoisingLoss.Draw(schedule, x0.shape, generator, device);

        // Learned variance: L_hybrid = L_simple + λ L_vlb (Improved DDPM §3.1); otherwise DDPM's L_simple.
        return config.Variance == VarianceType.Learned
            ? HybridLoss.Compute((xt, tt) => model.forward(xt, tt, classes), schedule, x0, t, noise,
                config.Prediction, options.Loss, options.VlbWeight, options.MinSnrGamma).Total
            : DenoisingLoss.Compute((xt, tt) => model.forward(xt, tt, classes), schedule, x0, t, noise,
                config.Prediction, options.Loss, options.MinSnrGamma);
    }
}
