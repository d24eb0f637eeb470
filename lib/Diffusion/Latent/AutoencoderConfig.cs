using System.Text.Json;
using System.Text.Json.Serialization;

namespace Diffusion.Latent;

/// <summary>
/// The shape of the course's small KL-regularised autoencoder (the "VAE" of latent diffusion, Rombach et al. 2022,
/// "High-Resolution Image Synthesis with Latent Diffusion Models", §3 and appendix G). Defaults: a 28×28×1
/// Fashion-MNIST image, padded to 32×32, becomes an 8×8×4 latent (downsampling factor f = 4, like SD's 4 latent
/// channels; SD itself uses f = 8: 512×512×3 → 64×64×4).
/// </summary>
public sealed record AutoencoderConfig
{
    /// <summary>Image channels (1 = grayscale).</summary>
    public int Channels { get; init; } = 1;
    /// <summary>Side of the stored images (28 for Fashion-MNIST).</summary>
    public int ImageSize { get; init; } = 28;
    /// <summary>Side after padding with the background value −1, so that it halves cleanly (28 → 32).</summary>
    public int PaddedSize { get; init; } = 32;
    /// <summary>Feature channels per resolution level; the image is halved between levels (32 → 16 → 8 for three levels).</summary>
    public int[] LevelChannels { get; init; } = [16, 32, 32];
    /// <summary>c, the latent channels (SD: 4).</summary>
    public int LatentChannels { get; init; } = 4;
    /// <summary>GroupNorm groups in the residual blocks.</summary>
    public int Groups { get; init; } = 8;
    /// <summary>
    /// β, the weight of KL(q(z|x) ‖ N(0, I)) (summed over the latent's elements) against the squared reconstruction
    /// error (summed over the pixels), per image. Small on purpose, as in LDM's "KL-reg." autoencoders (there 1e-6):
    /// the KL only keeps the latents from drifting to arbitrary scales and teaches the decoder to tolerate a little
    /// noise in z; it must not blur the reconstructions the way a full-weight VAE (β = 1) would.
    /// </summary>
    public double KlWeight { get; init; } = 1e-4;

    /// <summary>Side of the latent: the padded image halved (levels − 1) times (32 → 8).</summary>
    [JsonIgnore] public int LatentSize => PaddedSize >> (LevelChannels.Length - 1);
    /// <summary>Downsampling factor f = padded size / latent size.</summary>
    [JsonIgnore] public int DownsamplingFactor => 1 << (LevelChannels.Length - 1);

    public void Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok) throw new ArgumentException(message);
        }
        Require(Channels is >= 1 and <= 4, $"Channels must be 1..4, got {Channels}");
        // Bounds (docs/guarantees.md): far above the course's autoencoder, far below what a crafted file could ask for.
        Require(ImageSize is >= 1 and <= 256 && PaddedSize is >= 1 and <= 512, $"ImageSize must be 1..256 and PaddedSize 1..512, got {ImageSize} and {PaddedSize}");
        Require(LevelChannels is { Length: >= 1 and <= 6 } && LevelChannels.All(c => c is >= 1 and <= 1024), "LevelChannels must list 1 to 6 channel counts from 1 to 1024");
        Require(Groups is >= 1 and <= 1024, $"Groups must be 1..1024, got {Groups}");
        Require(LevelChannels.All(c => c % Groups == 0), $"every level's channel count must be divisible by Groups = {Groups}");
        Require(PaddedSize >= ImageSize && (PaddedSize - ImageSize) % 2 == 0,
            $"PaddedSize ({PaddedSize}) must be ≥ ImageSize ({ImageSize}) with an even difference (equal padding on both sides)");
        Require(PaddedSize % DownsamplingFactor == 0, $"PaddedSize {PaddedSize} must be divisible by {DownsamplingFactor}");
        Require(LatentChannels is >= 1 and <= 4, $"LatentChannels must be 1..4 (the U-Net takes up to 4 channels), got {LatentChannels}");
        Require(KlWeight >= 0 && double.IsFinite(KlWeight), $"KlWeight must be ≥ 0, got {KlWeight}");
    }

    static readonly JsonSerializerOptions Json = new() { WriteIndented = false };
    public string ToJson() => JsonSerializer.Serialize(this, Json);
    public static AutoencoderConfig FromJson(string json) =>
        JsonSerializer.Deserialize<AutoencoderConfig>(json, Json) ?? throw new InvalidDataException("empty autoencoder configuration");
}
