using Diffusion.Forward;
using Diffusion.Data;
using Diffusion.Platform;
using Diffusion.Sampling;
using Diffusion.Training;

namespace Diffusion.Latent;

/// <summary>
/// The glue of latent diffusion (Rombach et al. 2022, §3–4): encode the data once with a trained autoencoder, scale
/// the latents to unit variance, train the course's diffusion model on them unchanged, and decode its samples.
/// </summary>
public static class LatentSpace
{
    /// <summary>
    /// The encoder's latents μ(x) [N, c, h, w] (float32, CPU, unscaled) of all images of <paramref name="data"/>
    /// (or the first <paramref name="count"/>), computed in batches without gradients.
    /// </summary>
    public static Tensor EncodeAll(Autoencoder ae, ImageDataset data, long? count = null, int batchSize = 500)
    {
        long n = Math.Min(count ?? data.Count, data.Count);
        var parts = new List<Tensor>();
        ae.eval();
        using (no_grad())
        {
            for (long start = 0; start < n; start += batchSize)
            {
                using var scope = NewDisposeScope();
                var idx = arange(start, Math.Min(n, start + batchSize), dtype: ScalarType.Int64);
                var x = data.ModelInputs(idx).to(Compute.Device);
                parts.Add(ae.Encode(x).cpu().MoveToOuterDisposeScope());
            }
        }
        using var scope2 = NewDisposeScope();
        var all = cat(parts, 0);
        foreach (var p in parts) p.Dispose();
        return all.contiguous().clone().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// s = 1 / std(z) over every element of the latents (float64). Rombach et al. (appendix G) rescale the latents of
    /// their KL autoencoder "component-wise by the standard deviation of a batch" — SD's 0.18215 — so that z·s has
    /// unit variance, like the N(0, I) noise the diffusion starts from.
    /// </summary>
    public static double ScalingFactor(Tensor latents)
    {
        using var scope = NewDisposeScope();
        return 1.0 / latents.to(ScalarType.Float64).std().item<double>();
    }

    /// <summary>The scaled latents s·μ(x) as a dataset the course's <see cref="Trainer"/> trains on (as x_0, unchanged).</summary>
    public static ImageDataset Dataset(Tensor latents, double scalingFactor, ImageDataset source, long? count = null)
    {
        long n = latents.shape[0];
        using var scope = NewDisposeScope();
        var scaled = (latents * scalingFactor).to(ScalarType.Float32).contiguous();
        var labels = source.Labels?[..(int)n].clone();
        return new ImageDataset(scaled, labels, source.ClassNames,
            $"latents ×{scalingFactor:G4} of {source.Description} ({n} images, {latents.shape[1]}×{latents.shape[2]}×{latents.shape[3]})");
    }

    /// <summary>D(z/s): scaled latents back to images [B, C, 28, 28] in [−1, 1] (clamped), no gradients.</summary>
    public static Tensor Decode(Autoencoder ae, Tensor scaledLatents, double scalingFactor)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        return ae.Decode(scaledLatents / scalingFactor).clamp(-1, 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The diffusion model for latents: the course's default U-Net (dim 28, dim_mults 1,2,4, linear attention at the two
    /// lower levels) with the latent's channels, cosine schedule, T = 500, ε-prediction — the pixel model's settings,
    /// so that the cost comparison changes only the input. With <paramref name="classNames"/> it is
    /// class-conditional (the label is the simplest "prompt").
    /// </summary>
    public static DiffusionModelConfig DiffusionConfig(AutoencoderConfig ae, IReadOnlyList<string>? classNames = null) => new()
    {
        Unet = new UnetConfig
        {
            Dim = 28, DimMults = [1, 2, 4], LinearAttentionLevels = [1, 2], Channels = ae.LatentChannels,
            NumClasses = classNames?.Count ?? 0,
        },
        Schedule = ScheduleKind.Cosine,
        Timesteps = 500,
        ImageSize = ae.LatentSize,
        ClassNames = classNames?.ToArray() ?? [],
        Data = "scaled autoencoder latents of Fashion-MNIST",
    };

    /// <summary>
    /// Classifier-free guidance for the latent U-Net, in the course's convention (notebook 08, Ho &amp; Salimans 2022 eq. 6):
    /// ε̃ = (1 + w)·ε_θ(z_t, t, y) − w·ε_θ(z_t, t, ∅); w = 0 is plain conditional sampling, w = −1 unconditional
    /// (diffusers' guidance_scale s = 1 + w). One batched pass; see <see cref="ClassifierFreeGuidance.Guide"/>.
    /// </summary>
    public static DenoisingModel Guided(Unet net, Tensor classes, double w)
    {
        if (net.Config.NumClasses == 0) throw new ArgumentException("guidance needs a class-conditional U-Net");
        return ClassifierFreeGuidance.Guide((x, t, c) => net.forward(x, t, c), classes, net.Config.NumClasses, w);
    }

    /// <summary>
    /// Range for x̂_0 when sampling scaled latents: real ones stay within about ±3.6 (shipped autoencoder). Without it,
    /// sampled latents of the shipped model reached a standard deviation of 31 instead of 1 (DDIM-50, w = 3); with it, 1.1.
    /// </summary>
    public const double LatentClip = 4.0;

    /// <summary>
    /// Clips the implied x̂_0 of an ε-predicting model to ±<paramref name="limit"/> and returns the matching ε̂ — the
    /// samplers' x̂_0 clipping (to [−1, 1] for pixels) with a range that fits latents, done by the same function
    /// (<see cref="Forward.ForwardProcess.StartAndNoise(NoiseSchedule, Tensor, Tensor, Tensor, Forward.Prediction, bool, double)"/>):
    /// x̂_0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t, clamped, then ε̂' = (x_t − √ᾱ_t x̂_0)/√(1−ᾱ_t).
    /// </summary>
    public static DenoisingModel ClipStart(DenoisingModel model, NoiseSchedule schedule, double limit = LatentClip) => (x, t) =>
    {
        using var scope = NewDisposeScope();
        var (_, noise) = Forward.ForwardProcess.StartAndNoise(schedule, x, t, model(x, t), Forward.Prediction.Epsilon,
            clipStart: true, range: limit);
        return noise.MoveToOuterDisposeScope();
    };

    /// <summary>
    /// Samples latents with <paramref name="sampler"/> (no x̂_0 clipping: latents are not bounded to [−1, 1]) and decodes
    /// them: returns images [B, C, 28, 28] in [−1, 1].
    /// </summary>
    public static Tensor SampleImages(Autoencoder ae, double scalingFactor, DenoisingModel model, ISampler sampler,
        DiffusionModelConfig config, int count, Generator generator)
    {
        using var result = sampler.Sample(model, [count, config.Unet.Channels, config.ImageSize, config.ImageSize], generator,
            Compute.Device);
        return Decode(ae, result.Samples, scalingFactor);
    }

    /// <summary>Mean squared error per pixel (images in [−1, 1]) of the reconstruction D(μ(x)) over the first <paramref name="count"/> images.</summary>
    public static double ReconstructionMse(Autoencoder ae, ImageDataset data, long count, int batchSize = 500)
    {
        ae.eval();
        using var noGrad = no_grad();
        double sum = 0;
        long n = Math.Min(count, data.Count), pixels = 0;
        for (long start = 0; start < n; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var x = data.ModelInputs(arange(start, Math.Min(n, start + batchSize), dtype: ScalarType.Int64)).to(Compute.Device);
            sum += ae.forward(x).sub(x).square().sum().item<float>();
            pixels += x.numel();
        }
        return sum / pixels;
    }
}
