using System.CommandLine.Parsing;

namespace Diffusion.Cli;

/// <summary>Option helpers: enum options with readable names, integer lists, range checks.</summary>
static class Parsing
{
    public static Option<T> Opt<T>(string name, string description, T defaultValue)
    {
        var o = new Option<T>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        return o;
    }

    public static Option<T?> OptionalOpt<T>(string name, string description) => new(name) { Description = description };

    /// <summary>An option whose value must be one of <paramref name="names"/> (case-insensitive).</summary>
    public static Option<T> Choice<T>(string name, string description, T defaultValue, params (string Name, T Value)[] names)
    {
        var o = new Option<T>(name)
        {
            Description = $"{description} [{string.Join("|", names.Select(n => n.Name))}]",
            DefaultValueFactory = _ => defaultValue,
            CustomParser = r =>
            {
                var token = r.Tokens.Count > 0 ? r.Tokens[^1].Value : "";
                foreach (var (n, v) in names)
                    if (string.Equals(n, token, StringComparison.OrdinalIgnoreCase)) return v;
                r.AddError($"{name}: '{token}' is not one of {string.Join(", ", names.Select(n => n.Name))}");
                return defaultValue;
            },
        };
        o.HelpName = string.Join("|", names.Select(n => n.Name));
        return o;
    }

    /// <summary>An option taking one of the names of an enum's <see cref="NameTable{T}"/>, the library's list of them.</summary>
    public static Option<T> Choice<T>(string name, string description, T defaultValue, NameTable<T> names) where T : struct, Enum =>
        Choice(name, description, defaultValue, names.Entries.ToArray());

    /// <summary>"1,2,4" → [1, 2, 4].</summary>
    public static Option<int[]> IntList(string name, string description, int[] defaultValue)
    {
        return new Option<int[]>(name)
        {
            Description = description,
            DefaultValueFactory = _ => defaultValue,
            HelpName = "list",
            CustomParser = r =>
            {
                var token = r.Tokens.Count > 0 ? r.Tokens[^1].Value : "";
                var parts = token.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                var values = new List<int>();
                foreach (var p in parts)
                {
                    if (!int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v))
                    {
                        r.AddError($"{name}: '{token}' is not a comma-separated list of integers (e.g. 1,2,4)");
                        return defaultValue;
                    }
                    values.Add(v);
                }
                return values.ToArray();
            },
        };
    }

    public static T Range<T>(this T option, double min, double max) where T : Option
    {
        option.Validators.Add(r =>
        {
            if (r.Tokens.Count == 0) return;
            var text = r.Tokens[^1].Value;
            // !(v >= min && v <= max) also refuses NaN, which every comparison calls false.
            if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && !(v >= min && v <= max))
                r.AddError($"{option.Name} must be between {min.ToString(CultureInfo.InvariantCulture)} and {max.ToString(CultureInfo.InvariantCulture)}, got {text}");
        });
        return option;
    }

    /// <summary>Adds to every floating-point option of every command a check that its value is a finite number (not NaN or ∞).</summary>
    public static void RequireFiniteNumbers(Command command)
    {
        foreach (var option in command.Options)
            if (option is Option<double> or Option<double?>)
                option.Validators.Add(r =>
                {
                    if (r.Tokens.Count == 0) return;
                    var text = r.Tokens[^1].Value;
                    if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && !double.IsFinite(v))
                        r.AddError($"{option.Name} must be a finite number, got {text}");
                });
        foreach (var sub in command.Subcommands) RequireFiniteNumbers(sub);
    }

    /// <summary>The first parse error as one line, with where to read the command's options.</summary>
    public static string Describe(ParseResult parsed)
    {
        // The first error that names what was typed ("Unrecognized command or argument 'x'") before a general one.
        var first = (parsed.Errors.FirstOrDefault(e => e.Message.Contains('\'')) ?? parsed.Errors[0]).Message.ReplaceLineEndings(" ").Trim();
        // "Cannot parse argument 'abc' for option '--lr' as expected type 'System.Double'." → "--lr: 'abc' is not a number."
        var m = System.Text.RegularExpressions.Regex.Match(first, @"^Cannot parse argument '(.*)' for option '(.*)' as expected type '(.*)'\.?$");
        if (m.Success)
            first = $"{m.Groups[2].Value}: '{m.Groups[1].Value}' is not {(m.Groups[3].Value.Contains("Int") ? "a whole number" : m.Groups[3].Value.Contains("Double") ? "a number" : m.Groups[3].Value)}.";
        var command = parsed.CommandResult.Command;
        return command is RootCommand
            ? $"{first} (see '--help' for the commands)"
            : $"{first} (see '{command.Name} --help' for the options and their ranges)";
    }

    /// <summary>The line that says how many threads libtorch uses and why.</summary>
    public static string ThreadsNote(int threads, bool automatic) => automatic
        ? string.Create(CultureInfo.InvariantCulture,
            $"threads: {threads} (auto: other processes keep {Diffusion.Platform.Compute.OtherProcessesBusyCores:F1} of {Environment.ProcessorCount} cores busy)")
        : $"threads: {threads}";

    /// <summary>True if the user typed the option (not just its default).</summary>
    /// <summary>--checkpoint accepts a checkpoint file or a run folder holding checkpoint.ckpt.</summary>
    public static string CheckpointFile(string path) =>
        Directory.Exists(path) ? Path.Combine(path, Diffusion.Training.Trainer.CheckpointFileName) : path;

    public static bool Given(this ParseResult result, Option option) => result.GetResult(option) is { Implicit: false };
}
