using Diffusion.Evaluation;

namespace Diffusion.TextToImage;

/// <summary>How often the pictures drawn for a prompt have one of its attribute words, measured from their pixels.</summary>
/// <param name="Agreement">Share of the pictures whose measured word (in the prompted class's terciles) is the prompted one.</param>
/// <param name="Chance">The share a picture drawn at random from the class would reach: ⅓ for a tercile word, ½ for a direction.</param>
/// <param name="Judged">Pictures the share is over (for a direction: those that face a side at all).</param>
public sealed record AttributeScore(string Attribute, string Word, double Agreement, double Chance, int Judged);

/// <summary>The averages of <see cref="TextToImageEvaluation.Summarize"/>: over <paramref name="Prompts"/> prompts, the attributes' words left empty.</summary>
public sealed record EvaluationSummary(int Prompts, double ClassAgreement, AttributeScore[] Attributes, double? ClipScore);

/// <summary>What the pictures drawn for one prompt show, measured as a paper would.</summary>
public sealed record PromptScore
{
    public required string Prompt { get; init; }
    public required int Class { get; init; }
    public required int Count { get; init; }
    /// <summary>Share of the pictures the Fashion-MNIST classifier puts in the prompted class (chance 10 %).</summary>
    public required double ClassAgreement { get; init; }
    /// <summary>One entry per attribute word of the prompt.</summary>
    public required AttributeScore[] Attributes { get; init; }
    /// <summary>The CLIP-score analogue: mean cosine similarity of the mini-CLIP's picture and prompt embeddings (null: no mini-CLIP given).</summary>
    public double? ClipScore { get; init; }
    /// <summary>True if the prompt says a combination the model never read in training (<see cref="HeldOut"/>).</summary>
    public bool IsHeldOut { get; init; }
}

/// <summary>
/// Measures text-to-image pictures against their prompts: the course's Fashion-MNIST classifier for the class, the
/// caption attribute formulas (<see cref="GarmentAttributes"/>) with the training set's terciles for the words, and the
/// mini-CLIP for a CLIP-score analogue (Hessel et al. 2021's CLIPScore without its rescaling).
/// </summary>
public static class TextToImageEvaluation
{
    /// <summary>"a photo of a dark plain ankle boot facing left": the prompt of <paramref name="facts"/> (attribute order, no synonyms).</summary>
    public static string Prompt(CaptionFacts facts)
    {
        var adjectives = facts.Words.OfType<string>().ToArray();
        var text = PromptTokens.ClassPrompt(facts.Class, adjectives.Length == 0 ? null : string.Join(' ', adjectives));
        return facts.Direction is null ? text : $"{text} {facts.Direction}";
    }

    /// <summary>The measurements of pictures [N, 1, H, W] in the model's space [−1, 1] (intensity (x + 1)/2, as pixel/255).</summary>
    public static Measurements[] Measure(Tensor images)
    {
        if (images.dim() != 4 || images.shape[1] != 1 || images.shape[2] != images.shape[3])
            throw new ArgumentException($"expected square grayscale pictures [N, 1, H, H], got [{string.Join(", ", images.shape)}]");
        int n = (int)images.shape[0], size = (int)images.shape[2], pixels = size * size;
        float[] values;
        using (var scope = NewDisposeScope())
            values = ((images.detach().cpu().to(ScalarType.Float32) + 1) / 2).clamp(0, 1).contiguous().data<float>().ToArray();
        return Enumerable.Range(0, n).Select(i => GarmentAttributes.Measure(values.AsSpan(i * pixels, pixels), size)).ToArray();
    }

