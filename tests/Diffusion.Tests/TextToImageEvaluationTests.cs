using Diffusion.Evaluation;
using Diffusion.TextToImage;

namespace Diffusion.Tests;

/// <summary>Scoring generated pictures against their prompts, on constructed pictures whose answer is known.</summary>
public class TextToImageEvaluationTests
{
    /// <summary>A picture in model space [1, 28, 28]: intensity <paramref name="value"/> in rows r0..r1, columns c0..c1, background −1.</summary>
    static Tensor Rectangle(int r0, int r1, int c0, int c1, float value)
    {
        var x = full(1, 28, 28, -1f);
        x[.., r0..(r1 + 1), c0..(c1 + 1)] = tensor(2 * value - 1);
        return x;
    }

    [Fact]
    public void PromptsReadLikeTheCaptions()
    {
        Assert.Equal("a photo of a dark plain ankle boot facing left", TextToImageEvaluation.Prompt(new CaptionFacts(9, ["dark", null, "plain"], "facing left")));
        Assert.Equal("a photo of slim trousers", TextToImageEvaluation.Prompt(new CaptionFacts(1, [null, "slim", null], null)));
        Assert.Equal("a photo of an ankle boot", TextToImageEvaluation.Prompt(new CaptionFacts(9, [null, null, null], null)));
        var grid = TextToImageEvaluation.PromptGrid();
        Assert.Equal(76, grid.Count);
        var tok = WordTokenizer.ForCaptions();
        Assert.All(grid, f => Assert.Empty(tok.Encode(TextToImageEvaluation.Prompt(f), 16).UnknownWords));
    }

    [Fact]
    public void ScoresCountTheClassifiersVotesTheMeasuredWordsAndTheCosines()
    {
        using var scope = NewDisposeScope();
        // Brightness terciles (0.4, 0.6), width (0.3, 0.5), texture (0.01, 0.02) for every class; shoes face a side beyond ±0.1.
        var thresholds = new CaptionThresholds { Terciles = Enumerable.Repeat(new[] { new[] { 0.4, 0.6 }, new[] { 0.3, 0.5 }, new[] { 0.01, 0.02 } }, 10).ToArray() };
        // Three dark pictures (0.3) and a light one (0.9), all plain; widths 10/28 (middle), 20/28 (wide), 6/28 (slim), 10/28.
        var images = stack([
            Rectangle(4, 23, 9, 18, 0.3f), Rectangle(4, 23, 4, 23, 0.3f), Rectangle(4, 23, 11, 16, 0.3f), Rectangle(4, 23, 9, 18, 0.9f)]);
        manual_seed(5);
        using var classifier = new FashionClassifier();
        var prompt = new CaptionFacts(3, ["dark", "wide", "plain"], null);
        var score = TextToImageEvaluation.Score(prompt, images, classifier, thresholds);

        Assert.Equal("a photo of a dark wide plain dress", score.Prompt);
        Assert.Equal(4, score.Count);
        classifier.eval();
        long votes;
        using (no_grad()) votes = classifier.forward(images).argmax(1).eq(3).sum().item<long>();
        Assert.Equal(votes / 4.0, score.ClassAgreement);
        Assert.Equal(["brightness", "width", "texture"], score.Attributes.Select(a => a.Attribute));
        Assert.Equal(3 / 4.0, score.Attributes[0].Agreement);          // three of four are dark
        Assert.Equal(1 / 4.0, score.Attributes[1].Agreement);          // one is wide
        Assert.Equal(1.0, score.Attributes[2].Agreement);              // all are plain (texture 0)
        Assert.All(score.Attributes, a => Assert.Equal(1 / 3.0, a.Chance));
        Assert.Null(score.ClipScore);

        // A boot whose shaft is on the right faces left; its mirror image faces right; a symmetric one faces no side.
        var boot = Rectangle(18, 24, 2, 25, 0.8f);
        boot[.., 2..18, 16..26] = tensor(0.6f);
        var shoes = stack([boot, boot.flip(2), boot, Rectangle(4, 23, 4, 23, 0.8f)]);
        var facing = TextToImageEvaluation.Score(new CaptionFacts(9, [null, null, null], "facing left"), shoes, classifier, thresholds);
        var direction = Assert.Single(facing.Attributes);
        Assert.Equal(3, direction.Judged);
        Assert.Equal(2 / 3.0, direction.Agreement, 9);

        // The CLIP score is the mean cosine of the pictures' and the prompt's embeddings, by hand here.
        var tok = WordTokenizer.ForCaptions();
        manual_seed(6);
        using var clip = new MiniClip(MiniClipTrainingTests.TinyEncoder());
        var withClip = TextToImageEvaluation.Score(prompt, images, classifier, thresholds, clip, tok);
        using (no_grad())
        {
            var (ids, mask) = PromptTokens.Encode(tok, [withClip.Prompt], 10);
            var t = clip.Text.Embed(clip.Text.call(ids, mask), mask)[0].to(ScalarType.Float64);
            var i = clip.Image.call(images).to(ScalarType.Float64);
            double expected = Enumerable.Range(0, 4).Average(b => (i[b] * t).sum().item<double>() / (i[b].norm().item<double>() * t.norm().item<double>()));
            Assert.Equal(expected, withClip.ClipScore!.Value, 5);
        }
    }
}

