using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace Diffusion.Tests;

/// <summary>
/// The course site (README's site command, docs/site/build.sh) built in quick mode from the notebooks this test run
/// executed (no second run), then every page opened in headless Chromium the way a visitor opens it from disk. A page
/// fails when a request leaves the machine or fails, an image does not decode, a Plotly chart draws no SVG, math is left
/// as raw TeX, an internal link or anchor is broken, or the console shows an error. The checker itself is shown to fail
/// on a copy of a page with a picture and a chart broken on purpose.
/// </summary>
public class SiteTests(ITestOutputHelper output) : IClassFixture<NotebookRunsFixture>
{
    public const string AptPackages = "chromium python3-sphinx python3-nbsphinx python3-myst-parser furo libjs-mathjax pandoc";
    static string Root => TestSetup.RepoRoot;
    static string SiteDir => Path.Combine(Root, "artifacts", "site");
    static readonly object BuildLock = new();
    static bool siteBuilt;

    /// <summary>Every notebook's executed copy (the runs the notebook tests share), then the quick-mode site from them.</summary>
    static void BuildSite(ITestOutputHelper output)
    {
        lock (BuildLock)
        {
            if (siteBuilt) return;
            if (Environment.GetEnvironmentVariable("COURSE_SITE_PREBUILT") == "1" && File.Exists(Path.Combine(SiteDir, "index.html")))
            {
                output.WriteLine("COURSE_SITE_PREBUILT=1: checking the site already in artifacts/site/ (for work on the site itself)");
                siteBuilt = true;
                return;
            }
            var notebooks = Directory.GetFiles(Path.Combine(Root, "notebooks"), "*.ipynb").Select(Path.GetFileName)
                .Where(n => char.IsDigit(n![0])).Select(n => n!).Order(StringComparer.Ordinal).ToList();
            foreach (var nb in notebooks)
            {
                var run = NotebookRuns.Get(nb, notebooks);
                Assert.True(File.Exists(run.ExecutedPath), $"{nb} left no executed copy: {run.Log}");
            }
            var sw = Stopwatch.StartNew();
            var (code, log) = Run("bash", Root, TimeSpan.FromMinutes(10), "docs/site/build.sh", "--quick", "--reuse");
            output.WriteLine(log);
            Assert.True(code == 0, $"bash docs/site/build.sh --quick --reuse exited with {code}:\n{log}");
            output.WriteLine($"site built in {sw.Elapsed.TotalSeconds:F0} s");
            siteBuilt = true;
        }
    }

