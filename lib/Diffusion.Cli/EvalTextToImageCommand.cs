using System.Text.Json;
using Diffusion.Evaluation;
using Diffusion.Text;

namespace Diffusion.Cli;

/// <summary>
/// <c>eval-text2img</c>: how well the pictures follow their prompts, for each guidance weight: the classifier's agreement with
/// the prompted class, the agreement of the measured attribute words with the prompted ones (against chance), and — with
/// <c>--clip</c> — the CLIP-score analogue; over the 76 prompts of <see cref="TextToImageEvaluation.PromptGrid"/>.
/// </summary>
static class EvalTextToImageCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "The text-to-image model file", Required = true };
        var clip = OptionalOpt<string>("--clip", "A mini-CLIP file for the CLIP-score analogue (best: another one than the model's own text encoder)");
        var classifier = OptionalOpt<string>("--classifier", $"Classifier file (default: data/classifier/{FashionClassifier.ShippedFileName})");
        var count = Opt("--count", "Pictures per prompt", 16).Range(1, 1024);
        var guidance = Opt("--guidance", "Comma-separated guidance weights w to compare (0 = plain conditional)", "0,1,3,6");
        var sampler = SamplerOptions.Kind("Sampler", "dpm++");
        var steps = Opt("--steps", "Sampler steps (default: the sampler's own)", 20).Range(1, 100000);
        var prompts = Opt("--prompts", "Prompts to score: 'grid' (76: each class, with each word, shoes facing each way) or the first N of it", "grid");
        var seed = Opt("--seed", "Random seed of the sampling noise", 0);
        var json = OptionalOpt<string>("--json", "Also write every prompt's scores as JSON here");
        var cmd = new Command("eval-text2img", "Measure how well a text-to-image model follows its prompts (class, attribute words, CLIP score) per guidance weight.")
        {
            checkpoint, clip, classifier, count, guidance, sampler, steps, prompts, seed, json,
        };
        var machine = new MachineOptions(cmd);
        cmd.SetAction(p =>
        {
            var weights = Guidance.ParseList(p.GetValue(guidance)!, numClasses: 1);
            var kind = SamplerSpec.Parse(p.GetValue(sampler)!);
            var spec = kind with { Steps = p.Given(steps) ? p.GetValue(steps) : kind.Steps, Clip = false };
            var grid = TextToImageEvaluation.PromptGrid();
            var which = p.GetValue(prompts)!.Trim();
            if (!string.Equals(which, "grid", StringComparison.OrdinalIgnoreCase))
            {
                if (!int.TryParse(which, NumberStyles.None, CultureInfo.InvariantCulture, out var first) || first < 1)
                    throw new CliException($"--prompts {which}: give grid or a number of prompts such as 20");
                grid = grid.Take(first).ToList();
            }
            var dev = machine.Apply(p).Device;
            using var model = TextToImageFile.Load(p.GetValue(checkpoint)!, dev);
            spec = spec.Validate(model.Info.Diffusion, Console.WriteLine);
            var thresholds = model.Info.Thresholds
                ?? throw new CliException($"{p.GetValue(checkpoint)} does not say which caption terciles it was trained with; retrain it with train-text2img");
            using var net = FashionClassifier.Load(p.GetValue(classifier) ?? FashionClassifier.ShippedPath());
            (MiniClip Model, WordTokenizer Tokenizer, MiniClipInfo Info)? judge = p.GetValue(clip) is { } clipPath ? MiniClipFile.Load(clipPath, dev) : null;
            try
            {
                var results = new List<object>();
                int n = p.GetValue(count);
                foreach (var w in weights)
                {
                    var sw = Stopwatch.StartNew();
                    var scores = ConsoleProgress.Run(string.Create(CultureInfo.InvariantCulture, $"w = {w:0.###}: {grid.Count} prompts × {n}"), grid.Count, report =>
                        grid.Select((facts, i) =>
                        {
                            using var images = model.Generate([TextToImageEvaluation.Prompt(facts)], n, w, spec, p.GetValue(seed) + i, dev);
                            var score = TextToImageEvaluation.Score(facts, images, net, thresholds, judge?.Model, judge?.Tokenizer, model.Info.HeldOut);
                            report(i + 1, score.Prompt);
                            return score;
                        }).ToList());
                    var summary = TextToImageEvaluation.Summarize(scores);
                    var heldOut = scores.Where(s => s.IsHeldOut).ToList();
                    var heldOutSummary = heldOut.Count > 0 ? TextToImageEvaluation.Summarize(heldOut) : null;
                    Console.WriteLine(Line(string.Create(CultureInfo.InvariantCulture, $"w = {w:0.###} ({spec}, {sw.Elapsed.TotalSeconds:F0} s), all {grid.Count} prompts"), summary));
                    if (heldOutSummary is not null)
                        Console.WriteLine(Line($"  held-out combinations ({string.Join(", ", model.Info.HeldOut)}; {heldOut.Count} prompts)", heldOutSummary));
                    results.Add(new { guidance = w, summary, heldOut = heldOutSummary, prompts = scores });
                }
                if (p.GetValue(json) is { } jsonPath)
                {
                    AtomicFile.WriteAllText(jsonPath, JsonSerializer.Serialize(new
                    {
                        checkpoint = p.GetValue(checkpoint), sampler = spec.ToString(), perPrompt = n, seed = p.GetValue(seed), results,
                    }, Checkpoint.JsonOptions));
                    Console.WriteLine($"wrote {jsonPath}");
                }
            }
            finally
            {
                judge?.Model.Dispose();
            }
            return 0;
        });
        return cmd;
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
