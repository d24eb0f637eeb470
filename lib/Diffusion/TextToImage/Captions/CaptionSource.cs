using Diffusion.Data;

namespace Diffusion.TextToImage;

/// <summary>
/// The captions of a labelled Fashion-MNIST-like dataset: every picture measured once (<see cref="GarmentAttributes"/>),
/// the per-class terciles fitted on it (or given, e.g. the training set's for the test set), and
/// <see cref="Caption"/> for picture i, mirrored or not, in one of the templates. The same (index, mirrored, seed) gives
/// the same caption on every run.
/// </summary>
public sealed class CaptionSource
{
    /// <summary>The measurements of every picture, in the dataset's order.</summary>
    public IReadOnlyList<Measurements> Measurements { get; }
    /// <summary>The label of every picture.</summary>
    public IReadOnlyList<int> Labels { get; }
    /// <summary>The terciles the attribute words are cut at.</summary>
    public CaptionThresholds Thresholds { get; }

    /// <param name="thresholds">null: fit the terciles on this dataset (the training set); give the training set's for the test set.</param>
    public CaptionSource(ImageDataset data, CaptionThresholds? thresholds = null)
    {
        if (data.Labels is null) throw new ArgumentException("captions need labelled pictures: this dataset has no labels");
        Measurements = MeasureAll(data);
        Labels = data.Labels.data<long>().ToArray().Select(l => (int)l).ToArray();
        Thresholds = thresholds ?? CaptionThresholds.Fit(Measurements, Labels, Math.Max(data.ClassNames.Count, Labels.Max() + 1));
        if (Thresholds.Terciles.Length <= Labels.Max())
            throw new ArgumentException($"the thresholds know {Thresholds.Terciles.Length} classes, the data has labels up to {Labels.Max()}");
    }

    /// <summary>The facts of picture <paramref name="index"/> (its mirror image when <paramref name="mirrored"/>).</summary>
    public CaptionFacts Facts(int index, bool mirrored = false)
    {
        var m = Measurements[index];
        return Captions.Facts(mirrored ? m.Mirrored : m, Labels[index], Thresholds);
    }

    /// <summary>
    /// The caption of picture <paramref name="index"/>, mirrored or not; <paramref name="seed"/> picks template and synonyms;
    /// the words of <paramref name="heldOut"/> combinations are left out (<see cref="HeldOut.Remove"/>).
    /// </summary>
    public string Caption(int index, bool mirrored = false, int seed = 0, IReadOnlyCollection<HeldOutPair>? heldOut = null) =>
        Captions.Caption(heldOut is null ? Facts(index, mirrored) : HeldOut.Remove(Facts(index, mirrored), heldOut), index, seed);

    /// <summary>
    /// <see cref="GarmentAttributes.Measure"/> of every picture of a grayscale uint8 dataset (intensities pixel/255).
    /// </summary>
    public static Measurements[] MeasureAll(ImageDataset data)
    {
        if (data.IsModelSpace || data.Channels != 1 || data.Height != data.Width)
            throw new ArgumentException($"captions are measured on square grayscale pixel pictures, got {data.Channels} channel(s) of {data.Width}×{data.Height}{(data.IsModelSpace ? " float data" : "")}");
        int n = (int)data.Count, size = data.Height, pixels = size * size;
        byte[] bytes;
        using (var scope = NewDisposeScope()) bytes = data.Images.contiguous().data<byte>().ToArray();
        var result = new Measurements[n];
        var image = new float[pixels];
        for (int i = 0; i < n; i++)
        {
            for (int p = 0; p < pixels; p++) image[p] = bytes[(long)i * pixels + p] / 255f;
            result[i] = GarmentAttributes.Measure(image, size);
        }
        return result;
    }
}

/// <summary>Prompts → the token ids and the attention mask the text encoder reads.</summary>
public static class PromptTokens
{
    /// <summary>Ids [B, L] (int64) and mask [B, L] (true = token) of <paramref name="prompts"/>, cut or padded to <paramref name="contextLength"/>.</summary>
    public static (Tensor Ids, Tensor Mask) Encode(WordTokenizer tokenizer, IReadOnlyList<string> prompts, int contextLength, Device? device = null)
    {
        var encoded = prompts.Select(p => tokenizer.Encode(p, contextLength)).ToArray();
        using var scope = NewDisposeScope();
        var ids = tensor(encoded.SelectMany(e => e.Ids.Select(i => (long)i)).ToArray()).view(encoded.Length, contextLength);
        var mask = tensor(encoded.SelectMany(e => e.Mask).ToArray()).view(encoded.Length, contextLength);
        if (device is not null)
        {
            ids = ids.to(device);
            mask = mask.to(device);
        }
        return (ids.MoveToOuterDisposeScope(), mask.MoveToOuterDisposeScope());
    }

    /// <summary>"a" or "an" before <paramref name="word"/> in a phrase about <paramref name="noun"/>; none before a plural noun.</summary>
    public static string Article(string word, string noun) =>
        noun is "trousers" or "pants" ? "" : "aeiou".Contains(word[0]) ? "an" : "a";

    /// <summary>"a photo of a t-shirt", "a photo of trousers", "a photo of an ankle boot": the zero-shot prompt of class k.</summary>
    public static string ClassPrompt(int k, string? adjective = null)
    {
        string noun = Captions.ClassNouns[k][0];
        string phrase = adjective is null ? noun : $"{adjective} {noun}";
        string article = Article(phrase, noun);
        return article.Length == 0 ? $"a photo of {phrase}" : $"a photo of {article} {phrase}";
    }
}
