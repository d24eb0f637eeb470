using Diffusion.Training;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Diffusion.Benchmarks;

/// <summary>Training throughput of the course and of PyTorch on the same network and batch, measured alternately in one run.</summary>
public sealed record PeerComparison(string Name, int BatchSize, double CourseMedianMs, double PeerMedianMs, string PeerTorch,
    string PeerBlas, int PeerThreads)
{
    public double CourseImagesPerSecond => BatchSize * 1000 / CourseMedianMs;
    public double PeerImagesPerSecond => BatchSize * 1000 / PeerMedianMs;
    /// <summary>Course img/s ÷ PyTorch img/s (&gt; 1: the course is faster).</summary>
    public double Ratio => PeerMedianMs / CourseMedianMs;
}

/// <summary>
/// The step that docs/pytorch/bench_peer.py times, in C#: x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε (cosine schedule, T = 500),
/// L = ‖ε − ε_θ(x_t, t)‖² (mean), backward, AdamW. No EMA or gradient clipping, as in the script.
/// </summary>
public sealed class PeerStep : IDisposable
{
    const int Timesteps = 500;
    readonly Unet model;
    readonly AdamW optimizer;
    readonly Tensor alphasCumprod;
    readonly int batchSize, size;

    public PeerStep(UnetConfig config, int batchSize, int size = 28, int seed = 0)
    {
        manual_seed(seed);
        model = new Unet(config);
        model.train();
        optimizer = optim.AdamW(model.parameters(), 1e-4);
        // ᾱ_t = Π_{s≤t} (1 − β_s), in float64, stored as float32
        using var betas = tensor(BetaSchedules.Cosine(Timesteps), dtype: ScalarType.Float64);
        alphasCumprod = (1 - betas).cumprod(0).to(ScalarType.Float32).DetachFromDisposeScope();
        this.batchSize = batchSize;
        this.size = size;
    }

    public long Parameters => model.ParameterCount();

    /// <summary>One optimiser step; returns its wall time in milliseconds.</summary>
    public double Run()
    {
        var sw = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        var x0 = rand(batchSize, 1, size, size) * 2 - 1;
        var t = randint(0, Timesteps, [batchSize], dtype: ScalarType.Int64);
        var eps = randn_like(x0);
        var a = alphasCumprod.index_select(0, t).view(-1, 1, 1, 1);
        // x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε
        var xt = a.sqrt() * x0 + (1 - a).sqrt() * eps;
        // L_simple = ‖ε − ε_θ(x_t, t)‖²
        var loss = nn.functional.mse_loss(model.call(xt, t), eps);
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
        loss.item<float>();
        return sw.Elapsed.TotalMilliseconds;
    }

    public void Dispose()
    {
        optimizer.Dispose();
        model.Dispose();
        alphasCumprod.Dispose();
    }
}

/// <summary>Runs docs/pytorch/bench_peer.py (PyTorch) next to the course's own step.</summary>
public static class Peer
{
    public const string Python = "/usr/bin/python3";
    public const string ScriptPath = "docs/pytorch/bench_peer.py";

