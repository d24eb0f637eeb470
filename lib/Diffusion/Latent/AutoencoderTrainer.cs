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
public sealed class AutoencoderTrainer : StepTrainer<AutoencoderProgress>
{
    public Autoencoder Model { get; }
    public ImageDataset Data { get; }
    /// <summary>Parameters of the autoencoder.</summary>
    public override long ParameterCount => Model.ParameterCount();

    public AutoencoderTrainer(AutoencoderConfig config, TrainingOptions options, ImageDataset data, Device? device = null)
        : base(options, device, followThreads: false)
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
        Data = data;
        manual_seed(options.Seed);
        Model = new Autoencoder(config);
        Model.to(Device);
        Model.train();
        Begin(Model.parameters(), (int)data.Count);
    }

    /// <summary>One optimiser step; returns the loss.</summary>
    public override double TrainStep()
    {
        StartClock();
        double loss, squaredError, kl, pixelMse;
        using (var scope = NewDisposeScope())
        {
            var indices = torch.tensor(Order.Next());
            var x = Data.ModelInputs(indices);
            if (Options.RandomFlip) x = Transforms.RandomHorizontalFlip(x, Generator);
            x = x.to(Device);       // the trainer's device, not the process default
            var terms = Model.ComputeLoss(x, Generator);
            loss = Optimize(terms.Loss, Options.LearningRateAt(Step),
                v => $"the autoencoder loss became {v} at step {Step + 1}; lower the learning rate.");
            (squaredError, kl, pixelMse) = (terms.SquaredError, terms.Kl, terms.PixelMse);
        }
        return Record(loss, (step, elapsed) => new AutoencoderProgress(step, Options.Steps, loss, squaredError, kl, pixelMse, elapsed));
    }

    /// <summary>Training done (<see cref="StepTrainer{T}.Train"/>): the model goes to eval mode.</summary>
    protected override void Trained() => Model.eval();

    /// <summary>Disposes the optimiser, the generator and <see cref="Model"/>: keep the trainer as long as the model is used.</summary>
    public override void Dispose()
    {
        base.Dispose();
        Model.Dispose();
    }
}
