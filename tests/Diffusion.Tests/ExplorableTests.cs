using System.Text.Json;
using Diffusion.Evaluation;
using Diffusion.Notebooks;
using Diffusion.Visuals;

namespace Diffusion.Tests;

public class ExplorableTests
{
    // Frame k holds 5 images of 3×4; image i's pixel (y, x) is a value computed from (k, i, y, x) in [−1, 1].
    static double Value(int k, int i, int y, int x) => Math.Round(-1 + 2 * ((k * 37 + i * 11 + y * 4 + x) % 97) / 96.0, 6);

    static Tensor FrameImages(int k) => tensor(
        Enumerable.Range(0, 5).SelectMany(i => Enumerable.Range(0, 3).SelectMany(y => Enumerable.Range(0, 4).Select(x => (float)Value(k, i, y, x)))).ToArray())
        .reshape(5, 1, 3, 4);

    [Fact]
    public void FigureHasOneFrameAndOneSliderStepPerInputWithTheImagesTiled()
    {
        var labels = new[] { "0", "250", "500", "1000" };
        var frames = labels.Select((l, k) => (l, FrameImages(k))).ToList();
        var figure = Explorable.Images("test", "t = ", frames, columns: 2, columnNames: ["a", "b"], rowNames: ["r0", "r1", "r2"], decimals: 3);
        using var doc = JsonDocument.Parse(figure.Json);
        var root = doc.RootElement;

        // 5 images, 2 per row: 3 rows of 3 pixels and 2 gaps = 11 rows; 2 columns of 4 pixels and 1 gap = 9 columns.
        Assert.Equal((11, 9), (figure.MosaicHeight, figure.MosaicWidth));
        var jsonFrames = root.GetProperty("frames").EnumerateArray().ToList();
        Assert.Equal(labels.Length, jsonFrames.Count);
        var steps = root.GetProperty("layout").GetProperty("sliders")[0].GetProperty("steps").EnumerateArray().ToList();
        Assert.Equal(labels, steps.Select(s => s.GetProperty("label").GetString()).ToArray());
        Assert.Equal(labels, steps.Select(s => s.GetProperty("args")[0][0].GetString()).ToArray());      // each step animates to its frame
        Assert.Equal(labels, jsonFrames.Select(f => f.GetProperty("name").GetString()).ToArray());
        var buttons = root.GetProperty("layout").GetProperty("updatemenus")[0].GetProperty("buttons");
        Assert.Equal(JsonValueKind.Null, buttons[0].GetProperty("args")[0].ValueKind);                   // play: all frames from the current one

        for (int k = 0; k < labels.Length; k++)
        {
            var z = jsonFrames[k].GetProperty("data")[0].GetProperty("z");
            Assert.Equal(11, z.GetArrayLength());
            for (int row = 0; row < 11; row++)
            {
                Assert.Equal(9, z[row].GetArrayLength());
                for (int col = 0; col < 9; col++)
                {
                    int r = row / 4, iy = row % 4, c = col / 5, ix = col % 5, i = r * 2 + c;
                    var cell = z[row][col];
                    if (iy == 3 || ix == 4 || i >= 5) Assert.Equal(JsonValueKind.Null, cell.ValueKind);   // gaps and the empty 6th cell
                    else Assert.Equal(Math.Round(Value(k, i, iy, ix), 3), cell.GetDouble(), 6);
                }
            }
        }
        // The first frame is also the figure's initial data, as a grey heat map over [−1, 1].
        var trace = root.GetProperty("data")[0];
        Assert.Equal("heatmap", trace.GetProperty("type").GetString());
        Assert.Equal(jsonFrames[0].GetProperty("data")[0].GetProperty("z").GetRawText(), trace.GetProperty("z").GetRawText());
        Assert.Equal((-1, 1), (trace.GetProperty("zmin").GetInt32(), trace.GetProperty("zmax").GetInt32()));
        Assert.Equal(2 + 3, root.GetProperty("layout").GetProperty("annotations").GetArrayLength());
        var html = figure.ToHtml();
        Assert.Contains(figure.Json, html);
        Assert.Contains("renderPlotly_", html);                                                           // counted as a chart by NotebookRunner
    }

