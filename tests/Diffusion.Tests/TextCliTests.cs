using Diffusion.Latent;
using Diffusion.TextToImage;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace Diffusion.Tests;

/// <summary>The text-to-image commands as a user runs them: train-clip, train-text2img, generate, and generate's bad inputs.</summary>
public class TextCliTests
{
    /// <summary>An untrained (seeded) text-to-image model of tiny size, as generate reads it: context of 8 tokens, T = 20.</summary>
    internal static void WriteTinyModel(string path)
    {
        using var scope = NewDisposeScope();
        var tok = WordTokenizer.ForCaptions();
        manual_seed(21);
        var encoderConfig = new TextEncoderConfig { VocabularySize = tok.Count, ContextLength = 8, Dim = 16, Heads = 2, Layers = 1, EmbedDim = 8 };
        var aeConfig = new AutoencoderConfig();
        var info = new TextToImageInfo
        {
            Unet = TextUnetTests.Tiny(), Timesteps = 20, LatentSize = aeConfig.LatentSize, TextEncoder = encoderConfig,
            Vocabulary = tok.Words.ToArray(), Autoencoder = aeConfig, ScalingFactor = 1,
            Thresholds = new CaptionThresholds { Terciles = Enumerable.Repeat(new[] { new[] { 0.4, 0.6 }, new[] { 0.3, 0.5 }, new[] { 0.01, 0.02 } }, 10).ToArray() },
        };
        using var unet = new TextUnet(info.Unet);
        using var encoder = new TextEncoder(encoderConfig);
        using var ae = new Autoencoder(aeConfig);
        TextToImageFile.Save(path, unet, encoder, ae, info);
    }

    static readonly string[] Quick = ["--count", "2", "--sampler", "ddim", "--steps", "2", "--threads", "1"];

    public static TheoryData<string, string[], string> BadInputs() => new()
    {
        { "generate", ["--prompt", "a bag", "--checkpoint", "MISSING"], "train-text2img" },
        { "generate", ["--prompt", "purple elephant", "--checkpoint", "TINY"], "no word this model was trained on (purple, elephant)" },
        { "generate", ["--prompt", "!!! ???", "--checkpoint", "TINY", "--guidance", "-2"], "w must be ≥ −1" },
        { "generate", ["--prompt", "a bag", "--checkpoint", "DAMAGED"], "damaged or truncated" },
        { "generate", ["--prompt", "a bag", "--checkpoint", "WRONG"], "not a text-to-image model" },
        { "generate", ["--checkpoint", "TINY"], "--prompt" },
        { "eval-text2img", ["--checkpoint", "MISSING"], "train-text2img" },
        { "eval-text2img", ["--checkpoint", "TINY", "--prompts", "none"], "--prompts none" },
        { "eval-text2img", ["--checkpoint", "TINY", "--fcd-count", "1"], "--fcd-count 1: an FCD needs at least 2 pictures" },
        { "eval-text2img", ["--checkpoint", "TINY", "--fcd-count", "5001"], "--fcd-count must be between 0 and 5000, got 5001" },
        { "eval-text2img", ["--checkpoint", "TINY", "--fcd-count", "-3"], "--fcd-count must be between 0 and 5000, got -3" },
        { "eval-text2img", ["--checkpoint", "TINY", "--guidance", "0,-2"], "w must be ≥ −1" },
    };

