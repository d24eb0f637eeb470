using System.Text.Json.Serialization;
using Diffusion.Forward;
using Diffusion.Model.Transformer;

namespace Diffusion.Training;

/// <summary>
/// Everything needed to rebuild a trained model and sample from it: the network, the noise schedule, what the
/// network predicts, and the images it was trained on. Stored in every checkpoint.
/// </summary>
public sealed record DiffusionModelConfig
{
    /// <summary>The U-Net (the network unless <see cref="Dit"/> is given).</summary>
    public UnetConfig Unet { get; init; } = new();
    /// <summary>
    /// A diffusion transformer instead of the U-Net (null: the U-Net). Left out of the JSON when null, so the
    /// checkpoints of U-Nets read and write as they always have; when given, <see cref="Unet"/> is not used.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public DitConfig? Dit { get; init; }
    [JsonConverter(typeof(JsonStringEnumConverter<ScheduleKind>))]
    public ScheduleKind Schedule { get; init; } = ScheduleKind.Linear;
    /// <summary>T, the number of diffusion steps.</summary>
    public int Timesteps { get; init; } = 300;
    [JsonConverter(typeof(JsonStringEnumConverter<Prediction>))]
    public Prediction Prediction { get; init; } = Prediction.Epsilon;
    /// <summary>
    /// Fixed (DDPM: the network predicts only ε) or Learned (Improved DDPM: the U-Net outputs [ε, v] with OutDim = 2·Channels
    /// and trains with the hybrid loss). Checkpoints written before this setting existed read as Fixed.
    /// </summary>
    public VarianceType Variance { get; init; } = VarianceType.Fixed;
    /// <summary>
    /// Rectified flow instead of DDPM (null: DDPM, with <see cref="Schedule"/>, <see cref="Timesteps"/> and
    /// <see cref="Prediction"/>): the network predicts the velocity ε − x₀ at t ∈ [0, 1] drawn from this distribution, and
    /// the schedule, T and prediction are not used. Left out of the JSON when null, so DDPM checkpoints read and write as
    /// they always have.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public FlowTimeDistribution? FlowTimes { get; init; }
    /// <summary>Side of the square training images, in pixels.</summary>
    public int ImageSize { get; init; } = 28;
    /// <summary>Class names of the training data (used when the U-Net is class-conditional).</summary>
    public string[] ClassNames { get; init; } = [];
    /// <summary>Where the training images came from (for people reading the checkpoint).</summary>
    public string Data { get; init; } = "";

    /// <summary>The noise schedule this model was trained on (its <see cref="NoiseSchedule.Kind"/> set). Dispose it.</summary>
    public NoiseSchedule CreateSchedule() => new(Schedule, Timesteps);

    /// <summary>
    /// The network this configuration describes, with fresh weights from the global generator (seed it first): the one
    /// place that knows the network families.
    /// </summary>
    public IDenoisingNetwork CreateNetwork() => Dit is { } dit ? new Dit(dit) : new Unet(Unet);

    /// <summary>
    /// What the network is trained on, as the trainer's value — the one place that knows the objectives: rectified flow
    /// with <see cref="FlowTimes"/> when given; otherwise DDPM's Algorithm 1 with this configuration's prediction and
    /// variance, and the loss, min-SNR γ and κ of <paramref name="options"/>, on <paramref name="schedule"/> (borrowed).
    /// </summary>
    public TrainingObjective CreateObjective(NoiseSchedule schedule, TrainingOptions options) => FlowTimes is { } times
        ? new RectifiedFlowObjective(times)
        : new DdpmObjective(schedule, Prediction, options.Loss, options.MinSnrGamma, Variance, options.VlbWeight);

    /// <summary>Whether the network predicts rectified flow's velocity (sample it with a flow sampler, not a DDPM one).</summary>
    [JsonIgnore] public bool IsRectifiedFlow => FlowTimes is not null;
    /// <summary>What the model is trained with, for messages: "rectified flow (logit-normal t)" or "DDPM, cosine T=500, v".</summary>
    [JsonIgnore] public string ObjectiveName => FlowTimes is { } times
        ? $"rectified flow ({FlowTimeDistribution.Names.Name(times.Kind)} t)"
        : $"DDPM, {ScheduleKinds.Names.Name(Schedule)} schedule T={Timesteps}, {Predictions.Names.Name(Prediction)}-prediction";

    /// <summary>The network's image channels (its input; the output has twice as many for a learned variance).</summary>
    [JsonIgnore] public int Channels => Dit?.Channels ?? Unet.Channels;
    /// <summary>The network's output channels.</summary>
    [JsonIgnore] public int OutChannels => Dit?.OutChannels ?? Unet.ResolvedOutDim;
    /// <summary>K for a class-conditional network (labels 0..K−1, K = "no label"), 0 for an unconditional one.</summary>
    [JsonIgnore] public int NumClasses => Dit?.NumClasses ?? Unet.NumClasses;
    /// <summary>What the network is, for messages ("a U-Net of about 0.7 M parameters").</summary>
    [JsonIgnore] public string NetworkName => Dit is null ? "U-Net" : "DiT";

