using Diffusion.Evaluation;
using Diffusion.Sampling;

namespace Diffusion.TextToImage;

/// <summary>The judges of generated pictures: the Fashion-MNIST classifier and, for the CLIP-score analogue, a mini-CLIP with its tokenizer.</summary>
public sealed record TextToImageJudges(FashionClassifier Classifier, MiniClip? Clip = null, WordTokenizer? Tokenizer = null);

/// <summary>What <see cref="TextToImageSweep.Run"/> measured at one guidance weight.</summary>
/// <param name="Summary">Over every prompt of the grid.</param>
/// <param name="HeldOut">Over the grid's prompts that say a held-out combination (null: none).</param>
/// <param name="Fcd">The caption-conditioned FCD and the scores of its pictures (null: not asked for).</param>
public sealed record GuidanceResult(double Guidance, double Seconds, EvaluationSummary Summary, EvaluationSummary? HeldOut,
    IReadOnlyList<PromptScore> Prompts, CaptionFcdResult? Fcd);

/// <summary>
/// A guidance sweep of a text-to-image model, one weight at a time: pictures for every prompt of a grid, scored against
/// the prompt (<see cref="TextToImageEvaluation.Score"/>), and, given <see cref="CaptionedPictures"/>, one picture per
/// real caption for the caption-conditioned FCD (<see cref="CaptionFcd"/>). Every weight draws from the same noise seeds,
/// so the weights differ only by the guidance. Prompts and captions are drawn <see cref="CaptionBatch"/> pictures at a time.
/// </summary>
public sealed class TextToImageSweep(TextToImageModel model, TextToImageSampler spec, TextToImageJudges judges, int seed, Device? device = null)
{
    /// <summary>Added to the seed of the caption pictures, so that they do not share noise with the grid's prompts.</summary>
    public const int CaptionSeedOffset = 1_000_000;

    /// <summary>Pictures drawn in one batch (whole grid prompts, or captions).</summary>
    public int CaptionBatch { get; init; } = 100;

    /// <summary>Progress steps of one <see cref="Run"/>: one per grid prompt and one per captioned picture.</summary>
    public static int Work(IReadOnlyList<CaptionFacts> grid, CaptionedPictures? captioned) => grid.Count + (captioned?.Count ?? 0);

    /// <summary>Scores <paramref name="perPrompt"/> pictures of each grid prompt, then (if given) the caption-conditioned FCD, at weight <paramref name="w"/>.</summary>
    public GuidanceResult Run(double w, IReadOnlyList<CaptionFacts> grid, int perPrompt, CaptionedPictures? captioned = null, Action<int, string>? report = null)
    {
        var thresholds = model.Info.Thresholds
            ?? throw new ArgumentException("the text-to-image model does not say which caption terciles it was trained with; retrain it with train-text2img");
        var heldOut = model.Info.HeldOut;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        // Several prompts per batch (as many as fill CaptionBatch pictures): the network runs far faster on 96 latents at once
        // than on 16 six times.
        int group = Math.Max(1, CaptionBatch / perPrompt);
        var scores = new List<PromptScore>(grid.Count);
        for (int first = 0; first < grid.Count; first += group)
        {
            var chunk = grid.Skip(first).Take(group).ToArray();
            using var images = model.Generate(chunk.Select(TextToImageEvaluation.Prompt).ToArray(), perPrompt, w, spec, seed + first, device);
            for (int j = 0; j < chunk.Length; j++)
            {
                using var own = images.narrow(0, j * perPrompt, perPrompt);          // Generate keeps prompt after prompt
                scores.Add(TextToImageEvaluation.Score(chunk[j], own, judges.Classifier, thresholds, judges.Clip, judges.Tokenizer, heldOut));
            }
            report?.Invoke(first + chunk.Length, scores[^1].Prompt);
        }
        var heldOutScores = scores.Where(s => s.IsHeldOut).ToList();
        CaptionFcdResult? fcd = captioned is null ? null : CaptionFcd.Measure(captioned,
            (captions, start) => model.Generate(captions.Select(c => model.CheckPrompt(c).Text).ToArray(), 1, w, spec, seed + CaptionSeedOffset + start, device),
            judges.Classifier, thresholds, judges.Clip, judges.Tokenizer, heldOut, CaptionBatch,
            done => report?.Invoke(grid.Count + done, $"{done} of {captioned.Count} captions"));
        return new GuidanceResult(w, sw.Elapsed.TotalSeconds, TextToImageEvaluation.Summarize(scores),
            heldOutScores.Count > 0 ? TextToImageEvaluation.Summarize(heldOutScores) : null, scores, fcd);
    }
}