    [Fact]
    public async Task EveryPageOfTheQuickSiteRendersOfflineWithoutErrors()
    {
        BuildSite(output);
        var pages = Directory.GetFiles(SiteDir, "*.html", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
        var notebookPages = Directory.GetFiles(Path.Combine(Root, "notebooks"), "[0-9]*.ipynb")
            .Select(f => Path.Combine(SiteDir, Path.GetFileNameWithoutExtension(f) + ".html")).ToList();
        Assert.All(notebookPages, p => Assert.Contains(p, pages));
        Assert.Contains(Path.Combine(SiteDir, "index.html"), pages);

        var shots = Path.Combine(Root, "artifacts", "site-check");
        Directory.CreateDirectory(shots);
        await using var browser = await Chromium.StartAsync();
        var reports = new List<PageReport>();
        foreach (var page in pages)
        {
            var name = Path.GetFileNameWithoutExtension(page);
            var shot = name is "index" or "05-training" or "06-sampling" ? Path.Combine(shots, name + ".png") : null;
            var r = await browser.CheckAsync(page, shot);
            output.WriteLine($"{Path.GetRelativePath(SiteDir, page)}: {r.Images} images, {r.Charts} charts, {r.Math} formulas, " +
                             $"{r.Links.Count} links, {r.Seconds:F1} s{(r.Problems.Count > 0 ? ", PROBLEMS:" : "")}");
            foreach (var p in r.Problems) output.WriteLine("   " + p);
            reports.Add(r);
        }
        var problems = reports.SelectMany(r => r.Problems.Select(p => $"{Path.GetRelativePath(SiteDir, r.Page)}: {p}")).ToList();
        problems.AddRange(BrokenLinks(reports));

        // The site shows what the course shows: every notebook's pictures, charts and the animation of 06.
        foreach (var (nb, (png, charts, gif)) in NotebookTests.Expected)
        {
            var r = reports.Single(x => Path.GetFileName(x.Page) == Path.ChangeExtension(nb, ".html"));
            if (r.Images < png + gif) problems.Add($"{nb}: {r.Images} images on its page, the notebook shows at least {png + gif}");
            if (r.Charts < charts) problems.Add($"{nb}: {r.Charts} charts drawn on its page, the notebook shows at least {charts}");
            if (r.Gifs < gif) problems.Add($"{nb}: {r.Gifs} animations on its page, the notebook shows {gif}");
        }
        Assert.True(problems.Count == 0, string.Join("\n", problems));
        Assert.True(reports.Sum(r => r.Math) > 100, $"only {reports.Sum(r => r.Math)} typeset formulas on the whole site");
    }

    /// <summary>
    /// The checker must be able to fail: on a copy of the site, notebook 06's page gets one picture whose file is not an
    /// image, one chart whose script never draws it, and one link to a page that does not exist.
    /// </summary>
    [Fact]
    public async Task TheCheckerReportsABrokenPictureChartAndLink()
    {
        BuildSite(output);
        var copy = Path.Combine(Root, "artifacts", "site-broken");
        if (Directory.Exists(copy)) Directory.Delete(copy, recursive: true);
        CopyDirectory(SiteDir, copy);
        var page = Path.Combine(copy, "06-sampling.html");
        var html = File.ReadAllText(page);

        var src = System.Text.RegularExpressions.Regex.Match(html, "<img[^>]*src=\"([^\"]+\\.png)\"").Groups[1].Value;
        Assert.NotEqual("", src);
        File.WriteAllText(Path.Combine(copy, src), "not a picture");                         // a picture that does not decode
        var chart = html.IndexOf("Plotly.newPlot(", StringComparison.Ordinal);
        Assert.True(chart > 0, "06-sampling.html has no Plotly chart");
        html = html[..chart] + "void (" + html[(chart + "Plotly.newPlot(".Length)..];        // a chart whose script draws nothing
        html = html.Replace("</article>", "<a href=\"no-such-page.html\">broken</a></article>");
        File.WriteAllText(page, html);

        await using var browser = await Chromium.StartAsync();
        var r = await browser.CheckAsync(page, null);
        foreach (var p in r.Problems) output.WriteLine(p);
        var links = BrokenLinks([r]).ToList();
        foreach (var l in links) output.WriteLine(l);
        Assert.Contains(r.Problems, p => p.StartsWith("image does not decode") && p.Contains(Path.GetFileName(src)));
        Assert.Contains(r.Problems, p => p.StartsWith("chart draws no SVG"));
        Assert.Contains(links, l => l.Contains("no-such-page.html"));
        Directory.Delete(copy, recursive: true);
    }

    /// <summary>Links between pages of the site: the target file exists, and so does the anchor it names.</summary>
    static IEnumerable<string> BrokenLinks(IReadOnlyList<PageReport> reports)
    {
        var ids = reports.ToDictionary(r => Path.GetFullPath(r.Page), r => r.Ids);
        foreach (var r in reports)
            foreach (var link in r.Links.Distinct())
            {
                var uri = new Uri(link);
                if (uri.Scheme != "file") continue;
                var path = Path.GetFullPath(Uri.UnescapeDataString(uri.AbsolutePath));
                var fragment = Uri.UnescapeDataString(uri.Fragment.TrimStart('#'));
                if (!File.Exists(path) && !Directory.Exists(path))
                    yield return $"{Path.GetFileName(r.Page)}: broken link to {link}";
                else if (fragment.Length > 0 && ids.TryGetValue(path, out var targetIds) && !targetIds.Contains(fragment))
                    yield return $"{Path.GetFileName(r.Page)}: link to a missing anchor {link}";
            }
    }

    static void CopyDirectory(string from, string to)
    {
        foreach (var dir in Directory.GetDirectories(from, "*", SearchOption.AllDirectories))
            Directory.CreateDirectory(dir.Replace(from, to));
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
            File.Copy(file, file.Replace(from, to));
    }

    internal static (int Code, string Log) Run(string file, string dir, TimeSpan timeout, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = dir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout)) { p.Kill(entireProcessTree: true); return (-1, $"timed out after {timeout}"); }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}