    [Fact]
    public void ValuesAreClippedAndRoundedAndBadInputIsRefused()
    {
        var images = tensor(new float[] { -3f, 0.123456f, 0.5f, 2f }).reshape(1, 1, 2, 2);
        var figure = Explorable.Images("t", "", [("only", images)], columns: 4, decimals: 2);
        using var doc = JsonDocument.Parse(figure.Json);
        var z = doc.RootElement.GetProperty("data")[0].GetProperty("z");
        Assert.Equal(new[] { -1.0, 0.12 }, z[0].EnumerateArray().Select(v => v.GetDouble()).ToArray());
        Assert.Equal(new[] { 0.5, 1.0 }, z[1].EnumerateArray().Select(v => v.GetDouble()).ToArray());
        Assert.Throws<ArgumentException>(() => Explorable.Images("t", "", [], 2));
        Assert.Throws<ArgumentException>(() => Explorable.Images("t", "", [("rgb", zeros(1, 3, 2, 2))], 2));
        Assert.Throws<ArgumentException>(() => Explorable.Images("t", "", [("a", zeros(2, 1, 2, 2)), ("b", zeros(3, 1, 2, 2))], 2));
    }

    [Fact]
    public void AttentionMapOnTheLatentRepeatsEachCellAndCountsRowsFromTheBottom()
    {
        // One picture, a 2×2 map over 3 tokens; the word "x" is token 1. Cell (r, c) has weight 0.1·(2r + c + 1) on it.
        var maps = zeros(1, 4, 3);
        for (int cell = 0; cell < 4; cell++) { maps[0, cell, 1] = 0.1f * (cell + 1); maps[0, cell, 0] = 1 - 0.1f * (cell + 1); }
        using var result = new AttentionMapResult(maps, zeros(1, 1, 4, 4), Side: 2, Positions: [1], Words: ["x"], Tokens: 3, Recorded: 1, RowSumError: 0);
        var grid = result.OnLatent(0, "x", 4);
        for (int row = 0; row < 4; row++)
            for (int col = 0; col < 4; col++)
            {
                int r = (3 - row) / 2, c = col / 2;                                    // heat-map row 0 is the latent's bottom row
                Assert.Equal(0.1 * (2 * r + c + 1), grid[row][col], 6);
            }
        var overlays = result.Overlays();
        Assert.Equal(new long[] { 2, 3, 4, 4 }, overlays.shape);
        var summary = result.Summary().Single();
        Assert.Equal((0.25, 0.4, 0.1), (Math.Round(summary.Mean, 6), Math.Round(summary.Largest, 6), Math.Round(summary.Smallest, 6)));
    }

    [Fact]
    public void ForwardMomentsAgreeWithExactSamplesAndCatchAWrongVariance()
    {
        // Draws made exactly as the closed form says must sit within a few standard errors; draws with 1.2× the standard
        // deviation (1.44× the variance) and draws with too much x_0 left must not.
        var gen = new Generator(3);
        var x0 = rand(new long[] { 1, 1, 8, 8 }, generator: gen) * 2 - 1;
        double ab = 0.3;
        var eps = randn(new long[] { 4000, 1, 8, 8 }, generator: gen);
        var exact = ForwardMomentCheck.Measure(Math.Sqrt(ab) * x0 + Math.Sqrt(1 - ab) * eps, x0, ab);
        Assert.InRange(exact.Left, Math.Sqrt(ab) - 0.02, Math.Sqrt(ab) + 0.02);
        Assert.InRange(exact.Variance, 0.7 * 0.97, 0.7 * 1.03);
        Assert.True(Math.Abs(exact.ZLeft) < 4 && Math.Abs(exact.ZVariance) < 4 && exact.WorstPixel < 5, exact.ToString());

        var tooWide = ForwardMomentCheck.Measure(Math.Sqrt(ab) * x0 + 1.2 * Math.Sqrt(1 - ab) * eps, x0, ab);
        Assert.InRange(tooWide.Variance / 0.7, 1.40, 1.48);
        Assert.True(tooWide.ZVariance > 20, tooWide.ToString());
        var tooMuchLeft = ForwardMomentCheck.Measure(0.7 * x0 + Math.Sqrt(1 - ab) * eps, x0, ab);
        Assert.True(tooMuchLeft.ZLeft > 20 && tooMuchLeft.WorstPixel > 6, tooMuchLeft.ToString());
        Assert.Throws<ArgumentException>(() => ForwardMomentCheck.Measure(eps, x0.expand(2, 1, 8, 8), ab));
    }
}
