using Diffusion.Data;

namespace Diffusion.TextToImage;

/// <summary>How often the mini-CLIP picks a picture's own word of an attribute pair ("dark" vs "light"); chance is ½.</summary>
/// <param name="Pairs">Pictures judged (those whose caption has a word for the attribute).</param>
public sealed record AttributeRetrieval(string Attribute, int Pairs, double Accuracy);

/// <summary>
/// What the trained mini-CLIP knows, measured as CLIP is: zero-shot classification (the prompt "a photo of a {class}" with
/// the highest cosine similarity to the picture wins) and attribute retrieval (between "a photo of a dark coat" and "a
/// photo of a light coat", does the picture pick the word its caption would use?).
/// </summary>
public static class MiniClipEvaluation
{
    /// <summary>Unit-length embeddings of the prompts [P, E], no gradients.</summary>
    public static Tensor EmbedPrompts(MiniClip clip, WordTokenizer tokenizer, IReadOnlyList<string> prompts)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var device = clip.parameters().First().device;
        var (ids, mask) = PromptTokens.Encode(tokenizer, prompts, clip.Text.Config.ContextLength, device);
        return clip.EmbedText(ids, mask).MoveToOuterDisposeScope();
    }

    /// <summary>Unit-length embeddings [N, E] of the pictures <paramref name="start"/>..start+count−1, optionally mirrored.</summary>
    static Tensor EmbedImages(MiniClip clip, ImageDataset data, long start, long count, bool mirrored = false)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var device = clip.parameters().First().device;
        var x = data.ModelInputs(arange(start, start + count, dtype: ScalarType.Int64));
        if (mirrored) x = x.flip(3);
        return clip.EmbedImages(x.to(device)).cpu().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The fraction of the first <paramref name="count"/> pictures of <paramref name="data"/> whose own class prompt
    /// (<see cref="PromptTokens.ClassPrompt"/>) is the most similar of the ten. Chance is 10 %.
    /// </summary>
    public static double ZeroShotAccuracy(MiniClip clip, WordTokenizer tokenizer, ImageDataset data, long? count = null, int batchSize = 500)
    {
        if (data.Labels is null) throw new ArgumentException("zero-shot accuracy needs labelled pictures");
        clip.eval();
        long n = Math.Min(count ?? data.Count, data.Count);
        using var classes = EmbedPrompts(clip, tokenizer, Enumerable.Range(0, Captions.ClassNouns.Length).Select(k => PromptTokens.ClassPrompt(k)).ToArray());
        using var classesCpu = classes.cpu();
        long correct = 0;
        for (long start = 0; start < n; start += batchSize)
        {
            using var scope = NewDisposeScope();
            long m = Math.Min(batchSize, n - start);
            var predicted = matmul(EmbedImages(clip, data, start, m), classesCpu.t()).argmax(1);
            correct += predicted.eq(data.Labels[TensorIndex.Slice(start, start + m)]).sum().item<long>();
        }
        return correct / (double)n;
    }

    /// <summary>
    /// Attribute retrieval on the first <paramref name="count"/> pictures: for each graded attribute (and the shoes'
    /// direction, judged on each shoe and its mirror image), among the pictures whose caption would use a word for it,
    /// the fraction that is more similar to "a photo of a {its word} {noun}" than to "a photo of a {the other word} {noun}".
    /// </summary>
    public static AttributeRetrieval[] AttributeAccuracy(MiniClip clip, WordTokenizer tokenizer, ImageDataset data,
        CaptionThresholds thresholds, long? count = null)
    {
        clip.eval();
        long n = Math.Min(count ?? data.Count, data.Count);
        using var subset = Subset(data, n);
        var captions = new CaptionSource(subset, thresholds);
        using var images = EmbedImages(clip, subset, 0, n);
        using var mirroredImages = EmbedImages(clip, subset, 0, n, mirrored: true);
        var results = new List<AttributeRetrieval>();
        for (int a = 0; a < Captions.Attributes.Length; a++)
        {
            var words = Captions.Attributes[a];
            results.Add(Judge(words.Name, words.Low, words.High, i => captions.Facts(i).Words[a], images,
                (k, w) => PromptTokens.ClassPrompt(k, w)));
        }
        // Direction: "{noun} facing left" vs "{noun} facing right", on the shoes and on their mirror images.
        string Direction(int k, string w) => $"{PromptTokens.ClassPrompt(k)} {w}";
        var left = Judge("direction", "facing left", "facing right", i => captions.Facts(i).Direction, images, Direction);
        var right = Judge("direction", "facing left", "facing right", i => captions.Facts(i, mirrored: true).Direction, mirroredImages, Direction);
        int pairs = left.Pairs + right.Pairs;
        results.Add(new AttributeRetrieval("direction", pairs,
            pairs == 0 ? double.NaN : (left.Accuracy * left.Pairs + right.Accuracy * right.Pairs) / pairs));
        return results.ToArray();

        AttributeRetrieval Judge(string name, string low, string high, Func<int, string?> wordOf, Tensor embedded, Func<int, string, string> prompt)
        {
            int judged = 0, correct = 0;
            // Both prompts of every class once: [class k low, class k high] for k = 0..9.
            var prompts = Enumerable.Range(0, Captions.ClassNouns.Length).SelectMany(k => new[] { prompt(k, low), prompt(k, high) }).ToArray();
            using var scope = NewDisposeScope();
            var text = EmbedPrompts(clip, tokenizer, prompts).cpu();
            var similarity = matmul(embedded, text.t()).data<float>().ToArray();     // [n, 20]
            for (int i = 0; i < n; i++)
            {
                var word = wordOf(i);
                if (word is null) continue;
                int k = captions.Labels[i];
                float sLow = similarity[i * prompts.Length + 2 * k], sHigh = similarity[i * prompts.Length + 2 * k + 1];
                judged++;
                if ((word == low) == (sLow > sHigh)) correct++;
            }
            return new AttributeRetrieval(name, judged, judged == 0 ? double.NaN : correct / (double)judged);
        }
    }

    static ImageDataset Subset(ImageDataset data, long n)
    {
        using var scope = NewDisposeScope();
        return new ImageDataset(data.Images[TensorIndex.Slice(0, n)].clone(), data.Labels![TensorIndex.Slice(0, n)].clone(),
            data.ClassNames, $"first {n} of {data.Description}");
    }
}
