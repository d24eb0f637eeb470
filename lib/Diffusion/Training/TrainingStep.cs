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
    public static Tensor Loss(IDenoisingNetwork model, DiffusionModelConfig config, TrainingOptions options, NoiseSchedule schedule,
        ImageDataset data, Tensor indices, Generator generator, Device device) =>
        Loss(model, config.CreateObjective(schedule, options), config, options, data, indices, generator, device);

    /// <summary>
    /// The loss of <paramref name="objective"/> for <paramref name="model"/> on the images <paramref name="indices"/> of
    /// <paramref name="data"/>: the batch (flips, label dropout) drawn here, the objective's draws (t, ε) after them,
    /// all from <paramref name="generator"/>.
    /// </summary>
    public static Tensor Loss(IDenoisingNetwork model, TrainingObjective objective, DiffusionModelConfig config, TrainingOptions options,
        ImageDataset data, Tensor indices, Generator generator, Device device)
    {
        // x_0 ~ q(x_0): a batch of training images in [−1, 1], randomly flipped
        var x0 = data.ModelInputs(indices);
        if (options.RandomFlip) x0 = Transforms.RandomHorizontalFlip(x0, generator);
        Tensor? classes = null;
        if (config.NumClasses > 0)
        {
            classes = data.Labels!.index_select(0, indices);
            // Classifier-free guidance training: drop the label ("no label" = NumClasses) with probability p.
            classes = ClassDropout.Apply(classes, options.ClassDropout, config.NumClasses, generator).to(device);
        }
        x0 = x0.to(device);
        // t, ε and the loss: DDPM's Algorithm 1 (L_simple, or L_hybrid for a learned variance), or the configuration's objective
        return objective.Loss((xt, tt) => model.forward(xt, tt, classes), x0, generator);
    }
}
