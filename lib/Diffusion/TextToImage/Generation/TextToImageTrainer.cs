using System.Diagnostics;
using Diffusion.Data;
using Diffusion.Flow;
using Diffusion.Forward;
using Diffusion.Latent;
using Diffusion.Model.Transformer;
using Diffusion.Platform;
using Diffusion.Training;

namespace Diffusion.TextToImage;

/// <summary>One step's report of the text-to-image training.</summary>
public readonly record struct TextToImageProgress(int Step, int TotalSteps, double Loss, double LatentsPerSecond, TimeSpan Elapsed);

/// <summary>
/// What every miniature Stable Diffusion's training shares: the autoencoder's scaled latents s·μ(x) of the training
/// pictures, their captions, and the frozen text encoder of a trained mini-CLIP that reads them. With probability
/// <see cref="TrainingOptions.ClassDropout"/> a caption is replaced by the empty prompt "" (caption dropout: the same network
/// learns the "no text" prediction for classifier-free guidance). With <see cref="TrainingOptions.RandomFlip"/> the mirrored
/// pictures are encoded too and half the batch, on average, are mirror images with "facing right" captions (a flipped latent
/// is not the latent of the flipped picture, so the pictures are flipped before encoding). AdamW, learning-rate plan,
/// gradient clipping and EMA as in the course's <see cref="Trainer"/>; one dispose scope per step. A subclass brings the
/// network and its loss (<see cref="Loss"/>). Owns the network, its EMA and the mini-CLIP; borrows the autoencoder.
/// </summary>
public abstract class TextToImageTrainerBase : StepTrainer<TextToImageProgress>
{
    /// <summary>The network being trained.</summary>
    public nn.Module Network { get; }
    /// <summary>Its exponential moving average (null without EMA): what is saved.</summary>
    public nn.Module? EmaNetwork { get; }
    public MiniClip Clip { get; }
    public WordTokenizer Tokenizer { get; }
    public MiniClipInfo ClipInfo { get; }
    public Autoencoder Autoencoder { get; }
    public double ScalingFactor { get; }
    public TextToImageInfo Template { get; }
    public CaptionSource Captions { get; }
    /// <summary>Parameters of the denoising network (the frozen text encoder and the autoencoder are not counted).</summary>
    public override long ParameterCount => Network.ParameterCount();

    readonly Tensor latents;          // [N or 2N, c, h, w], scaled; the second half mirrored
    readonly int pictures;            // N
    readonly Ema? ema;