    /// <summary>Largest image side and most diffusion steps accepted (docs/guarantees.md).</summary>
    public const int MaxImageSize = Diffusion.Data.ImageDataset.MaxImageSize, MaxTimesteps = 10_000;

    /// <summary>
    /// Throws an <see cref="ArgumentException"/> naming the field, its value and its bounds unless the configuration can
    /// build a network: the one check for the command line, the trainer and every file that carries a configuration.
    /// </summary>
    public void Validate()
    {
        if (Unet is null) throw new ArgumentException("the configuration has no Unet");
        if (ImageSize is < 1 or > MaxImageSize) throw new ArgumentException($"ImageSize must be 1 to {MaxImageSize}, got {ImageSize}");
        if (Dit is null)
        {
            Unet.Validate();
            Unet.ValidateImageSize(ImageSize);
        }
        else
        {
            Dit.Validate();
            if (Dit.ImageSize != ImageSize) throw new ArgumentException($"the DiT is built for {Dit.ImageSize}×{Dit.ImageSize} images, the model for {ImageSize}×{ImageSize}");
        }
        if (Timesteps is < 1 or > MaxTimesteps) throw new ArgumentException($"Timesteps (T) must be 1 to {MaxTimesteps}, got {Timesteps}");
        if (!Enum.IsDefined(Schedule) || !Enum.IsDefined(Prediction) || !Enum.IsDefined(Variance))
            throw new ArgumentException($"unknown schedule, prediction or variance ({(int)Schedule}, {(int)Prediction}, {(int)Variance})");
        if (ClassNames is null) throw new ArgumentException("ClassNames must be a list (empty for an unconditional model)");
        BetaSchedules.CheckTimesteps(Timesteps);
        FlowTimes?.Validate();
        if (FlowTimes is not null && Variance == VarianceType.Learned)
            throw new ArgumentException("rectified flow has no reverse-step variance to learn: train it with a fixed variance (drop --learn-variance)");
        if (Variance == VarianceType.Learned && OutChannels != 2 * Channels)
            throw new ArgumentException(Dit is null
                ? $"a learned variance needs a U-Net with 2·Channels = {2 * Unet.Channels} output channels ([ε, v]), got OutDim {Unet.ResolvedOutDim}; set Unet.OutDim"
                : $"a learned variance needs a DiT with 2·Channels = {2 * Dit.Channels} output channels; set Dit.LearnSigma");
        if (NumClasses > 0 && ClassNames.Length != NumClasses)
            throw new ArgumentException($"a class-conditional {NetworkName} with {NumClasses} classes needs {NumClasses} class names, got {ClassNames.Length}");
    }

    /// <summary>The fields that must agree for a checkpoint to continue training with this configuration.</summary>
    public IReadOnlyList<string> DifferencesFrom(DiffusionModelConfig other)
    {
        var diffs = Dit is null && other.Dit is null ? Unet.DifferencesFrom(other.Unet).Select(d => "Unet." + d).ToList()
            : Dit == other.Dit ? [] : [$"Dit: {Dit?.ToString() ?? "none"} vs {other.Dit?.ToString() ?? "none"}"];
        if (Schedule != other.Schedule) diffs.Add($"Schedule: {Schedule} vs {other.Schedule}");
        if (Timesteps != other.Timesteps) diffs.Add($"Timesteps: {Timesteps} vs {other.Timesteps}");
        if (Prediction != other.Prediction) diffs.Add($"Prediction: {Prediction} vs {other.Prediction}");
        if (Variance != other.Variance) diffs.Add($"Variance: {Variance} vs {other.Variance}");
        if (FlowTimes != other.FlowTimes) diffs.Add($"FlowTimes: {FlowTimes?.ToString() ?? "none (DDPM)"} vs {other.FlowTimes?.ToString() ?? "none (DDPM)"}");
        if (ImageSize != other.ImageSize) diffs.Add($"ImageSize: {ImageSize} vs {other.ImageSize}");
        return diffs;
    }
}

