using Diffusion.Forward;
using Diffusion.Latent;
using Diffusion.Sampling;
using Diffusion.TextToImage;

namespace Diffusion.Visuals;

/// <summary>
/// Cross-attention maps of the text-to-image model (the idea behind prompt-to-prompt editing, Hertz et al. 2022): while
/// a few pictures of one prompt are sampled with guidance, the finest spatial transformers record their attention
/// weights at every solver step; the conditional half of each guided batch is kept and averaged over heads, steps and
/// transformers. Column j of a picture's map says how much attention each latent cell paid to token j.
/// </summary>
public static class AttentionMaps
{
    /// <summary>
    /// Samples <paramref name="count"/> pictures of <paramref name="prompt"/> (guidance weight <paramref name="w"/>, solver
    /// <paramref name="spec"/>, seed <paramref name="seed"/>) while recording the finest cross-attention, and returns the
    /// averaged maps with the decoded pictures. Checks that every cell still spreads exactly 1 over the prompt's tokens and
    /// 0 over the padding.
    /// </summary>
    public static AttentionMapResult Record(TextToImageModel model, string prompt, IReadOnlyList<string> words, int count,
        SamplerSpec spec, double w, int seed, Device? device = null)
    {
        device ??= Diffusion.Platform.Compute.Device;
        var info = model.Info;
        var config = info.Diffusion;
        int contextLength = model.Encoder.Config.ContextLength;
        var tokens = model.Tokenizer.Encode(prompt, contextLength);
        int[] positions = words.Select(word =>
        {
            for (int j = 0; j < tokens.Length; j++)
            {
                int id = tokens.Ids[j];
                if (id >= WordTokenizer.FirstWord && model.Tokenizer.Words[id - WordTokenizer.FirstWord] == word) return j;
            }
            throw new ArgumentException($"\"{word}\" is not a word of the prompt \"{prompt}\"");
        }).ToArray();

        spec = spec.Validate(config.Timesteps, config.Variance == VarianceType.Learned);
        using var schedule = config.CreateSchedule();
        using var sampler = spec.Create(schedule, config.Prediction);
        using var text = TextCondition.Encode(model.Encoder, model.Tokenizer, new[] { prompt }, device);
        using var index = zeros(count, dtype: ScalarType.Int64);                        // every picture shows prompt 0
        DenoisingModel guided = text.Guided(model.Unet, index, w);
        if (config.Prediction == Prediction.Epsilon) guided = LatentSpace.ClipStart(guided, schedule);

        long finest = 0;
        Tensor? sum = null;
        int calls = 0;
        // The sampler's model: the guided U-Net, and after each call the recorded weights of the finest transformers.
        DenoisingModel recording = (zt, t) =>
        {
            var eps = guided(zt, t);
            using (no_grad())
            {
                var recorded = model.Unet.Transformers.Select(s => s.LastCrossAttention!).ToList();
                finest = recorded.Max(a => a.shape[2]);
                foreach (var a in recorded.Where(a => a.shape[2] == finest))
                {
                    using var scope = NewDisposeScope();
                    var conditional = a[..count].mean(new long[] { 1 });                    // rows with the prompt, mean over heads: [count, H·W, L]
                    if (sum is null) sum = zeros_like(conditional).DetachFromDisposeScope();
                    sum.add_(conditional);
                    calls++;
                }
            }
            return eps;
        };

        model.Unet.eval();
        model.Autoencoder.eval();
        foreach (var s in model.Unet.Transformers) s.RecordCrossAttention = true;
        Tensor images;
        try
        {
            using var generator = new Generator((ulong)seed);
            using var result = sampler.Sample(recording, new long[] { count, config.Unet.Channels, config.ImageSize, config.ImageSize }, generator, device);
            images = LatentSpace.Decode(model.Autoencoder, result.Samples, info.ScalingFactor).cpu().DetachFromDisposeScope();
        }
        finally
        {
            foreach (var s in model.Unet.Transformers) { s.RecordCrossAttention = false; s.ClearRecorded(); }
        }
        if (sum is null || calls == 0) throw new InvalidOperationException("no cross-attention was recorded");
        Tensor maps;
        using (sum) maps = (sum / calls).cpu().DetachFromDisposeScope();
        int side = (int)Math.Round(Math.Sqrt(finest));

        double rowError = (maps.sum(-1) - 1).abs().max().item<float>();
        double padding = tokens.Length < contextLength ? maps[.., .., tokens.Length..].abs().max().item<float>() : 0;
        if (rowError > 1e-4 || padding != 0)
            throw new InvalidOperationException($"the averaged maps do not sum to 1 over the tokens ({rowError}) or touch the padding ({padding})");
        return new AttentionMapResult(maps, images, side, positions, words.ToArray(), tokens.Length, calls, rowError);
    }
}

