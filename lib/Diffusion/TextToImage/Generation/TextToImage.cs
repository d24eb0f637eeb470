using System.Text.Json;
using System.Text.Json.Serialization;
using Diffusion.Flow;
using Diffusion.Forward;
using Diffusion.Latent;
using Diffusion.Model.Transformer;
using Diffusion.Platform;
using Diffusion.Sampling;
using Diffusion.Training;

namespace Diffusion.TextToImage;

/// <summary>The denoising network of a text-to-image model, and with it its training objective and samplers.</summary>
public enum TextToImageKind
{
    /// <summary>The miniature Stable Diffusion 1: a latent U-Net with cross-attention, DDPM's objective, DDPM/DDIM/DPM-Solver++.</summary>
    Sd1,
    /// <summary>The miniature Stable Diffusion 3: an MMDiT (<see cref="MiniSd3"/>), rectified flow, Euler/Heun on the flow ODE.</summary>
    Sd3,
}

/// <summary>
/// Everything needed to rebuild a text-to-image model and sample from it. <see cref="Kind"/> says which network the file
/// holds: a mini SD1 has <see cref="Unet"/> (and the DDPM fields <see cref="Schedule"/>, <see cref="Timesteps"/>,
/// <see cref="Prediction"/>), a mini SD3 has <see cref="Sd3"/> and <see cref="FlowTimes"/>. The mini SD3's fields are
/// left out of a mini SD1's description, so it reads and writes as before they existed.
/// </summary>
public sealed record TextToImageInfo
{
    public int FormatVersion { get; init; } = TextToImageFile.FormatVersion;
    /// <summary>Which network: absent in a file means the mini SD1.</summary>
    [JsonConverter(typeof(JsonStringEnumConverter<TextToImageKind>))]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public TextToImageKind Kind { get; init; }
    /// <summary>The mini SD1's U-Net (null for a mini SD3).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public TextUnetConfig? Unet { get; init; }
    /// <summary>The mini SD3's MMDiT (null for a mini SD1).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public MiniSd3Config? Sd3 { get; init; }
    /// <summary>How the mini SD3's training drew rectified flow's t (null for a mini SD1).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public FlowTimeDistribution? FlowTimes { get; init; }
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

    /// <summary>The diffusion side of a mini SD1 as the samplers know it (schedule, T, prediction, the U-Net's base configuration, latent size).</summary>
    [JsonIgnore]
    public DiffusionModelConfig Diffusion => new()
    {
        Unet = (Unet ?? throw new InvalidOperationException("a mini SD3 is a rectified flow: it has no DDPM schedule (draw with a flow sampler)")).Unet, Schedule = Schedule, Timesteps = Timesteps, Prediction = Prediction, ImageSize = LatentSize,
        Data = "scaled autoencoder latents of Fashion-MNIST, conditioned on captions",
    };

    /// <summary>"the mini SD1" / "the mini SD3", for messages.</summary>
    [JsonIgnore]
    public string KindName => Kind == TextToImageKind.Sd3 ? "the mini SD3" : "the mini SD1";

    public void Validate()
    {
        TextEncoder.Validate();
        Autoencoder.Validate();
        if (Vocabulary.Length + WordTokenizer.FirstWord != TextEncoder.VocabularySize)
            throw new ArgumentException($"{Vocabulary.Length} words + {WordTokenizer.FirstWord} special ids do not make the text encoder's {TextEncoder.VocabularySize} ids");
        if (Kind == TextToImageKind.Sd3)
        {
            ValidateSd3();
            return;
        }
        if (Kind != TextToImageKind.Sd1) throw new ArgumentException($"unknown text-to-image model kind {Kind}");
        if (Unet is null || Sd3 is not null) throw new ArgumentException("a mini SD1 has a U-Net and no MMDiT");
        Unet.Validate();
        Diffusion.Validate();                                             // the bounds on T and the latent size, as for every model
        if (Unet.ContextDim != TextEncoder.Dim)
            throw new ArgumentException($"the U-Net reads text features of width {Unet.ContextDim}, the text encoder writes {TextEncoder.Dim}");
        if (Unet.Unet.Channels != Autoencoder.LatentChannels || LatentSize != Autoencoder.LatentSize)
            throw new ArgumentException($"the U-Net denoises {Unet.Unet.Channels}×{LatentSize}×{LatentSize} latents, the autoencoder makes {Autoencoder.LatentChannels}×{Autoencoder.LatentSize}×{Autoencoder.LatentSize}");
        Unet.Unet.ValidateImageSize(LatentSize);
    }

