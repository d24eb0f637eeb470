
namespace Diffusion.Cli;

/// <summary>Exit codes and the single error line for everything that can go wrong.</summary>
static class CliErrors
{
    public const int BadInput = 2;
    public const int Diverged = 3;
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
    }

    static string? Describe(Exception e) => e switch
    {
        OperationCanceledException => "cancelled",
        CliException or ArgumentException or InvalidDataException or DataFormatException or CheckpointException or TorchLoadException
            or TrainingDivergedException => e.Message,
        UnauthorizedAccessException => $"permission denied: {e.Message} Choose a folder you can write to (--out).",
        IOException io when IsDiskFull(io) => $"the disk is full ({e.Message}). Free some space; the last checkpoint was kept.",
        IOException => $"{e.Message}",
        _ => null,
    };

    static bool IsDiskFull(IOException e) => (e.HResult & 0xFFFF) is 28 or 112 || e.Message.Contains("No space left", StringComparison.Ordinal);
}

/// <summary>A usage error found by the CLI itself.</summary>
sealed class CliException(string message) : Exception(message);
