using Diffusion.Data;
using Diffusion.Platform;
using Diffusion.Training;

namespace Diffusion.TextToImage;

/// <summary>
/// Trains a <see cref="MiniClip"/> on (picture, caption) pairs (Radford et al. 2021, CLIP): each step takes a batch of
/// pictures, flips each left–right with probability ½ (the caption then says "facing right" where the shoe faces right),
/// writes every picture's caption (<see cref="CaptionSource"/>; template and synonyms change with the epoch), and takes an
/// AdamW step on the symmetric InfoNCE loss with CLIP's learned temperature. Learning-rate plan, gradient clipping, seed
/// and flips come from <see cref="TrainingOptions"/> (its diffusion-only fields are ignored). One dispose scope per
/// step; the same seed gives the same weights.
/// </summary>
public sealed class MiniClipTrainer : StepTrainer<ClipProgress>
{
    public MiniClip Model { get; }
    public WordTokenizer Tokenizer { get; }
    public CaptionSource Captions { get; }
    public ImageDataset Data { get; }
    /// <summary>Parameters of the mini-CLIP (both encoders and the temperature).</summary>
    public override long ParameterCount => Model.ParameterCount();

    /// <param name="captions">The captions of <paramref name="data"/> (null: measured and fitted here).</param>
    public MiniClipTrainer(TextEncoderConfig config, TrainingOptions options, ImageDataset data, CaptionSource? captions = null,
        Device? device = null) : base(options, device)
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
        Data = data;
        manual_seed(options.Seed);
        Model = new MiniClip(config, data.Channels);
        Model.to(Device);
        Model.train();
        Begin(Model.parameters(), (int)data.Count);
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
            var flip = rand([indices.Length], generator: Generator) < 0.5;
            mirrored = flip.data<bool>().ToArray();
            x = where(flip.reshape(-1, 1, 1, 1), x.flip(3), x);
        }
        var captions = indices.Select((i, j) => Captions.Caption((int)i, mirrored[j], captionSeed)).ToArray();
        return (x.MoveToOuterDisposeScope(), captions);
    }

    /// <summary>One optimiser step on the contrastive loss; returns the loss.</summary>
    public override double TrainStep()
    {
        StartClock();
        double lossValue, temperature;
        using (var scope = NewDisposeScope())
        {
            var indices = Order.Next();
            // A new caption template per epoch: the encoder sees synonyms and word orders, not one fixed sentence per picture.
            var (images, captions) = Batch(indices, unchecked(Options.Seed * 7_919 + Order.Position.Epoch));
            var (ids, mask) = PromptTokens.Encode(Tokenizer, captions, Model.Text.Config.ContextLength, Device);
            var loss = Model.call(images.to(Device), ids, mask);
            lossValue = Optimize(loss, Options.LearningRateAt(Step),
                v => $"the contrastive loss became {v} at step {Step + 1}; lower the learning rate.");
            temperature = 1 / Model.Scale().item<float>();
        }
        return Record(lossValue, (step, elapsed) => new ClipProgress(step, Options.Steps, lossValue, temperature, elapsed));
    }

    /// <summary>Training done (<see cref="StepTrainer{T}.Train"/>): the model goes to eval mode.</summary>
    protected override void Trained() => Model.eval();

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
        TrainingSeconds = TrainingSeconds,
        RecentLoss = RecentLoss,
        Temperature = History.Count > 0 ? History[^1].Temperature : 0.07,
        Data = Data.Description,
        Command = command,
    };

    /// <summary>Disposes the optimiser, the generator and <see cref="Model"/>.</summary>
    public override void Dispose()
    {
        base.Dispose();
        Model.Dispose();
    }
}

/// <summary>One contrastive step's report: the loss, the temperature τ = 1/e^s, the time so far.</summary>
public readonly record struct ClipProgress(int Step, int TotalSteps, double Loss, double Temperature, TimeSpan Elapsed);