    /// <summary>generate and eval-text2img: one clear error line, a non-zero exit code, and no picture or JSON written.</summary>
    [Theory]
    [MemberData(nameof(BadInputs))]
    public void BadInputsGiveOneClearErrorAndWriteNothing(string command, string[] args, string expected)
    {
        using var dir = TestSetup.Temp();
        WriteTinyModel(dir["tiny.ckpt"]);
        var bytes = File.ReadAllBytes(dir["tiny.ckpt"]);
        bytes[^100] ^= 1;
        File.WriteAllBytes(dir["damaged.ckpt"], bytes);
        var resolved = args.Select(a => a switch
        {
            "MISSING" => dir["none.ckpt"], "TINY" => dir["tiny.ckpt"], "DAMAGED" => dir["damaged.ckpt"], "WRONG" => LatentTests.ShippedAutoencoder, _ => a,
        });
        var output = command == "generate" ? dir["g.png"] : dir["eval.json"];
        var r = Cli.Run(dir.Path, [command, .. resolved, command == "generate" ? "--out" : "--json", output, .. Quick]);
        Assert.True(r.ExitCode != 0, $"exit 0 for {command} {string.Join(' ', args)}:\n{r.All}");
        Assert.Contains(expected, r.Stderr);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.False(File.Exists(output), "nothing may be written");
        if (args.Contains("MISSING")) Assert.Contains("train-clip", r.Stderr);
        if (args.Contains("purple elephant"))
        {
            Assert.Contains("It knows these", r.Stderr);                          // and lists the words it knows
            Assert.Contains("ankle, are", r.Stderr);
        }
    }

    [Fact]
    public void LongEmptyAndPartlyUnknownPromptsDrawWithANotice()
    {
        using var dir = TestSetup.Temp();
        WriteTinyModel(dir["tiny.ckpt"]);
        // The tiny model reads 8 tokens: start, 6 words, end.
        var cut = Cli.Run(dir.Path, ["generate", "--prompt", "a dark wide plain ankle boot facing left", "--checkpoint", dir["tiny.ckpt"], "--out", dir["cut.png"], .. Quick]);
        Assert.True(cut.ExitCode == 0, cut.All);
        Assert.Contains("cut off: facing left", cut.Stdout);
        using (var png = Image.Load<Rgb24>(dir["cut.png"])) Assert.Equal(2 + 2 * (28 * 2 + 2), png.Width);

        var empty = Cli.Run(dir.Path, ["generate", "--prompt", "", "--checkpoint", dir["tiny.ckpt"], "--out", dir["empty.png"], .. Quick]);
        Assert.True(empty.ExitCode == 0, empty.All);
        Assert.Contains("unconditional", empty.Stdout);
        Assert.True(File.Exists(dir["empty.png"]));

        var shiny = Cli.Run(dir.Path, ["generate", "--prompt", "a shiny bag", "--checkpoint", dir["tiny.ckpt"], "--out", dir["shiny.png"], "--seed", "3", .. Quick]);
        Assert.True(shiny.ExitCode == 0, shiny.All);
        Assert.Contains("left out words the model was not trained on: shiny", shiny.Stdout);
        // Unknown words are left out: the same pictures as the prompt without them.
        var bag = Cli.Run(dir.Path, ["generate", "--prompt", "a bag", "--checkpoint", dir["tiny.ckpt"], "--out", dir["bag.png"], "--seed", "3", .. Quick]);
        Assert.True(bag.ExitCode == 0, bag.All);
        Assert.Equal(File.ReadAllBytes(dir["bag.png"]), File.ReadAllBytes(dir["shiny.png"]));
    }

    [Fact]
    public void EvalTextToImageScoresEveryPromptAtEveryGuidanceWeight()
    {
        using var dir = TestSetup.Temp();
        WriteTinyModel(dir["tiny.ckpt"]);
        var r = Cli.Run(dir.Path, "eval-text2img", "--checkpoint", dir["tiny.ckpt"], "--prompts", "3", "--count", "2", "--guidance", "0,2",
            "--fcd-count", "20", "--sampler", "ddim", "--steps", "2", "--threads", "1", "--json", dir["eval.json"]);
        Assert.True(r.ExitCode == 0, r.All);
        Assert.Contains("w = 0 (ddim:2", r.Stdout);
        Assert.Contains("w = 2 (ddim:2", r.Stdout);
        Assert.Contains("caption FCD: 20 t10k pictures (0–19)", r.Stdout);
        Assert.Contains("over 20 captions", r.Stdout);
        var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(dir["eval.json"]))!;
        var results = root["results"]!.AsArray();
        Assert.Equal(2, results.Count);
        var prompts = results[1]!["prompts"]!.AsArray();
        Assert.Equal(["a photo of a t-shirt", "a photo of a dark t-shirt", "a photo of a light t-shirt"], prompts.Select(x => (string)x!["Prompt"]!));
        Assert.Equal(2, (int)prompts[0]!["Count"]!);
        foreach (var result in results)
        {
            var fcd = result!["fcd"]!;
            Assert.Equal(20, (int)fcd["Count"]!);
            Assert.Equal(20, (int)fcd["Scores"]!["Prompts"]!);
            double floor = (double)fcd["Floor"]!, matched = (double)fcd["MatchedFloor"]!, value = (double)fcd["Fcd"]!;
            Assert.True(double.IsFinite(value) && value > floor && floor > 0 && matched > 0, $"FCD {value}, floor {floor}, matched floor {matched} of an untrained model");
        }
        Assert.Equal((double)results[0]!["fcd"]!["Floor"]!, (double)results[1]!["fcd"]!["Floor"]!);   // the same real pictures at every weight
        Assert.Equal("t10k 5000–5019", (string)root["fcdReal"]!["floor"]!);

