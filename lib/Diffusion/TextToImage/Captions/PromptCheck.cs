namespace Diffusion.TextToImage;

/// <summary>
/// What a prompt becomes before it reaches the text encoder.
/// </summary>
/// <param name="Text">The words kept, joined by spaces ("" for the empty prompt).</param>
/// <param name="UnknownWords">Words the model was not trained on, left out.</param>
/// <param name="TruncatedWords">Known words beyond the text encoder's context, cut off.</param>
public sealed record CheckedPrompt(string Text, string[] UnknownWords, string[] TruncatedWords)
{
    /// <summary>The empty prompt: unconditional generation.</summary>
    public bool IsEmpty => Text.Length == 0;
}

/// <summary>
/// Checks a prompt against a model's vocabulary: an empty prompt is unconditional; unknown words are dropped (the text
/// encoder never learned an embedding for them) and reported; a prompt longer than the context is cut and reported; a
/// prompt with words but none the model knows is an error that lists the words it knows — instead of drawing noise silently.
/// </summary>
public static class PromptCheck
{
    /// <exception cref="ArgumentException">The prompt has words, but none in the vocabulary.</exception>
    public static CheckedPrompt Check(WordTokenizer tokenizer, string prompt, int contextLength)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (contextLength < 3) throw new ArgumentOutOfRangeException(nameof(contextLength), contextLength, "the context needs room for start, a word and end");
        var words = WordTokenizer.Split(prompt);
        if (words.Length == 0) return new CheckedPrompt("", [], []);
        var vocabulary = tokenizer.Words.ToHashSet(StringComparer.Ordinal);
        var known = words.Where(vocabulary.Contains).ToArray();
        var unknown = words.Where(w => !vocabulary.Contains(w)).Distinct().ToArray();
        if (known.Length == 0)
            throw new ArgumentException(
                $"the prompt \"{prompt.Trim()}\" has no word this model was trained on ({string.Join(", ", unknown)}); nothing was drawn. " +
                $"It knows these {tokenizer.Words.Count} words: {string.Join(", ", tokenizer.Words)}.");
        int room = contextLength - 2;                 // start and end take two places
        return new CheckedPrompt(string.Join(' ', known.Take(room)), unknown, known.Skip(room).ToArray());
    }

    /// <summary>The notices to print for a checked prompt (unknown words dropped, words cut off, unconditional); none for a clean prompt.</summary>
    public static IEnumerable<string> Notices(CheckedPrompt p, int contextLength)
    {
        if (p.IsEmpty) yield return "empty prompt: unconditional samples (the \"no text\" condition; guidance has nothing to push towards)";
        if (p.UnknownWords.Length > 0)
            yield return $"notice: left out words the model was not trained on: {string.Join(", ", p.UnknownWords)}";
        if (p.TruncatedWords.Length > 0)
            yield return $"notice: the prompt is longer than the {contextLength - 2} words the text encoder reads; cut off: {string.Join(" ", p.TruncatedWords)} " +
                         $"(using \"{p.Text}\")";
    }
}
