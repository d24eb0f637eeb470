using System.Text.Json;
using Diffusion.Evaluation;
using Diffusion.TextToImage;

namespace Diffusion.Cli;

/// <summary>
/// <c>eval-text2img</c>: a guidance sweep measured as text-to-image papers do, per weight w: over the 76 prompts of
/// <see cref="TextToImageEvaluation.PromptGrid"/>, the classifier's agreement with the prompted class, the agreement of
/// the measured attribute words with the prompted ones (against chance) and, with <c>--clip</c>, the CLIP-score analogue;
/// and the FCD of one picture drawn per caption of N real t10k pictures against those pictures, with its real-vs-real floor
/// (<see cref="CaptionFcd"/>).
/// </summary>
static class EvalTextToImageCommand
{
    public static Command Create()
    {
        var judge = OptionalOpt<string>("--clip", "A mini-CLIP file for the CLIP-score analogue (best: another one than the model's own text encoder)");
        var classifierFile = OptionalOpt<string>("--classifier", $"Classifier file (default: data/classifier/{FashionClassifier.ShippedFileName})");
        var perPrompt = Opt("--count", "Pictures per grid prompt", 16).Range(1, 1024);
        var weights = Opt("--guidance", "Comma-separated guidance weights w to compare (0 = plain conditional, −1 = unconditional)", "0,1,3,6");
        var prompts = Opt("--prompts", "Prompts to score: 'grid' (76: each class, with each word, shoes facing each way) or the first N of it", "grid");
        var fcdCount = Opt("--fcd-count", "Captioned t10k pictures (t10k 0…N−1) for the caption-conditioned FCD: one picture drawn per caption, " +
            $"FCD against those pictures, floor = t10k 5000… against them (0 = skip; at most {CaptionedPictures.MaxCount})", 500).Range(0, CaptionedPictures.MaxCount);
        var json = OptionalOpt<string>("--json", "Also write every prompt's scores as JSON here");
        var cmd = new Command("eval-text2img", "Measure a text-to-image model per guidance weight: class and attribute-word agreement with the prompts, " +
            "CLIP score, and the FCD of pictures drawn from real captions against those real pictures.")
        {
            judge, classifierFile, perPrompt, weights, prompts, fcdCount, json,
        };
        var t2i = new TextToImageOptions(cmd);
        var machine = new MachineOptions(cmd);
        var outputs = new OutputOptions(cmd);
        cmd.SetAction(p =>
        {
            if (p.GetValue(json) is { } jsonOut)
                outputs.Check(p, jsonOut, "--json", ("--checkpoint", t2i.File(p)), ("--clip", p.GetValue(judge)),
                    ("--classifier", p.GetValue(classifierFile) ?? FashionClassifier.ShippedPath()));
            var ws = Guidance.ParseList(p.GetValue(weights)!, numClasses: 1);
            var grid = Grid(p.GetValue(prompts)!);
            int captions = p.GetValue(fcdCount), n = p.GetValue(perPrompt);
            if (captions == 1) throw new CliException("--fcd-count 1: an FCD needs at least 2 pictures (a covariance); give 0 to skip it, or hundreds for a stable number");
            var dev = machine.Apply(p).Device;
            using var model = t2i.Load(p, dev);
            var spec = t2i.Spec(p, model);
            var thresholds = model.Info.Thresholds
                ?? throw new CliException($"{t2i.File(p)} does not say which caption terciles it was trained with; retrain it with train-text2img");
            using var classifier = FashionClassifier.Load(p.GetValue(classifierFile) ?? FashionClassifier.ShippedPath());
            using var captioned = captions == 0 ? null : Captioned(thresholds, captions, classifier);
            var clip = p.GetValue(judge) is { } clipPath ? MiniClipFile.Load(clipPath, dev) : default((MiniClip Model, WordTokenizer Tokenizer, MiniClipInfo Info)?);
            using var clipModel = clip?.Model;
            var sweep = new TextToImageSweep(model, spec, new TextToImageJudges(classifier, clip?.Model, clip?.Tokenizer), t2i.Seed(p), dev);
            var results = ws.Select(w =>
            {
                var r = ConsoleProgress.Run(string.Create(CultureInfo.InvariantCulture, $"w = {w:0.###}: {grid.Count} prompts × {n}, {captions} captions × 1"),
                    TextToImageSweep.Work(grid, captioned), report => sweep.Run(w, grid, n, captioned, report));
                Print(r, spec, model.Info.HeldOut);
                return r;
            }).ToList();
            if (p.GetValue(json) is { } jsonPath)
                WriteJson(jsonPath, t2i.File(p), spec, n, t2i.Seed(p), captioned, results);
            return 0;
        });
        return cmd;
    }