    void ValidateSd3()
    {
        if (Sd3 is null || Unet is not null) throw new ArgumentException("a mini SD3 has an MMDiT and no U-Net");
        Sd3.Validate();
        if (Sd3.ContextDim != TextEncoder.Dim || Sd3.PooledDim != TextEncoder.EmbedDim || Sd3.ContextLength != TextEncoder.ContextLength)
            throw new ArgumentException($"the MMDiT reads {Sd3.ContextLength} text tokens of width {Sd3.ContextDim} and a pooled vector of width {Sd3.PooledDim}; " +
                                        $"the text encoder writes {TextEncoder.ContextLength} tokens of width {TextEncoder.Dim} and a pooled vector of width {TextEncoder.EmbedDim}");
        if (Sd3.Channels != Autoencoder.LatentChannels || Sd3.ImageSize != LatentSize || LatentSize != Autoencoder.LatentSize)
            throw new ArgumentException($"the MMDiT denoises {Sd3.Channels}×{Sd3.ImageSize}×{Sd3.ImageSize} latents, the autoencoder makes {Autoencoder.LatentChannels}×{Autoencoder.LatentSize}×{Autoencoder.LatentSize}");
        if (Sd3.ParameterCountFormula() > MaxSd3Parameters)
            throw new ArgumentException($"the MMDiT has {Sd3.ParameterCountFormula():N0} parameters, more than this library loads ({MaxSd3Parameters:N0})");
    }

    /// <summary>The largest mini SD3 the library builds (400 MB of float32 weights): a bound against a damaged description.</summary>
    public const long MaxSd3Parameters = 100_000_000;
}

/// <summary>
/// The three parts of a miniature Stable Diffusion, loaded together: the frozen text encoder (of the mini-CLIP) with its
/// tokenizer, the denoising network — the text-conditioned latent U-Net of the mini SD1 or the MMDiT of the mini SD3
/// (<see cref="TextToImageInfo.Kind"/>) — and the autoencoder that turns latents into pictures. Owns all three.
/// </summary>
public sealed class TextToImageModel : IDisposable
{
    readonly TextUnet? unet;

    /// <summary>The mini SD1's U-Net (throws for a mini SD3).</summary>
    public TextUnet Unet
    {
        get => unet ?? throw new InvalidOperationException("a mini SD3 has no U-Net (its network is Sd3)");
        init => unet = value;
    }
    /// <summary>The mini SD3's MMDiT (null for a mini SD1).</summary>
    public MiniSd3? Sd3 { get; init; }
    public required TextEncoder Encoder { get; init; }
    public required Autoencoder Autoencoder { get; init; }
    public required WordTokenizer Tokenizer { get; init; }
    public required TextToImageInfo Info { get; init; }

    /// <summary>The denoising network, whichever it is.</summary>
    public nn.Module Network => (nn.Module?)Sd3 ?? Unet;

    /// <summary>The prompt as the model will read it (unknown words left out, cut to the context); throws if it has no known word.</summary>
    public CheckedPrompt CheckPrompt(string prompt) => PromptCheck.Check(Tokenizer, prompt, Encoder.Config.ContextLength);