    /// <param name="describe">The description of the model to train, given the shared part (text encoder, vocabulary,
    /// autoencoder, latent size, dropout, data): the subclass adds its network's configuration.</param>
    /// <param name="create">Builds the network the description says (called twice with EMA, after the run's seed is set).</param>
    /// <param name="clip">A trained mini-CLIP (taken over: the trainer disposes it) with its file's description.</param>
    /// <param name="autoencoder">The trained autoencoder (borrowed) and its scaling factor.</param>
    /// <param name="encode">How many of <paramref name="data"/>'s pictures to encode and train on.</param>
    /// <param name="heldOut">Combinations no caption may say (their words are left out of the captions that would).</param>
    protected TextToImageTrainerBase(TrainingOptions options, ImageDataset data, int encode,
        (MiniClip Model, WordTokenizer Tokenizer, MiniClipInfo Info) clip, (Autoencoder Model, AutoencoderInfo Info) autoencoder,
        Device? device, IReadOnlyCollection<HeldOutPair>? heldOut,
        Func<TextToImageInfo, TextToImageInfo> describe, Func<TextToImageInfo, nn.Module> create) : base(options, device)
    {
        TorchNative.EnsureLoaded();
        options.Validate();
        if (data.Labels is null) throw new ArgumentException("captions need labelled pictures");
        Clip = clip.Model;
        Tokenizer = clip.Tokenizer;
        ClipInfo = clip.Info;
        Autoencoder = autoencoder.Model;
        ScalingFactor = autoencoder.Info.ScalingFactor;
        Template = describe(new TextToImageInfo
        {
            LatentSize = autoencoder.Info.Config.LatentSize, TextEncoder = clip.Info.Config,
            Vocabulary = clip.Info.Vocabulary, Thresholds = clip.Info.Thresholds, Autoencoder = autoencoder.Info.Config,
            ScalingFactor = ScalingFactor, CaptionDropout = options.ClassDropout, BatchSize = options.BatchSize, Data = data.Description,
            HeldOut = heldOut?.ToArray() ?? [],
        });
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

        manual_seed(options.Seed);
        Network = create(Template);
        if (options.EmaDecay > 0) EmaNetwork = create(Template);
        Network.to(Device);
        EmaNetwork?.to(Device);
        Clip.to(Device);
        Clip.eval();
        foreach (var p in Clip.parameters()) p.requires_grad = false;        // the text encoder is frozen
        Begin(Network.parameters(), (int)latents.shape[0]);
        if (EmaNetwork is not null)
        {
            ema = new Ema(Network, EmaNetwork, options.EmaDecay);
            ema.CopyFromModel();
        }
        Network.train();
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

    /// <summary>
    /// The loss of one batch: latents <paramref name="x0"/> [B, c, h, w] with their captions' token features
    /// <paramref name="context"/> [B, L, D] and masks <paramref name="mask"/> [B, L] (from the frozen text encoder, without
    /// gradients); random numbers from <see cref="StepTrainer{TProgress}.Generator"/>.
    /// </summary>
    protected abstract Tensor Loss(Tensor x0, Tensor context, Tensor mask);

    /// <summary>One training step with the batch's captions as the condition; returns the loss.</summary>
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
            var loss = Loss(x0, context, mask);
            lossValue = Optimize(loss, lr, v => $"the loss became {v} at step {Step + 1}; lower the learning rate (now {lr:g3}).");
            ema?.Update(Step);
        }
        return Record(lossValue, (step, elapsed) =>
        {
            double seconds = (Stopwatch.GetTimestamp() - start) / (double)Stopwatch.Frequency;
            return new TextToImageProgress(step, Options.Steps, lossValue, seconds > 0 ? Options.BatchSize / seconds : 0, elapsed);
        });
    }

    /// <summary>The description to save: the template with the run's steps, time, command and loss.</summary>
    protected TextToImageInfo Finished(string command) => Template with
    {
        Steps = Step, TrainingSeconds = TrainingSeconds, Command = command, SavedUtc = DateTime.UtcNow, RecentLoss = RecentLoss,
    };

    /// <summary>Writes the whole pipeline (EMA network, text encoder, autoencoder, configuration) to one file.</summary>
    public abstract void Save(string path, string command = "");

    /// <summary>Disposes the optimiser, the generator, the latents, the network, its EMA and the mini-CLIP (not the autoencoder).</summary>
    public override void Dispose()
    {
        base.Dispose();
        latents.Dispose();
        Network.Dispose();
        EmaNetwork?.Dispose();
        Clip.Dispose();
    }
}

/// <summary>
/// Trains the <see cref="TextUnet"/> of the miniature Stable Diffusion 1: DDPM's Algorithm 1 on the autoencoder's scaled
/// latents, the U-Net reading each picture's caption through the frozen text encoder by cross-attention (the data,
/// captions, caption dropout and optimisation of <see cref="TextToImageTrainerBase"/>).
/// </summary>
public sealed class TextToImageTrainer : TextToImageTrainerBase
{
    public TextUnet Model => (TextUnet)Network;
    public TextUnet? EmaModel => (TextUnet?)EmaNetwork;
    readonly NoiseSchedule schedule;
    readonly DdpmObjective objective;

    /// <inheritdoc cref="TextToImageTrainerBase"/>
    public TextToImageTrainer(TextUnetConfig config, TrainingOptions options, ImageDataset data, int encode,
        (MiniClip Model, WordTokenizer Tokenizer, MiniClipInfo Info) clip, (Autoencoder Model, AutoencoderInfo Info) autoencoder,
        Device? device = null, IReadOnlyCollection<HeldOutPair>? heldOut = null)
        : base(options, data, encode, clip, autoencoder, device, heldOut,
            info => info with
            {
                Unet = config with
                {
                    ContextDim = clip.Info.Config.Dim,
                    Unet = config.Unet with { Channels = autoencoder.Info.Config.LatentChannels },
                },
            },
            info => new TextUnet(info.Unet!))
    {
        schedule = Template.Diffusion.CreateSchedule();
        objective = new DdpmObjective(schedule, Template.Prediction, Options.Loss, Options.MinSnrGamma);
    }

