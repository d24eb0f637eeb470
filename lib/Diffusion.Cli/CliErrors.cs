
namespace Diffusion.Cli;

/// <summary>Exit codes and the single error line for everything that can go wrong.</summary>
static class CliErrors
{
    public const int BadInput = 2;
    public const int Diverged = 3;
    /// <summary>A bug of the program itself (EX_SOFTWARE): still one line, so that it can be reported.</summary>
    public const int Internal = 70;
    public const int Cancelled = 130;

    public static int Run(Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (Describe(e) is { } message)
        {
            Console.Error.WriteLine($"error: {message}");
            return e is TrainingDivergedException ? Diverged : e is OperationCanceledException ? Cancelled : BadInput;
        }
        catch (Exception e)
        {
            // Not a known kind of bad input: still one line (the trace only when asked for), and an exit code of its own.
            Console.Error.WriteLine($"error: unexpected {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")} This is a bug of the program; " +
                                    "please report it with the command you ran (DIFFUSION_TRACE=1 prints the details).");
            if (Environment.GetEnvironmentVariable("DIFFUSION_TRACE") == "1") Console.Error.WriteLine(e);
            return Internal;
        }
    }

    /// <summary>The one line for <paramref name="e"/>, if it is an error the user can act on.</summary>
    public static string? Describe(Exception e) => e switch
    {
        StoppedException => e.Message,
        OperationCanceledException => "cancelled",
        CliException or ArgumentException or InvalidDataException or DataFormatException or CheckpointException or TorchLoadException
            or TrainingDivergedException => OneLine(e.Message),
        OutOfMemoryException or System.Runtime.InteropServices.ExternalException when IsOutOfMemory(e) =>
            $"not enough memory: {Requested(e.Message)}this machine (or its memory limit) has no room for it. " +
            "Use smaller settings (--batch-size, --dim, --image-size, --count) or free memory; nothing saved was changed.",
        UnauthorizedAccessException => $"permission denied: {OneLine(e.Message)} Choose a folder you can write to (--out).",
        IOException io when IsDiskFull(io) => $"the disk is full ({OneLine(e.Message)}). Free some space; the last checkpoint was kept.",
        IOException => OneLine(e.Message),
        _ => null,
    };

    static bool IsOutOfMemory(Exception e) => e is OutOfMemoryException
        || e.Message.Contains("can't allocate memory", StringComparison.Ordinal) || e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase);

    /// <summary>"an allocation of 0.25 GB failed; " from libtorch's "you tried to allocate N bytes", or nothing.</summary>
    static string Requested(string message) =>
        System.Text.RegularExpressions.Regex.Match(message, @"allocate (\d+) bytes") is { Success: true } m && long.TryParse(m.Groups[1].Value, out var n)
            ? $"an allocation of {MemoryLimit.Gigabytes(n)} failed; " : "";

    static string OneLine(string message) => message.ReplaceLineEndings(" ");

    static bool IsDiskFull(IOException e) => (e.HResult & 0xFFFF) is 28 or 112 || e.Message.Contains("No space left", StringComparison.Ordinal);
}

/// <summary>A usage error found by the CLI itself.</summary>
sealed class CliException(string message) : Exception(message);

/// <summary>Ctrl+C (SIGINT) during work that saved what it had: exit 130, with the message saying where it was saved.</summary>
sealed class StoppedException(string message) : OperationCanceledException(message);