        var skipped = Cli.Run(dir.Path, "eval-text2img", "--checkpoint", dir["tiny.ckpt"], "--prompts", "1", "--count", "1", "--fcd-count", "0",
            "--sampler", "ddim", "--steps", "2", "--threads", "1", "--json", dir["skip.json"]);
        Assert.True(skipped.ExitCode == 0, skipped.All);
        Assert.DoesNotContain("FCD", skipped.Stdout);
        Assert.Null(System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(dir["skip.json"]))!["results"]![0]!["fcd"]);
    }

    [Fact]
    public void TrainClipThenTrainTextToImageThenGenerate()
    {
        using var dir = TestSetup.Temp();
        var clip = Cli.Run(dir.Path, "train-clip", "--out", dir["clip.bin"], "--steps", "3", "--batch-size", "8", "--dim", "16", "--layers", "1",
            "--eval-count", "50", "--threads", "1");
        Assert.True(clip.ExitCode == 0, clip.All);
        Assert.Contains("zero-shot accuracy on 50 t10k pictures", clip.Stdout);
        Assert.Contains("attribute retrieval, brightness", clip.Stdout);
        var info = MiniClipFile.ReadInfo(dir["clip.bin"]);
        Assert.Equal(3, info.Steps);
        Assert.NotNull(info.ZeroShotAccuracy);
        Assert.Equal(4, info.AttributeRetrieval.Length);

        var again = Cli.Run(dir.Path, "train-clip", "--out", dir["clip.bin"], "--steps", "3", "--threads", "1");
        Assert.Equal(2, again.ExitCode);
        Assert.Contains("already exists", again.Stderr);

        var badHoldOut = Cli.Run(dir.Path, "train-text2img", "--clip", dir["clip.bin"], "--out", dir["x.ckpt"], "--hold-out", "dark coat,shiny coat", "--threads", "1");
        Assert.Equal(2, badHoldOut.ExitCode);
        Assert.Contains("'shiny coat' must be a class and one word", badHoldOut.Stderr);
        Assert.False(File.Exists(dir["x.ckpt"]));

        var t2i = Cli.Run(dir.Path, "train-text2img", "--clip", dir["clip.bin"], "--out", dir["t2i.ckpt"], "--steps", "2", "--batch-size", "4",
            "--encode", "8", "--dim", "8", "--threads", "1");
        Assert.True(t2i.ExitCode == 0, t2i.All);
        using (var model = TextToImageFile.Load(dir["t2i.ckpt"]))
        {
            Assert.Equal(2, model.Info.Steps);
            Assert.Equal(0.1, model.Info.CaptionDropout);
            Assert.Equal(info.Vocabulary, model.Tokenizer.Words);
            Assert.Equal(16, model.Encoder.Config.Dim);
            Assert.Equal(HeldOut.ParseList(HeldOut.Default), model.Info.HeldOut);
        }

        var g = Cli.Run(dir.Path, ["generate", "--checkpoint", dir["t2i.ckpt"], "--prompt", "a dark ankle boot facing left", "--out", dir["boots.png"], .. Quick]);
        Assert.True(g.ExitCode == 0, g.All);
        Assert.True(File.Exists(dir["boots.png"]));
        Assert.DoesNotContain("notice", g.Stdout);
    }
}
