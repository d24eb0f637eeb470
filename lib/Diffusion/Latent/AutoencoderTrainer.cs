using System.Diagnostics;
using Diffusion.Data;
using Diffusion.Platform;
using Diffusion.Training;

namespace Diffusion.Latent;

/// <summary>One autoencoder step's report: the loss and its two terms (per image), and the per-pixel squared error.</summary>
public readonly record struct AutoencoderProgress(int Step, int TotalSteps, double Loss, double SquaredError, double Kl,
    double PixelMse, TimeSpan Elapsed);

/// <summary>
/// Trains an <see cref="Autoencoder"/> on images: AdamW on ‖x − D(z)‖² + β·KL, z ~ q(z|x), with the learning-rate plan,
/// gradient clipping, seed and random flips of <see cref="TrainingOptions"/> (its diffusion-only fields are ignored).
/// One dispose scope per step; the same seed gives the same weights.
/// </summary>
public sealed class AutoencoderTrainer : IDisposable
{
    public Autoencoder Model { get; }
    public TrainingOptions Options { get; }
    public ImageDataset Data { get; }
    public int Step { get; private set; }
    public List<AutoencoderProgress> History { get; } = new();
    public event Action<AutoencoderProgress>? Progress;

    readonly AdamW optimizer;
    readonly Parameter[] parameters;
    readonly Generator generator;
    readonly BatchSampler sampler;
    readonly Stopwatch clock = new();

    public AutoencoderTrainer(AutoencoderConfig config, TrainingOptions options, ImageDataset data, Device? device = null)
    {
        TorchNative.EnsureLoaded();
        config.Validate();
        options.Validate();
        if (data.IsModelSpace) throw new ArgumentException("the autoencoder trains on pixel images (uint8), not on float data");
        if (data.Channels != config.Channels || data.Height != config.ImageSize || data.Width != config.ImageSize)
            throw new ArgumentException(
                $"the autoencoder expects {config.ImageSize}×{config.ImageSize}×{config.Channels} images, the data is {data.Width}×{data.Height}×{data.Channels}");
        if (data.Count < options.BatchSize)
            throw new ArgumentException($"the dataset has {data.Count} images, fewer than the batch size {options.BatchSize}");
        Options = options;
        Data = data;
        manual_seed(options.Seed);
        Model = new Autoencoder(config);
        Model.to(device ?? Compute.Device);
        Model.train();
        parameters = Model.parameters().ToArray();
        optimizer = optim.AdamW(parameters, lr: options.LearningRate, weight_decay: options.WeightDecay);
        generator = new Generator((ulong)options.Seed);
        sampler = new BatchSampler((int)data.Count, options.BatchSize, options.Seed);
    }

    /// <summary>One optimiser step; returns the loss.</summary>
    public double TrainStep()
    {
        clock.Start();
        AutoencoderProgress report;
        using (var scope = NewDisposeScope())
        {
            var indices = torch.tensor(sampler.Next());
            var x = Data.ModelInputs(indices);
            if (Options.RandomFlip) x = Transforms.RandomHorizontalFlip(x, generator);
            x = x.to(Compute.Device);
            var terms = Model.ComputeLoss(x, generator);
            double loss = terms.Loss.item<float>();
            if (!double.IsFinite(loss))
                throw new TrainingDivergedException($"the autoencoder loss became {loss} at step {Step + 1}; lower the learning rate.");
            optimizer.zero_grad();
            terms.Loss.backward();
            if (Options.GradientClipNorm > 0) nn.utils.clip_grad_norm_(parameters, Options.GradientClipNorm);
            foreach (var group in optimizer.ParamGroups) group.LearningRate = Options.LearningRateAt(Step);
            optimizer.step();
            Step++;
            report = new AutoencoderProgress(Step, Options.Steps, loss, terms.SquaredError, terms.Kl, terms.PixelMse, clock.Elapsed);
        }
        clock.Stop();
        report = report with { Elapsed = clock.Elapsed };
        History.Add(report);
        Progress?.Invoke(report);
        return report.Loss;
    }

    /// <summary>Trains until <see cref="TrainingOptions.Steps"/>.</summary>
    public void Train(CancellationToken cancel = default)
    {
        while (Step < Options.Steps)
        {
            cancel.ThrowIfCancellationRequested();
            TrainStep();
        }
        Model.eval();
    }

    public TimeSpan Elapsed => clock.Elapsed;

    /// <summary>Disposes the optimiser, the generator and <see cref="Model"/>: keep the trainer as long as the model is used.</summary>
    public void Dispose()
    {
        optimizer.Dispose();
        generator.Dispose();
        Model.Dispose();
    }
}