sealed record PageReport(string Page, List<string> Problems, int Images, int Gifs, int Charts, int Math, List<string> Links,
    HashSet<string> Ids, double Seconds);

/// <summary>
/// Debian's headless Chromium driven through the DevTools protocol (a WebSocket; no driver package needed): no network
/// services, a fresh profile, and every request, console message and exception of a page recorded.
/// </summary>
sealed class Chromium : IAsyncDisposable
{
    readonly Process process;
    readonly ClientWebSocket socket = new();
    readonly string profile;
    int nextId;
    readonly Dictionary<int, TaskCompletionSource<JsonNode>> pending = new();
    readonly List<string> events = [];                    // problems seen by the event handlers for the current page
    readonly Dictionary<string, string> requests = new();
    string? session;
    TaskCompletionSource loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    Task? receiver;

    Chromium(Process process, string profile) { this.process = process; this.profile = profile; }

    public static async Task<Chromium> StartAsync()
    {
        var exe = new[] { "/usr/bin/chromium", "/usr/bin/chromium-browser" }.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException($"error: the site test needs Debian's chromium: sudo apt-get install -y {SiteTests.AptPackages}");
        var profile = Directory.CreateTempSubdirectory("course-site-chromium-").FullName;
        var psi = new ProcessStartInfo(exe) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in new[] { "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                     "--disable-extensions", "--hide-scrollbars", "--mute-audio", $"--user-data-dir={profile}",
                     "--remote-debugging-port=0", "--window-size=1280,900", "about:blank" })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        _ = p.StandardOutput.ReadToEndAsync();
        _ = p.StandardError.ReadToEndAsync();
        var portFile = Path.Combine(profile, "DevToolsActivePort");
        var sw = Stopwatch.StartNew();
        while (!File.Exists(portFile) || File.ReadAllLines(portFile).Length < 2)
        {
            if (p.HasExited || sw.Elapsed > TimeSpan.FromSeconds(60))
                throw new InvalidOperationException($"chromium did not start (exit {(p.HasExited ? p.ExitCode : -1)})");
            await Task.Delay(100);
        }
        var lines = File.ReadAllLines(portFile);
        var c = new Chromium(p, profile);
        await c.socket.ConnectAsync(new Uri($"ws://127.0.0.1:{lines[0]}{lines[1]}"), CancellationToken.None);
        c.receiver = Task.Run(c.ReceiveLoop);
        var target = await c.Send("Target.createTarget", new JsonObject { ["url"] = "about:blank" }, root: true);
        var attach = await c.Send("Target.attachToTarget", new JsonObject { ["targetId"] = (string)target["targetId"]!, ["flatten"] = true }, root: true);
        c.session = (string)attach["sessionId"]!;
        foreach (var domain in new[] { "Page.enable", "Network.enable", "Runtime.enable", "Log.enable" })
            await c.Send(domain, new JsonObject());
        await c.Send("Emulation.setDeviceMetricsOverride", new JsonObject
            { ["width"] = 1280, ["height"] = 900, ["deviceScaleFactor"] = 1, ["mobile"] = false });
        return c;
    }

    public async Task<PageReport> CheckAsync(string path, string? screenshot)
    {
        var sw = Stopwatch.StartNew();
        lock (events) { events.Clear(); requests.Clear(); }
        loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
        var url = new Uri(Path.GetFullPath(path)).AbsoluteUri;
        await Send("Page.navigate", new JsonObject { ["url"] = url });
        if (await Task.WhenAny(loaded.Task, Task.Delay(TimeSpan.FromSeconds(30))) != loaded.Task)
            lock (events) events.Add("the page did not finish loading in 30 s");
        // Wait for MathJax to finish typesetting (it runs after the load event), at most 30 s. A MathJax that never
        // loaded counts as done: the raw TeX it leaves is reported below.
        for (var wait = Stopwatch.StartNew(); ; await Task.Delay(100))
        {
            var ready = await Evaluate("!(window.MathJax && MathJax.Hub) || (MathJax.isReady === true && MathJax.Hub.queue.pending === 0 && MathJax.Hub.queue.running === 0)");
            if (ready?.GetValue<bool>() == true) break;
            if (wait.Elapsed > TimeSpan.FromSeconds(30)) { lock (events) events.Add("MathJax did not finish typesetting in 30 s"); break; }
        }
        await Task.Delay(300);                                // late console errors, chart transitions
        var result = await Evaluate(CheckScript, awaitPromise: true);
        var r = JsonNode.Parse((string)result!)!;
        var problems = r["problems"]!.AsArray().Select(x => (string)x!).ToList();
        lock (events) problems.AddRange(events);
        if (screenshot is not null)
        {
            var shot = await Send("Page.captureScreenshot", new JsonObject { ["format"] = "png" });
            await File.WriteAllBytesAsync(screenshot, Convert.FromBase64String((string)shot["data"]!));
            // and the page's first chart or animation with what is above it
            var top = await Evaluate("(() => { const e = [...document.querySelectorAll('img.course-gif, .js-plotly-plot')].find(x => x.offsetHeight > 50); return e ? e.getBoundingClientRect().top + window.scrollY : -1; })()");
            if (top?.GetValue<double>() is double y && y >= 0)
            {
                shot = await Send("Page.captureScreenshot", new JsonObject
                {
                    ["format"] = "png", ["captureBeyondViewport"] = true,
                    ["clip"] = new JsonObject { ["x"] = 0, ["y"] = Math.Max(0, y - 250), ["width"] = 1280, ["height"] = 900, ["scale"] = 1 },
                });
                await File.WriteAllBytesAsync(Path.ChangeExtension(screenshot, ".figure.png"), Convert.FromBase64String((string)shot["data"]!));
            }
        }
        return new PageReport(path, problems, (int)r["images"]!, (int)r["gifs"]!, (int)r["charts"]!, (int)r["math"]!,
            r["links"]!.AsArray().Select(x => (string)x!).ToList(), r["ids"]!.AsArray().Select(x => (string)x!).ToHashSet(),
            sw.Elapsed.TotalSeconds);
    }

    /// <summary>What a visitor would see as broken, found in the rendered page.</summary>
    const string CheckScript = """
        (async () => {
          const problems = [];
          const imgs = [...document.images];
          imgs.forEach(i => i.loading = 'eager');
          const decoded = await Promise.allSettled(imgs.map(i => i.decode()));
          decoded.forEach((d, k) => { if (d.status !== 'fulfilled' || imgs[k].naturalWidth === 0)
            problems.push('image does not decode: ' + (imgs[k].getAttribute('src') || '').slice(0, 120)); });
          let charts = 0;
          for (const s of document.querySelectorAll('script')) {
            if (!s.text.includes('renderPlotly_')) continue;
            const div = s.previousElementSibling;
            if (div && div.querySelector('svg.main-svg')) charts++;
            else problems.push('chart draws no SVG: ' + (div ? div.id : '(no chart element)'));
          }
          const tex = /\\\(|\\\)|\\\[|\\\]|\$\$|\\(frac|sqrt|bar|tilde|epsilon|alpha|beta|sigma|lambda|theta|mathbf|mathcal|sum|prod|left|right|cdot|log|mid|lVert)\b/;
          const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
            acceptNode: n => n.parentElement.closest('script, style, pre, code, textarea, .MathJax_SVG, .MathJax_SVG_Display, .highlight, .MathJax_Preview')
              ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT });
          for (let n; (n = walker.nextNode());) {
            const m = tex.exec(n.textContent);
            if (m) problems.push('raw TeX left in the page: ' + n.textContent.trim().slice(0, 100));
          }
          const links = [...document.querySelectorAll('a[href]')].map(a => a.href).filter(h => h.startsWith('file:'));
          const ids = [...document.querySelectorAll('[id]')].map(e => e.id).concat([...document.querySelectorAll('a[name]')].map(a => a.name));
          return JSON.stringify({ problems, images: imgs.length, gifs: imgs.filter(i => /\.gif$/i.test(i.src)).length, charts,
            math: document.querySelectorAll('.MathJax_SVG, .MathJax_SVG_Display').length, links, ids });
        })()
        """;

    async Task<JsonNode?> Evaluate(string expression, bool awaitPromise = false)
    {
        var r = await Send("Runtime.evaluate", new JsonObject { ["expression"] = expression, ["returnByValue"] = true, ["awaitPromise"] = awaitPromise });
        if (r["exceptionDetails"] is { } ex) throw new InvalidOperationException("the page check threw: " + ex.ToJsonString());
        return r["result"]?["value"];
    }

    async Task<JsonNode> Send(string method, JsonObject parameters, bool root = false)
    {
        var tcs = new TaskCompletionSource<JsonNode>(TaskCreationOptions.RunContinuationsAsynchronously);
        int id;
        lock (pending) { id = ++nextId; pending[id] = tcs; }
        var message = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters };
        if (!root && session is not null) message["sessionId"] = session;
        await socket.SendAsync(Encoding.UTF8.GetBytes(message.ToJsonString()), WebSocketMessageType.Text, true, CancellationToken.None);
        if (await Task.WhenAny(tcs.Task, Task.Delay(TimeSpan.FromSeconds(120))) != tcs.Task)
            throw new TimeoutException($"chromium did not answer {method}");
        return await tcs.Task;
    }

    async Task ReceiveLoop()
    {
        var buffer = new byte[1 << 20];
        var message = new MemoryStream();
        while (socket.State == WebSocketState.Open)
        {
            WebSocketReceiveResult r;
            try { r = await socket.ReceiveAsync(buffer, CancellationToken.None); }
            catch (WebSocketException) { break; }
            if (r.MessageType == WebSocketMessageType.Close) break;
            message.Write(buffer, 0, r.Count);
            if (!r.EndOfMessage) continue;
            var node = JsonNode.Parse(Encoding.UTF8.GetString(message.GetBuffer(), 0, (int)message.Length))!;
            message.SetLength(0);
            if (node["id"] is { } idNode)
            {
                TaskCompletionSource<JsonNode>? tcs;
                lock (pending) { pending.Remove((int)idNode, out tcs); }
                if (node["error"] is { } error) tcs?.TrySetException(new InvalidOperationException(error.ToJsonString()));
                else tcs?.TrySetResult(node["result"] ?? new JsonObject());
                continue;
            }
            OnEvent((string)node["method"]!, node["params"]!);
        }
    }

    void OnEvent(string method, JsonNode p)
    {
        string Str(JsonNode? n) => n?.ToString() ?? "";
        lock (events)
        {
            if (method == "Page.loadEventFired")
                loaded.TrySetResult();
            else if (method == "Network.requestWillBeSent")
            {
                var url = Str(p["request"]?["url"]);
                requests[Str(p["requestId"])] = url;
                if (!(url.StartsWith("file:") || url.StartsWith("data:") || url.StartsWith("blob:") || url.StartsWith("about:")))
                    events.Add("request leaves the machine: " + Shorten(url));
            }
            else if (method == "Network.loadingFailed")
                events.Add($"request failed ({Str(p["errorText"])}): " + Shorten(requests.GetValueOrDefault(Str(p["requestId"]), "?")));
            else if (method == "Runtime.consoleAPICalled" && Str(p["type"]) is "error" or "assert")
                events.Add("console error: " + Shorten(string.Join(" ", p["args"]!.AsArray().Select(a =>
                    a?["value"] is { } v ? v.ToString() : Str(a?["description"])))));
            else if (method == "Runtime.exceptionThrown")
                events.Add("uncaught exception: " + Shorten(Str(p["exceptionDetails"]?["exception"]?["description"]) is { Length: > 0 } d
                    ? d : Str(p["exceptionDetails"]?["text"])));
            else if (method == "Log.entryAdded" && Str(p["entry"]?["level"]) == "error")
                events.Add("console error: " + Shorten(Str(p["entry"]?["text"])) + " " + Shorten(Str(p["entry"]?["url"])));
        }
    }

    static string Shorten(string s) => s.Length > 160 ? s[..160] + "…" : s;

    public async ValueTask DisposeAsync()
    {
        try { await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None); } catch (Exception) { }
        try { process.Kill(entireProcessTree: true); process.WaitForExit(10_000); } catch (InvalidOperationException) { }
        try { Directory.Delete(profile, recursive: true); } catch (IOException) { }
    }
}
