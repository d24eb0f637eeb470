using System.Diagnostics;
using System.Globalization;
using Diffusion.Data;
using Diffusion.Forward;
using Diffusion.Platform;

namespace Diffusion.Training;

/// <summary>One optimiser step's report (for a progress bar or a live loss plot).</summary>
public readonly record struct TrainingProgress(int Step, int TotalSteps, double Loss, double LearningRate,
    double ImagesPerSecond, TimeSpan Elapsed, int Epoch);

/// <summary>Thrown when the loss becomes NaN or infinite; nothing is saved after the last good checkpoint.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);

/// <summary>
/// Trains a denoising network (<see cref="IDenoisingNetwork"/>: the <see cref="Unet"/>, or the family the configuration
/// names) on its <see cref="Objective"/>, DDPM's Algorithm 1: repeat { x_0 ~ data; t ~ U{1..T}; ε ~ N(0, I);
/// gradient step on ‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)‖² } — with AdamW, learning-rate warm-up, gradient clipping,
/// an EMA of the weights, and atomic checkpoints that a resumed run continues from exactly. The loop, the optimiser, the
/// generator, the batch order, the clock and the loss window are <see cref="StepTrainer{TProgress}"/>'s.
/// Every step runs inside its own TorchSharp dispose scope, so native memory stays flat.
/// The step's loss is <see cref="TrainingStep"/>; checkpoints and resuming are in Trainer.Persistence.cs; the loss log is <see cref="LossLog"/>.
/// </summary>
public sealed partial class Trainer : StepTrainer<TrainingProgress>
{
    public DiffusionModelConfig Config { get; }
    /// <summary>The network being trained (built by <see cref="DiffusionModelConfig.CreateNetwork"/>).</summary>
    public IDenoisingNetwork Network { get; }
    /// <summary>The moving average of <see cref="Network"/>'s weights (null when EmaDecay = 0).</summary>
    public IDenoisingNetwork? EmaNetwork { get; }
    /// <summary><see cref="Network"/> as the U-Net it is (the course's network; an error for another family).</summary>
    public Unet Model => Network as Unet ?? throw NotAUnet();
    /// <summary><see cref="EmaNetwork"/> as the U-Net it is (null when EmaDecay = 0).</summary>
    public Unet? EmaModel => EmaNetwork is null ? null : EmaNetwork as Unet ?? throw NotAUnet();
    public NoiseSchedule Schedule { get; }
    /// <summary>What each step's loss is (<see cref="DiffusionModelConfig.CreateObjective"/>: DDPM's Algorithm 1 for this configuration).</summary>
    public TrainingObjective Objective { get; }
    public ImageDataset Data { get; }
    /// <summary>Folder for checkpoint.ckpt and loss.csv (null: nothing is written unless asked).</summary>
    public string? RunDirectory { get; }
    public string? CheckpointPath => RunDirectory is null ? null : Path.Combine(RunDirectory, CheckpointFileName);
    public const string CheckpointFileName = "checkpoint.ckpt";
    public const string LossLogFileName = LossLog.FileName;
    /// <summary>(step, loss) of every step of this process's training.</summary>
    public IReadOnlyList<(int Step, double Loss)> LossHistory => History.Select(h => (h.Step, h.Loss)).ToList();
    /// <summary>Parameters of <see cref="Network"/> (frozen ones included).</summary>
    public override long ParameterCount => Network.CountParameters();
    /// <summary>Raised after a checkpoint has been written (its path).</summary>
    public event Action<string>? CheckpointSaved;

    readonly Ema? ema;
    LossLog? lossLog;

