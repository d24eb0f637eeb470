using System.Diagnostics;
using Diffusion.Data;

namespace Diffusion.Evaluation;

/// <summary>Settings for training the FCD classifier.</summary>
public sealed record ClassifierTrainingOptions
{
    public int Epochs { get; init; } = 6;
    public int BatchSize { get; init; } = 128;
    /// <summary>Adam's peak learning rate; it decays to 0 along a cosine over the run.</summary>
    public double LearningRate { get; init; } = 2e-3;
    public int Seed { get; init; }
    public int FeatureDim { get; init; } = FashionClassifier.DefaultFeatureDim;
    /// <summary>Random left–right flips of training images (garments are roughly mirror-symmetric).</summary>
    public bool Flip { get; init; } = true;
}

/// <summary>Progress of classifier training: step of total, the current epoch and the batch loss.</summary>
public readonly record struct ClassifierProgress(int Step, int Total, int Epoch, double Loss);

/// <summary>Trains <see cref="FashionClassifier"/> with cross-entropy and Adam (cosine learning-rate decay); one dispose scope per step.</summary>
public static class ClassifierTraining
{
    public static FashionClassifier Train(ImageDataset train, ClassifierTrainingOptions options,
        IProgress<ClassifierProgress>? progress = null, CancellationToken cancel = default)
    {
        if (train.Labels is null) throw new ArgumentException("the classifier needs labelled training images");
        if (train.Channels != 1 || train.Height != 28 || train.Width != 28)
            throw new ArgumentException($"the classifier is built for 28×28 grayscale images, got {train.Channels}×{train.Height}×{train.Width}");
        manual_seed(options.Seed);
        var model = new FashionClassifier(options.FeatureDim);
        model.train();
        using var optimizer = optim.Adam(model.parameters(), options.LearningRate);
        using var generator = new Generator((ulong)options.Seed);
        var sampler = new BatchOrder((int)train.Count, options.BatchSize, options.Seed);
        int total = options.Epochs * sampler.BatchesPerEpoch;
        var schedule = optim.lr_scheduler.CosineAnnealingLR(optimizer, total);
        var sw = Stopwatch.StartNew();
        for (int step = 1; step <= total; step++)
        {
            cancel.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var index = torch.tensor(sampler.Next());
            var x = Transforms.ToSignedUnit(train.Images.index_select(0, index));
            if (options.Flip) x = Transforms.RandomHorizontalFlip(x, generator);
            var y = train.Labels.index_select(0, index).to(ScalarType.Int64);
            optimizer.zero_grad();
            var loss = nn.functional.cross_entropy(model.forward(x), y);
            loss.backward();
            optimizer.step();
            schedule.step();
            if (progress is not null && (step % 20 == 0 || step == total))
                progress.Report(new ClassifierProgress(step, total, (step - 1) / sampler.BatchesPerEpoch + 1, loss.item<float>()));
        }
        model.eval();
        model.Info = new ClassifierInfo
        {
            FeatureDim = options.FeatureDim, Epochs = options.Epochs, BatchSize = options.BatchSize,
            LearningRate = options.LearningRate, Seed = options.Seed, TrainingSeconds = sw.Elapsed.TotalSeconds,
        };
        return model;
    }

    /// <summary>Fraction of <paramref name="test"/> images whose predicted label is right.</summary>
    public static double Accuracy(FashionClassifier model, ImageDataset test)
    {
        if (test.Labels is null) throw new ArgumentException("accuracy needs labelled images");
        using var scope = NewDisposeScope();
        var predicted = model.Predict(Transforms.ToSignedUnit(test.Images));
        return predicted.eq(test.Labels.to(ScalarType.Int64)).to(ScalarType.Float64).mean().item<double>();
    }
}
