using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Diffusion.Notebooks;

/// <summary>
/// A figure you can explore: a sequence of image grids (one per frame) shown as a Plotly heat map, with Plotly's own
/// frames, a slider and a play button. The figure is plain plotly.js JSON, drawn by the plotly.js that
/// <see cref="Course.Setup"/> loads into the notebook page, so it works in Jupyter, VS Code and a static HTML page.
/// Each frame's images are tiled into one mosaic (grey, values in [−1, 1], rounded), so a figure stays light:
/// about 6 bytes per pixel and frame.
/// </summary>
public static class Explorable
{
    /// <summary>
    /// Builds the figure. Every frame holds the same number of images <c>[N, 1, H, W]</c> (values in [−1, 1]), laid out
    /// <paramref name="columns"/> per row; <paramref name="columnNames"/> and <paramref name="rowNames"/> label the grid.
    /// </summary>
    /// <param name="title">The figure's title (plain Unicode text).</param>
    /// <param name="sliderPrefix">Shown before the current frame's label, e.g. "t = ".</param>
    /// <param name="frames">One (label, images) pair per frame.</param>
    /// <param name="columns">Images per row of the mosaic.</param>
    /// <param name="decimals">Digits kept per pixel value (2 is far finer than a screen's grey levels).</param>
    /// <param name="pixelSize">Screen pixels per image pixel.</param>
    public static ExplorableFigure Images(string title, string sliderPrefix, IReadOnlyList<(string Label, Tensor Images)> frames,
        int columns, IReadOnlyList<string>? columnNames = null, IReadOnlyList<string>? rowNames = null, int decimals = 2, int pixelSize = 4)
    {
        if (frames.Count == 0) throw new ArgumentException("an explorable figure needs at least one frame", nameof(frames));
        if (columns < 1) throw new ArgumentOutOfRangeException(nameof(columns), "columns must be at least 1");
        var shape = frames[0].Images.shape;
        if (shape.Length != 4 || shape[1] != 1)
            throw new ArgumentException($"frames must be grey image batches [N, 1, H, W]; got [{string.Join(", ", shape)}]", nameof(frames));
        foreach (var (label, images) in frames)
            if (!images.shape.SequenceEqual(shape))
                throw new ArgumentException($"frame \"{label}\" has shape [{string.Join(", ", images.shape)}], the first [{string.Join(", ", shape)}]", nameof(frames));
        int n = (int)shape[0], h = (int)shape[2], w = (int)shape[3];
        int cols = Math.Min(columns, n), rows = (n + cols - 1) / cols;
        const int gap = 1;
        int height = rows * h + (rows - 1) * gap, width = cols * w + (cols - 1) * gap;

        JsonArray Mosaic(Tensor images)
        {
            float[] values;
            using (var cpu = images.detach().cpu().to(ScalarType.Float32).clamp(-1, 1).contiguous()) values = cpu.data<float>().ToArray();
            var z = new JsonArray();
            for (int y = 0; y < height; y++)
            {
                var line = new JsonArray();
                int r = y / (h + gap), iy = y % (h + gap);
                for (int x = 0; x < width; x++)
                {
                    int c = x / (w + gap), ix = x % (w + gap), index = r * cols + c;
                    if (iy >= h || ix >= w || index >= n) { line.Add(null); continue; }        // gaps and empty cells: transparent
                    line.Add(Math.Round((double)values[(index * h + iy) * w + ix], decimals));
                }
                z.Add(line);
            }
            return z;
        }

        string[] labels = frames.Select(f => f.Label).ToArray();
        var frameList = new JsonArray();
        JsonArray? firstZ = null;
        foreach (var (label, images) in frames)
        {
            var z = Mosaic(images);
            firstZ ??= (JsonArray)z.DeepClone();
            frameList.Add(new JsonObject
            {
                ["name"] = label,
                ["data"] = new JsonArray(new JsonObject { ["z"] = z }),
                ["traces"] = new JsonArray(0),
            });
        }

        var trace = new JsonObject
        {
            ["type"] = "heatmap",
            ["z"] = firstZ,
            ["zmin"] = -1,
            ["zmax"] = 1,
            ["colorscale"] = new JsonArray(new JsonArray(0, "rgb(0,0,0)"), new JsonArray(1, "rgb(255,255,255)")),
            ["showscale"] = false,
            ["hovertemplate"] = "value %{z}<extra></extra>",
        };

        JsonObject Animate(JsonNode? target, int durationMs, bool fromCurrent) => new()
        {
            ["method"] = "animate",
            ["args"] = new JsonArray(target, new JsonObject
            {
                ["mode"] = "immediate",
                ["fromcurrent"] = fromCurrent,
                ["frame"] = new JsonObject { ["duration"] = durationMs, ["redraw"] = true },
                ["transition"] = new JsonObject { ["duration"] = 0 },
            }),
        };
        var steps = new JsonArray();
        foreach (var label in labels)
        {
            var step = Animate(new JsonArray(label), 0, false);
            step["label"] = label;
            steps.Add(step);
        }
        var play = Animate(null, 400, true); play["label"] = "▶ play";
        var pause = Animate(new JsonArray((JsonNode?)null), 0, false); pause["label"] = "❚❚ pause";

        var annotations = new JsonArray();
        if (columnNames is not null)
            for (int c = 0; c < Math.Min(cols, columnNames.Count); c++)
                annotations.Add(Annotation(columnNames[c], "x", c * (w + gap) + (w - 1) / 2.0, "paper", 1.0, "center", "bottom"));
        if (rowNames is not null)
            for (int r = 0; r < Math.Min(rows, rowNames.Count); r++)
                annotations.Add(Annotation(rowNames[r], "paper", -0.01, "y", r * (h + gap) + (h - 1) / 2.0, "right", "middle"));

        // The plot area is exactly the mosaic at `scale` screen pixels per pixel, so images keep square pixels and the
        // labels (in paper coordinates) sit at the mosaic's edges; the slider and buttons get the bottom margin.
        int left = rowNames is null ? 20 : 25 + 7 * rowNames.Max(s => s.Length), right = 20, top = columnNames is null ? 50 : 75, bottom = 140;
        int scale = Math.Max(pixelSize, (int)Math.Ceiling((460.0 - left - right) / width));
        var layout = new JsonObject
        {
            ["title"] = new JsonObject { ["text"] = title, ["font"] = new JsonObject { ["size"] = 14 }, ["x"] = 0, ["xanchor"] = "left" },
            ["width"] = left + right + width * scale,
            ["height"] = top + bottom + height * scale,
            ["margin"] = new JsonObject { ["l"] = left, ["r"] = right, ["t"] = top, ["b"] = bottom },
            ["xaxis"] = new JsonObject { ["visible"] = false, ["range"] = new JsonArray(-0.5, width - 0.5) },
            ["yaxis"] = new JsonObject { ["visible"] = false, ["range"] = new JsonArray(height - 0.5, -0.5) },
            ["plot_bgcolor"] = "white",
            ["annotations"] = annotations,
            ["sliders"] = new JsonArray(new JsonObject
            {
                ["active"] = 0,
                ["steps"] = steps,
                ["currentvalue"] = new JsonObject { ["prefix"] = sliderPrefix },
                ["x"] = 0,
                ["len"] = 1,
                ["y"] = 0,
                ["yanchor"] = "top",
                ["pad"] = new JsonObject { ["t"] = 10 },
            }),
            ["updatemenus"] = new JsonArray(new JsonObject
            {
                ["type"] = "buttons",
                ["showactive"] = false,
                ["direction"] = "left",
                ["x"] = 0,
                ["xanchor"] = "left",
                ["y"] = 0,
                ["yanchor"] = "top",
                ["pad"] = new JsonObject { ["t"] = 95 },
                ["buttons"] = new JsonArray(play, pause),
            }),
        };
        var figure = new JsonObject
        {
            ["data"] = new JsonArray(trace),
            ["layout"] = layout,
            ["frames"] = frameList,
            ["config"] = new JsonObject { ["displayModeBar"] = false, ["responsive"] = false },
        };
        return new ExplorableFigure(figure.ToJsonString(), labels, height, width);
    }

