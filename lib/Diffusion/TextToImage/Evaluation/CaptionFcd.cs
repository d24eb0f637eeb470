using Diffusion.Data;
using Diffusion.Evaluation;

namespace Diffusion.TextToImage;

/// <summary>
/// The real side of a caption-conditioned FCD: the first <see cref="Count"/> t10k pictures (the reference half that
/// <see cref="SampleQuality"/> uses, t10k 0–4999), each with its caption from the course's caption builder
/// (<see cref="CaptionSource"/>, the model's own terciles), their feature statistics, and two floors from t10k's other half
/// (5000–9999, <see cref="SampleQuality"/>'s held-out half): <see cref="Floor"/>, the first N of them as they come (what
/// <c>eval</c> prints), and <see cref="MatchedFloor"/>, for each caption another real picture with the same caption facts —
/// what a perfect text-to-image model, one that returns a new real picture for each caption, would score. A model that
/// follows its captions copies their class and word mix, which N pictures taken as they come do not: it can beat the first
/// floor, not the second. Text-to-image papers measure this way on COCO: one picture generated per caption of N real
/// images, FID against those images (e.g. Saharia et al. 2022, Rombach et al. 2022).
/// </summary>
public sealed class CaptionedPictures : IDisposable
{
    /// <summary>The most captioned pictures: one half of t10k, so that the floor's pictures are other ones.</summary>
    public const int MaxCount = SampleQuality.ReferenceCount;

    /// <summary>The captions, caption i of t10k picture i (template and synonyms drawn from (seed, i), no word left out).</summary>
    public IReadOnlyList<string> Captions { get; }
    /// <summary>The class and words each caption was built from (what the generated picture is scored against).</summary>
    public IReadOnlyList<CaptionFacts> Facts { get; }
    /// <summary>The captioned real pictures [N, 1, 28, 28] in [−1, 1], in caption order.</summary>
    public Tensor Images { get; }
    /// <summary>μ and Σ of the classifier's features of <see cref="Images"/>.</summary>
    public FeatureStatistics Statistics { get; }
    /// <summary>FCD of t10k pictures 5000 … 5000 + N − 1 against <see cref="Images"/>.</summary>
    public double Floor { get; }
    /// <summary>FCD of <see cref="MatchedIndices"/>' pictures against <see cref="Images"/>.</summary>
    public double MatchedFloor { get; }
    /// <summary>For caption i, the t10k index (5000 or more) of a real picture with the same caption facts (<see cref="Match"/>).</summary>
    public IReadOnlyList<int> MatchedIndices { get; }
    /// <summary>How many of <see cref="MatchedIndices"/> have exactly their caption's facts (the others: the same class only, or any picture).</summary>
    public int ExactlyMatched { get; }
    public int Count => Captions.Count;

    /// <param name="test">The t10k set (10 000 labelled pictures).</param>
    /// <param name="thresholds">The terciles the text-to-image model's captions were cut at (its file stores them).</param>
    /// <param name="captionSeed">Picks each caption's template and synonyms, as in training.</param>
    public CaptionedPictures(ImageDataset test, CaptionThresholds thresholds, int count, FashionClassifier classifier, int captionSeed = 0)
    {
        if (count < 2 || count > MaxCount)
            throw new ArgumentOutOfRangeException(nameof(count), count,
                $"caption FCD needs 2 to {MaxCount} captioned pictures (a covariance needs two; the floor takes as many others from t10k's second half)");
        if (test.Count < 2 * MaxCount) throw new ArgumentException($"the test set needs {2 * MaxCount} pictures, has {test.Count}");
        using var scope = NewDisposeScope();
        using var captioned = new ImageDataset(test.Images[..count].clone(), test.Labels?[..count].clone(), test.ClassNames, $"first {count} of {test.Description}");
        var source = new CaptionSource(captioned, thresholds);
        Facts = Enumerable.Range(0, count).Select(i => source.Facts(i)).ToArray();
        Captions = Enumerable.Range(0, count).Select(i => source.Caption(i, seed: captionSeed)).ToArray();
        Images = Transforms.ToSignedUnit(captioned.Images).DetachFromDisposeScope();
        Statistics = SampleQuality.Statistics(classifier, Images);
        using var others = Transforms.ToSignedUnit(test.Images.narrow(0, MaxCount, count));
        Floor = SampleQuality.Fcd(classifier, others, Statistics);
        using var pool = new ImageDataset(test.Images.narrow(0, MaxCount, MaxCount).clone(), test.Labels?.narrow(0, MaxCount, MaxCount).clone(),
            test.ClassNames, $"second half of {test.Description}");
        var poolSource = new CaptionSource(pool, thresholds);
        var (picks, exact) = Match(Facts, Enumerable.Range(0, MaxCount).Select(j => poolSource.Facts(j)).ToArray());
        MatchedIndices = picks.Select(j => MaxCount + j).ToArray();
        ExactlyMatched = exact;
        using var matched = Transforms.ToSignedUnit(pool.Images.index_select(0, tensor(picks.Select(j => (long)j).ToArray())));
        MatchedFloor = SampleQuality.Fcd(classifier, matched, Statistics);
    }