    /// <summary>
    /// The script, found walking up from the current folder or the program's folder; and null, or why PyTorch cannot run.
    /// </summary>
    public static (string? Script, string? Problem) Find()
    {
        string? script = null;
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null && script is null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, ScriptPath))) script = Path.Combine(dir.FullName, ScriptPath);
        if (script is null) return (null, $"cannot find {ScriptPath}: run bench --peer from inside the repository.");
        if (!File.Exists(Python))
            return (null, $"{Python} not found: install Debian's PyTorch (apt-get install python3-torch libopenblas0-pthread) for bench --peer.");
        var (code, output) = RunToEnd(Python, ["-c", "import torch; print(torch.__version__)"]);
        if (code != 0)
            return (null, $"{Python} has no torch ({output.Trim().Split('\n')[^1]}); install it with apt-get install python3-torch " +
                          "libopenblas0-pthread (the pyenv python3 on PATH is not used).");
        return (script, null);
    }

    /// <summary>
    /// Median step times of the course (<see cref="PeerStep"/>) and of PyTorch on <paramref name="pythonConfig"/>
    /// (a name in bench_peer.py's CONFIGS), alternating <paramref name="rounds"/> × <paramref name="stepsPerRound"/> steps each.
    /// </summary>
    public static PeerComparison Compare(string script, string name, UnetConfig config, string pythonConfig, int batchSize,
        int threads, int rounds, int stepsPerRound, int warmup = 2)
    {
        var start = new ProcessStartInfo(Python)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { script, "--config", pythonConfig, "--batch", $"{batchSize}", "--threads", $"{threads}", "--warmup", $"{warmup}", "--serve" })
            start.ArgumentList.Add(a);
        // The same thread count for OpenMP (ATen, oneDNN) and OpenBLAS as torch.set_num_threads gives.
        start.Environment["OMP_NUM_THREADS"] = $"{threads}";
        start.Environment["OPENBLAS_NUM_THREADS"] = $"{threads}";
        using var python = Process.Start(start) ?? throw new InvalidOperationException($"could not start {Python}");
        var stderr = python.StandardError.ReadToEndAsync();
        try
        {
            using var header = JsonDocument.Parse(ReadLine(python, stderr));
            var h = header.RootElement;
            using var course = new PeerStep(config, batchSize);
            for (int i = 0; i < warmup; i++) course.Run();
            var ours = new List<double>();
            var theirs = new List<double>();
            for (int r = 0; r < rounds; r++)
            {
                for (int i = 0; i < stepsPerRound; i++) ours.Add(course.Run());
                python.StandardInput.WriteLine($"{stepsPerRound}");
                python.StandardInput.Flush();
                using var answer = JsonDocument.Parse(ReadLine(python, stderr));
                theirs.AddRange(answer.RootElement.GetProperty("step_ms").EnumerateArray().Select(e => e.GetDouble()));
            }
            python.StandardInput.WriteLine("quit");
            return new PeerComparison(name, batchSize, Bench.Median(ours), Bench.Median(theirs), h.GetProperty("torch").GetString()!,
                h.GetProperty("blas").GetString()!, h.GetProperty("threads").GetInt32());
        }
        finally
        {
            if (!python.WaitForExit(10_000)) python.Kill();
        }
    }

    static string ReadLine(Process python, Task<string> stderr) =>
        python.StandardOutput.ReadLine() ?? throw new InvalidOperationException(
            $"{ScriptPath} stopped: {(python.WaitForExit(5000) ? stderr.Result.Trim() : "no answer")}");

    static (int Code, string Output) RunToEnd(string file, string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) start.ArgumentList.Add(a);
        using var p = Process.Start(start)!;
        var err = p.StandardError.ReadToEndAsync();
        string output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, output + err.Result);
    }
}

/// <summary>Printable lines of <c>bench --peer</c>.</summary>
public static class BenchReport
{
    /// <summary>
    /// The annotated network at batch 64 and 128, the course's U-Net (<see cref="Recipe.CourseUnet"/>) and <c>train</c>'s
    /// default network (<see cref="Recipe.Default"/>'s) at batch 64, each measured in
    /// alternating rounds of two steps of the course and two of PyTorch, <paramref name="steps"/> timed steps each
    /// (<paramref name="quick"/>: batch 8, one round).
    /// </summary>
    public static IEnumerable<string> PeerLines(string script, int threads, bool quick, int steps = 10)
    {
        UnetConfig course = Recipe.CourseUnet, trainDefault = Recipe.Default.Model.Unet;
        var cases = quick
            ? new (string, UnetConfig, string, int)[] { ("course U-Net (--quick)", course, "default", 8) }
            : [("annotated", new UnetConfig(), "annotated", 64), ("annotated", new UnetConfig(), "annotated", 128),
               ("course U-Net", course, "default", 64), ($"train's default (dim {trainDefault.Dim})", trainDefault, "train-default", 64)];
        var results = new List<PeerComparison>();
        foreach (var (name, config, pythonName, batch) in cases)
        {
            yield return $"{name}, batch {batch}: course and PyTorch alternately …";
            var r = Peer.Compare(script, name, config, pythonName, batch, threads, rounds: quick ? 1 : Math.Max(1, steps / 2), stepsPerRound: 2);
            results.Add(r);
            yield return JsonSerializer.Serialize(new
            {
                name = r.Name, batch = r.BatchSize, course_ms = Math.Round(r.CourseMedianMs, 1), pytorch_ms = Math.Round(r.PeerMedianMs, 1),
                course_img_s = Math.Round(r.CourseImagesPerSecond, 2), pytorch_img_s = Math.Round(r.PeerImagesPerSecond, 2),
                ratio = Math.Round(r.Ratio, 3), pytorch = r.PeerTorch, blas = r.PeerBlas, pytorch_threads = r.PeerThreads, threads,
            });
        }
        yield return "";
        yield return $"{"network",-28} {"batch",5} {"course img/s",12} {"PyTorch img/s",13} {"ratio",6}";
        foreach (var r in results)
            yield return string.Create(CultureInfo.InvariantCulture,
                $"{r.Name,-28} {r.BatchSize,5} {r.CourseImagesPerSecond,12:F1} {r.PeerImagesPerSecond,13:F1} {r.Ratio,6:F2}");
        if (results.Count > 0)
            yield return $"PyTorch {results[0].PeerTorch}, {results[0].PeerThreads} threads, BLAS: {results[0].PeerBlas}; course {threads} threads. " +
                         "Median step times; one step = forward, L2 loss on ε, backward, AdamW.";
    }
}
