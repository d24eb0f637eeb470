using System.Text.Json;
using Diffusion.Training;

namespace Diffusion.TextToImage;

/// <summary>What is stored next to a mini-CLIP's weights: its shape, its vocabulary, the caption terciles, how it was trained.</summary>
public sealed record MiniClipInfo
{
    public required TextEncoderConfig Config { get; init; }
    /// <summary>The tokenizer's words in id order (id = <see cref="WordTokenizer.FirstWord"/> + position).</summary>
    public required string[] Vocabulary { get; init; }
    /// <summary>The training set's per-class terciles: the same words mean the same thing when generated pictures are judged.</summary>
    public required CaptionThresholds Thresholds { get; init; }
    public int Steps { get; init; }
    public int BatchSize { get; init; }
    public double LearningRate { get; init; }
    public int Seed { get; init; }
    public double TrainingSeconds { get; init; }
    /// <summary>Mean contrastive loss over the last 50 steps.</summary>
    public double RecentLoss { get; init; } = double.NaN;
    /// <summary>τ = 1/e^s at the end of training (CLIP starts at 0.07).</summary>
    public double Temperature { get; init; }
    /// <summary>Zero-shot accuracy on the t10k pictures with "a photo of a {class}" (null: not measured).</summary>
    public double? ZeroShotAccuracy { get; init; }
    /// <summary>Attribute retrieval on t10k: picks its own word of each pair ("dark" vs "light" …), chance 50 %.</summary>
    public AttributeRetrieval[] AttributeRetrieval { get; init; } = [];
    /// <summary>Image channels of the image encoder (those of <see cref="Data"/>).</summary>
    public int Channels { get; init; } = 1;
    public string Data { get; init; } = "";
    public string Command { get; init; } = "";
    public DateTime SavedUtc { get; init; } = DateTime.UtcNow;
}

/// <summary>
/// Single-file mini-CLIP: "MINICLIP", format version, JSON <see cref="MiniClipInfo"/> (with the vocabulary), TorchSharp
/// weights, SHA-256 of all before it; written atomically (temp file + rename) like the diffusion checkpoints.
/// </summary>
public static class MiniClipFile
{
    public const int FormatVersion = 1;
    static readonly byte[] Magic = "MINICLIP"u8.ToArray();

    /// <summary>The file the course will ship (data/checkpoints/).</summary>
    public const string ShippedFileName = "fashion-mnist-mini-clip.bin";

    public static void Save(string path, MiniClip model, MiniClipInfo info)
    {
        if (info.Vocabulary.Length + WordTokenizer.FirstWord != info.Config.VocabularySize)
            throw new ArgumentException($"{info.Vocabulary.Length} words + {WordTokenizer.FirstWord} special ids do not make the encoder's {info.Config.VocabularySize} ids");
        HashedFile.Write(path, Magic, w =>
        {
            w.Write(FormatVersion);
            HashedFile.WriteJson(w, info, Checkpoint.JsonOptions);
            HashedFile.WriteBlock(w, Checkpoint.ModuleBytes(model));
        });
    }

    /// <summary>Only the readable part, after verifying the whole file.</summary>
    public static MiniClipInfo ReadInfo(string path) => Parse(path).Info;

    /// <summary>Loads and verifies the file, builds the model (eval mode) and its tokenizer.</summary>
    public static (MiniClip Model, WordTokenizer Tokenizer, MiniClipInfo Info) Load(string path, Device? device = null)
    {
        var (info, weights) = Parse(path);
        var tokenizer = HashedFile.Guard(path, "mini-CLIP file", () =>
        {
            info.Config.Validate();                                       // bounds before anything is built
            return new WordTokenizer(info.Vocabulary);
        });
        if (!tokenizer.Words.SequenceEqual(info.Vocabulary) || tokenizer.Count != info.Config.VocabularySize)
            throw new CheckpointException($"{path}: its vocabulary ({info.Vocabulary.Length} words) does not give the text encoder's {info.Config.VocabularySize} token ids in order.");
        MiniClip model;
        try { model = new MiniClip(info.Config, info.Channels); }
        catch (ArgumentException e) { throw new CheckpointException($"{path}: its text-encoder configuration is invalid ({e.Message}).", e); }
        try
        {
            Checkpoint.LoadModule(model, weights, "mini-CLIP");
        }
        catch
        {
            model.Dispose();
            throw;
        }
        if (device is not null) model.to(device);
        model.eval();
        return (model, tokenizer, info);
    }

    static (MiniClipInfo Info, byte[] Weights) Parse(string path)
    {
        using var r = HashedFile.Open(path, Magic, new FileMessages(
            Folder: $"{path} is a folder: pass the mini-CLIP file itself (train-clip --out FILE writes one).",
            Missing: $"mini-CLIP file {path} not found. Make it with the CLI's 'train-clip --out {path}'.",
            WrongHeader: $"{path} is not a mini-CLIP file of this course (wrong header). Pass the file 'train-clip' wrote.",
            Damaged: $"{path} is damaged or truncated (its SHA-256 check failed). Use an earlier copy, or train it again with 'train-clip'."), minimumBody: 4);
        try
        {
            int version = r.ReadInt32();
            if (version != FormatVersion)
                throw new CheckpointException($"{path} has mini-CLIP format {version}; this library reads format {FormatVersion}.");
            var info = JsonSerializer.Deserialize<MiniClipInfo>(HashedFile.ReadBytes(r, r.ReadInt32()), Checkpoint.JsonOptions)
                       ?? throw new CheckpointException($"{path}: empty description");
            if (info.Config is null || info.Vocabulary is null || info.Thresholds is null) throw new InvalidDataException("the description lacks Config, Vocabulary or Thresholds");
            var weights = HashedFile.ReadBlock(r);
            return (info, weights);
        }
        catch (Exception e) when (e is not CheckpointException and not OutOfMemoryException)
        {
            throw new CheckpointException($"{path}: the mini-CLIP file's contents are malformed ({e.Message}).", e);
        }
    }
}