    /// <summary>
    /// <paramref name="perPrompt"/> pictures for each of <paramref name="prompts"/> (already checked; "" = unconditional),
    /// prompt after prompt, under classifier-free guidance of weight <paramref name="w"/>, then decoded. The mini SD1 draws
    /// its latents with a sampler of the DDPM family (x̂_0 kept within the latents' range, <see cref="LatentSpace.ClipStart"/>),
    /// the mini SD3 integrates the flow ODE from noise at t = 1 to t = 0 with Euler or Heun on the guided velocity.
    /// Returns images [P·perPrompt, C, 28, 28] in [−1, 1] on the CPU.
    /// </summary>
    public Tensor Generate(IReadOnlyList<string> prompts, int perPrompt, double w, TextToImageSampler sampler, int seed, Device? device = null,
        IProgress<SamplingProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(sampler);
        if (prompts.Count < 1 || perPrompt < 1) throw new ArgumentException("give at least one prompt and one picture per prompt");
        if (sampler.IsFlow != (Sd3 is not null))
            throw new ArgumentException(Sd3 is not null
                ? $"{Info.KindName} is a rectified flow: draw it with a flow solver ({string.Join(" or ", TextToImageSampler.FlowKinds)}), not {sampler}"
                : $"{Info.KindName} is a DDPM model: draw it with {SamplerSpec.Usages}, not {sampler}");
        ClassifierFreeGuidance.CheckWeight(w);
        device ??= Compute.Device;
        Network.eval();
        Autoencoder.eval();
        using var generator = new Generator((ulong)seed);
        // Image b shows prompt b / perPrompt; the empty prompt is the table's own ∅ row.
        var rows = Enumerable.Range(0, prompts.Count * perPrompt).Select(b => prompts[b / perPrompt].Length == 0 ? -1L : b / perPrompt).ToArray();
        Tensor latents;
        if (Sd3 is { } sd3)
        {
            using var text = MiniSd3Prompts.Encode(Encoder, Tokenizer, prompts, device);
            using var index = tensor(rows.Select(r => r < 0 ? text.EmptyIndex : r).ToArray());
            var flow = sampler.CreateFlowSampler();
            long[] shape = [index.shape[0], sd3.Config.Channels, sd3.Config.ImageSize, sd3.Config.ImageSize];
            latents = flow.Sample(text.Guided(sd3, index, w), shape, generator, device, progress, cancel);
        }
        else
        {
            var config = Info.Diffusion;
            var spec = sampler.Diffusion!.Validate(config.Timesteps, config.Variance == VarianceType.Learned);
            using var schedule = config.CreateSchedule();
            using var ddpm = spec.Create(schedule, config.Prediction);
            using var text = TextCondition.Encode(Encoder, Tokenizer, prompts, device);
            using var index = tensor(rows.Select(r => r < 0 ? text.EmptyIndex : r).ToArray());
            DenoisingModel model = text.Guided(Unet, index, w);
            if (config.Prediction == Prediction.Epsilon) model = LatentSpace.ClipStart(model, schedule);
            long[] shape = [index.shape[0], config.Unet.Channels, config.ImageSize, config.ImageSize];
            using var result = ddpm.Sample(model, shape, generator, device, 0, progress, cancel);
            latents = result.Samples.clone();
        }
        using (latents)
        {
            using var scope = NewDisposeScope();
            return LatentSpace.Decode(Autoencoder, latents, Info.ScalingFactor).cpu().clone().MoveToOuterDisposeScope();
        }
    }

    public void Dispose()
    {
        unet?.Dispose();
        Sd3?.Dispose();
        Encoder.Dispose();
        Autoencoder.Dispose();
    }
}

/// <summary>
/// Single-file text-to-image model: "TXT2IMG1", JSON <see cref="TextToImageInfo"/>, then the weights of the denoising
/// network (its EMA: the mini SD1's U-Net or the mini SD3's MMDiT, as <see cref="TextToImageInfo.Kind"/> says), the text
/// encoder and the autoencoder, then a SHA-256 of all before it; written atomically. One file holds the whole pipeline, as
/// a Stable Diffusion checkpoint holds its denoiser, text encoder and VAE.
/// </summary>
public static class TextToImageFile
{
    public const int FormatVersion = 1;
    static readonly byte[] Magic = "TXT2IMG1"u8.ToArray();