    /// <summary>A new run from randomly initialised weights (seeded by <see cref="TrainingOptions.Seed"/>).</summary>
    public Trainer(DiffusionModelConfig config, TrainingOptions options, ImageDataset data, string? runDirectory = null,
        Device? device = null) : base(options, device)
    {
        TorchNative.EnsureLoaded();
        config.Validate();
        options.Validate();
        CheckData(config, options, data);
        Platform.MemoryLimit.Check(MemoryBudget.Training(config, options.BatchSize),
            $"training a {config.NetworkName} of about {MemoryBudget.EstimatedParameters(config) / 1e6:0.#} M parameters at batch {options.BatchSize} on {config.ImageSize}×{config.ImageSize} images",
            "use a smaller --dim, fewer --dim-mults, a smaller --batch-size or --image-size");
        Config = config;
        Data = data;
        RunDirectory = runDirectory;
        Schedule = config.CreateSchedule();
        Objective = config.CreateObjective(Schedule, options);
        try
        {
            // Weights are initialised from the seed: the same seed builds the same network.
            manual_seed(options.Seed);
            Network = config.CreateNetwork();
            if (options.EmaDecay > 0) EmaNetwork = config.CreateNetwork();
            Network.MoveTo(Device);
            EmaNetwork?.MoveTo(Device);
            // Fine-tuning part of the network: the other parameters are frozen (no gradient, not in the optimiser).
            var trainable = Network.named_parameters()
                .Where(p => options.TrainOnly is null || options.TrainOnly.Any(prefix => p.name.StartsWith(prefix, StringComparison.Ordinal))).ToList();
            if (trainable.Count == 0)
                throw new ArgumentException($"no parameter name starts with {string.Join(" or ", options.TrainOnly!)}; top-level modules are: " +
                                            string.Join(", ", Network.named_children().Select(c => c.name)));
            foreach (var (name, p) in Network.named_parameters()) p.requires_grad = trainable.Any(t => t.name == name);
            Begin(trainable.Select(p => p.parameter), (int)data.Count);
            if (EmaNetwork is not null) ema = new Ema(Network.AsModule(), EmaNetwork.AsModule(), options.EmaDecay);
            ema?.CopyFromModel();
            Network.train();
        }
        catch
        {
            Dispose();                       // what was built before the error (e.g. --train-only matching no parameter)
            throw;
        }
    }

    /// <summary>
    /// Starts this (new) run from another network's weights instead of random ones — fine-tuning. Every parameter of the
    /// same name and shape is copied; a learned-variance U-Net started from a fixed-variance one gets the ε half of its
    /// final 1×1 convolution copied and the v half set to zero (v = 0: σ² halfway between β̃ and β in log space).
    /// The EMA starts from the copied weights. Call before the first step.
    /// </summary>
    public void InitializeFrom(IDenoisingNetwork source)
    {
        if (Step != 0) throw new InvalidOperationException("initialise the weights before the first training step");
        WeightTransfer.Copy(source, Network);
        ema?.CopyFromModel();
    }

    static void CheckData(DiffusionModelConfig config, TrainingOptions options, ImageDataset data)
    {
        if (data.Channels != config.Channels)
            throw new ArgumentException(
                $"the data has {data.Channels} channel(s) but the {config.NetworkName} expects {config.Channels}; set the model's channels to match.");
        if (data.Height != config.ImageSize || data.Width != config.ImageSize)
            throw new ArgumentException(
                $"the images are {data.Width}×{data.Height} but the model is configured for {config.ImageSize}×{config.ImageSize}; resize the data (ImageDataset.Resized).");
        if (data.Count < options.BatchSize)
            throw new ArgumentException($"the dataset has {data.Count} images, fewer than the batch size {options.BatchSize}; lower the batch size.");
        if (config.NumClasses > 0)
        {
            if (data.Labels is null)
                throw new ArgumentException("a class-conditional model needs labelled data, but this dataset has no labels.");
            if (data.ClassNames.Count != config.NumClasses)
                throw new ArgumentException($"the data has {data.ClassNames.Count} classes but the model {config.NumClasses}.");
        }
    }

    /// <summary>A run folder's loss log continues from the current step.</summary>
    protected override void Starting()
    {
        if (RunDirectory is not null) lossLog ??= new LossLog(RunDirectory, Step);
    }