public class TextToImageSummaryTests
{
    [Fact]
    public void SummaryAveragesEachAttributeOverThePromptsThatNameIt()
    {
        PromptScore Score(int k, double cls, params AttributeScore[] a) => new() { Prompt = $"p{k}", Class = k, Count = 4, ClassAgreement = cls, Attributes = a, ClipScore = 0.1 * k };
        var summary = TextToImageEvaluation.Summarize([
            Score(1, 1.0, new AttributeScore("brightness", "dark", 0.5, 1 / 3.0, 4)),
            Score(2, 0.5, new AttributeScore("brightness", "light", 1.0, 1 / 3.0, 4), new AttributeScore("width", "slim", 0.25, 1 / 3.0, 4)),
            Score(9, 0.0, new AttributeScore("direction", "facing left", double.NaN, 0.5, 0)),
        ]);
        Assert.Equal(3, summary.Prompts);
        Assert.Equal(0.5, summary.ClassAgreement, 12);
        Assert.Equal(["brightness", "width"], summary.Attributes.Select(a => a.Attribute));     // a NaN share is left out
        Assert.Equal(0.75, summary.Attributes[0].Agreement, 12);
        Assert.Equal(8, summary.Attributes[0].Judged);
        Assert.Equal(0.25, summary.Attributes[1].Agreement, 12);
        Assert.Equal((0.1 + 0.2 + 0.9) / 3, summary.ClipScore!.Value, 12);
    }
}

public class HeldOutTests
{
    [Fact]
    public void PhrasesParseToClassAndWordAndBadOnesSayWhy()
    {
        Assert.Equal(new HeldOutPair(4, "dark"), HeldOut.Parse("dark coat"));
        Assert.Equal(new HeldOutPair(4, "dark"), HeldOut.Parse("a photo of a dark jacket"));
        Assert.Equal(new HeldOutPair(9, "facing right"), HeldOut.Parse("ankle boot facing right"));
        Assert.Equal(new HeldOutPair(9, "facing right"), HeldOut.Parse("boot facing right"));
        Assert.Equal(new HeldOutPair(0, "wide"), HeldOut.Parse("Wide T-shirt"));
        var defaults = HeldOut.ParseList(HeldOut.Default);
        Assert.Equal(4, defaults.Length);
        Assert.All(defaults, p => Assert.Equal(p, HeldOut.Parse(p.ToString())));
        Assert.Empty(HeldOut.ParseList("none"));
        Assert.Contains("names no class", Assert.Throws<ArgumentException>(() => HeldOut.Parse("dark")).Message);
        Assert.Contains("only shoes", Assert.Throws<ArgumentException>(() => HeldOut.Parse("coat facing left")).Message);
        Assert.Contains("a class and one word", Assert.Throws<ArgumentException>(() => HeldOut.Parse("shiny coat")).Message);
        Assert.Contains("a class and one word", Assert.Throws<ArgumentException>(() => HeldOut.Parse("dark light coat")).Message);
    }

