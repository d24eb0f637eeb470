using System.Diagnostics;
using Diffusion.Data;
using Diffusion.Platform;
using Diffusion.Training;

namespace Diffusion.Text;

/// <summary>One contrastive step's report: the loss, the temperature τ = 1/e^s, the time so far.</summary>
public readonly record struct ClipProgress(int Step, int TotalSteps, double Loss, double Temperature, TimeSpan Elapsed);

/// <summary>
/// Trains a <see cref="MiniClip"/> on (picture, caption) pairs (Radford et al. 2021, CLIP): each step takes a batch of
/// pictures, flips each left–right with probability ½ (the caption then says "facing right" where the shoe faces right),
/// writes every picture's caption (<see cref="CaptionSource"/>; template and synonyms change with the epoch), and takes an
/// AdamW step on the symmetric InfoNCE loss with CLIP's learned temperature. Learning-rate plan, gradient clipping, seed
/// and flips come from <see cref="TrainingOptions"/> (its diffusion-only fields are ignored). One dispose scope per
/// step; the same seed gives the same weights.
/// </summary>
public sealed class MiniClipTrainer : IDisposable
{
    public MiniClip Model { get; }
    public WordTokenizer Tokenizer { get; }
    public CaptionSource Captions { get; }
    public TrainingOptions Options { get; }
    public ImageDataset Data { get; }
    public Device Device { get; }
    /// <summary>Optimiser steps done.</summary>
    public int Step { get; private set; }
    public List<ClipProgress> History { get; } = new();
    public event Action<ClipProgress>? Progress;

    readonly AdamW optimizer;
    readonly Parameter[] parameters;
    readonly Generator generator;
    readonly BatchSampler sampler;
    readonly Stopwatch clock = new();

    /// <param name="captions">The captions of <paramref name="data"/> (null: measured and fitted here).</param>
    public MiniClipTrainer(TextEncoderConfig config, TrainingOptions options, ImageDataset data, CaptionSource? captions = null,
        Device? device = null)
    {
        TorchNative.EnsureLoaded();
        config.Validate();
        options.Validate();
        if (data.Labels is null) throw new ArgumentException("the mini-CLIP trains on captioned pictures: the data needs labels");
        if (data.Count < options.BatchSize)
            throw new ArgumentException($"the dataset has {data.Count} images, fewer than the batch size {options.BatchSize}");
        if (options.BatchSize < 2) throw new ArgumentException("a contrastive batch needs at least 2 pairs");
        Tokenizer = WordTokenizer.ForCaptions();
        if (Tokenizer.Count != config.VocabularySize)
            throw new ArgumentException($"the text encoder has {config.VocabularySize} token ids, the caption tokenizer {Tokenizer.Count}");
        Captions = captions ?? new CaptionSource(data);
        if (Captions.Labels.Count != data.Count) throw new ArgumentException("the captions are for another dataset (different count)");
        Options = options;
        Data = data;
        Device = device ?? Compute.Device;
        manual_seed(options.Seed);
        Model = new MiniClip(config, data.Channels);
        Model.to(Device);
        Model.train();
        parameters = Model.parameters().ToArray();
        optimizer = optim.AdamW(parameters, lr: options.LearningRate, weight_decay: options.WeightDecay);
        generator = new Generator((ulong)options.Seed);
        sampler = new BatchSampler((int)data.Count, options.BatchSize, options.Seed);
    }

    /// <summary>The pictures (model space, flipped where drawn) and captions of one batch.</summary>
    public (Tensor Images, string[] Captions) Batch(long[] indices, int captionSeed)
    {
        using var scope = NewDisposeScope();
        var x = Data.ModelInputs(tensor(indices));
        var mirrored = new bool[indices.Length];
        if (Options.RandomFlip)
        {
            // flip_i ~ Bernoulli(½), drawn on the CPU from the run's generator
            var flip = rand([indices.Length], generator: generator) < 0.5;
            mirrored = flip.data<bool>().ToArray();
            x = where(flip.reshape(-1, 1, 1, 1), x.flip(3), x);
        }
        var captions = indices.Select((i, j) => Captions.Caption((int)i, mirrored[j], captionSeed)).ToArray();
        return (x.MoveToOuterDisposeScope(), captions);
    }

    /// <summary>One optimiser step on the contrastive loss; returns the loss.</summary>
    public double TrainStep()
    {
        clock.Start();
        double lossValue, temperature;
        using (var scope = NewDisposeScope())
        {
            var indices = sampler.Next();
            // A new caption template per epoch: the encoder sees synonyms and word orders, not one fixed sentence per picture.
            var (images, captions) = Batch(indices, unchecked(Options.Seed * 7_919 + sampler.Position.Epoch));
            var (ids, mask) = PromptTokens.Encode(Tokenizer, captions, Model.Text.Config.ContextLength, Device);
            var loss = Model.call(images.to(Device), ids, mask);
            lossValue = loss.item<float>();
            if (!double.IsFinite(lossValue))
                throw new TrainingDivergedException($"the contrastive loss became {lossValue} at step {Step + 1}; lower the learning rate.");
            optimizer.zero_grad();
            loss.backward();
            if (Options.GradientClipNorm > 0) nn.utils.clip_grad_norm_(parameters, Options.GradientClipNorm);
            foreach (var group in optimizer.ParamGroups) group.LearningRate = Options.LearningRateAt(Step);
            optimizer.step();
            temperature = 1 / Model.Scale().item<float>();
        }
        Step++;
        clock.Stop();
        var report = new ClipProgress(Step, Options.Steps, lossValue, temperature, clock.Elapsed);
        History.Add(report);
        Progress?.Invoke(report);
        return lossValue;
    }

    /// <summary>Trains until <see cref="TrainingOptions.Steps"/>, then puts the model in eval mode.</summary>
    public void Train(CancellationToken cancel = default)
    {
        while (Step < Options.Steps)
        {
            cancel.ThrowIfCancellationRequested();
            TrainStep();
            Compute.RecheckThreads();
        }
        Model.eval();
    }

    public TimeSpan Elapsed => clock.Elapsed;

    /// <summary>What the file of this run says about it (config, vocabulary, terciles, steps, loss).</summary>
    public MiniClipInfo Info(string command = "") => new()
    {
        Config = Model.Text.Config,
        Vocabulary = Tokenizer.Words.ToArray(),
        Thresholds = Captions.Thresholds,
        Channels = Data.Channels,
        Steps = Step,
        BatchSize = Options.BatchSize,
        LearningRate = Options.LearningRate,
        Seed = Options.Seed,
        TrainingSeconds = clock.Elapsed.TotalSeconds,
        RecentLoss = History.Count > 0 ? History.TakeLast(50).Average(h => h.Loss) : double.NaN,
        Temperature = History.Count > 0 ? History[^1].Temperature : 0.07,
        Data = Data.Description,
        Command = command,
    };

    /// <summary>Disposes the optimiser, the generator and <see cref="Model"/>.</summary>
    public void Dispose()
    {
        optimizer.Dispose();
        generator.Dispose();
        Model.Dispose();
    }
}
