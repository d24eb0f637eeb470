using System.Globalization;

namespace Diffusion.Training;

/// <summary>
/// A run's loss.csv (step, loss, learning rate, images/s, seconds). Opened at a step, it drops the rows after it (they
/// belong to work that was lost on resume), so the log always matches the weights.
/// </summary>
public sealed class LossLog : IDisposable
{
    public const string FileName = "loss.csv";
    const string Header = "step,loss,learning_rate,images_per_second,elapsed_seconds";
    readonly StreamWriter writer;

    public LossLog(string runDirectory, int step)
    {
        Directory.CreateDirectory(runDirectory);
        var path = Path.Combine(runDirectory, FileName);
        var kept = new List<string> { Header };
        if (step > 0 && File.Exists(path))
        {
            InputFile.EnsureRegular(path, m => new IOException(m));
            // Only whole rows, each step once and in order: a row torn by a crash mid-write ("371,") or a step written twice
            // (a log that belongs to lost work) is dropped.
            int last = 0;
            foreach (var line in File.ReadLines(path).Skip(1))
                if (Row(line) is { } s && s > last && s <= step)
                {
                    kept.Add(line);
                    last = s;
                }
        }
        AtomicFile.WriteAllText(path, string.Join('\n', kept) + "\n");
        writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = false };
    }

    /// <summary>The step of a complete row (five fields: an integer step and four numbers), or null.</summary>
    static int? Row(string line)
    {
        var fields = line.Split(',');
        if (fields.Length != 5 || !int.TryParse(fields[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var step)) return null;
        foreach (var f in fields.AsSpan(1))
            if (!double.TryParse(f, NumberStyles.Float, CultureInfo.InvariantCulture, out _)) return null;
        return step;
    }

    public void Write(int step, double loss, double learningRate, double imagesPerSecond, double seconds) =>
        writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{step},{loss:R},{learningRate:R},{imagesPerSecond:F2},{seconds:F2}"));

    public void Flush() => writer.Flush();

    public void Dispose() => writer.Dispose();
}
