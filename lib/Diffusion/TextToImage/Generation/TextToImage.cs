using System.Text.Json;
using System.Text.Json.Serialization;
using Diffusion.Forward;
using Diffusion.Latent;
using Diffusion.Platform;
using Diffusion.Sampling;
using Diffusion.Training;

namespace Diffusion.TextToImage;

/// <summary>Everything needed to rebuild a text-to-image model and sample from it.</summary>
public sealed record TextToImageInfo
{
    public int FormatVersion { get; init; } = TextToImageFile.FormatVersion;
    public required TextUnetConfig Unet { get; init; }
    [JsonConverter(typeof(JsonStringEnumConverter<ScheduleKind>))]
    public ScheduleKind Schedule { get; init; } = ScheduleKind.Cosine;
    /// <summary>T, the number of diffusion steps.</summary>
    public int Timesteps { get; init; } = 500;
    [JsonConverter(typeof(JsonStringEnumConverter<Prediction>))]
    public Prediction Prediction { get; init; } = Prediction.Epsilon;
    /// <summary>Side of the latents the U-Net denoises (the autoencoder's <see cref="AutoencoderConfig.LatentSize"/>).</summary>
    public int LatentSize { get; init; } = 8;
    public required TextEncoderConfig TextEncoder { get; init; }
    /// <summary>The tokenizer's words in id order.</summary>
    public required string[] Vocabulary { get; init; }
    /// <summary>The caption terciles of the training set (the attribute words' meaning), if known.</summary>
    public CaptionThresholds? Thresholds { get; init; }
    public required AutoencoderConfig Autoencoder { get; init; }
    /// <summary>s of the autoencoder: the U-Net denoises s·μ(x).</summary>
    public double ScalingFactor { get; init; } = 1;
    /// <summary>(class, word) combinations no training caption said (see the class HeldOut): evaluation reports their prompts apart.</summary>
    public HeldOutPair[] HeldOut { get; init; } = [];
    /// <summary>Probability with which a caption was replaced by the empty prompt in training (for guidance).</summary>
    public double CaptionDropout { get; init; }
    public int Steps { get; init; }
    public int BatchSize { get; init; }
    public double TrainingSeconds { get; init; }
    public double RecentLoss { get; init; } = double.NaN;
    public string Data { get; init; } = "";
    public string Command { get; init; } = "";
    public DateTime SavedUtc { get; init; } = DateTime.UtcNow;

    /// <summary>The diffusion side as the samplers know it (schedule, T, prediction, the U-Net's base configuration, latent size).</summary>
    [JsonIgnore]
    public DiffusionModelConfig Diffusion => new()
    {
        Unet = Unet.Unet, Schedule = Schedule, Timesteps = Timesteps, Prediction = Prediction, ImageSize = LatentSize,
        Data = "scaled autoencoder latents of Fashion-MNIST, conditioned on captions",
    };

    public void Validate()
    {
        Unet.Validate();
        TextEncoder.Validate();
        Autoencoder.Validate();
        Diffusion.Validate();                                             // the bounds on T and the latent size, as for every model
        if (Unet.ContextDim != TextEncoder.Dim)
            throw new ArgumentException($"the U-Net reads text features of width {Unet.ContextDim}, the text encoder writes {TextEncoder.Dim}");
        if (Unet.Unet.Channels != Autoencoder.LatentChannels || LatentSize != Autoencoder.LatentSize)
            throw new ArgumentException($"the U-Net denoises {Unet.Unet.Channels}×{LatentSize}×{LatentSize} latents, the autoencoder makes {Autoencoder.LatentChannels}×{Autoencoder.LatentSize}×{Autoencoder.LatentSize}");
        Unet.Unet.ValidateImageSize(LatentSize);
        if (Vocabulary.Length + WordTokenizer.FirstWord != TextEncoder.VocabularySize)
            throw new ArgumentException($"{Vocabulary.Length} words + {WordTokenizer.FirstWord} special ids do not make the text encoder's {TextEncoder.VocabularySize} ids");
    }
}

