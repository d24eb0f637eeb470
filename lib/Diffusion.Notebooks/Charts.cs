using System.Text;
using Plotly.NET;
using Plotly.NET.CSharp;
using Chart = Plotly.NET.CSharp.Chart;

namespace Diffusion.Notebooks;

/// <summary>
/// Interactive Plotly.NET charts in the notebook. A chart is drawn by plotly.js in the notebook page: the setup cell
/// sends the copy of plotly.js bundled with Plotly.NET once (works offline), and every chart waits for it.
/// </summary>
public static class Charts
{
    const string PlotlyResource = "Plotly.NET.plotly-2.28.0.min.js";
    const string PlotlyCdn = "https://cdn.plot.ly/plotly-2.28.0.min.js";

    /// <summary>Sends plotly.js to the notebook page (inline: offline-safe; or a CDN script tag).</summary>
    public static void LoadPlotlyJs(bool inline = true)
    {
        string script;
        if (inline)
        {
            using var stream = typeof(GenericChart).Assembly.GetManifestResourceStream(PlotlyResource)
                ?? throw new InvalidOperationException($"{PlotlyResource} is missing from Plotly.NET");
            using var reader = new StreamReader(stream, Encoding.UTF8);
            // Hide an AMD loader (classic Jupyter's require.js) while plotly.js runs, so it sets window.Plotly.
            script = "<script>window.__amd=window.define;window.define=undefined;</script><script>" + reader.ReadToEnd() +
                     "</script><script>window.define=window.__amd;</script>";
        }
        else script = $"<script src=\"{PlotlyCdn}\"></script>";
        Show.Html($"<div style=\"font-size:smaller;color:gray\">plotly.js 2.28.0 loaded for this notebook's charts{(inline ? "" : " (from the CDN)")}.</div>" + script);
    }

    /// <summary>Displays a chart. If plotly.js is not in the page yet (e.g. a re-opened notebook), it is fetched from the CDN.</summary>
    public static void Display(GenericChart chart)
    {
        var html = GenericChart.toChartHTML(chart);
        // toChartHTML ends with "renderPlotly_ID();" — defer that call until window.Plotly exists.
        int call = html.LastIndexOf("renderPlotly_", StringComparison.Ordinal);
        int end = html.IndexOf("();", call, StringComparison.Ordinal);
        if (call < 0 || end < 0) { Show.Html(html); return; }
        var deferred = CallWhenPlotlyLoads(html[call..end]);
        Show.Html(html[..call] + deferred + html[(end + 3)..]);
    }

    /// <summary>
    /// A script that calls the global function <paramref name="function"/> once plotly.js is there: at once when
    /// <see cref="LoadPlotlyJs"/> has put it in the notebook, else after loading it (once for all charts) from its CDN.
    /// </summary>
    internal static string CallWhenPlotlyLoads(string function) => $$"""
        (function () {
          if (window.Plotly) { {{function}}(); return; }
          (window.__plotlyWaiting = window.__plotlyWaiting || []).push({{function}});
          if (window.__plotlyLoading) return;
          window.__plotlyLoading = true;
          var s = document.createElement('script');
          s.src = '{{PlotlyCdn}}';
          s.onload = function () { window.__plotlyWaiting.forEach(function (f) { f(); }); window.__plotlyWaiting = []; };
          document.head.appendChild(s);
        })();
        """;

    /// <summary>Line chart of one or more named series sharing a title and axis labels.</summary>
    public static GenericChart Lines(string title, string xTitle, string yTitle, params (string Name, double[] X, double[] Y)[] series)
    {
        var charts = series.Select(s => Chart.Line<double, double, string>(x: s.X, y: s.Y, Name: s.Name, ShowMarkers: false));
        return Style(Chart.Combine(charts), title, xTitle, yTitle);
    }

    /// <summary>Line chart over t = 0..n−1 of named series.</summary>
    public static GenericChart OverTime(string title, string yTitle, params (string Name, double[] Y)[] series) =>
        Lines(title, "t", yTitle, series.Select(s => (s.Name, Enumerable.Range(0, s.Y.Length).Select(i => (double)i).ToArray(), s.Y)).ToArray());

    /// <summary>Histogram of values, normalised to a probability density, optionally with a curve on top.</summary>
    public static GenericChart Histogram(string title, string xTitle, double[] values, int bins = 60,
        (string Name, double[] X, double[] Y)? curve = null, string name = "samples")
    {
        var hist = Chart.Histogram<double, double, string>(X: values, NBinsX: bins, Name: name,
            HistNorm: StyleParam.HistNorm.ProbabilityDensity, Opacity: 0.7);
        var chart = curve is { } c
            ? Chart.Combine([hist, Chart.Line<double, double, string>(x: c.X, y: c.Y, Name: c.Name, ShowMarkers: false)])
            : hist;
        return Style(chart, title, xTitle, "density");
    }

    /// <summary>Heat map of a matrix (rows × columns).</summary>
    public static GenericChart Heatmap(string title, string xTitle, string yTitle, double[][] z) =>
        Style(Chart.Heatmap<double, int, int, string>(zData: z, ColorScale: StyleParam.Colorscale.Viridis), title, xTitle, yTitle);

    /// <summary>Scatter plot of named groups of points (e.g. a 2-D projection coloured by class).</summary>
    public static GenericChart Scatter(string title, string xTitle, string yTitle, params (string Name, double[] X, double[] Y)[] groups)
    {
        var charts = groups.Select(g => Chart.Point<double, double, string>(x: g.X, y: g.Y, Name: g.Name));
        return Style(Chart.Combine(charts), title, xTitle, yTitle);
    }

    /// <summary>Bar chart of named values.</summary>
    public static GenericChart Bars(string title, string yTitle, string[] names, double[] values) =>
        Style(Chart.Column<double, string, string>(values: values, Keys: names), title, "", yTitle);

    static GenericChart Style(GenericChart chart, string title, string xTitle, string yTitle) =>
        Plotly.NET.Chart.withTitle(title, Microsoft.FSharp.Core.FSharpOption<Font>.None).Invoke(chart)
             .WithXAxisStyle<double, double, string>(TitleText: xTitle)
             .WithYAxisStyle<double, double, string>(TitleText: yTitle)
             .WithSize(Width: 720, Height: 420);
}