    /// <summary>The mini SD1 the course ships in data/checkpoints/ (data/README.md: command, time, loss).</summary>
    public const string ShippedFileName = "fashion-mnist-text2img.ckpt";
    /// <summary>The mini SD3 the course ships in data/checkpoints/.</summary>
    public const string ShippedSd3FileName = "fashion-mnist-sd3.ckpt";

    /// <summary>The shipped file of <paramref name="kind"/>.</summary>
    public static string ShippedFile(TextToImageKind kind) => kind == TextToImageKind.Sd3 ? ShippedSd3FileName : ShippedFileName;

    /// <summary>How to make a model: said whenever one is missing.</summary>
    public static string HowToMake(string path) =>
        $"Make one in two steps: 'train-clip --out clip.bin' (the text encoder), then 'train-text2img --clip clip.bin --out {path}'.";

    /// <summary>Writes a mini SD1 (<paramref name="info"/>'s kind must say so).</summary>
    public static void Save(string path, TextUnet unet, TextEncoder encoder, Autoencoder autoencoder, TextToImageInfo info) =>
        Save(path, (nn.Module)unet, encoder, autoencoder, info, TextToImageKind.Sd1);

    /// <summary>Writes a mini SD3 (<paramref name="info"/>'s kind must say so).</summary>
    public static void Save(string path, MiniSd3 sd3, TextEncoder encoder, Autoencoder autoencoder, TextToImageInfo info) =>
        Save(path, (nn.Module)sd3, encoder, autoencoder, info, TextToImageKind.Sd3);

    static void Save(string path, nn.Module unet, TextEncoder encoder, Autoencoder autoencoder, TextToImageInfo info, TextToImageKind kind)
    {
        if (info.Kind != kind) throw new ArgumentException($"the description says {info.KindName}, the network is the other kind");
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
            Missing: $"no text-to-image model at {path} (the course ships the mini SD1 as data/checkpoints/{ShippedFileName} and the mini SD3 as data/checkpoints/{ShippedSd3FileName}). {HowToMake(path)}",
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
            if (info.TextEncoder is null || info.Autoencoder is null || info.Vocabulary is null)
                throw new ArgumentException("the description lacks a network or the vocabulary");
            info.Validate();
            if (info.Unet is { } unetConfig)
                Platform.MemoryLimit.Check(MemoryBudget.Sampling(new DiffusionModelConfig { Unet = unetConfig.Unet, ImageSize = Math.Max(1, info.LatentSize) }, 1),
                    "its U-Net", "it is too large for this machine");
        }
        catch (Exception e) when (e is ArgumentException or NullReferenceException)
        {
            throw new CheckpointException($"{path}: its configuration is inconsistent ({e.Message}).", e);
        }
        var tokenizer = HashedFile.Guard(path, "text-to-image file", () => new WordTokenizer(info.Vocabulary));
        if (!tokenizer.Words.SequenceEqual(info.Vocabulary))
            throw new CheckpointException($"{path}: its vocabulary is not in the tokenizer's (sorted, lower-case) order.");

        nn.Module? unet = null;
        TextEncoder? encoder = null;
        Autoencoder? ae = null;
        try
        {
            if (info.Sd3 is { } sd3Config)
            {
                unet = new MiniSd3(sd3Config);
                Checkpoint.LoadModule(unet, unetBytes, "MMDiT");
            }
            else
            {
                unet = new TextUnet(info.Unet!);
                Checkpoint.LoadModule(unet, unetBytes, "U-Net");
            }
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
        return unet is MiniSd3 mmdit
            ? new TextToImageModel { Sd3 = mmdit, Encoder = encoder, Autoencoder = ae, Tokenizer = tokenizer, Info = info }
            : new TextToImageModel { Unet = (TextUnet)unet, Encoder = encoder, Autoencoder = ae, Tokenizer = tokenizer, Info = info };
    }
}
