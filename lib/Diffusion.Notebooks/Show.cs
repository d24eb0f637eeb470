using System.Reflection;

namespace Diffusion.Notebooks;

/// <summary>
/// Displays values in the notebook through the running .NET Interactive kernel (found by reflection, so this library
/// does not pin a kernel version). Outside a kernel (console, tests) it falls back to <see cref="Fallback"/>.
/// </summary>
public static class Show
{
    /// <summary>Where output goes when no kernel is running (default: a one-line note on the console).</summary>
    public static Action<string, string> Fallback { get; set; } = (mime, value) =>
        Console.WriteLine($"[{mime}: {value.Length} characters]");

    static MethodInfo? displayAs;
    static bool looked;

    /// <summary>Displays <paramref name="value"/> as an output of MIME type <paramref name="mimeType"/> in the current cell.</summary>
    public static void As(string value, string mimeType)
    {
        var method = DisplayAsMethod();
        if (method is null) Fallback(mimeType, value);
        else method.Invoke(null, [value, mimeType]);
    }

    /// <summary>True inside a .NET Interactive kernel (VS Code Polyglot Notebooks, Jupyter, dotnet-repl).</summary>
    public static bool InKernel => DisplayAsMethod() is not null;

    static MethodInfo? DisplayAsMethod()
    {
        if (looked && displayAs is not null) return displayAs;
        looked = true;
        foreach (var asm in AppDomain.CurrentDomain.GetAssemblies())
        {
            if (!asm.GetName().Name!.StartsWith("Microsoft.DotNet.Interactive", StringComparison.Ordinal)) continue;
            var type = asm.GetType("System.DisplayExtensions");
            var m = type?.GetMethod("DisplayAs", BindingFlags.Public | BindingFlags.Static, [typeof(string), typeof(string)]);
            if (m is not null) return displayAs = m;
        }
        return null;
    }

    /// <summary>A PNG picture (real image/png output: it renders in VS Code, Jupyter and on GitHub).</summary>
    public static void Png(byte[] png) => As(Convert.ToBase64String(png), "image/png");

    /// <summary>An animated GIF (image/gif output).</summary>
    public static void Gif(byte[] gif) => As(Convert.ToBase64String(gif), "image/gif");

    /// <summary>An HTML fragment.</summary>
    public static void Html(string html) => As(html, "text/html");

    /// <summary>
    /// A plain HTML table (the kernel shows a list of objects as a tree). Doubles print with 6 significant digits;
    /// everything is HTML-encoded.
    /// </summary>
    public static void Table(string[] header, IEnumerable<object?[]> rows)
    {
        static string Cell(object? c) => System.Net.WebUtility.HtmlEncode(c is double d
            ? d.ToString("G6", System.Globalization.CultureInfo.InvariantCulture)
            : Convert.ToString(c, System.Globalization.CultureInfo.InvariantCulture) ?? "");
        Html("<table><thead><tr>" + string.Concat(header.Select(h => $"<th>{System.Net.WebUtility.HtmlEncode(h)}</th>")) +
             "</tr></thead><tbody>" + string.Concat(rows.Select(r => "<tr>" + string.Concat(r.Select(c => $"<td>{Cell(c)}</td>")) + "</tr>")) +
             "</tbody></table>");
    }

    /// <summary>Plain text.</summary>
    public static void Text(string text) => As(text, "text/plain");
}