    /// <summary>Algorithm 1: t ~ Uniform{0..T−1}, ε ~ N(0, I) from the run's generator, ‖ε − ε_θ(z_t, t, text)‖².</summary>
    protected override Tensor Loss(Tensor x0, Tensor context, Tensor mask) =>
        objective.Loss((xt, tt) => Model.forward(xt, tt, context, mask), x0, Generator);

    public override void Save(string path, string command = "") =>
        TextToImageFile.Save(path, EmaModel ?? Model, Clip.Text, Autoencoder, Finished(command));

    public override void Dispose()
    {
        base.Dispose();
        schedule.Dispose();
    }
}

/// <summary>
/// Trains the <see cref="MiniSd3"/> of the miniature Stable Diffusion 3 with rectified flow (Esser et al. 2024, §2–3) on
/// the autoencoder's scaled latents: t from <see cref="TextToImageInfo.FlowTimes"/> (SD3's logit-normal unless given),
/// x_t = (1 − t) x₀ + t ε, the loss ‖(ε − x₀) − v̂_θ(x_t, 1000·t, text)‖² (<see cref="RectifiedFlow.Loss"/>). The MMDiT reads
/// the caption twice, as the text encoder's token features in its joint attention and as their pooled vector
/// (<see cref="TextEncoder.Embed"/>) in every modulation; a dropped caption is the empty prompt's features, as at sampling
/// (<see cref="MiniSd3Prompts"/>). The data, captions and optimisation are those of <see cref="TextToImageTrainerBase"/>.
/// </summary>
public sealed class MiniSd3Trainer : TextToImageTrainerBase
{
    public MiniSd3 Model => (MiniSd3)Network;
    public MiniSd3? EmaModel => (MiniSd3?)EmaNetwork;
    /// <param name="config">The MMDiT's sizes; its latent and text sizes are taken from the autoencoder and the mini-CLIP.</param>
    /// <param name="times">How t is drawn (null: SD3's logit-normal, m = 0, s = 1).</param>
    public MiniSd3Trainer(MiniSd3Config config, TrainingOptions options, ImageDataset data, int encode,
        (MiniClip Model, WordTokenizer Tokenizer, MiniClipInfo Info) clip, (Autoencoder Model, AutoencoderInfo Info) autoencoder,
        Device? device = null, IReadOnlyCollection<HeldOutPair>? heldOut = null, FlowTimeDistribution? times = null)
        : base(options, data, encode, clip, autoencoder, device, heldOut,
            info => info with
            {
                Kind = TextToImageKind.Sd3,
                Sd3 = Fit(config, clip.Info.Config, autoencoder.Info.Config),
                FlowTimes = times ?? FlowTimeDistribution.LogitNormal,
            },
            info => new MiniSd3(info.Sd3!))
    {
    }

    /// <summary><paramref name="config"/> with the latent's and the text encoder's sizes.</summary>
    public static MiniSd3Config Fit(MiniSd3Config config, TextEncoderConfig text, AutoencoderConfig autoencoder) => config with
    {
        ImageSize = autoencoder.LatentSize, Channels = autoencoder.LatentChannels,
        ContextDim = text.Dim, ContextLength = text.ContextLength, PooledDim = text.EmbedDim,
    };

    /// <summary>The rectified-flow loss of the batch with its captions' token features and pooled vectors.</summary>
    protected override Tensor Loss(Tensor x0, Tensor context, Tensor mask)
    {
        Tensor pooled;
        using (no_grad()) pooled = Clip.Text.Embed(context, mask);
        return RectifiedFlow.Loss(RectifiedFlow.OnNetworkTime((xt, t) => Model.forward(xt, t, context, pooled, mask)), x0, Template.FlowTimes!, Generator);
    }

    public override void Save(string path, string command = "") =>
        TextToImageFile.Save(path, EmaModel ?? Model, Clip.Text, Autoencoder, Finished(command));
}
