using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Diffusion.Data;
using Diffusion.Evaluation;
using Diffusion.Forward;
using Diffusion.Platform;
using Diffusion.Sampling;
using Diffusion.Schedules;
using Diffusion.Training;
using Diffusion.Visuals;
using static Diffusion.Cli.Parsing;
using static TorchSharp.torch;

namespace Diffusion.Cli;

/// <summary>One row of an <c>eval</c> table.</summary>
sealed record EvalRow(string Sampler, int NetworkEvaluations, double Seconds, double Fcd, double NearestMedian, double NearestMin,
    int CloserThanAnyHeldOut, double[] ClassShares, double? LabelAccuracy);

/// <summary><c>eval</c>: sample quality of a checkpoint with one or more samplers — FCD with its floor and ceiling, memorisation.</summary>
static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = Opt("--checkpoint", "Checkpoint file, or a run folder holding checkpoint.ckpt", Path.Combine("runs", "fashion-mnist"));
        var samplers = Opt("--samplers", "Comma-separated samplers to compare: ddpm (T steps), ddim:N (N steps)", "ddim:50");
        var count = Opt("--count", "Generated images per sampler (FCD is biased upwards at small counts: compare at equal counts)", 256).Range(2, 5000);
        var batch = Opt("--batch-size", "Images sampled at once", 64).Range(1, 4096);
        var seed = Opt("--seed", "Random seed of the sampling noise", 0);
        var classifier = OptionalOpt<string>("--classifier", $"Classifier file (default: data/classifier/{FashionClassifier.ShippedFileName})");
        var eta = Opt("--eta", "DDIM η", 0.0).Range(0, 10);
        var variance = Choice("--variance", "DDPM σ²_t", ReverseVariance.BetaTilde, ("beta-tilde", ReverseVariance.BetaTilde), ("beta", ReverseVariance.Beta), ("learned", ReverseVariance.Learned));
        var rawWeights = Opt("--raw-weights", "Use the last trained weights instead of their EMA", false);
        var json = OptionalOpt<string>("--json", "Also write the results as JSON here");
        var guidance = Opt("--guidance", "Conditional models: comma-separated classifier-free guidance weights w to compare, e.g. 0,0.5,1,2,4 " +
            "(Ho & Salimans eq. 6; diffusers' guidance_scale = 1 + w)", "0");
        var grids = OptionalOpt<string>("--grids", "Write each sampler's first 64 images as <folder>/<sampler>.png");
        var realOnly = Opt("--real-only", "Only the floor and ceiling (no checkpoint needed)", false);
        var device = Opt("--device", "cpu, cuda or auto", "cpu");
        var threads = new Option<int?>("--threads") { Description = "libtorch threads (default: auto)" };
        threads.Range(1, 1024);

        var cmd = new Command("eval",
            "Measure sample quality: FCD (Fréchet distance of classifier features) against held-out Fashion-MNIST, its real-vs-real " +
            "floor and noise ceiling at the same count, and how close samples sit to their nearest training image.")
        {
            checkpoint, samplers, count, batch, seed, classifier, eta, variance, rawWeights, json, grids, realOnly, device, threads, guidance,
        };
        cmd.SetAction(p =>
        {
            var specs = ParseSamplers(p.GetValue(samplers)!).Select(s => s with { Eta = p.GetValue(eta), Variance = p.GetValue(variance) }).ToList();
            int n = p.GetValue(count);
            int threadCount = Compute.SetThreads(p.GetValue(threads));
            Console.WriteLine(ThreadsNote(threadCount, p.GetValue(threads) is null));
            var dev = Compute.UseDevice(p.GetValue(device)!);

            var classifierPath = p.GetValue(classifier) ?? FashionClassifier.ShippedPath();
            using var net = FashionClassifier.Load(classifierPath);
            var folder = DataLocator.FashionMnistFolder();
            using var train = ImageDataset.FashionMnist(folder, train: true);
            using var test = ImageDataset.FashionMnist(folder, train: false);
            using var quality = new SampleQuality(net, train, test);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"classifier {classifierPath}: {net.FeatureDim} features, t10k accuracy {net.Info.TestAccuracy:P1}; reference: t10k images 0–4999"));
            double floor = quality.RealFloor(n), ceiling = quality.NoiseCeiling(n, p.GetValue(seed));
            var heldOut = quality.HeldOutNearest(n);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"FCD floor ({n} held-out real images, t10k 5000+): {floor:F3}    noise ceiling ({n} clipped N(0, I) images): {ceiling:F1}"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"held-out real images: nearest training image at RMS {heldOut.Median:F4} (median), {heldOut.Min:F4} (min)"));

            var rows = new List<EvalRow>();
            // Written after every sampler, so that a long comparison interrupted near its end keeps what it measured.
            void WriteJson(bool final)
            {
                if (p.GetValue(json) is not { } jsonPath) return;
                var doc = new
                {
                    count = n, seed = p.GetValue(seed), checkpoint = p.GetValue(realOnly) ? null : p.GetValue(checkpoint), floor,
                    noiseCeiling = ceiling, heldOutNearestMedian = heldOut.Median, heldOutNearestMin = heldOut.Min,
                    classifier = classifierPath, classifierAccuracy = net.Info.TestAccuracy, threads = threadCount, results = rows,
                };
                AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
                if (final) Console.WriteLine($"wrote {jsonPath}");
            }
            if (!p.GetValue(realOnly))
            {
                var path = CheckpointFile(p.GetValue(checkpoint)!);
                var (model, info) = Checkpoint.LoadModel(path, preferEma: !p.GetValue(rawWeights), dev);
                using (model)
                {
                    var config = info.Model;
                    if (config.Unet.Channels != 1 || config.ImageSize != 28)
                        throw new CliException($"{path} makes {config.Unet.Channels}×{config.ImageSize}×{config.ImageSize} images; " +
                                               "the FCD classifier measures 1×28×28 Fashion-MNIST-like images only.");
                    Console.WriteLine($"checkpoint {path}: step {info.Step}, {config.Schedule} T={config.Timesteps}, {config.Prediction}" +
                                      (config.Unet.NumClasses > 0 ? $", conditional on {config.Unet.NumClasses} classes (labels cycle 0..{config.Unet.NumClasses - 1})" : ""));
                    using var schedule = config.CreateSchedule();
                    var gridFolder = p.GetValue(grids);
                    if (gridFolder is not null) Directory.CreateDirectory(gridFolder);
                    var weights = Guidance.ParseList(p.GetValue(guidance)!, config.Unet.NumClasses);
                    foreach (var (spec, w) in specs.SelectMany(s => weights.Select(w => (s, w))))
                    {
                        using var sampler = spec.Validate(config, Console.WriteLine).Create(schedule, config.Prediction);
                        int k = config.Unet.NumClasses;
                        string name = weights.Length > 1 || w != 0 ? FormattableString.Invariant($"{sampler.Name} w={w:0.###}") : sampler.Name;
                        long[] LabelsOf(int start, int length) => Enumerable.Range(start, length).Select(i => (long)(i % k)).ToArray();
                        var sw = Stopwatch.StartNew();
                        Tensor images = null!;
                        int batches = (n + p.GetValue(batch) - 1) / p.GetValue(batch);
                        ConsoleProgress.Run($"{name}: {n} images", batches * sampler.Steps, report =>
                        {
                            var progress = new SyncProgress<BatchedSamplingProgress>(q =>
                                report(q.StepsDone, $"{q.ImagesDone}/{n} images"));
                            images = BatchedSampling.Sample(sampler, (start, length) =>
                            {
                                if (k == 0) return (x, t) => model.forward(x, t);
                                var labels = TorchSharp.torch.tensor(LabelsOf(start, length), device: dev);
                                return ClassifierFreeGuidance.Guide((x, t, y) => model.forward(x, t, y), labels, k, w);   // w = 0: plain conditional
                            }, [1, 28, 28], n, p.GetValue(batch), p.GetValue(seed), dev, progress);
                        });
                        double seconds = sw.Elapsed.TotalSeconds;
                        using (images)
                        {
                            var report = quality.Evaluate(images, p.GetValue(seed));
                            double? accuracy = null;
                            if (k > 0)
                            {
                                using var predicted = net.Predict(images);
                                var wanted = LabelsOf(0, n);
                                var got = predicted.data<long>().ToArray();
                                accuracy = Enumerable.Range(0, n).Count(i => got[i] == wanted[i]) / (double)n;
                            }
                            rows.Add(new EvalRow(name, sampler.Steps * (w != 0 ? 2 : 1), seconds, report.Fcd, report.Generated.Median, report.Generated.Min,
                                report.CloserThanAnyHeldOut, report.ClassShares, accuracy));
                            if (gridFolder is not null)
                                using (var first = images.narrow(0, 0, Math.Min(64, n)))
                                    ImageGrid.SaveGridPng(first, Path.Combine(gridFolder, name.Replace(' ', '-') + ".png"), 8, padding: 2, scale: 2);
                        }
                        Console.WriteLine(FormatRow(rows[^1]));
                        WriteJson(false);
                    }
                }
                Console.WriteLine();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| sampler | network evaluations | seconds ({n} images) | FCD ↓ (floor {floor:F2}, noise {ceiling:F0}) | nearest training image, median RMS (held-out real: {heldOut.Median:F4}) | closer than any held-out image |") +
                    (rows.Any(r => r.LabelAccuracy is not null) ? " classifier agrees with the label |" : ""));
                Console.WriteLine("|---|---|---|---|---|---|" + (rows.Any(r => r.LabelAccuracy is not null) ? "---|" : ""));
                foreach (var r in rows)
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {r.Sampler} | {r.NetworkEvaluations} | {r.Seconds:F0} | {r.Fcd:F2} | {r.NearestMedian:F4} | {r.CloserThanAnyHeldOut} of {n} |") +
                        (r.LabelAccuracy is { } a ? FormattableString.Invariant($" {a:P1} |") : ""));
            }
            WriteJson(true);
            return 0;
        });
        return cmd;
    }

    static string FormatRow(EvalRow r) =>
        FormattableString.Invariant($"{r.Sampler}: {r.Seconds:F1} s, FCD {r.Fcd:F3}, nearest training image RMS median {r.NearestMedian:F4} (min {r.NearestMin:F4}), ") +
        FormattableString.Invariant($"{r.CloserThanAnyHeldOut} closer than any held-out image") +
        (r.LabelAccuracy is { } a ? FormattableString.Invariant($", classifier agrees with the label for {a:P1}") : "");

    internal static List<SamplerSpec> ParseSamplers(string text)
    {
        try { return SamplerSpec.ParseList(text); }
        catch (FormatException e) { throw new CliException($"--samplers: {e.Message}, comma-separated, e.g. --samplers ddpm,ddim:100,ddim:50,ddim:25,ddim:10"); }
    }
}