    [Fact]
    public void NoCaptionSaysAHeldOutCombinationAndTheRestAreUntouched()
    {
        using var data = MiniClipTrainingTests.Subset(2000);
        var captions = new CaptionSource(data);
        var heldOut = HeldOut.ParseList("dark coat,ankle boot facing right");
        int coatsSayingDark = 0, othersSayingDark = 0, bootsFacingRight = 0, changed = 0;
        for (int i = 0; i < 2000; i++)
            foreach (bool mirrored in new[] { false, true })
            {
                string plain = captions.Caption(i, mirrored, seed: 1), held = captions.Caption(i, mirrored, seed: 1, heldOut);
                var words = WordTokenizer.Split(held);
                int k = captions.Labels[i];
                Assert.False(k == 4 && words.Contains("dark"), held);
                Assert.False(k == 9 && held.Contains("facing right"), held);
                if (k == 4 && WordTokenizer.Split(plain).Contains("dark")) coatsSayingDark++;
                if (k != 4 && words.Contains("dark")) othersSayingDark++;
                if (k == 9 && plain.Contains("facing right")) bootsFacingRight++;
                if (plain != held) changed++;
                else Assert.False(HeldOut.Involves(captions.Facts(i, mirrored), heldOut));
            }
        Assert.True(coatsSayingDark > 20 && bootsFacingRight > 20, $"{coatsSayingDark} dark coats, {bootsFacingRight} boots facing right without holding out");
        Assert.True(othersSayingDark > 200, $"{othersSayingDark}: other classes still say dark");
        Assert.True(changed >= coatsSayingDark + bootsFacingRight, $"{changed} captions changed");
        Assert.True(HeldOut.Involves(new CaptionFacts(4, ["dark", null, null], null), heldOut));
        Assert.False(HeldOut.Involves(new CaptionFacts(3, ["dark", null, null], null), heldOut));
    }
}

/// <summary>The caption-conditioned FCD: real t10k pictures with their captions, drawn back by stand-in "models" whose answer is known.</summary>
public class CaptionFcdTests
{
    [Fact]
    public void CaptionsPairWithTheirPicturesAndFcdSeesTheSetWhileAgreementSeesThePairs()
    {
        using var test = ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train: false);
        var thresholds = new CaptionSource(test).Thresholds;
        using var classifier = FashionClassifier.LoadShipped(TestSetup.RepoRoot);
        const int n = 300;
        using var real = new CaptionedPictures(test, thresholds, n, classifier);
        using var scope = NewDisposeScope();

        // Caption i is t10k picture i's, as the caption builder says, and Images[i] is that picture.
        var source = new CaptionSource(test, thresholds);
        Assert.Equal(n, real.Count);
        Assert.Equal(Enumerable.Range(0, n).Select(i => source.Caption(i)), real.Captions);
        foreach (int i in new[] { 0, 1, 137, n - 1 })
        {
            Assert.Equal(source.Facts(i).Class, real.Facts[i].Class);
            Assert.Equal(source.Facts(i).AllWords, real.Facts[i].AllWords);
            Assert.True(Transforms.ToSignedUnit(test.Images[i]).eq(real.Images[i]).all().item<bool>(), $"picture {i}");
        }