/// <summary>How to train (Algorithm 1 and the optimiser around it). Defaults are the CLI's default run, except that the CLI
/// also weights the loss by min-SNR-5 (<see cref="MinSnrGamma"/>; here 0, plain L_simple, as in the notebooks).</summary>
public sealed record TrainingOptions
{
    /// <summary>Optimiser steps in the whole run.</summary>
    public int Steps { get; init; } = 1000;
    public int BatchSize { get; init; } = 64;
    /// <summary>Peak learning rate of AdamW.</summary>
    public double LearningRate { get; init; } = 2e-3;
    public int WarmupSteps { get; init; } = 100;
    public LearningRateSchedule LearningRateSchedule { get; init; } = LearningRateSchedule.Cosine;
    public double MinLearningRateFraction { get; init; } = 0.05;
    public double WeightDecay { get; init; } = 0.0;
    /// <summary>Gradients are rescaled so that their global L2 norm is at most this (0 = no clipping).</summary>
    public double GradientClipNorm { get; init; } = 1.0;
    /// <summary>Decay of the exponential moving average of the weights (0 = no EMA).</summary>
    public double EmaDecay { get; init; } = 0.995;
    [JsonConverter(typeof(JsonStringEnumConverter<LossType>))]
    public LossType Loss { get; init; } = LossType.L2;
    /// <summary>
    /// γ of the min-SNR loss weighting (Hang et al. 2023: each image's loss × min(SNR(t), γ)/SNR(t) for ε-prediction);
    /// 0 = unweighted L_simple.
    /// </summary>
    public double MinSnrGamma { get; init; }
    public bool RandomFlip { get; init; } = true;
    /// <summary>Probability of replacing a label by "no label" (classifier-free guidance training; conditional models only).</summary>
    public double ClassDropout { get; init; } = 0.1;
    public int Seed { get; init; }
    /// <summary>
    /// Train only the parameters whose names start with one of these prefixes (e.g. "final_res_block", "final_conv" to
    /// fine-tune the output head); the rest stay frozen. null = train everything.
    /// </summary>
    public string[]? TrainOnly { get; init; }
    /// <summary>λ of the hybrid loss L_simple + λ L_vlb, used only for a learned variance (Improved DDPM: 0.001).</summary>
    public double VlbWeight { get; init; } = HybridLoss.DefaultLambda;
    /// <summary>Write a checkpoint every this many steps (and always at the end).</summary>
    public int CheckpointEvery { get; init; } = 250;

    /// <summary>Largest batch accepted (docs/guarantees.md).</summary>
    public const int MaxBatchSize = 65_536;

    public void Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok) throw new ArgumentException(message);
        }
        Require(Steps >= 1, $"steps must be ≥ 1, got {Steps}");
        Require(BatchSize is >= 1 and <= MaxBatchSize, $"batch size must be 1 to {MaxBatchSize}, got {BatchSize}");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), $"learning rate must be a positive number, got {LearningRate}");
        Require(WarmupSteps >= 0, $"warm-up steps must be ≥ 0, got {WarmupSteps}");
        Require(Enum.IsDefined(LearningRateSchedule) && Enum.IsDefined(Loss), $"unknown learning-rate schedule or loss ({(int)LearningRateSchedule}, {(int)Loss})");
        Require(MinLearningRateFraction is >= 0 and <= 1, $"min learning-rate fraction must be in [0, 1], got {MinLearningRateFraction}");
        Require(WeightDecay >= 0 && double.IsFinite(WeightDecay), $"weight decay must be ≥ 0, got {WeightDecay}");
        Require(GradientClipNorm >= 0 && double.IsFinite(GradientClipNorm), $"gradient clip norm must be ≥ 0 (0 = off), got {GradientClipNorm}");
        Require(EmaDecay is >= 0 and < 1, $"EMA decay must be in [0, 1) (0 = off; typical 0.995–0.9999), got {EmaDecay}");
        Require(ClassDropout is >= 0 and <= 1, $"class dropout must be in [0, 1], got {ClassDropout}");
        Require(MinSnrGamma >= 0 && double.IsFinite(MinSnrGamma), $"min-SNR γ must be ≥ 0 (0 = off; the paper uses 5), got {MinSnrGamma}");
        Require(VlbWeight >= 0 && double.IsFinite(VlbWeight), $"the L_vlb weight λ must be ≥ 0, got {VlbWeight}");
        Require(CheckpointEvery >= 1, $"checkpoint interval must be ≥ 1 step, got {CheckpointEvery}");
    }

    /// <summary>Learning rate at a 0-based step: linear warm-up, then constant or cosine decay.</summary>
    public double LearningRateAt(int step)
    {
        if (WarmupSteps > 0 && step < WarmupSteps) return LearningRate * (step + 1) / WarmupSteps;
        if (LearningRateSchedule == LearningRateSchedule.Constant || Steps <= WarmupSteps) return LearningRate;
        double progress = Math.Clamp((double)(step - WarmupSteps) / Math.Max(1, Steps - 1 - WarmupSteps), 0, 1);
        double min = LearningRate * MinLearningRateFraction;
        return min + (LearningRate - min) * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}

/// <summary>How the learning rate moves over the run.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<LearningRateSchedule>))]
public enum LearningRateSchedule
{
    /// <summary>Linear warm-up, then constant.</summary>
    Constant,
    /// <summary>Linear warm-up, then a half cosine down to <see cref="TrainingOptions.MinLearningRateFraction"/> at the last step.</summary>
    Cosine,
}

/// <summary>The names of the learning-rate schedules (<c>train --lr-schedule</c>).</summary>
public static class LearningRateSchedules
{
    public static readonly NameTable<LearningRateSchedule> Names =
        new(("cosine", LearningRateSchedule.Cosine), ("constant", LearningRateSchedule.Constant));
}
