namespace Diffusion;

/// <summary>
/// The names a user types for the values of one enum (<c>train --schedule cosine</c>), kept beside the enum as
/// <c>Sampling.SamplerSpec</c> keeps the sampler names beside the samplers: the command line, the notebooks and
/// the error messages read the same table. A new value is one entry here. Names match case-insensitively.
/// </summary>
public sealed class NameTable<T> where T : struct, Enum
{
    readonly (string Name, T Value)[] entries;

    public NameTable(params (string Name, T Value)[] entries) => this.entries = entries;

    /// <summary>Every (name, value), in the order the choices are listed.</summary>
    public IReadOnlyList<(string Name, T Value)> Entries => entries;

    /// <summary>The names, in order.</summary>
    public IEnumerable<string> Names => entries.Select(e => e.Name);

    /// <summary>The name of <paramref name="value"/>.</summary>
    public string Name(T value)
    {
        foreach (var (n, v) in entries)
            if (EqualityComparer<T>.Default.Equals(v, value)) return n;
        throw new ArgumentOutOfRangeException(nameof(value), value, $"{typeof(T).Name}.{value} has no name; add it to its name table");
    }

    /// <summary>The value named <paramref name="text"/> (ignoring case), if there is one.</summary>
    public bool TryParse(string text, out T value)
    {
        foreach (var (n, v) in entries)
            if (string.Equals(n, text, StringComparison.OrdinalIgnoreCase))
            {
                value = v;
                return true;
            }
        value = default;
        return false;
    }

    /// <summary>The value named <paramref name="text"/>; otherwise a <see cref="FormatException"/> listing the choices.</summary>
    public T Parse(string text) =>
        TryParse(text, out var value) ? value : throw new FormatException($"'{text}' is not one of {string.Join(", ", Names)}");
}
