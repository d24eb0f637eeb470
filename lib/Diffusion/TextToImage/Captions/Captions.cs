using System.Text.Json.Serialization;

namespace Diffusion.TextToImage;

/// <summary>The words a caption can use for one attribute: low third, high third (the middle third gets no word).</summary>
public sealed record AttributeWords(string Name, string Low, string High);

/// <summary>
/// Per-class tercile thresholds of the measured attributes: within each class, the lowest third of the training pictures
/// is "dark" / "slim" / "plain", the highest third "light" / "wide" / "patterned", the middle third gets no word. So each
/// word means something within its class ("a wide pullover" is wide for a pullover). Computed from the training set by
/// <see cref="Fit"/>; stored with the text models so that generated pictures are judged by the same thresholds.
/// </summary>
public sealed record CaptionThresholds
{
    /// <summary>[class][attribute] = (lower, upper) terciles, attributes in <see cref="Captions.Attributes"/>' order.</summary>
    public required double[][][] Terciles { get; init; }

    /// <summary>Heel-on-the-right asymmetry beyond which a shoe is said to face left (and below −it, right).</summary>
    public double DirectionMargin { get; init; } = 0.1;

    /// <summary>Terciles of every attribute within every class, from the pictures' measurements and labels.</summary>
    public static CaptionThresholds Fit(IReadOnlyList<Measurements> measurements, IReadOnlyList<int> labels, int classes)
    {
        if (measurements.Count != labels.Count) throw new ArgumentException("one label per measurement");
        var terciles = new double[classes][][];
        for (int k = 0; k < classes; k++)
        {
            var mine = Enumerable.Range(0, labels.Count).Where(i => labels[i] == k).Select(i => measurements[i]).ToArray();
            if (mine.Length < 3) throw new ArgumentException($"class {k} has {mine.Length} pictures; terciles need at least 3");
            terciles[k] = Captions.Attributes.Select((_, a) =>
            {
                var values = mine.Select(m => Captions.Value(m, a)).Order().ToArray();
                return new[] { Quantile(values, 1 / 3.0), Quantile(values, 2 / 3.0) };
            }).ToArray();
        }
        return new CaptionThresholds { Terciles = terciles };
    }

    /// <summary>The q-quantile of sorted values, linear between order statistics (numpy's default).</summary>
    public static double Quantile(double[] sorted, double q)
    {
        double pos = q * (sorted.Length - 1);
        int lo = (int)Math.Floor(pos), hi = Math.Min(lo + 1, sorted.Length - 1);
        return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
    }
}

/// <summary>What a caption says about one picture: its class and a word (or none) per attribute.</summary>
public sealed record CaptionFacts(int Class, string?[] Words, string? Direction)
{
    [JsonIgnore] public IEnumerable<string> AllWords => Words.OfType<string>().Concat(Direction is null ? [] : [Direction]);
}

/// <summary>
/// Deterministic captions for Fashion-MNIST: the class name plus the attribute words of <see cref="CaptionThresholds"/>,
/// put into one of a few templates with a few synonyms ("a photo of a dark, wide pullover", "dark pullover, wide",
/// "a sweater that is dark and wide"). The template and synonyms of a picture depend only on its index and a seed.
/// </summary>
public static class Captions
{
    /// <summary>The three graded attributes, in the order of <see cref="CaptionThresholds.Terciles"/>.</summary>
    public static readonly AttributeWords[] Attributes =
    [
        new("brightness", "dark", "light"),
        new("width", "slim", "wide"),
        new("texture", "plain", "patterned"),
    ];

    /// <summary>Fashion-MNIST's classes as caption nouns, the first one the plain name, the others synonyms.</summary>
    public static readonly string[][] ClassNouns =
    [
        ["t-shirt", "top", "tee"],
        ["trousers", "pants"],
        ["pullover", "sweater", "jumper"],
        ["dress"],
        ["coat", "jacket"],
        ["sandal"],
        ["shirt", "blouse"],
        ["sneaker", "trainer"],
        ["bag", "handbag"],
        ["ankle boot", "boot"],
    ];

    /// <summary>Attribute value a of a picture's measurements (0 brightness, 1 width, 2 texture).</summary>
    public static double Value(Measurements m, int attribute) => attribute switch
    {
        0 => m.Brightness,
        1 => m.Width,
        2 => m.Texture,
        _ => throw new ArgumentOutOfRangeException(nameof(attribute), attribute, "attributes are 0 (brightness), 1 (width), 2 (texture)"),
    };

    /// <summary>The class and the words a caption may use for a picture with these measurements.</summary>
    public static CaptionFacts Facts(Measurements m, int label, CaptionThresholds thresholds)
    {
        var t = thresholds.Terciles[label];
        var words = new string?[Attributes.Length];
        for (int a = 0; a < Attributes.Length; a++)
        {
            double v = Value(m, a);
            words[a] = v < t[a][0] ? Attributes[a].Low : v > t[a][1] ? Attributes[a].High : null;
        }
        string? direction = !GarmentAttributes.ShoeClasses.Contains(label) ? null
            : m.Asymmetry > thresholds.DirectionMargin ? "facing left"
            : m.Asymmetry < -thresholds.DirectionMargin ? "facing right" : null;
        return new CaptionFacts(label, words, direction);
    }

    /// <summary>
    /// The caption of picture number <paramref name="index"/>: template and synonyms drawn from (seed, index), the order
    /// of the adjectives too; "facing …" always follows the noun.
    /// </summary>
    public static string Caption(CaptionFacts facts, int index, int seed = 0)
    {
        var rng = new Random(unchecked(seed * 1_000_003 + index));     // seeded System.Random: the same sequence on every run
        var nouns = ClassNouns[facts.Class];
        string noun = rng.NextDouble() < 0.6 ? nouns[0] : nouns[rng.Next(nouns.Length)];
        var adjectives = facts.Words.OfType<string>().OrderBy(_ => rng.Next()).ToList();
        string direction = facts.Direction is null ? "" : " " + facts.Direction;
        string article = Article(adjectives.Count > 0 ? adjectives[0] : noun, noun);
        string list = string.Join(", ", adjectives);
        string caption = rng.Next(4) switch
        {
            0 => adjectives.Count == 0 ? $"a photo of {Article(noun, noun)} {noun}{direction}" : $"a photo of {article} {list} {noun}{direction}",
            1 => adjectives.Count == 0 ? $"{noun}{direction}" : $"{adjectives[0]} {noun}{direction}{(adjectives.Count > 1 ? ", " + string.Join(", ", adjectives.Skip(1)) : "")}",
            2 => adjectives.Count == 0 ? $"{Article(noun, noun)} {noun}{direction}" : $"{Article(noun, noun)} {noun}{direction} {(Plural.Contains(noun) ? "that are" : "that is")} {And(adjectives)}",
            _ => adjectives.Count == 0 ? $"a picture of {Article(noun, noun)} {noun}{direction}" : $"{article} {list} {noun}{direction}",
        };
        return string.Join(' ', caption.Split(' ', StringSplitOptions.RemoveEmptyEntries));   // no double space where no article
    }

    /// <summary>"a" or "an" before <paramref name="word"/>; none before a plural noun ("dark trousers").</summary>
    static string Article(string word, string noun) => Plural.Contains(noun) ? "" : "aeiou".Contains(word[0]) ? "an" : "a";

    static readonly string[] Plural = ["trousers", "pants"];

    static string And(List<string> words) =>
        words.Count == 1 ? words[0] : string.Join(", ", words.Take(words.Count - 1)) + " and " + words[^1];
}
