namespace Diffusion.TextToImage;

/// <summary>A (class, word) combination the text-to-image model never reads in training, e.g. (coat, "dark").</summary>
/// <param name="Word">An attribute word ("dark", "wide", …) or a direction ("facing right").</param>
public sealed record HeldOutPair(int Class, string Word)
{
    /// <summary>"dark coat", "ankle boot facing right": the phrase <see cref="HeldOut.Parse"/> reads back.</summary>
    public override string ToString() => Word.StartsWith("facing", StringComparison.Ordinal)
        ? $"{Captions.ClassNouns[Class][0]} {Word}" : $"{Word} {Captions.ClassNouns[Class][0]}";
}

/// <summary>
/// Held-out combinations, to measure whether the model composes words it learned apart: in training, a picture whose caption
/// would say a held-out word about a held-out class gets its caption without that word (the picture is still seen, the
/// class and the word are each seen with other partners); in evaluation, the prompts that say it are reported apart.
/// </summary>
public static class HeldOut
{
    /// <summary>The default of <c>train-text2img --hold-out</c>: one combination per attribute.</summary>
    public const string Default = "dark coat,wide sneaker,patterned bag,ankle boot facing right";

    static readonly string[] Directions = ["facing left", "facing right"];

    /// <summary>"dark coat" → (4, "dark"); any synonym of the class works ("jacket"); "a", "an", "photo", "of" are ignored.</summary>
    public static HeldOutPair Parse(string phrase)
    {
        var words = WordTokenizer.Split(phrase).Where(w => w is not ("a" or "an" or "photo" or "of" or "picture")).ToList();
        string text = string.Join(' ', words);
        // The longest class noun (or synonym) in the phrase: "ankle boot" before "boot".
        var match = Captions.ClassNouns.SelectMany((nouns, k) => nouns.Select(n => (k, n)))
            .Where(c => $" {text} ".Contains($" {c.n} ", StringComparison.Ordinal)).OrderByDescending(c => c.n.Length).FirstOrDefault();
        if (match.n is null)
            throw new ArgumentException($"'{phrase}' names no class: use one of {string.Join(", ", Captions.ClassNouns.Select(n => n[0]))}");
        var rest = string.Join(' ', $" {text} ".Replace($" {match.n} ", " ", StringComparison.Ordinal).Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var attributeWords = Captions.Attributes.SelectMany(a => new[] { a.Low, a.High }).ToArray();
        if (Directions.Contains(rest))
        {
            if (!GarmentAttributes.ShoeClasses.Contains(match.k))
                throw new ArgumentException($"'{phrase}': only shoes (sandal, sneaker, ankle boot) face a side");
            return new HeldOutPair(match.k, rest);
        }
        if (!attributeWords.Contains(rest))
            throw new ArgumentException($"'{phrase}' must be a class and one word: {string.Join(", ", attributeWords)}, or a shoe facing left/right");
        return new HeldOutPair(match.k, rest);
    }

    /// <summary>"dark coat,wide sneaker" → the pairs; "" or "none" → none.</summary>
    public static HeldOutPair[] ParseList(string text) =>
        string.IsNullOrWhiteSpace(text) || string.Equals(text.Trim(), "none", StringComparison.OrdinalIgnoreCase) ? []
            : text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Parse).Distinct().ToArray();

    /// <summary>The facts without the held-out words of their class (a caption built from them never says a held-out combination).</summary>
    public static CaptionFacts Remove(CaptionFacts facts, IReadOnlyCollection<HeldOutPair> pairs)
    {
        if (pairs.Count == 0) return facts;
        bool Held(string? w) => w is not null && pairs.Contains(new HeldOutPair(facts.Class, w));
        return facts with
        {
            Words = facts.Words.Select(w => Held(w) ? null : w).ToArray(),
            Direction = Held(facts.Direction) ? null : facts.Direction,
        };
    }

    /// <summary>True if a prompt says a held-out combination.</summary>
    public static bool Involves(CaptionFacts prompt, IReadOnlyCollection<HeldOutPair> pairs) =>
        prompt.AllWords.Any(w => pairs.Contains(new HeldOutPair(prompt.Class, w)));
}