/// <summary>
/// The three parts of a miniature Stable Diffusion, loaded together: the frozen text encoder (of the mini-CLIP) with its
/// tokenizer, the text-conditioned latent U-Net, and the autoencoder that turns latents into pictures. Owns all three.
/// </summary>
public sealed class TextToImageModel : IDisposable
{
    public required TextUnet Unet { get; init; }
    public required TextEncoder Encoder { get; init; }
    public required Autoencoder Autoencoder { get; init; }
    public required WordTokenizer Tokenizer { get; init; }
    public required TextToImageInfo Info { get; init; }

    /// <summary>The prompt as the model will read it (unknown words left out, cut to the context); throws if it has no known word.</summary>
    public CheckedPrompt CheckPrompt(string prompt) => PromptCheck.Check(Tokenizer, prompt, Encoder.Config.ContextLength);

    /// <summary>
    /// <paramref name="perPrompt"/> pictures for each of <paramref name="prompts"/> (already checked; "" = unconditional),
    /// prompt after prompt: latents drawn with <paramref name="spec"/> under classifier-free guidance of weight
    /// <paramref name="w"/> (x̂_0 kept within the latents' range, <see cref="LatentSpace.ClipStart"/>), then decoded.
    /// Returns images [P·perPrompt, C, 28, 28] in [−1, 1] on the CPU.
    /// </summary>
    public Tensor Generate(IReadOnlyList<string> prompts, int perPrompt, double w, SamplerSpec spec, int seed, Device? device = null,
        IProgress<SamplingProgress>? progress = null, CancellationToken cancel = default)
    {
        if (prompts.Count < 1 || perPrompt < 1) throw new ArgumentException("give at least one prompt and one picture per prompt");
        ClassifierFreeGuidance.CheckWeight(w);
        device ??= Compute.Device;
        var config = Info.Diffusion;
        spec = spec.Validate(config.Timesteps, config.Variance == VarianceType.Learned);
        Unet.eval();
        Autoencoder.eval();
        using var schedule = config.CreateSchedule();
        using var sampler = spec.Create(schedule, config.Prediction);
        using var generator = new Generator((ulong)seed);
        using var text = TextCondition.Encode(Encoder, Tokenizer, prompts, device);
        // Image b shows prompt b / perPrompt; the empty prompt is the table's own ∅ row.
        using var index = tensor(Enumerable.Range(0, prompts.Count * perPrompt)
            .Select(b => prompts[b / perPrompt].Length == 0 ? (long)text.EmptyIndex : b / perPrompt).ToArray());
        DenoisingModel model = text.Guided(Unet, index, w);
        if (config.Prediction == Prediction.Epsilon) model = LatentSpace.ClipStart(model, schedule);
        long[] shape = [index.shape[0], config.Unet.Channels, config.ImageSize, config.ImageSize];
        using var result = sampler.Sample(model, shape, generator, device, 0, progress, cancel);
        using var scope = NewDisposeScope();
        return LatentSpace.Decode(Autoencoder, result.Samples, Info.ScalingFactor).cpu().clone().MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Unet.Dispose();
        Encoder.Dispose();
        Autoencoder.Dispose();
    }
}

/// <summary>
/// Single-file text-to-image model: "TXT2IMG1", JSON <see cref="TextToImageInfo"/>, then the weights of the U-Net (its EMA),
/// the text encoder and the autoencoder, then a SHA-256 of all before it; written atomically. One file holds the whole
/// pipeline, as a Stable Diffusion checkpoint holds its U-Net, text encoder and VAE.
/// </summary>
public static class TextToImageFile
{
    public const int FormatVersion = 1;
    static readonly byte[] Magic = "TXT2IMG1"u8.ToArray();

    /// <summary>The file the course ships in data/checkpoints/ (data/README.md: command, time, loss).</summary>
    public const string ShippedFileName = "fashion-mnist-text2img.ckpt";

    /// <summary>How to make a model: said whenever one is missing.</summary>
    public static string HowToMake(string path) =>
        $"Make one in two steps: 'train-clip --out clip.bin' (the text encoder), then 'train-text2img --clip clip.bin --out {path}'.";

