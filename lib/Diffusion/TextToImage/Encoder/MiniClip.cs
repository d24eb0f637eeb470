using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.TextToImage;

/// <summary>
/// A small image encoder for the contrastive loss: three 3×3 convolutions (32, 64, 64 channels) with SiLU, average pooling
/// between them (28 → 14 → 7), the mean over the positions, and a linear map into the joint space.
/// </summary>
public sealed class ImageEncoder : Module<Tensor, Tensor>
{
    readonly SafeConv2d conv1, conv2, conv3;
    readonly Linear proj;

    public ImageEncoder(int channels, int embedDim) : base(nameof(ImageEncoder))
    {
        conv1 = new SafeConv2d(channels, 32, 3, padding: 1);
        conv2 = new SafeConv2d(32, 64, 3, padding: 1);
        conv3 = new SafeConv2d(64, 64, 3, padding: 1);
        proj = Linear(64, embedDim);
        RegisterComponents();
    }

    /// <summary>Images [B, C, H, W] in [−1, 1] → embeddings [B, EmbedDim].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        x = F.avg_pool2d(F.silu(conv1.call(x)), 2);
        x = F.avg_pool2d(F.silu(conv2.call(x)), 2);
        x = F.silu(conv3.call(x)).mean([2, 3]);
        return proj.call(x).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// A miniature CLIP (Radford et al. 2021): a <see cref="TextEncoder"/> and an <see cref="ImageEncoder"/> trained so that a
/// picture and its caption land close together in a joint space — the symmetric contrastive (InfoNCE) loss over the
/// batch, with a learned temperature. After training, the text encoder's token features are what the text-conditioned
/// U-Net reads, and the cosine similarity of a picture and a prompt is the "CLIP score".
/// </summary>
public sealed class MiniClip : Module<Tensor, Tensor, Tensor, Tensor>
{
    readonly TextEncoder text;
    readonly ImageEncoder image;
    readonly Parameter logit_scale;

    /// <summary>CLIP caps the logit scale at 100 (ln 100 ≈ 4.6) to keep training stable.</summary>
    public const double MaxLogitScale = 4.6052;

    public MiniClip(TextEncoderConfig config, int channels = 1) : base(nameof(MiniClip))
    {
        text = new TextEncoder(config);
        image = new ImageEncoder(channels, config.EmbedDim);
        logit_scale = new Parameter(tensor(new[] { (float)Math.Log(1 / 0.07) }));   // CLIP's initial temperature 0.07
        RegisterComponents();
    }

    public TextEncoder Text => text;
    public ImageEncoder Image => image;

    /// <summary>Unit-length embeddings of prompts (ids [B, L], mask [B, L]).</summary>
    public Tensor EmbedText(Tensor ids, Tensor mask)
    {
        using var scope = NewDisposeScope();
        return F.normalize(text.Embed(text.call(ids, mask), mask), dim: -1).MoveToOuterDisposeScope();
    }

    /// <summary>Unit-length embeddings of images [B, C, H, W] in [−1, 1].</summary>
    public Tensor EmbedImages(Tensor images)
    {
        using var scope = NewDisposeScope();
        return F.normalize(image.call(images), dim: -1).MoveToOuterDisposeScope();
    }

    /// <summary>The temperature's inverse, e^{logit_scale}, capped at 100.</summary>
    public Tensor Scale() => logit_scale.clamp(max: MaxLogitScale).exp();

    /// <summary>
    /// The symmetric contrastive loss of a batch of (image i, caption i) pairs: logits_ij = e^s · ⟨img_i, txt_j⟩ of unit
    /// vectors; ½ [CE(logits, i) + CE(logitsᵀ, i)] — each image must pick its caption among the batch's, and each caption
    /// its image.
    /// </summary>
    public override Tensor forward(Tensor images, Tensor ids, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var logits = Scale() * matmul(EmbedImages(images), EmbedText(ids, mask).t());
        var targets = arange(images.shape[0], dtype: ScalarType.Int64, device: images.device);
        return ((F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2).MoveToOuterDisposeScope();
    }
}
