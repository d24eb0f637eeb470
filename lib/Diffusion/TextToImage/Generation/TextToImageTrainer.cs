using System.Diagnostics;
using Diffusion.Data;
using Diffusion.Forward;
using Diffusion.Latent;
using Diffusion.Platform;
using Diffusion.Training;

namespace Diffusion.TextToImage;

/// <summary>One step's report of the text-to-image training.</summary>
public readonly record struct TextToImageProgress(int Step, int TotalSteps, double Loss, double LatentsPerSecond, TimeSpan Elapsed);

/// <summary>
/// Trains the <see cref="TextUnet"/> of a miniature Stable Diffusion: DDPM's Algorithm 1 on the autoencoder's scaled
/// latents s·μ(x), the network reading each picture's caption through the frozen text encoder of a trained mini-CLIP.
/// With probability <see cref="TrainingOptions.ClassDropout"/> a caption is replaced by the empty prompt "" (caption
/// dropout: the same network learns ε_θ(z_t, ∅) for classifier-free guidance). With <see cref="TrainingOptions.RandomFlip"/>
/// the mirrored pictures are encoded too and half the batch, on average, are mirror images with "facing right" captions
/// (a flipped latent is not the latent of the flipped picture, so the pictures are flipped before encoding). AdamW,
/// learning-rate plan, gradient clipping and EMA as in the course's <see cref="Trainer"/>; one dispose scope per step.
/// The trainer owns the U-Net, its EMA and the mini-CLIP; it borrows the autoencoder.
/// </summary>
public sealed class TextToImageTrainer : StepTrainer<TextToImageProgress>
{
    public TextUnet Model { get; }
    public TextUnet? EmaModel { get; }
    public MiniClip Clip { get; }
    public WordTokenizer Tokenizer { get; }
    public MiniClipInfo ClipInfo { get; }
    public Autoencoder Autoencoder { get; }
    public double ScalingFactor { get; }
    public TextToImageInfo Template { get; }
    public CaptionSource Captions { get; }
    /// <summary>Parameters of the U-Net (the frozen text encoder and the autoencoder are not counted).</summary>
    public override long ParameterCount => Model.ParameterCount();

    readonly NoiseSchedule schedule;
    readonly DdpmObjective objective;
    readonly Tensor latents;          // [N or 2N, c, h, w], scaled; the second half mirrored
    readonly int pictures;            // N
    readonly Ema? ema;

    /// <param name="clip">A trained mini-CLIP (taken over: the trainer disposes it) with its file's description.</param>
    /// <param name="autoencoder">The trained autoencoder (borrowed) and its scaling factor.</param>
    /// <param name="encode">How many of <paramref name="data"/>'s pictures to encode and train on.</param>
    /// <param name="heldOut">Combinations no caption may say (their words are left out of the captions that would).</param>
    public TextToImageTrainer(TextUnetConfig config, TrainingOptions options, ImageDataset data, int encode,
        (MiniClip Model, WordTokenizer Tokenizer, MiniClipInfo Info) clip, (Autoencoder Model, AutoencoderInfo Info) autoencoder,
        Device? device = null, IReadOnlyCollection<HeldOutPair>? heldOut = null) : base(options, device)
    {
        TorchNative.EnsureLoaded();
        options.Validate();
        if (data.Labels is null) throw new ArgumentException("captions need labelled pictures");
        Clip = clip.Model;
        Tokenizer = clip.Tokenizer;
        ClipInfo = clip.Info;
        Autoencoder = autoencoder.Model;
        ScalingFactor = autoencoder.Info.ScalingFactor;
        config = config with
        {
            ContextDim = clip.Info.Config.Dim,
            Unet = config.Unet with { Channels = autoencoder.Info.Config.LatentChannels },
        };
        Template = new TextToImageInfo
        {
            Unet = config, LatentSize = autoencoder.Info.Config.LatentSize, TextEncoder = clip.Info.Config,
            Vocabulary = clip.Info.Vocabulary, Thresholds = clip.Info.Thresholds, Autoencoder = autoencoder.Info.Config,
            ScalingFactor = ScalingFactor, CaptionDropout = options.ClassDropout, BatchSize = options.BatchSize, Data = data.Description,
            HeldOut = heldOut?.ToArray() ?? [],
        };
        Template.Validate();
        Captions = new CaptionSource(data, clip.Info.Thresholds);

        pictures = (int)Math.Min(encode, data.Count);
        if (pictures < options.BatchSize) throw new ArgumentException($"{pictures} pictures to train on, fewer than the batch size {options.BatchSize}");
        using (var scope = NewDisposeScope())
        {
            var parts = new List<Tensor> { LatentSpace.EncodeAll(Autoencoder, data, pictures) };
            if (options.RandomFlip)
            {
                using var mirrored = new ImageDataset(data.Images[TensorIndex.Slice(0, pictures)].flip(3).contiguous(), null, data.ClassNames, "mirrored");
                parts.Add(LatentSpace.EncodeAll(Autoencoder, mirrored));
            }
            latents = (cat(parts, 0) * ScalingFactor).to(ScalarType.Float32).contiguous().DetachFromDisposeScope();
        }

        schedule = Template.Diffusion.CreateSchedule();
        objective = new DdpmObjective(schedule, Template.Prediction, options.Loss, options.MinSnrGamma);
        manual_seed(options.Seed);
        Model = new TextUnet(config);
        if (options.EmaDecay > 0) EmaModel = new TextUnet(config);
        Model.to(Device);
        EmaModel?.to(Device);
        Clip.to(Device);
        Clip.eval();
        foreach (var p in Clip.parameters()) p.requires_grad = false;        // the text encoder is frozen
        Begin(Model.parameters(), (int)latents.shape[0]);
        if (EmaModel is not null)
        {
            ema = new Ema(Model, EmaModel, options.EmaDecay);
            ema.CopyFromModel();
        }
        Model.train();
    }

