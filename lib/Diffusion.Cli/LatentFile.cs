using Diffusion.Latent;

namespace Diffusion.Cli;

/// <summary>
/// A trained autoencoder as the pixel commands use it for latent diffusion (<c>train --latents</c>, <c>sample</c> and
/// <c>eval --autoencoder</c>): the data's scaled latents s·μ(x) to train on, and the decoder D(z/s) for the samples.
/// </summary>
sealed class LatentFile : IDisposable
{
    public required Autoencoder Model { get; init; }
    public required AutoencoderInfo Info { get; init; }
    public required string Path { get; init; }

    /// <summary>The autoencoder file <paramref name="path"/>, named <paramref name="option"/> in errors.</summary>
    public static LatentFile Load(string path, string option, Device device)
    {
        if (!File.Exists(path)) throw new CliException($"{option} {path}: no such file. Give an autoencoder file such as data/checkpoints/fashion-mnist-autoencoder.ckpt.");
        var (model, info) = AutoencoderFile.Load(path, device);
        model.eval();
        return new LatentFile { Model = model, Info = info, Path = path };
    }

    /// <summary>The scaled latents of every image of <paramref name="images"/>, as a dataset with its labels (the caller disposes it).</summary>
    public ImageDataset Encode(ImageDataset images)
    {
        int side = Info.Config.ImageSize;
        if (images.Channels != Info.Config.Channels || images.Height != side || images.Width != side)
            throw new CliException($"--latents {Path}: this autoencoder encodes {Info.Config.Channels}×{side}×{side} images; the data is " +
                                   $"{images.Channels}×{images.Height}×{images.Width}. Use the data it was trained on.");
        Console.WriteLine($"encoding {images.Count} images with {Path} (latents {Info.Config.LatentChannels}×{Info.Config.LatentSize}×{Info.Config.LatentSize}, scaled by {Info.ScalingFactor:G4})");
        using var latents = LatentSpace.EncodeAll(Model, images);
        return LatentSpace.Dataset(latents, Info.ScalingFactor, images);
    }

    /// <summary>One clear error unless the model <paramref name="config"/> (from <paramref name="source"/>) makes this autoencoder's latents.</summary>
    public void CheckFits(DiffusionModelConfig config, string source)
    {
        var c = Info.Config;
        if (config.Channels != c.LatentChannels || config.ImageSize != c.LatentSize)
            throw new CliException($"{source} makes {config.Channels}×{config.ImageSize}×{config.ImageSize} tensors, but {Path} decodes " +
                                   $"{c.LatentChannels}×{c.LatentSize}×{c.LatentSize} latents: give the autoencoder the model was trained on, " +
                                   "or drop --autoencoder for a model of pixels.");
    }

    /// <summary>Pictures [B, C, H, W] in [−1, 1] from scaled latents (the caller disposes them).</summary>
    public Tensor Decode(Tensor scaledLatents) => LatentSpace.Decode(Model, scaledLatents, Info.ScalingFactor);

    public void Dispose() => Model.Dispose();
}