    public static void Save(string path, TextUnet unet, TextEncoder encoder, Autoencoder autoencoder, TextToImageInfo info)
    {
        info.Validate();
        HashedFile.Write(path, Magic, w =>
        {
            HashedFile.WriteBlock(w, JsonSerializer.SerializeToUtf8Bytes(info, Checkpoint.JsonOptions));
            HashedFile.WriteBlock(w, Checkpoint.ModuleBytes(unet));
            HashedFile.WriteBlock(w, Checkpoint.ModuleBytes(encoder));
            HashedFile.WriteBlock(w, Checkpoint.ModuleBytes(autoencoder));
        });
    }

    /// <summary>Loads and verifies the file and builds its three networks (eval mode) on <paramref name="device"/>.</summary>
    public static TextToImageModel Load(string path, Device? device = null)
    {
        using var r = HashedFile.Open(path, Magic, new FileMessages(
            Folder: $"{path} is a folder: pass the text-to-image file itself. {HowToMake(Path.Combine(path, ShippedFileName))}",
            Missing: $"no text-to-image model at {path} (the course ships one as data/checkpoints/{ShippedFileName}). {HowToMake(path)}",
            WrongHeader: $"{path} is not a text-to-image model of this course (wrong header). Pass the file 'train-text2img' wrote.",
            Damaged: $"{path} is damaged or truncated (its SHA-256 check failed). Use an earlier copy, or train it again. {HowToMake(path)}"));
        TextToImageInfo info;
        byte[] unetBytes, encoderBytes, aeBytes;
        try
        {
            info = JsonSerializer.Deserialize<TextToImageInfo>(HashedFile.ReadBlock(r), Checkpoint.JsonOptions)
                   ?? throw new CheckpointException($"{path}: empty description");
            unetBytes = HashedFile.ReadBlock(r);
            encoderBytes = HashedFile.ReadBlock(r);
            aeBytes = HashedFile.ReadBlock(r);
        }
        catch (Exception e) when (e is not CheckpointException and not OutOfMemoryException)
        {
            throw new CheckpointException($"{path}: the text-to-image file's contents are malformed ({e.Message}).", e);
        }
        if (info.FormatVersion != FormatVersion)
            throw new CheckpointException($"{path} has text-to-image format {info.FormatVersion}; this library reads format {FormatVersion}.");
        try
        {
            if (info.Unet is null || info.TextEncoder is null || info.Autoencoder is null || info.Vocabulary is null)
                throw new ArgumentException("the description lacks a network or the vocabulary");
            info.Validate();
            Platform.MemoryLimit.Check(MemoryBudget.Sampling(new DiffusionModelConfig { Unet = info.Unet.Unet, ImageSize = Math.Max(1, info.LatentSize) }, 1),
                "its U-Net", "it is too large for this machine");
        }
        catch (Exception e) when (e is ArgumentException or NullReferenceException)
        {
            throw new CheckpointException($"{path}: its configuration is inconsistent ({e.Message}).", e);
        }
        var tokenizer = HashedFile.Guard(path, "text-to-image file", () => new WordTokenizer(info.Vocabulary));
        if (!tokenizer.Words.SequenceEqual(info.Vocabulary))
            throw new CheckpointException($"{path}: its vocabulary is not in the tokenizer's (sorted, lower-case) order.");

        TextUnet? unet = null;
        TextEncoder? encoder = null;
        Autoencoder? ae = null;
        try
        {
            unet = new TextUnet(info.Unet);
            Checkpoint.LoadModule(unet, unetBytes, "U-Net");
            encoder = new TextEncoder(info.TextEncoder);
            Checkpoint.LoadModule(encoder, encoderBytes, "text encoder");
            ae = new Autoencoder(info.Autoencoder);
            Checkpoint.LoadModule(ae, aeBytes, "autoencoder");
        }
        catch
        {
            unet?.Dispose();
            encoder?.Dispose();
            ae?.Dispose();
            throw;
        }
        if (device is not null)
        {
            unet.to(device);
            encoder.to(device);
            ae.to(device);
        }
        unet.eval();
        encoder.eval();
        ae.eval();
        return new TextToImageModel { Unet = unet, Encoder = encoder, Autoencoder = ae, Tokenizer = tokenizer, Info = info };
    }
}