    /// <summary>
    /// Scores <paramref name="images"/> [N, 1, 28, 28] (in [−1, 1]) drawn for <paramref name="prompt"/>: classifier agreement,
    /// the agreement of each prompted word with the pictures' measured words, and (with a mini-CLIP) the mean cosine similarity.
    /// </summary>
    public static PromptScore Score(CaptionFacts prompt, Tensor images, FashionClassifier classifier, CaptionThresholds thresholds,
        MiniClip? clip = null, WordTokenizer? tokenizer = null, IReadOnlyCollection<HeldOutPair>? heldOut = null)
    {
        if ((clip is null) != (tokenizer is null)) throw new ArgumentException("give the mini-CLIP together with its tokenizer");
        int n = (int)images.shape[0];
        if (n < 1) throw new ArgumentException("no pictures to score");
        double classAgreement;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            classifier.eval();
            var predicted = classifier.Predict(images.cpu().to(ScalarType.Float32));
            classAgreement = predicted.eq(prompt.Class).sum().item<long>() / (double)n;
        }
        var facts = Measure(images).Select(m => Captions.Facts(m, prompt.Class, thresholds)).ToArray();
        var attributes = new List<AttributeScore>();
        for (int a = 0; a < Captions.Attributes.Length; a++)
        {
            if (prompt.Words[a] is not { } word) continue;
            attributes.Add(new AttributeScore(Captions.Attributes[a].Name, word, facts.Count(f => f.Words[a] == word) / (double)n, 1 / 3.0, n));
        }
        if (prompt.Direction is { } direction)
        {
            var sided = facts.Where(f => f.Direction is not null).ToArray();
            attributes.Add(new AttributeScore("direction", direction,
                sided.Length == 0 ? double.NaN : sided.Count(f => f.Direction == direction) / (double)sided.Length, 0.5, sided.Length));
        }
        double? clipScore = null;
        if (clip is not null)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            clip.eval();
            var device = clip.parameters().First().device;
            var text = MiniClipEvaluation.EmbedPrompts(clip, tokenizer!, [Prompt(prompt)]);
            var pictures = clip.EmbedImages(images.to(ScalarType.Float32).to(device));
            // cos(image_i, prompt) of unit vectors, averaged over the pictures
            clipScore = matmul(pictures, text.t()).mean().item<float>();
        }
        return new PromptScore
        {
            Prompt = Prompt(prompt), Class = prompt.Class, Count = n, ClassAgreement = classAgreement, Attributes = attributes.ToArray(), ClipScore = clipScore,
            IsHeldOut = heldOut is not null && HeldOut.Involves(prompt, heldOut),
        };
    }

    /// <summary>
    /// The averages over many prompts' scores: class agreement over all prompts, each attribute's agreement over the
    /// prompts that name a word of it (NaN shares, from prompts whose pictures never face a side, left out), the CLIP score.
    /// </summary>
    public static EvaluationSummary Summarize(IReadOnlyList<PromptScore> scores)
    {
        if (scores.Count == 0) throw new ArgumentException("no scores to summarise");
        var attributes = scores.SelectMany(s => s.Attributes).Where(a => !double.IsNaN(a.Agreement)).GroupBy(a => a.Attribute)
            .Select(g => new AttributeScore(g.Key, "", g.Average(a => a.Agreement), g.First().Chance, g.Sum(a => a.Judged))).ToArray();
        var clip = scores.Where(s => s.ClipScore is not null).Select(s => s.ClipScore!.Value).ToArray();
        return new EvaluationSummary(scores.Count, scores.Average(s => s.ClassAgreement), attributes, clip.Length == 0 ? null : clip.Average());
    }

    /// <summary>
    /// An evaluation grid of prompts: each class alone, each class with each graded word, and the shoes facing each way
    /// (10 + 10·6 + 3·2 = 76 prompts).
    /// </summary>
    public static IReadOnlyList<CaptionFacts> PromptGrid()
    {
        var grid = new List<CaptionFacts>();
        int attributes = Captions.Attributes.Length;
        for (int k = 0; k < Captions.ClassNouns.Length; k++)
        {
            grid.Add(new CaptionFacts(k, new string?[attributes], null));
            for (int a = 0; a < attributes; a++)
                foreach (var word in new[] { Captions.Attributes[a].Low, Captions.Attributes[a].High })
                {
                    var words = new string?[attributes];
                    words[a] = word;
                    grid.Add(new CaptionFacts(k, words, null));
                }
            if (GarmentAttributes.ShoeClasses.Contains(k))
                foreach (var d in new[] { "facing left", "facing right" }) grid.Add(new CaptionFacts(k, new string?[attributes], d));
        }
        return grid;
    }
}