/// <summary>Averaged cross-attention maps and the pictures they were recorded for.</summary>
/// <param name="Maps">[pictures, side·side, L]: attention of every latent cell to every token, averaged.</param>
/// <param name="Images">The decoded pictures [pictures, C, 28, 28] in [−1, 1].</param>
/// <param name="Side">The cells per side of the finest cross-attention (the latent is halved once before it).</param>
/// <param name="Positions">The token position of each word.</param>
/// <param name="Words">The words whose maps are drawn.</param>
/// <param name="Tokens">Real tokens of the prompt (start and end included).</param>
/// <param name="Recorded">How many maps were averaged (solver steps × finest transformers).</param>
/// <param name="RowSumError">Largest |Σ_j A_ij − 1| of the averaged maps (0 up to rounding).</param>
public sealed record AttentionMapResult(Tensor Maps, Tensor Images, int Side, int[] Positions, string[] Words, int Tokens, int Recorded, double RowSumError) : IDisposable
{
    /// <summary>
    /// One row per picture: the picture, then each word's map stretched to the picture (nearest neighbour) and laid over
    /// it in red (red = ½·picture + ½·map, green = blue = ½·picture); each map scaled to its own range. [pictures·(1 + words), 3, H, W] in [−1, 1].
    /// </summary>
    public Tensor Overlays()
    {
        using var scope = NewDisposeScope();
        long size = Images.shape[2];
        var tiles = new List<Tensor>();
        for (int b = 0; b < Images.shape[0]; b++)
        {
            var picture = (Images[b].clamp(-1, 1) + 1) / 2;                               // [1, H, W] in [0, 1]
            tiles.Add(picture.expand(3, -1, -1) * 2 - 1);
            foreach (var c in Positions)
            {
                var m = Maps[b, .., c].reshape(1, 1, Side, Side);
                m = (m - m.min()) / (m.max() - m.min() + 1e-8);
                var onPixels = nn.functional.interpolate(m, size: new long[] { size, size }, mode: InterpolationMode.Nearest)[0];
                tiles.Add(cat(new[] { 0.5 * picture + 0.5 * onPixels, 0.5 * picture, 0.5 * picture }) * 2 - 1);
            }
        }
        return stack(tiles).MoveToOuterDisposeScope();
    }

    /// <summary>One word's map of one picture on a <paramref name="latentSize"/>² grid, rows from the bottom (for a heat map).</summary>
    public double[][] OnLatent(int picture, string word, int latentSize)
    {
        using var scope = NewDisposeScope();
        int c = Positions[Array.IndexOf(Words, word)];
        var map = Maps[picture, .., c].reshape(1, 1, Side, Side);
        var grid = nn.functional.interpolate(map, size: new long[] { latentSize, latentSize }, mode: InterpolationMode.Nearest)[0, 0];
        return Enumerable.Range(0, latentSize).Reverse().Select(r => grid[r].data<float>().Select(v => (double)v).ToArray()).ToArray();
    }

    /// <summary>Per word: mean weight over all cells and pictures, the largest and the smallest cell.</summary>
    public IEnumerable<(string Word, double Mean, double Largest, double Smallest)> Summary() =>
        Words.Select((word, i) =>
        {
            using var scope = NewDisposeScope();
            var column = Maps[.., .., Positions[i]];
            return (word, (double)column.mean().item<float>(), (double)column.max().item<float>(), (double)column.min().item<float>());
        }).ToList();

    public void Dispose()
    {
        Maps.Dispose();
        Images.Dispose();
    }
}
