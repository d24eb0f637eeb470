using Diffusion.TextToImage;

namespace Diffusion.Tests;

/// <summary>The caption attributes on constructed pictures whose answer is known, the terciles, and the caption text.</summary>
public class CaptionTests
{
    const int Size = 28;

    /// <summary>A picture with <paramref name="value"/>(row, column) inside the rectangle rows r0..r1, columns c0..c1 (inclusive), 0 outside.</summary>
    static float[] Rectangle(int r0, int r1, int c0, int c1, Func<int, int, float> value)
    {
        var x = new float[Size * Size];
        for (int r = r0; r <= r1; r++)
            for (int c = c0; c <= c1; c++) x[r * Size + c] = value(r, c);
        return x;
    }

    [Fact]
    public void BrightnessIsTheMeanOfTheGarmentPixelsOnly()
    {
        Assert.Equal(0.5, GarmentAttributes.Brightness(Rectangle(3, 20, 5, 14, (_, _) => 0.5f)), 6);
        // Half the garment at 0.3, half at 0.9: mean 0.6, whatever the size of the black background.
        Assert.Equal(0.6, GarmentAttributes.Brightness(Rectangle(0, 9, 0, 27, (r, _) => r < 5 ? 0.3f : 0.9f)), 6);
        // Pixels at or below the threshold are background.
        var faint = Rectangle(0, 27, 0, 27, (_, _) => 0.05f);
        faint[0] = 1;
        Assert.Equal(1, GarmentAttributes.Brightness(faint), 6);
        Assert.Equal(0, GarmentAttributes.Brightness(new float[Size * Size]));
    }

    [Fact]
    public void WidthIsTheMeanRowExtent()
    {
        Assert.Equal(10 / 28.0, GarmentAttributes.Width(Rectangle(5, 20, 9, 18, (_, _) => 0.7f), Size), 9);
        // A triangle: row r spans columns 0..r, so the mean extent over rows 0..27 is (1 + 2 + … + 28)/28/28.
        var triangle = new float[Size * Size];
        for (int r = 0; r < Size; r++) for (int c = 0; c <= r; c++) triangle[r * Size + c] = 1;
        Assert.Equal(Enumerable.Range(1, Size).Average() / Size, GarmentAttributes.Width(triangle, Size), 9);
        // A gap inside a row still counts: the extent runs from the leftmost to the rightmost garment pixel.
        var twoLegs = Rectangle(4, 23, 6, 21, (_, c) => c is < 10 or > 17 ? 0.8f : 0f);
        Assert.Equal(16 / 28.0, GarmentAttributes.Width(twoLegs, Size), 9);
    }

    [Fact]
    public void TextureIsZeroForPlainFabricAndTheLaplacianOfACheckerboard()
    {
        Assert.Equal(0, GarmentAttributes.Texture(Rectangle(2, 25, 2, 25, (_, _) => 0.6f), Size), 9);
        // Checkerboard 0.4 / 0.8: every interior pixel differs from the mean of its four neighbours by exactly 0.4.
        Assert.Equal(0.4, GarmentAttributes.Texture(Rectangle(2, 25, 2, 25, (r, c) => (r + c) % 2 == 0 ? 0.4f : 0.8f), Size), 6);
        // Stripes (rows alternate 0.3 / 0.9): |x − (up + down + left + right)/4| = |0.3 − 0.6| = 0.3 everywhere inside.
        Assert.Equal(0.3, GarmentAttributes.Texture(Rectangle(2, 25, 2, 25, (r, _) => r % 2 == 0 ? 0.3f : 0.9f), Size), 6);
        // The outline does not count: a plain garment with a sharp edge stays at 0.
        Assert.Equal(0, GarmentAttributes.Texture(Rectangle(10, 12, 0, 27, (_, _) => 1f), Size), 9);
    }

    [Fact]
    public void ABootWithItsShaftOnTheRightFacesLeft()
    {
        // Sole along the bottom, toe to the left; the shaft rises on the right half only.
        var boot = Rectangle(18, 24, 2, 25, (_, _) => 0.8f);
        for (int r = 2; r < 18; r++) for (int c = 16; c <= 25; c++) boot[r * Size + c] = 0.8f;
        var m = GarmentAttributes.Measure(boot, Size);
        Assert.Equal(1, m.Asymmetry, 9);                             // all of the upper half's mass is on the right
        var mirrored = new float[Size * Size];
        for (int r = 0; r < Size; r++) for (int c = 0; c < Size; c++) mirrored[r * Size + c] = boot[r * Size + Size - 1 - c];
        var mm = GarmentAttributes.Measure(mirrored, Size);
        Assert.Equal(-1, mm.Asymmetry, 9);
        Assert.Equal(m.Mirrored, mm);                               // brightness, width, texture unchanged by the flip
        var thresholds = new CaptionThresholds { Terciles = Enumerable.Repeat(new[] { new[] { 0.0, 1.0 }, new[] { 0.0, 1.0 }, new[] { 0.0, 1.0 } }, 10).ToArray() };
        Assert.Equal("facing left", Captions.Facts(m, 9, thresholds).Direction);
        Assert.Equal("facing right", Captions.Facts(mm, 9, thresholds).Direction);
        Assert.Null(Captions.Facts(m, 2, thresholds).Direction);     // a pullover has no direction
        // A symmetric picture has none either.
        Assert.Null(Captions.Facts(GarmentAttributes.Measure(Rectangle(4, 23, 4, 23, (_, _) => 1f), Size), 9, thresholds).Direction);
    }