        // A "model" that draws each caption's own picture: FCD 0, every word agrees, class agreement = the classifier's accuracy.
        var asked = new List<string>();
        var own = CaptionFcd.Measure(real, (captions, start) => { asked.AddRange(captions); return real.Images.narrow(0, start, captions.Count); },
            classifier, thresholds, batch: 64);
        Assert.Equal(real.Captions, asked);                                       // in order, each once, over uneven batches (4 × 64 + 44)
        Assert.True(own.Fcd < 1e-6, $"FCD of the pictures against themselves: {own.Fcd}");
        double accuracy;
        using (no_grad()) accuracy = classifier.Predict(real.Images).eq(test.Labels![..n]).to(ScalarType.Float64).mean().item<double>();
        Assert.Equal(accuracy, own.Scores.ClassAgreement, 9);
        Assert.Equal(4, own.Scores.Attributes.Length);
        Assert.All(own.Scores.Attributes, a => Assert.True(a.Agreement > 0.99, $"{a.Attribute} {a.Agreement:P1} of its own pictures"));

        // The same pictures, each given to the next caption: the set (so FCD) is unchanged, the pairs are not.
        var shifted = CaptionFcd.Measure(real, (captions, start) =>
            real.Images.index_select(0, tensor(Enumerable.Range(start, captions.Count).Select(i => (long)((i + 1) % n)).ToArray())), classifier, thresholds, batch: 64);
        Assert.True(shifted.Fcd < 1e-6, $"FCD after shifting: {shifted.Fcd}");
        Assert.True(shifted.Scores.ClassAgreement < 0.3, $"class agreement of shifted pictures {shifted.Scores.ClassAgreement:P1}");
        Assert.All(shifted.Scores.Attributes, a => Assert.True(a.Agreement < 0.75, $"{a.Attribute} {a.Agreement:P1} of shifted pictures"));

        // Other real pictures, one per caption with the same facts: the caption-matched floor, below the floor of pictures as they come.
        Assert.True(real.ExactlyMatched > 0.9 * n, $"{real.ExactlyMatched} of {n} matched exactly");
        Assert.All(real.MatchedIndices, j => Assert.InRange(j, CaptionedPictures.MaxCount, 2 * CaptionedPictures.MaxCount - 1));
        Assert.Equal(n, real.MatchedIndices.Distinct().Count());
        var matched = CaptionFcd.Measure(real, (captions, start) =>
            Transforms.ToSignedUnit(test.Images.index_select(0, tensor(real.MatchedIndices.Skip(start).Take(captions.Count).Select(j => (long)j).ToArray()))),
            classifier, thresholds);
        Assert.Equal(real.MatchedFloor, matched.Fcd, 6);
        Assert.All(matched.Scores.Attributes, a => Assert.True(a.Agreement > 0.9, $"{a.Attribute} {a.Agreement:P1} of matched pictures"));
        Assert.True(real.MatchedFloor > 0 && real.MatchedFloor < real.Floor, $"matched floor {real.MatchedFloor:F2}, floor {real.Floor:F2}");

        Assert.Throws<ArgumentOutOfRangeException>(() => new CaptionedPictures(test, thresholds, 1, classifier));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CaptionedPictures(test, thresholds, CaptionedPictures.MaxCount + 1, classifier));
        Assert.Throws<InvalidOperationException>(() => CaptionFcd.Measure(real, (captions, start) => real.Images.narrow(0, 0, 1), classifier, thresholds));
    }

    [Fact]
    public void MatchTakesTheSameFactsThenTheSameClassThenAnyAndNeverOnePictureTwice()
    {
        CaptionFacts F(int k, string? brightness = null, string? direction = null) => new(k, [brightness, null, null], direction);
        CaptionFacts[] pool = [F(1, "dark"), F(2), F(1, "dark"), F(1), F(9, null, "facing left")];
        var (picks, exact) = CaptionedPictures.Match([F(1, "dark"), F(1, "dark"), F(1, "dark"), F(9, null, "facing left"), F(3)], pool);
        Assert.Equal([0, 2, 3, 4, 1], picks);       // two exact darks, then the class's other picture, the boot, then whatever is left
        Assert.Equal(3, exact);
        Assert.Throws<ArgumentException>(() => CaptionedPictures.Match([F(1), F(1)], [F(1)]));
    }
}