    /// <summary>Checkpoints every <see cref="TrainingOptions.CheckpointEvery"/> steps and at the last, if there is a run folder.</summary>
    protected override void Stepped()
    {
        if (RunDirectory is not null && (Step % Options.CheckpointEvery == 0 || Step == Options.Steps))
            SaveCheckpoint();
    }

    protected override void Stopping() => lossLog?.Flush();

    protected override void Recorded(TrainingProgress report) =>
        lossLog?.Write(report.Step, report.Loss, report.LearningRate, report.ImagesPerSecond, report.Elapsed.TotalSeconds);

    /// <summary>
    /// Sets the run's total number of steps while nothing has depended on it yet: during the learning-rate warm-up (its
    /// rates do not depend on the total; the cosine decay after it does) and before the first checkpoint. The run is then
    /// step for step the run started with that total (<c>train --minutes</c> uses this).
    /// </summary>
    public void FixTotalSteps(int steps)
    {
        if (Step > Options.WarmupSteps || Step >= Options.CheckpointEvery)
            throw new InvalidOperationException(
                $"the total can be fixed only during the warm-up (step ≤ {Options.WarmupSteps}) and before the first checkpoint " +
                $"(step < {Options.CheckpointEvery}); the run is at step {Step}");
        if (steps < Math.Max(1, Step))
            throw new ArgumentOutOfRangeException(nameof(steps), steps, $"the run is already at step {Step}");
        Options = Options with { Steps = steps };
    }

    readonly Queue<(long Ticks, int Images)> window = new();

    /// <summary>One optimiser step of Algorithm 1; returns the loss.</summary>
    public override double TrainStep()
    {
        StartClock();
        long start = Stopwatch.GetTimestamp();
        double lossValue, lr = Options.LearningRateAt(Step);
        using (var scope = NewDisposeScope())
        {
            var indices = torch.tensor(Order.Next());
            var loss = TrainingStep.Loss(Network, Objective, Config, Options, Data, indices, Generator, Device);
            lossValue = Optimize(loss, lr, Diverged);
            ema?.Update(Step);
        }
        return Record(lossValue, (step, elapsed) =>
        {
            long now = Stopwatch.GetTimestamp();
            window.Enqueue((now - start, Options.BatchSize));
            while (window.Count > 20) window.Dequeue();
            double seconds = window.Sum(w => w.Ticks) / (double)Stopwatch.Frequency;
            double imagesPerSecond = seconds > 0 ? window.Sum(w => w.Images) / seconds : 0;
            return new TrainingProgress(step, Options.Steps, lossValue, lr, imagesPerSecond, elapsed, Order.Position.Epoch);
        });
    }

    /// <summary>Why training stopped at a loss of <paramref name="loss"/>, and what to do.</summary>
    string Diverged(double loss)
    {
        var last = CheckpointPath is not null && File.Exists(CheckpointPath) ? $" The last good checkpoint is {CheckpointPath}." : "";
        return $"the loss became {loss} at step {Step + 1}; training stopped and nothing was saved after the last checkpoint.{last} " +
               $"Lower the learning rate (now {Options.LearningRateAt(Step):g3}), keep gradient clipping on, or check the data for NaN values.";
    }

    /// <summary>The trained network as a sampler's <see cref="DenoisingModel"/> (EMA weights when there are some).</summary>
    public DenoisingModel Denoiser(bool useEma = true, Tensor? classes = null)
    {
        var net = useEma && EmaNetwork is not null ? EmaNetwork : Network;
        return (x, t) => net.forward(x, t, classes);
    }

    InvalidOperationException NotAUnet() =>
        new($"this run trains a {Config.NetworkName}, not a U-Net: use {nameof(Network)} and {nameof(EmaNetwork)}");

    public override void Dispose()
    {
        lossLog?.Dispose();
        lossLog = null;
        // Null-safe: a constructor that failed half-way disposes what it had built.
        base.Dispose();
        Network?.Dispose();
        EmaNetwork?.Dispose();
        Schedule?.Dispose();
    }
}
