using System.Text.Json;
using Diffusion.Evaluation;
using Diffusion.Model;
using Diffusion.Visuals;

namespace Diffusion.Cli;

/// <summary>One row of an <c>eval</c> table.</summary>
sealed record EvalRow(string Sampler, int NetworkEvaluations, double Seconds, double Fcd, double NearestMedian, double NearestMin,
    int CloserThanAnyHeldOut, double[] ClassShares, double? LabelAccuracy);

/// <summary>What one <c>eval</c> run compares: the samplers × guidance weights, and how many images each draws.</summary>
sealed record EvalRequest(List<string> Samplers, Func<SamplerSpec, SamplerSpec> SamplerOptions, string Guidance, int Count, int BatchSize, int Seed, string? GridFolder)
{
    /// <summary>For a model of latents, the autoencoder that decodes its samples before they are scored.</summary>
    public LatentFile? Decoder { get; init; }
}

/// <summary><c>eval</c>: sample quality of a checkpoint with one or more samplers — FCD with its floor and ceiling, memorisation.</summary>
static class EvalCommand
{
    public static Command Create()
    {
        var samplers = Opt("--samplers", $"Comma-separated samplers to compare: {ModelSampler.Usages}", "ddim:50");
        var count = Opt("--count", "Generated images per sampler (FCD is biased upwards at small counts: compare at equal counts)", 256).Range(2, 5000);
        var batch = Opt("--batch-size", "Images sampled at once", 64).Range(1, 4096);
        var seed = SeedOption.Create("the sampling noise");
        var classifier = OptionalOpt<string>("--classifier", $"Classifier file (default: data/classifier/{FashionClassifier.ShippedFileName})");
        var eta = SamplerOptions.Eta();
        var variance = SamplerOptions.Variance();
        var json = OptionalOpt<string>("--json", "Also write the results as JSON here");
        var guidance = Opt("--guidance", "Conditional models: comma-separated classifier-free guidance weights w to compare, e.g. 0,0.5,1,2,4 " +
            "(Ho & Salimans eq. 6; diffusers' guidance_scale = 1 + w)", "0");
        var grids = OptionalOpt<string>("--grids", "Write each sampler's first 64 images as <folder>/<sampler>.png");
        var realOnly = Opt("--real-only", "Only the floor and ceiling (no checkpoint needed)", false);
        var autoencoder = OptionalOpt<string>("--autoencoder", "A model of latents (train --latents): the autoencoder that decodes its samples before they are scored");

        var cmd = new Command("eval",
            "Measure sample quality: FCD (Fréchet distance of classifier features) against held-out Fashion-MNIST, its real-vs-real " +
            "floor and noise ceiling at the same count, and how close samples sit to their nearest training image.")
        {
            samplers, count, batch, seed, classifier, eta, variance, json, grids, realOnly, guidance, autoencoder,
        };
        var checkpoint = new CheckpointOptions(cmd);
        var machine = new MachineOptions(cmd);
        var outputs = new OutputOptions(cmd);
        cmd.SetAction(p =>
        {
            (string, string?)[] inputs = [("--checkpoint", p.GetValue(realOnly) ? null : checkpoint.File(p)), ("--classifier", p.GetValue(classifier) ?? FashionClassifier.ShippedPath())];
            if (p.GetValue(json) is { } jsonPath) outputs.Check(p, jsonPath, "--json", inputs);
            var specs = ParseSamplers(p.GetValue(samplers)!);
            var request = new EvalRequest(specs, s => s with { Eta = p.GetValue(eta), Variance = p.GetValue(variance) }, p.GetValue(guidance)!, p.GetValue(count), p.GetValue(batch), p.GetValue(seed), p.GetValue(grids));
            if (request.GridFolder is { } gridFolder) outputs.CheckFolder(p, gridFolder, "--grids", "*.png");
            var run = machine.Apply(p);
            var classifierPath = p.GetValue(classifier) ?? FashionClassifier.ShippedPath();
            using var net = FashionClassifier.Load(classifierPath);
            var folder = DataLocator.FashionMnistFolder();
            using var train = ImageDataset.FashionMnist(folder, train: true);
            using var test = ImageDataset.FashionMnist(folder, train: false);
            using var quality = new SampleQuality(net, train, test);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"classifier {classifierPath}: {net.FeatureDim} features, t10k accuracy {net.Info.TestAccuracy:P1}; reference: t10k images 0–4999"));
            var reference = Reference(quality, request);
            var rows = new List<EvalRow>();
            // Written after every sampler, so that a long comparison interrupted near its end keeps what it measured.
            void WriteJson(bool final) => WriteResults(p.GetValue(json), final, new
            {
                count = request.Count, seed = request.Seed, checkpoint = p.GetValue(realOnly) ? null : checkpoint.Given(p), reference.floor,
                noiseCeiling = reference.ceiling, heldOutNearestMedian = reference.heldOut.Median, heldOutNearestMin = reference.heldOut.Min,
                classifier = Path.GetRelativePath(Directory.GetCurrentDirectory(), classifierPath), classifierAccuracy = net.Info.TestAccuracy, threads = run.Threads, results = rows,
            });
            if (!p.GetValue(realOnly))
            {
                var (model, info, path) = checkpoint.Load(p, run.Device);
                using (model)
                using (var decoder = p.GetValue(autoencoder) is { } aePath ? LatentFile.Load(aePath, "--autoencoder", run.Device) : null)
                    EvaluateAll(model, info, path, request with { Decoder = decoder }, net, quality, run.Device, row => { rows.Add(row); WriteJson(false); });
                PrintTable(rows, request.Count, reference.floor, reference.ceiling, reference.heldOut.Median);
            }
            WriteJson(true);
            return 0;
        });
        return cmd;
    }

    /// <summary>The floor (held-out real images), the noise ceiling and the held-out images' nearest training image, printed.</summary>
    static (double floor, double ceiling, (double Median, double Min) heldOut) Reference(SampleQuality quality, EvalRequest r)
    {
        double floor = quality.RealFloor(r.Count), ceiling = quality.NoiseCeiling(r.Count, r.Seed);
        var heldOut = quality.HeldOutNearest(r.Count);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"FCD floor ({r.Count} held-out real images, t10k 5000+): {floor:F3}    noise ceiling ({r.Count} clipped N(0, I) images): {ceiling:F1}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"held-out real images: nearest training image at RMS {heldOut.Median:F4} (median), {heldOut.Min:F4} (min)"));
        return (floor, ceiling, (heldOut.Median, heldOut.Min));
    }

    /// <summary>Every sampler × guidance weight of <paramref name="r"/>: samples, scores, reports each row.</summary>
    static void EvaluateAll(IDenoisingNetwork model, CheckpointInfo info, string path, EvalRequest r, FashionClassifier net, SampleQuality quality,
        Device dev, Action<EvalRow> done)
    {
        var config = info.Model;
        r.Decoder?.CheckFits(config, path);
        var (channels, side) = r.Decoder is { } d ? (d.Info.Config.Channels, d.Info.Config.ImageSize) : (config.Channels, config.ImageSize);
        if (channels != 1 || side != 28)
            throw new CliException($"{path} makes {channels}×{side}×{side} images; " +
                                   "the FCD classifier measures 1×28×28 Fashion-MNIST-like images only" +
                                   (r.Decoder is null && config.Channels != 1 ? " (a model of latents: give its autoencoder with --autoencoder)." : "."));
        Console.WriteLine($"checkpoint {path}: step {info.Step}, {config.NetworkName}, {config.ObjectiveName}" +
                          (config.NumClasses > 0 ? $", conditional on {config.NumClasses} classes (labels cycle 0..{config.NumClasses - 1})" : ""));
        if (r.GridFolder is not null) Directory.CreateDirectory(r.GridFolder);
        var weights = Guidance.ParseList(r.Guidance, config.NumClasses);
        foreach (var (spec, w) in r.Samplers.SelectMany(s => weights.Select(w => (s, w))))
        {
            // Latents are not bounded to [−1, 1]: no clipping before the decoder (which clamps the pictures).
            using var sampler = ModelSampler.Create(config, spec, path, r.SamplerOptions, clip: r.Decoder is null);
            string name = weights.Length > 1 || w != 0 ? FormattableString.Invariant($"{sampler.Name} w={w:0.###}") : sampler.Name;
            var row = Evaluate(model, config.NumClasses, sampler, name, w, r, net, quality, dev);
            Console.WriteLine(FormatRow(row));
            done(row);
        }
    }

    /// <summary>One row: <see cref="EvalRequest.Count"/> images of one sampler at guidance weight <paramref name="w"/>, scored.</summary>
    static EvalRow Evaluate(IDenoisingNetwork model, int k, ModelSampler sampler, string name, double w, EvalRequest r, FashionClassifier net,
        SampleQuality quality, Device dev)
    {
        long[] LabelsOf(int start, int length) => Enumerable.Range(start, length).Select(i => (long)(i % k)).ToArray();
        var sw = Stopwatch.StartNew();
        int batches = (r.Count + r.BatchSize - 1) / r.BatchSize;
        using var sampled = ConsoleProgress.Run($"{name}: {r.Count} images", batches * sampler.Steps, report =>
            sampler.SampleMany((start, length) =>
            {
                if (k == 0) return (x, t) => model.forward(x, t, null);
                var labels = tensor(LabelsOf(start, length), device: dev);
                return ClassifierFreeGuidance.Guide((x, t, y) => model.forward(x, t, y), labels, k, w);   // w = 0: plain conditional
            }, r.Decoder is null ? [1, 28, 28] : [r.Decoder.Info.Config.LatentChannels, r.Decoder.Info.Config.LatentSize, r.Decoder.Info.Config.LatentSize],
            r.Count, r.BatchSize, r.Seed, dev,
                new SyncProgress<BatchedSamplingProgress>(q => report(q.StepsDone, $"{q.ImagesDone}/{r.Count} images"))));
        using var decoded = r.Decoder?.Decode(sampled);
        var images = decoded ?? sampled;
        double seconds = sw.Elapsed.TotalSeconds;
        var scores = quality.Evaluate(images, r.Seed);
        double? accuracy = null;
        if (k > 0)
        {
            using var predicted = net.Predict(images);
            var wanted = LabelsOf(0, r.Count);
            var got = predicted.data<long>().ToArray();
            accuracy = Enumerable.Range(0, r.Count).Count(i => got[i] == wanted[i]) / (double)r.Count;
        }
        if (r.GridFolder is not null)
            using (var first = images.narrow(0, 0, Math.Min(64, r.Count)))
                ImageGrid.SaveGridPng(first, Path.Combine(r.GridFolder, name.Replace(' ', '-') + ".png"), 8, padding: 2, scale: 2);
        return new EvalRow(name, sampler.Steps * (w != 0 ? 2 : 1), seconds, scores.Fcd, scores.Generated.Median, scores.Generated.Min,
            scores.CloserThanAnyHeldOut, scores.ClassShares, accuracy);
    }

    static void WriteResults(string? jsonPath, bool final, object doc)
    {
        if (jsonPath is null) return;
        AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }));
        if (final) Console.WriteLine($"wrote {jsonPath}");
    }

    static void PrintTable(List<EvalRow> rows, int n, double floor, double ceiling, double heldOutMedian)
    {
        bool labels = rows.Any(r => r.LabelAccuracy is not null);
        Console.WriteLine();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| sampler | network evaluations | seconds ({n} images) | FCD ↓ (floor {floor:F2}, noise {ceiling:F0}) | nearest training image, median RMS (held-out real: {heldOutMedian:F4}) | closer than any held-out image |") +
            (labels ? " classifier agrees with the label |" : ""));
        Console.WriteLine("|---|---|---|---|---|---|" + (labels ? "---|" : ""));
        foreach (var r in rows)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.Sampler} | {r.NetworkEvaluations} | {r.Seconds:F0} | {r.Fcd:F2} | {r.NearestMedian:F4} | {r.CloserThanAnyHeldOut} of {n} |") +
                (r.LabelAccuracy is { } a ? FormattableString.Invariant($" {a:P1} |") : ""));
    }

    static string FormatRow(EvalRow r) =>
        FormattableString.Invariant($"{r.Sampler}: {r.Seconds:F1} s, FCD {r.Fcd:F3}, nearest training image RMS median {r.NearestMedian:F4} (min {r.NearestMin:F4}), ") +
        FormattableString.Invariant($"{r.CloserThanAnyHeldOut} closer than any held-out image") +
        (r.LabelAccuracy is { } a ? FormattableString.Invariant($", classifier agrees with the label for {a:P1}") : "");

    /// <summary>"ddpm,ddim:50,euler:10" → the names, each checked to be a sampler (which family fits is checked against the model).</summary>
    internal static List<string> ParseSamplers(string text)
    {
        var names = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
        try
        {
            if (names.Count == 0) SamplerSpec.ParseList(text);           // the library's "no sampler given" error
            foreach (var name in names)
                if (!ModelSampler.IsDdpmSampler(name) && Flow.FlowSamplerSpec.IsFlowSampler(name)) Flow.FlowSamplerSpec.Parse(name);
                else SamplerSpec.Parse(name);
        }
        catch (FormatException e) { throw new CliException($"--samplers: {e.Message}, comma-separated, e.g. --samplers ddpm,ddim:100,ddim:50,ddim:25,ddim:10"); }
        return names;
    }
}
