namespace Diffusion.Tests;

/// <summary>The text-to-image commands dispose what they make (see <see cref="CommandLeakTests"/> for how the CLI counts).</summary>
public class TextCommandLeakTests
{
    static readonly Dictionary<string, string> Report = new() { ["DIFFUSION_REPORT_LIVE_TENSORS"] = "1" };

    static long Live(Cli.Result r)
    {
        var line = r.Stderr.Split('\n').Single(l => l.StartsWith("live tensors: ", StringComparison.Ordinal));
        return long.Parse(line["live tensors: ".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public void TrainClipTrainTextToImageAndGenerateLeaveNoTensorBehind()
    {
        using var dir = TestSetup.Temp();
        var runs = new (string Name, bool Succeeds, string[] Args)[]
        {
            ("train-clip", true, ["train-clip", "--out", dir["clip.bin"], "--steps", "2", "--batch-size", "8", "--dim", "16", "--layers", "1", "--eval-count", "40", "--threads", "1"]),
            ("train-text2img", true, ["train-text2img", "--clip", dir["clip.bin"], "--out", dir["t.ckpt"], "--steps", "2", "--batch-size", "4", "--encode", "8",
                                      "--dim", "8", "--threads", "1"]),
            ("generate guided", true, ["generate", "--checkpoint", dir["t.ckpt"], "--prompt", "a light bag", "--count", "2", "--steps", "2", "--threads", "1", "--out", dir["a.png"]]),
            ("generate w = 0, ddim", true, ["generate", "--checkpoint", dir["t.ckpt"], "--prompt", "sneaker facing right", "--guidance", "0", "--sampler", "ddim",
                                            "--steps", "2", "--count", "2", "--threads", "1", "--out", dir["b.png"]]),
            ("generate unconditional", true, ["generate", "--checkpoint", dir["t.ckpt"], "--prompt", "", "--count", "2", "--steps", "2", "--threads", "1", "--out", dir["c.png"]]),
            ("generate, no known word", false, ["generate", "--checkpoint", dir["t.ckpt"], "--prompt", "purple", "--threads", "1", "--out", dir["d.png"]]),
            ("generate, no model", false, ["generate", "--checkpoint", dir["none.ckpt"], "--prompt", "a bag", "--threads", "1", "--out", dir["e.png"]]),
        };
        foreach (var (name, succeeds, args) in runs)
        {
            var r = Cli.Run(Report, dir.Path, args);
            Assert.True((r.ExitCode == 0) == succeeds, $"{name}: exit {r.ExitCode}\n{r.All}");
            Assert.True(Live(r) == 0, $"{name} left {Live(r)} tensors behind");
        }
    }
}