    /// <summary>
    /// For each of <paramref name="wanted"/>, a different picture of <paramref name="pool"/>: the first unused one with the
    /// same class, words and direction; failing that the first unused one of the same class; failing that the first unused
    /// one. Returns the pool indices and how many matched exactly. Needs wanted.Count ≤ pool.Count.
    /// </summary>
    public static (int[] Picks, int Exact) Match(IReadOnlyList<CaptionFacts> wanted, IReadOnlyList<CaptionFacts> pool)
    {
        if (wanted.Count > pool.Count) throw new ArgumentException($"{wanted.Count} captions to match from {pool.Count} pictures: each needs its own");
        static string Key(CaptionFacts f) => $"{f.Class}|{string.Join(',', f.Words.Select(w => w ?? "-"))}|{f.Direction}";
        var byKey = pool.Select((f, j) => (Key: Key(f), j)).GroupBy(x => x.Key).ToDictionary(g => g.Key, g => new Queue<int>(g.Select(x => x.j)));
        var byClass = pool.Select((f, j) => (f.Class, j)).GroupBy(x => x.Class).ToDictionary(g => g.Key, g => new Queue<int>(g.Select(x => x.j)));
        var any = new Queue<int>(Enumerable.Range(0, pool.Count));
        var used = new bool[pool.Count];
        int? Next(Queue<int>? queue)
        {
            while (queue is { Count: > 0 })
                if (queue.Dequeue() is var j && !used[j]) return j;
            return null;
        }
        var picks = new int[wanted.Count];
        int exact = 0;
        for (int i = 0; i < wanted.Count; i++)
        {
            int? pick = Next(byKey.GetValueOrDefault(Key(wanted[i])));
            if (pick is not null) exact++;
            pick ??= Next(byClass.GetValueOrDefault(wanted[i].Class)) ?? Next(any);
            used[pick!.Value] = true;
            picks[i] = pick.Value;
        }
        return (picks, exact);
    }

    public void Dispose()
    {
        Images.Dispose();
        Statistics.Dispose();
    }
}

/// <summary>A caption-conditioned FCD and the prompt scores of the same pictures.</summary>
/// <param name="Count">Captions, one picture each.</param>
/// <param name="Fcd">FCD of the generated pictures against the captioned real ones.</param>
/// <param name="Floor">FCD of as many other real pictures against them (<see cref="CaptionedPictures.Floor"/>).</param>
/// <param name="MatchedFloor">FCD of another real picture per caption with the same caption facts (<see cref="CaptionedPictures.MatchedFloor"/>).</param>
/// <param name="Scores">Class agreement, attribute agreements and CLIP score of each picture with its caption, averaged.</param>
/// <param name="HeldOutCaptions">Captions that say a combination the model never read in training.</param>
public sealed record CaptionFcdResult(int Count, double Fcd, double Floor, double MatchedFloor, EvaluationSummary Scores, int HeldOutCaptions);

/// <summary>FCD of prompt-conditioned pictures: one picture drawn per caption of <see cref="CaptionedPictures"/>.</summary>
public static class CaptionFcd
{
    /// <summary>
    /// Draws one picture per caption, <paramref name="batch"/> captions at a time (<paramref name="draw"/> gets the captions
    /// and the index of the first; it returns their pictures [n, 1, 28, 28] in [−1, 1], in the same order), scores each
    /// against its caption (<see cref="TextToImageEvaluation.Score"/>) and returns the FCD against the real pictures.
    /// </summary>
    public static CaptionFcdResult Measure(CaptionedPictures real, Func<IReadOnlyList<string>, int, Tensor> draw, FashionClassifier classifier,
        CaptionThresholds thresholds, MiniClip? clip = null, WordTokenizer? tokenizer = null, IReadOnlyCollection<HeldOutPair>? heldOut = null,
        int batch = 100, Action<int>? progress = null)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), batch, "draw at least one caption at a time");
        var features = new List<Tensor>();
        var scores = new List<PromptScore>(real.Count);
        try
        {
            for (int start = 0; start < real.Count; start += batch)
            {
                int n = Math.Min(batch, real.Count - start);
                using var scope = NewDisposeScope();
                var images = draw(real.Captions.Skip(start).Take(n).ToArray(), start);
                if (images.dim() != 4 || images.shape[0] != n)
                    throw new InvalidOperationException($"asked for {n} pictures, got [{string.Join(", ", images.shape)}]");
                for (int i = 0; i < n; i++)
                    scores.Add(TextToImageEvaluation.Score(real.Facts[start + i], images.narrow(0, i, 1), classifier, thresholds, clip, tokenizer, heldOut));
                features.Add(classifier.FeaturesOf(images).DetachFromDisposeScope());
                progress?.Invoke(start + n);
            }
            using var all = cat(features);
            using var stats = FeatureStatistics.Of(all);
            return new CaptionFcdResult(real.Count, FrechetDistance.Compute(stats, real.Statistics), real.Floor, real.MatchedFloor, TextToImageEvaluation.Summarize(scores),
                heldOut is null ? 0 : real.Facts.Count(f => HeldOut.Involves(f, heldOut)));
        }
        finally
        {
            foreach (var f in features) f.Dispose();
        }
    }
}
