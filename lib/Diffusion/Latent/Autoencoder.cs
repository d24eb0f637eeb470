using static TorchSharp.torch.nn;

namespace Diffusion.Latent;

/// <summary>GroupNorm → SiLU → 3×3 conv, twice, plus the input (a 1×1 conv when the channel count changes).</summary>
public sealed class AeResBlock : Module<Tensor, Tensor>
{
    readonly GroupNorm norm1, norm2;
    readonly SafeConv2d conv1, conv2;
    readonly Module<Tensor, Tensor> skip;

    public AeResBlock(long channels, long channelsOut, long groups) : base(nameof(AeResBlock))
    {
        norm1 = Layers.GroupNorm(groups, channels);
        conv1 = new SafeConv2d(channels, channelsOut, 3, padding: 1);
        norm2 = Layers.GroupNorm(groups, channelsOut);
        conv2 = new SafeConv2d(channelsOut, channelsOut, 3, padding: 1);
        skip = channels == channelsOut ? Identity() : new PointwiseConv2d(channels, channelsOut);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = conv1.call(functional.silu(norm1.call(x)));
        h = conv2.call(functional.silu(norm2.call(h)));
        return (skip.call(x) + h).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The encoder's and the decoder's common form: conv_in, a list of blocks, then GroupNorm → SiLU → conv_out.
/// <see cref="Encoder"/> and <see cref="Decoder"/> build the two; only their blocks and channel counts differ.
/// </summary>
public sealed class ConvStack : Module<Tensor, Tensor>
{
    readonly SafeConv2d conv_in;
    readonly ModuleList<Module<Tensor, Tensor>> blocks = new();
    readonly GroupNorm norm_out;
    readonly SafeConv2d conv_out;

    /// <summary>The layers are made in the order conv_in, blocks, norm_out, conv_out, so a seed gives the same weights.</summary>
    ConvStack(string name, long inChannels, long firstChannels, Func<IEnumerable<Module<Tensor, Tensor>>> makeBlocks, long groups,
        long lastChannels, long outChannels) : base(name)
    {
        conv_in = new SafeConv2d(inChannels, firstChannels, 3, padding: 1);
        foreach (var b in makeBlocks()) blocks.Add(b);
        norm_out = Layers.GroupNorm(groups, lastChannels);
        conv_out = new SafeConv2d(lastChannels, outChannels, 3, padding: 1);
        RegisterComponents();
    }

    /// <summary>
    /// E(x): image [B, C, 32, 32] → [B, 2c, 8, 8], the parameters of the diagonal Gaussian q(z|x): μ in the first c
    /// channels, log σ² in the last c. Per level a residual block (none at full resolution), then a halving by 2×2
    /// pixel unshuffle and a 1×1 conv (as in the course's U-Net).
    /// </summary>
    public static ConvStack Encoder(AutoencoderConfig config)
    {
        var ch = config.LevelChannels;
        IEnumerable<Module<Tensor, Tensor>> Blocks()
        {
            for (int i = 0; i < ch.Length; i++)
            {
                // No residual block at full resolution: there it cost a third of the network's time for little gain.
                if (i > 0 || ch.Length == 1) yield return new AeResBlock(ch[i], ch[i], config.Groups);
                if (i < ch.Length - 1) yield return Resampling.Downsample(ch[i], ch[i + 1]);
            }
        }
        return new(nameof(Encoder), config.Channels, ch[0], Blocks, config.Groups, ch[^1], 2 * config.LatentChannels);
    }

    /// <summary>
    /// D(z): latent [B, c, 8, 8] → image [B, C, 32, 32]. Mirror of the encoder: a residual block and nearest-neighbour
    /// ×2 with a 3×3 conv per level.
    /// </summary>
    public static ConvStack Decoder(AutoencoderConfig config)
    {
        var ch = config.LevelChannels;
        IEnumerable<Module<Tensor, Tensor>> Blocks()
        {
            for (int i = ch.Length - 1; i >= 0; i--)
            {
                if (i > 0 || ch.Length == 1) yield return new AeResBlock(ch[i], ch[i], config.Groups);
                if (i > 0) yield return Resampling.Upsample(ch[i], ch[i - 1]);
            }
        }
        return new(nameof(Decoder), config.LatentChannels, ch[^1], Blocks, config.Groups, ch[0], config.Channels);
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = conv_in.call(x);
        foreach (var b in blocks) h = b.call(h);
        return conv_out.call(functional.silu(norm_out.call(h))).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// The KL-regularised autoencoder of latent diffusion (Rombach et al. 2022, §3): an encoder E giving a diagonal
/// Gaussian q(z|x) = N(μ(x), σ²(x)), a decoder D, and the loss ‖x − D(z)‖² + β·KL(q(z|x) ‖ N(0, I)) with z ~ q(z|x).
/// Images are in [−1, 1]; they are padded from 28 to 32 pixels with the background value −1 and cropped back after
/// decoding, so callers see 28×28 on both ends.
/// </summary>
public sealed class Autoencoder : Module<Tensor, Tensor>
{
    public AutoencoderConfig Config { get; }
    readonly ConvStack encoder;
    readonly ConvStack decoder;

    public Autoencoder(AutoencoderConfig config) : base(nameof(Autoencoder))
    {
        config.Validate();
        Config = config;
        encoder = ConvStack.Encoder(config);
        decoder = ConvStack.Decoder(config);
        RegisterComponents();
    }

    public ConvStack EncoderNet => encoder;
    public ConvStack DecoderNet => decoder;

    int Margin => (Config.PaddedSize - Config.ImageSize) / 2;

    /// <summary>Pads [B, C, 28, 28] to [B, C, 32, 32] with −1 (the black background).</summary>
    public Tensor Pad(Tensor x) => Margin == 0 ? x.alias() : functional.pad(x, [Margin, Margin, Margin, Margin], value: -1.0);

    /// <summary>The centre [B, C, 28, 28] of a padded [B, C, 32, 32].</summary>
    public Tensor Crop(Tensor x) => Margin == 0 ? x.alias()
        : x[.., .., Margin..(Margin + Config.ImageSize), Margin..(Margin + Config.ImageSize)].contiguous();

    /// <summary>q(z|x): (μ, log σ²), each [B, c, h, w]; log σ² clamped to [−30, 20] as in LDM's DiagonalGaussianDistribution.</summary>
    public (Tensor Mean, Tensor LogVar) Posterior(Tensor images)
    {
        using var scope = NewDisposeScope();
        var moments = encoder.call(Pad(images));
        var parts = moments.chunk(2, dim: 1);
        return (parts[0].MoveToOuterDisposeScope(), parts[1].clamp(-30, 20).MoveToOuterDisposeScope());
    }

    /// <summary>The latent used downstream: the posterior mean μ(x) (deterministic; SD samples z ~ q(z|x) instead).</summary>
    public Tensor Encode(Tensor images)
    {
        var (mean, logVar) = Posterior(images);
        logVar.Dispose();
        return mean;
    }

    /// <summary>D(z), cropped to the image size: [B, C, 28, 28], roughly in [−1, 1] (not clamped).</summary>
    public Tensor Decode(Tensor z)
    {
        using var scope = NewDisposeScope();
        return Crop(decoder.call(z)).MoveToOuterDisposeScope();
    }

    /// <summary>Reconstruction through the posterior mean: D(μ(x)).</summary>
    public override Tensor forward(Tensor images)
    {
        using var scope = NewDisposeScope();
        return Decode(Encode(images)).MoveToOuterDisposeScope();
    }

    /// <summary>The terms of the training loss for a batch in [−1, 1]; all are per-image averages over the batch.</summary>
    public readonly record struct LossTerms(Tensor Loss, double SquaredError, double Kl, double PixelMse);

    /// <summary>
    /// L = E_batch[ Σ_pixels (x − D(z))² + β · KL(q(z|x) ‖ N(0, I)) ], z = μ + σ ⊙ ε (the reparameterisation trick,
    /// Kingma &amp; Welling 2014), KL = ½ Σ (μ² + σ² − 1 − log σ²).
    /// </summary>
    public LossTerms ComputeLoss(Tensor images, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var (mean, logVar) = Posterior(images);
        var eps = Platform.Compute.Randn(mean.shape, generator, mean.device);
        // z = μ + σ ε
        var z = mean + (0.5 * logVar).exp() * eps;
        var reconstruction = Decode(z);
        long batch = images.shape[0];
        // Σ over pixels of (x − x̂)², averaged over the batch
        var squaredError = (images - reconstruction).square().sum() / batch;
        // KL(N(μ, σ²) ‖ N(0, 1)) = ½ (μ² + σ² − 1 − log σ²), summed over the latent, averaged over the batch
        var kl = 0.5 * (mean.square() + logVar.exp() - 1 - logVar).sum() / batch;
        var loss = squaredError + Config.KlWeight * kl;
        double se = squaredError.item<float>();
        return new LossTerms(loss.MoveToOuterDisposeScope(), se, kl.item<float>(), se / images[0].numel());
    }
}
