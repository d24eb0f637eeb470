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
            kept.AddRange(File.ReadLines(path).Skip(1).Where(line =>
                int.TryParse(line.Split(',')[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var s) && s <= step));
        AtomicFile.WriteAllText(path, string.Join('\n', kept) + "\n");
        writer = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read)) { AutoFlush = false };
    }

    public void Write(int step, double loss, double learningRate, double imagesPerSecond, double seconds) =>
        writer.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{step},{loss:R},{learningRate:R},{imagesPerSecond:F2},{seconds:F2}"));

    public void Flush() => writer.Flush();

    public void Dispose() => writer.Dispose();
}
