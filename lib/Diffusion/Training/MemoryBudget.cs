using Diffusion.Platform;

namespace Diffusion.Training;

/// <summary>
/// The bytes a network needs to train or to sample, estimated from its configuration (deliberately on the high side),
/// checked against the memory this process may use (<see cref="MemoryLimit"/>) before anything is allocated, so that what
/// cannot fit is refused with numbers instead of growing until the kernel kills the process.
/// </summary>
public static class MemoryBudget
{
    /// <summary>
    /// Bytes to train <paramref name="config"/> at <paramref name="batchSize"/>: weights, gradients, two Adam moments and an EMA
    /// copy (5 × 4 bytes per parameter), and the activations a training step keeps for the backward pass.
    /// </summary>
    public static long Training(DiffusionModelConfig config, int batchSize) =>
        checked(20 * EstimatedParameters(config) + 2 * Activations(config, batchSize));

    /// <summary>Bytes to sample <paramref name="count"/> images with <paramref name="config"/> at once (no gradients kept).</summary>
    public static long Sampling(DiffusionModelConfig config, int count) =>
        checked(4 * EstimatedParameters(config) + Activations(config, count) / 4);

    /// <summary>The parameters of the configuration's network, counted from its sizes.</summary>
    public static long EstimatedParameters(DiffusionModelConfig config) =>
        config.Dit is { } dit ? dit.ParameterCountFormula() : config.Unet.EstimatedParameters();

    static long Activations(DiffusionModelConfig config, int batch) =>
        config.Dit is { } dit ? Activations(dit, batch) : Activations(config.Unet, config.ImageSize, batch);

    /// <summary>
    /// Activations of one forward pass of a DiT: per block about 16 float32 tensors of the tokens' size N·D, two of the
    /// MLP's N·M and two attention matrices per head (N² each).
    /// </summary>
    public static long Activations(Model.Transformer.DitConfig dit, int batch)
    {
        long n = dit.Tokens, perBlock = checked(16L * n * dit.Hidden + 2L * n * dit.MlpHidden + 2L * dit.Heads * n * n);
        return checked(4L * batch * Math.Max(1, dit.Depth) * perBlock);
    }

    /// <summary>
    /// Activations of one forward pass: about 32 float32 tensors of each level's size (blocks, norms, attention, skips),
    /// levels at side S/2^i with Dim·mult_i channels.
    /// </summary>
    public static long Activations(Model.UnetConfig unet, int imageSize, int batch)
    {
        long perImage = 0;
        for (int i = 0; i < unet.DimMults.Length; i++)
        {
            long side = Math.Max(1, imageSize >> i);
            perImage = checked(perImage + (long)unet.Dim * unet.DimMults[i] * side * side);
        }
        return checked(32L * 4 * batch * perImage);
    }
}
