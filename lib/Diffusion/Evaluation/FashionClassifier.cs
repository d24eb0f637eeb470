using System.Text.Json;

using static TorchSharp.torch.nn;

namespace Diffusion.Evaluation;

/// <summary>What a classifier file says about itself: how it was trained and how well it does.</summary>
public sealed record ClassifierInfo
{
    public int FeatureDim { get; init; } = FashionClassifier.DefaultFeatureDim;
    public int NumClasses { get; init; } = 10;
    public int Epochs { get; init; }
    public int BatchSize { get; init; }
    public double LearningRate { get; init; }
    public int Seed { get; init; }
    /// <summary>Accuracy on the 10 000 t10k test images (never seen in training).</summary>
    public double TestAccuracy { get; init; }
    public double TrainingSeconds { get; init; }
    public string Command { get; init; } = "";
    public DateTime SavedUtc { get; init; } = DateTime.UtcNow;
}

/// <summary>
/// A small CNN for 28×28 grayscale Fashion-MNIST — the course's stand-in for the Inception network of FID
/// (Heusel et al. 2017), whose weights cannot be downloaded here:
/// conv 3×3 (1→32) · ReLU · max-pool → conv 3×3 (32→64) · ReLU · max-pool → linear 3136→F · ReLU (the features φ(x))
/// → linear F→10 (the logits). Input in the model's data space [−1, 1], shape [B, 1, 28, 28].
/// </summary>
public sealed class FashionClassifier : Module<Tensor, Tensor>
{
    public const int DefaultFeatureDim = 64;
    public const string ShippedFileName = "fashion-mnist-classifier.bin";
    static readonly byte[] Magic = "FMCLASS1"u8.ToArray();

    readonly SafeConv2d conv1, conv2;
    readonly Linear fc1, fc2;
    readonly Dropout dropout;
    public int FeatureDim { get; }
    public ClassifierInfo Info { get; set; } = new();

    public FashionClassifier(int featureDim = DefaultFeatureDim, int numClasses = 10) : base(nameof(FashionClassifier))
    {
        FeatureDim = featureDim;
        conv1 = new SafeConv2d(1, 32, 3, padding: 1);
        conv2 = new SafeConv2d(32, 64, 3, padding: 1);
        fc1 = nn.Linear(64 * 7 * 7, featureDim);
        fc2 = nn.Linear(featureDim, numClasses);
        dropout = nn.Dropout(0.3);
        RegisterComponents();
    }

    /// <summary>φ(x): the penultimate layer [B, F], the features the Fréchet distance compares.</summary>
    public Tensor Features(Tensor x)
    {
        if (x.dim() != 4 || x.shape[1] != 1 || x.shape[2] != 28 || x.shape[3] != 28)
            throw new ArgumentException(
                $"the Fashion-MNIST classifier takes images of shape [B, 1, 28, 28] in [−1, 1]; got [{string.Join(", ", x.shape)}]. " +
                "Sample 28×28 grayscale images (the course's default) to measure them with it.");
        using var scope = NewDisposeScope();
        var h = functional.max_pool2d(functional.relu(conv1.forward(x)), 2);
        h = functional.max_pool2d(functional.relu(conv2.forward(h)), 2);
        return functional.relu(fc1.forward(h.flatten(1))).MoveToOuterDisposeScope();
    }

    /// <summary>The class logits [B, 10].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return fc2.forward(dropout.forward(Features(x))).MoveToOuterDisposeScope();
    }

    /// <summary>Predicted labels [B] (int64), in batches, without gradients.</summary>
    public Tensor Predict(Tensor x, int batchSize = 500) => InBatches(x, batchSize, b => forward(b).argmax(1));

    /// <summary>φ(x) for many images, in batches, without gradients; float64 [N, F] on the CPU.</summary>
    public Tensor FeaturesOf(Tensor x, int batchSize = 500) => InBatches(x, batchSize, b => Features(b).to(ScalarType.Float64).cpu());

    /// <summary>Applies <paramref name="f"/> to slices of <paramref name="x"/> in evaluation mode without gradients, and concatenates.</summary>
    Tensor InBatches(Tensor x, int batchSize, Func<Tensor, Tensor> f)
    {
        using var _ = no_grad();
        bool wasTraining = training;
        eval();
        var parts = new List<Tensor>();
        try
        {
            for (long i = 0; i < x.shape[0]; i += batchSize)
            {
                using var scope = NewDisposeScope();
                parts.Add(f(x.narrow(0, i, Math.Min(batchSize, x.shape[0] - i))).MoveToOuterDisposeScope());
            }
            return cat(parts, 0);
        }
        finally
        {
            if (wasTraining) train();
            foreach (var p in parts) p.Dispose();
        }
    }

    /// <summary>Writes the weights and <see cref="Info"/> atomically, with a SHA-256 of the whole file at its end.</summary>
    public void Save(string path)
    {
        HashedFile.Write(path, Magic, w =>
        {
            HashedFile.WriteJson(w, Info with { FeatureDim = FeatureDim });
            save(w);
        });
    }

    /// <summary>Reads a classifier written by <see cref="Save"/>; one clear error if the file is not one or is damaged.</summary>
    public static FashionClassifier Load(string path)
    {
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"classifier {path} not found. The course ships it as data/classifier/{ShippedFileName}; " +
                "make a new one with: dotnet run -c Release --project lib/Diffusion.Cli -- train-classifier", path);
        using var r = HashedFile.Open(InputFile.ReadAllBytes(path, InputFile.MaxModelFileBytes, "classifier file", m => new InvalidDataException(m)), Magic,
            () => new InvalidDataException($"{path} is not a Fashion-MNIST classifier file of this course (wrong header)."),
            () => new InvalidDataException(
                $"{path} is damaged or truncated (its SHA-256 check failed). Restore it with git checkout, or train a new one with train-classifier."),
            minimumBody: 4);
        var info = HashedFile.Guard(path, "classifier file", () =>
        {
            var info = JsonSerializer.Deserialize<ClassifierInfo>(HashedFile.ReadJson(r))
                       ?? throw new InvalidDataException($"{path}: empty classifier description");
            if (info.FeatureDim is < 1 or > 4096 || info.NumClasses is < 1 or > 1000)
                throw new InvalidDataException($"FeatureDim must be 1..4096 and NumClasses 1..1000, got {info.FeatureDim} and {info.NumClasses}");
            return info;
        });
        var model = new FashionClassifier(info.FeatureDim, info.NumClasses) { Info = info };
        try { HashedFile.Guard(path, "classifier file", () => model.load(r, strict: true)); }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return model;
    }

    /// <summary>The classifier shipped in data/classifier/ of the repository that contains <paramref name="start"/> (default: the current folder).</summary>
    public static string ShippedPath(string? start = null)
    {
        var env = Environment.GetEnvironmentVariable("DIFFUSION_DATA_DIR");
        if (!string.IsNullOrEmpty(env)) return Path.Combine(env, "classifier", ShippedFileName);
        foreach (var s in new[] { start ?? Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(s); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "data", "classifier", ShippedFileName);
                if (File.Exists(candidate)) return candidate;
            }
        return Path.Combine(start ?? Directory.GetCurrentDirectory(), "data", "classifier", ShippedFileName);
    }

    public static FashionClassifier LoadShipped(string? start = null) => Load(ShippedPath(start));
}