    [Fact]
    public void TercilesSplitEachClassIntoThirdsAndNameTheOuterOnes()
    {
        // Class 0: brightness 0.1 … 0.9 in nine pictures; class 1: all 0.5.
        var ms = Enumerable.Range(0, 9).Select(i => new Measurements(0.1 + 0.1 * i, 0.5, 0.05, 0)).Concat(Enumerable.Repeat(new Measurements(0.5, 0.5, 0.05, 0), 3)).ToList();
        var labels = Enumerable.Repeat(0, 9).Concat(Enumerable.Repeat(1, 3)).ToList();
        var t = CaptionThresholds.Fit(ms, labels, 2);
        Assert.Equal(0.1 + 0.8 / 3, t.Terciles[0][0][0], 9);          // numpy.quantile([0.1 … 0.9], 1/3)
        Assert.Equal(0.1 + 1.6 / 3, t.Terciles[0][0][1], 9);
        var words = ms.Take(9).Select(m => Captions.Facts(m, 0, t).Words[0]).ToArray();
        Assert.Equal("dark,dark,dark,,,,light,light,light", string.Join(",", words));
        Assert.All(ms.Skip(9), m => Assert.Null(Captions.Facts(m, 1, t).Words[0]));   // no word when the class does not vary
        Assert.Throws<ArgumentException>(() => CaptionThresholds.Fit(ms.Take(2).ToList(), [0, 0], 1));
    }

    [Fact]
    public void CaptionsAreDeterministicNameTheClassAndEveryWord()
    {
        var facts = new CaptionFacts(9, ["dark", "wide", null], "facing left");
        var captions = Enumerable.Range(0, 200).Select(i => Captions.Caption(facts, i)).ToList();
        Assert.Equal(captions, Enumerable.Range(0, 200).Select(i => Captions.Caption(facts, i)));
        Assert.All(captions, c =>
        {
            Assert.Contains("dark", c);
            Assert.Contains("wide", c);
            Assert.Contains("boot facing left", c);
            Assert.DoesNotContain("  ", c);
        });
        Assert.True(captions.Distinct().Count() >= 6, "templates, synonyms and word order should vary");
        Assert.NotEqual(captions, Enumerable.Range(0, 200).Select(i => Captions.Caption(facts, i, seed: 1)));
        // Plural nouns take no article and "are".
        var trousers = Enumerable.Range(0, 200).Select(i => Captions.Caption(new CaptionFacts(1, [null, "slim", null], null), i)).ToList();
        Assert.DoesNotContain(trousers, c => c.Contains("a trousers") || c.Contains("a pants") || c.Contains("trousers that is") || c.Contains("pants that is"));
        Assert.Contains(trousers, c => c.Contains("that are slim"));
        Assert.Contains(Enumerable.Range(0, 50).Select(i => Captions.Caption(new CaptionFacts(4, [null, null, null], null), i)), c => c == "a photo of a coat" || c == "a photo of a jacket");
    }
}

public class WordTokenizerTests
{
    [Fact]
    public void EveryCaptionEncodesWithoutUnknownWordsAndDecodesBack()
    {
        var tok = WordTokenizer.ForCaptions();
        var rng = new Random(4);
        for (int i = 0; i < 2000; i++)
        {
            int k = rng.Next(10);
            var words = Captions.Attributes.Select(a => new[] { a.Low, a.High, null }[rng.Next(3)]).ToArray();
            string? dir = GarmentAttributes.ShoeClasses.Contains(k) ? new[] { "facing left", "facing right", null }[rng.Next(3)] : null;
            var caption = Captions.Caption(new CaptionFacts(k, words, dir), i);
            var t = tok.Encode(caption, 16);
            Assert.Empty(t.UnknownWords);
            Assert.Empty(t.TruncatedWords);
            Assert.Equal("<start> " + string.Join(' ', WordTokenizer.Split(caption)) + " <end>", tok.Decode(t.Ids));
        }
        Assert.True(tok.Count < 50, $"{tok.Count} ids");
    }

    [Fact]
    public void UnknownAndTooManyWordsAreReported()
    {
        var tok = new WordTokenizer(["dark", "boot", "a"]);
        var t = tok.Encode("A DARK, shiny boot!", 8);
        // Sorted vocabulary: a = 4, boot = 5, dark = 6.
        Assert.Equal([WordTokenizer.Start, 4, 6, WordTokenizer.Unknown, 5, WordTokenizer.End, WordTokenizer.Pad, WordTokenizer.Pad], t.Ids);
        Assert.Equal(["shiny"], t.UnknownWords);
        Assert.Equal(3, t.KnownWords);
        Assert.Equal([true, true, true, true, true, true, false, false], t.Mask);
        var cut = tok.Encode("a dark boot a dark boot", 5);
        Assert.Equal(5, cut.Length);
        Assert.Equal(["a", "dark", "boot"], cut.TruncatedWords);
        Assert.Equal("<start> a dark boot <end>", tok.Decode(cut.Ids));
        Assert.Equal(0, tok.Encode("", 4).KnownWords);
        Assert.Equal([WordTokenizer.Start, WordTokenizer.End, 0, 0], tok.Encode("", 4).Ids);
    }
}