    /// <summary>The run's settings, where the caption FCD's pictures came from, and every weight's scores, as JSON.</summary>
    static void WriteJson(string path, string checkpoint, TextToImageSampler spec, int perPrompt, int seed, CaptionedPictures? captioned, IEnumerable<GuidanceResult> results)
    {
        int n = captioned?.Count ?? 0;
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(new
        {
            checkpoint, sampler = spec.ToString(), perPrompt, seed,
            fcdReal = captioned is null ? null : new
            {
                pictures = $"t10k 0–{n - 1} with their captions", floor = $"t10k {CaptionedPictures.MaxCount}–{CaptionedPictures.MaxCount + n - 1}",
                matchedFloor = "for each caption the first unused t10k picture from 5000 on with the same class, words and direction",
                exactlyMatched = captioned.ExactlyMatched,
            },
            results = results.Select(r => new { guidance = r.Guidance, seconds = r.Seconds, summary = r.Summary, heldOut = r.HeldOut, fcd = r.Fcd, prompts = r.Prompts }),
        }, Checkpoint.JsonOptions));
        Console.WriteLine($"wrote {path}");
    }

    /// <summary>--prompts: "grid" or the first N prompts of it.</summary>
    static IReadOnlyList<CaptionFacts> Grid(string which)
    {
        var grid = TextToImageEvaluation.PromptGrid();
        which = which.Trim();
        if (string.Equals(which, "grid", StringComparison.OrdinalIgnoreCase)) return grid;
        if (!int.TryParse(which, NumberStyles.None, CultureInfo.InvariantCulture, out var first) || first < 1)
            throw new CliException($"--prompts {which}: give grid or a number of prompts such as 20");
        return grid.Take(first).ToList();
    }

    /// <summary>The first <paramref name="count"/> t10k pictures with their captions, and the floor, printed.</summary>
    static CaptionedPictures Captioned(CaptionThresholds thresholds, int count, FashionClassifier classifier)
    {
        using var test = ImageDataset.FashionMnist(DataLocator.FashionMnistFolder(), train: false);
        var captioned = new CaptionedPictures(test, thresholds, count, classifier);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"caption FCD: {count} t10k pictures (0–{count - 1}) and their captions, e.g. \"{captioned.Captions[0]}\"; " +
            $"floor ({count} other real pictures, t10k {CaptionedPictures.MaxCount}+): {captioned.Floor:F3}; caption-matched floor (another real picture " +
            $"per caption with the same class and words, {captioned.ExactlyMatched} of {count} exact): {captioned.MatchedFloor:F3}"));
        return captioned;
    }

    static void Print(GuidanceResult r, TextToImageSampler spec, IReadOnlyCollection<HeldOutPair> heldOut)
    {
        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine(Line(string.Create(inv, $"w = {r.Guidance:0.###} ({spec}, {r.Seconds:F0} s), all {r.Summary.Prompts} prompts"), r.Summary));
        if (r.HeldOut is { } h)
            Console.WriteLine(Line($"  held-out combinations ({string.Join(", ", heldOut)}; {h.Prompts} prompts)", h));
        if (r.Fcd is { } f)
            Console.WriteLine(Line(string.Create(inv, $"  FCD {f.Fcd:F3} (floor {f.Floor:F3}, caption-matched {f.MatchedFloor:F3}) over {f.Count} captions ({f.HeldOutCaptions} say a held-out combination), each picture vs its caption"), f.Scores));
    }

    /// <summary>"…: class 63.5 % (chance 10 %); brightness 89 % (chance 33 %), …; CLIP score 0.648".</summary>
    static string Line(string head, EvaluationSummary s)
    {
        var inv = CultureInfo.InvariantCulture;
        var words = string.Join(", ", s.Attributes.Select(a => string.Create(inv, $"{a.Attribute} {a.Agreement:P0} (chance {a.Chance:P0})")));
        var clipScore = s.ClipScore is { } c ? string.Create(inv, $"; CLIP score {c:F3}") : "";
        return string.Create(inv, $"{head}: class {s.ClassAgreement:P1} (chance 10 %); {words}{clipScore}");
    }
}
