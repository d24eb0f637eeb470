using Spectre.Console;

namespace Diffusion.Cli;

/// <summary>
/// A progress bar in a terminal (Spectre.Console), plain lines every few percent when the output is a file or pipe.
/// </summary>
sealed class ConsoleProgress
{
    public static bool Interactive => AnsiConsole.Profile.Capabilities.Interactive && !Console.IsOutputRedirected;

    /// <summary>A line printed between progress updates (above the bar in a terminal).</summary>
    public static void Note(string line)
    {
        if (Interactive) AnsiConsole.MarkupLine(Markup.Escape(line));
        else Console.WriteLine(line);
    }

    /// <summary>Runs <paramref name="work"/> with a reporter (done, total, status text).</summary>
    public static void Run(string title, int total, Action<Action<int, string>> work) =>
        Run<object?>(title, total, report => { work(report); return null; });

    /// <summary>Runs <paramref name="work"/> with a reporter (done, total, status text) and returns its result.</summary>
    public static T Run<T>(string title, int total, Func<Action<int, string>, T> work)
    {
        if (Interactive)
        {
            return AnsiConsole.Progress()
                .AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                    new ElapsedTimeColumn(), new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask(Markup.Escape(title), maxValue: Math.Max(1, total));
                    return work((done, status) =>
                    {
                        task.Value = done;
                        task.Description = Markup.Escape($"{title} {status}");
                    });
                });
        }

        var started = DateTime.UtcNow;
        var lastPrint = DateTime.MinValue;
        int every = Math.Max(1, total / 20);
        return work((done, status) =>
        {
            var now = DateTime.UtcNow;
            if (done == total || done % every == 0 || (now - lastPrint).TotalSeconds >= 30)
            {
                lastPrint = now;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{title} {done}/{total} ({100.0 * done / Math.Max(1, total):F0}%) {status} [{(now - started).TotalSeconds:F0} s]"));
            }
        });
    }
}
