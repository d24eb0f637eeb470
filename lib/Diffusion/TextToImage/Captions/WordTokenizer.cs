namespace Diffusion.TextToImage;

/// <summary>The token ids of a prompt and what the tokenizer had to leave out.</summary>
/// <param name="Ids">[start, word ids…, end], padded with <see cref="WordTokenizer.Pad"/> to the requested length.</param>
/// <param name="Length">Tokens before the padding (start and end included).</param>
/// <param name="UnknownWords">Words of the prompt that are not in the vocabulary (encoded as <see cref="WordTokenizer.Unknown"/>).</param>
/// <param name="TruncatedWords">Words cut off because the prompt was longer than the context.</param>
public sealed record TokenizedPrompt(int[] Ids, int Length, string[] UnknownWords, string[] TruncatedWords)
{
    /// <summary>True where a position holds a token (start, word or end), false on padding: the attention mask.</summary>
    public bool[] Mask => Ids.Select((_, i) => i < Length).ToArray();

    /// <summary>The number of words the model knows.</summary>
    public int KnownWords => Ids.Take(Length).Count(id => id >= WordTokenizer.FirstWord);
}

/// <summary>
/// A word-level tokenizer over the captions' own vocabulary: lower case, punctuation dropped, one id per word.
/// Why not GPT-2's byte-pair encoding (Microsoft.ML.Tokenizers 2.0.1 with its GPT-2 data, measured on 5 000 captions of
/// <see cref="Captions"/>): BPE has 50 257 tokens of which the captions use 79, spends 7.5 tokens on a caption where words
/// take 5.8, and gives one word two ids ("dark" at the start, " dark" after a space) that a small model must learn
/// separately; the words are 38. A word tokenizer also knows when a prompt has no word the model was trained on.
/// Special ids: 0 padding, 1 start, 2 end, 3 unknown word; the words follow in alphabetical order.
/// </summary>
public sealed class WordTokenizer
{
    public const int Pad = 0, Start = 1, End = 2, Unknown = 3, FirstWord = 4;

    readonly Dictionary<string, int> ids;

    /// <summary>The words, id <see cref="FirstWord"/> + i for word i.</summary>
    public IReadOnlyList<string> Words { get; }

    /// <summary>Vocabulary size including the four special ids.</summary>
    public int Count => FirstWord + Words.Count;

    public WordTokenizer(IEnumerable<string> words)
    {
        Words = words.Select(w => w.ToLowerInvariant()).Distinct().Order(StringComparer.Ordinal).ToArray();
        if (Words.Count == 0) throw new ArgumentException("a vocabulary needs at least one word");
        ids = Words.Select((w, i) => (w, i)).ToDictionary(p => p.w, p => FirstWord + p.i);
    }

    /// <summary>Every word <see cref="Captions.Caption"/> can write: nouns and synonyms, attribute words, template words.</summary>
    public static WordTokenizer ForCaptions() => new(
        Captions.ClassNouns.SelectMany(n => n).SelectMany(Split)
            .Concat(Captions.Attributes.SelectMany(a => new[] { a.Low, a.High }))
            .Concat(["facing", "left", "right", "a", "an", "photo", "picture", "of", "that", "is", "are", "and"]));

    /// <summary>Lower case, every character that is not a letter, digit or hyphen becomes a space, then split.</summary>
    public static string[] Split(string text) =>
        new string(text.ToLowerInvariant().Select(c => char.IsLetterOrDigit(c) || c == '-' ? c : ' ').ToArray())
            .Split(' ', StringSplitOptions.RemoveEmptyEntries);

    /// <summary>
    /// [start, words…, end] padded to <paramref name="contextLength"/>; words beyond the context are cut off (and listed),
    /// unknown words become <see cref="Unknown"/> (and are listed).
    /// </summary>
    public TokenizedPrompt Encode(string text, int contextLength)
    {
        if (contextLength < 2) throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, "the context needs room for start and end");
        var words = Split(text);
        int keep = Math.Min(words.Length, contextLength - 2);
        var result = new int[contextLength];
        result[0] = Start;
        for (int i = 0; i < keep; i++) result[1 + i] = ids.GetValueOrDefault(words[i], Unknown);
        result[1 + keep] = End;
        return new TokenizedPrompt(result, keep + 2, words.Take(keep).Where(w => !ids.ContainsKey(w)).Distinct().ToArray(), words[keep..]);
    }

    /// <summary>The words of ids (special ids in angle brackets, padding left out).</summary>
    public string Decode(IEnumerable<int> tokenIds) => string.Join(' ', tokenIds.Where(i => i != Pad).Select(i => i switch
    {
        Start => "<start>",
        End => "<end>",
        Unknown => "<unknown>",
        _ when i >= FirstWord && i < Count => Words[i - FirstWord],
        _ => throw new ArgumentOutOfRangeException(nameof(tokenIds), i, $"ids are 0..{Count - 1}"),
    }));
}
