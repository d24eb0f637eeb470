using System.Text.Json;
using Diffusion.Training;

namespace Diffusion.Latent;

/// <summary>What is stored next to an autoencoder's weights.</summary>
public sealed record AutoencoderInfo
{
    public required AutoencoderConfig Config { get; init; }
    /// <summary>s = 1 / std of the encoder's latents μ(x) on the training data (SD's 0.18215); the diffusion runs on s·μ(x).</summary>
    public double ScalingFactor { get; init; } = 1;
    public int Steps { get; init; }
    public int BatchSize { get; init; }
    public double TrainingSeconds { get; init; }
    /// <summary>Mean squared error per pixel (images in [−1, 1]) over the last 50 training steps.</summary>
    public double RecentPixelMse { get; init; } = double.NaN;
    /// <summary>Mean KL per image over the last 50 training steps.</summary>
    public double RecentKl { get; init; } = double.NaN;
    public string Data { get; init; } = "";
    public DateTime SavedUtc { get; init; } = DateTime.UtcNow;
}

/// <summary>
/// Single-file autoencoder weights: "LATENTAE", JSON <see cref="AutoencoderInfo"/>, TorchSharp weights, SHA-256 of all
/// before it; written atomically (temp file + rename) like the diffusion checkpoints.
/// </summary>
public static class AutoencoderFile
{
    static readonly byte[] Magic = "LATENTAE"u8.ToArray();

    public static void Save(string path, Autoencoder model, AutoencoderInfo info)
    {
        HashedFile.Write(path, Magic, w =>
        {
            HashedFile.WriteJson(w, info, Checkpoint.JsonOptions);
            HashedFile.WriteBlock(w, Checkpoint.ModuleBytes(model));
        });
    }

    /// <summary>Loads and verifies the file, builds the autoencoder and loads its weights (in eval mode).</summary>
    public static (Autoencoder Model, AutoencoderInfo Info) Load(string path, TorchSharp.torch.Device? device = null)
    {
        using var r = HashedFile.Open(path, Magic, new FileMessages(
            Folder: $"{path} is a folder: pass the autoencoder file itself (the 'latent' command writes autoencoder.ckpt into its --out folder).",
            Missing: $"autoencoder file {path} not found. Make it with the CLI's 'latent' command (see data/README.md).",
            WrongHeader: $"{path} is not an autoencoder file of this course (wrong header).",
            Damaged: $"{path} is damaged or truncated (its SHA-256 check failed). Use an earlier copy, or train it again with the 'latent' command."));
        var (info, weights) = HashedFile.Guard(path, "autoencoder file", () =>
        {
            var info = JsonSerializer.Deserialize<AutoencoderInfo>(HashedFile.ReadJson(r), Checkpoint.JsonOptions)
                       ?? throw new CheckpointException($"{path}: empty description");
            if (info.Config is null) throw new InvalidDataException("the description has no Config");
            info.Config.Validate();                                       // bounds before anything is built
            if (!double.IsFinite(info.ScalingFactor) || info.ScalingFactor <= 0) throw new InvalidDataException($"scaling factor {info.ScalingFactor} is not a positive number");
            return (info, HashedFile.ReadBlock(r));
        });
        var model = HashedFile.Guard(path, "autoencoder file", () => new Autoencoder(info.Config));
        try { Checkpoint.LoadModule(model, weights, "autoencoder"); }
        catch
        {
            model.Dispose();
            throw;
        }
        if (device is not null) model.to(device);
        model.eval();
        return (model, info);
    }
}