    /// <summary>Pictures encoded (each also mirrored when flips are on).</summary>
    public int Pictures => pictures;

    /// <summary>
    /// The captions of latent rows <paramref name="rows"/> (row ≥ N: the mirror image of picture row − N), each "" with
    /// probability p, never saying a held-out combination.
    /// </summary>
    public string[] CaptionsOf(long[] rows, int seed)
    {
        using var scope = NewDisposeScope();
        // drop_b ~ Bernoulli(p_uncond): caption dropout, from the run's generator
        var drop = (rand([rows.Length], generator: Generator) < Options.ClassDropout).data<bool>().ToArray();
        return rows.Select((r, b) => drop[b] ? "" : Captions.Caption((int)(r % pictures), mirrored: r >= pictures, seed, Template.HeldOut)).ToArray();
    }

    /// <summary>One step of Algorithm 1 with the captions as the condition; returns the loss.</summary>
    public override double TrainStep()
    {
        StartClock();
        long start = Stopwatch.GetTimestamp();
        double lossValue, lr = Options.LearningRateAt(Step);
        using (var scope = NewDisposeScope())
        {
            var rows = Order.Next();
            var captions = CaptionsOf(rows, unchecked(Options.Seed * 7_919 + Order.Position.Epoch));
            Tensor context, mask;
            using (no_grad())
            {
                (var ids, mask) = PromptTokens.Encode(Tokenizer, captions, Clip.Text.Config.ContextLength, Device);
                context = Clip.Text.call(ids, mask);
            }
            var x0 = latents.index_select(0, tensor(rows)).to(Device);
            // t ~ Uniform{0..T−1}, ε ~ N(0, I) from the run's generator, and the loss of Algorithm 1
            var loss = objective.Loss((xt, tt) => Model.forward(xt, tt, context, mask), x0, Generator);
            lossValue = Optimize(loss, lr, v => $"the loss became {v} at step {Step + 1}; lower the learning rate (now {lr:g3}).");
            ema?.Update(Step);
        }
        return Record(lossValue, (step, elapsed) =>
        {
            double seconds = (Stopwatch.GetTimestamp() - start) / (double)Stopwatch.Frequency;
            return new TextToImageProgress(step, Options.Steps, lossValue, seconds > 0 ? Options.BatchSize / seconds : 0, elapsed);
        });
    }

    /// <summary>Writes the whole pipeline (EMA U-Net, text encoder, autoencoder, configuration) to one file.</summary>
    public void Save(string path, string command = "")
    {
        var info = Template with
        {
            Steps = Step, TrainingSeconds = TrainingSeconds, Command = command, SavedUtc = DateTime.UtcNow,
            RecentLoss = RecentLoss,
        };
        TextToImageFile.Save(path, EmaModel ?? Model, Clip.Text, Autoencoder, info);
    }

    /// <summary>Disposes the optimiser, the generator, the latents, the U-Net, its EMA and the mini-CLIP (not the autoencoder).</summary>
    public override void Dispose()
    {
        base.Dispose();
        latents.Dispose();
        schedule.Dispose();
        Model.Dispose();
        EmaModel?.Dispose();
        Clip.Dispose();
    }
}