    static JsonObject Annotation(string text, string xref, double x, string yref, double y, string xanchor, string yanchor) => new()
    {
        ["text"] = text, ["x"] = x, ["y"] = y, ["xref"] = xref, ["yref"] = yref,
        ["xanchor"] = xanchor, ["yanchor"] = yanchor, ["showarrow"] = false, ["font"] = new JsonObject { ["size"] = 11 },
    };
}

/// <summary>An explorable figure: its plotly.js JSON (data, layout, frames, config) and what it holds.</summary>
/// <param name="Json">The figure as plotly.js expects it.</param>
/// <param name="Labels">One label per frame, in slider order.</param>
/// <param name="MosaicHeight">Rows of the heat map (image rows plus 1-pixel gaps).</param>
/// <param name="MosaicWidth">Columns of the heat map.</param>
public sealed record ExplorableFigure(string Json, IReadOnlyList<string> Labels, int MosaicHeight, int MosaicWidth)
{
    /// <summary>The figure's size in the notebook, in bytes of JSON.</summary>
    public int Bytes => Encoding.UTF8.GetByteCount(Json);

    /// <summary>HTML that draws the figure once plotly.js is in the page (fetched from the CDN if it is not).</summary>
    public string ToHtml()
    {
        // The function is named like Plotly.NET's own (renderPlotly_…), so tools that count a notebook's charts count it.
        string id = Guid.NewGuid().ToString("N");
        return $$"""
            <div id="explorable_{{id}}"></div>
            <script>
            (function () {
              var fig = {{Json}};
              function renderPlotly_{{id}}() {
                var el = document.getElementById('explorable_{{id}}');
                Plotly.newPlot(el, fig.data, fig.layout, fig.config).then(function () { return Plotly.addFrames(el, fig.frames); });
              }
              {{Charts.CallWhenPlotlyLoads($"renderPlotly_{id}")}}
            })();
            </script>
            """;
    }

    /// <summary>Shows the figure in the notebook and prints one line: frames and size.</summary>
    public void Display()
    {
        Show.Html(ToHtml());
        Console.WriteLine($"{Labels.Count} frames ({Labels[0]} … {Labels[^1]}); move the slider or press ▶ play. " +
                          $"Figure size {(Bytes / 1024.0).ToString("F0", CultureInfo.InvariantCulture)} kB.");
    }
}
