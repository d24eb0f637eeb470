using Diffusion.Flow;
using Diffusion.Forward;
using Diffusion.Latent;
using Diffusion.Model.Transformer;
using Diffusion.TextToImage;
using Diffusion.Training;

namespace Diffusion.Tests;

/// <summary>
/// The miniature Stable Diffusion 3 as a trained model: its trainer (rectified flow on the autoencoder's scaled latents,
/// the frozen mini-CLIP's captions), its file (the text-to-image container with a kind field; a mini SD1 file is unchanged),
/// its guided Euler sampling against a loop written out by hand, and the commands that train, draw and measure it.
/// </summary>
public class MiniSd3TrainingTests
{
    static string Checkpoints => Path.Combine(TestSetup.RepoRoot, "data", "checkpoints");
    static string ShippedClip => Path.Combine(Checkpoints, "fashion-mnist-mini-clip.bin");
    static string ShippedSd1 => Path.Combine(Checkpoints, TextToImageFile.ShippedFileName);

    static readonly MiniSd3Config Tiny = new(PatchSize: 2, Hidden: 32, Depth: 2, Heads: 4);

    static MiniSd3Trainer TinyTrainer(ImageDataset data, int steps, double lr = 2e-3, double dropout = 0.1, double ema = 0.9)
    {
        var clip = MiniClipFile.Load(ShippedClip);
        var ae = AutoencoderFile.Load(LatentTests.ShippedAutoencoder);
        var options = new TrainingOptions { Steps = steps, BatchSize = 16, LearningRate = lr, WarmupSteps = 0, Seed = 5, ClassDropout = dropout, EmaDecay = ema };
        try { return new MiniSd3Trainer(Tiny, options, data, 48, clip, ae); }
        catch
        {
            clip.Model.Dispose();
            throw;
        }
    }

    [Fact]
    public void TheFirstStepsLossIsTheVelocityTargetsSizeAndTrainingLowersIt()
    {
        using var scope = NewDisposeScope();
        using var data = ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train: true).Take(64);
        using var trainer = TinyTrainer(data, 120);
        Assert.Equal(TextToImageKind.Sd3, trainer.Template.Kind);
        Assert.Equal(new MiniSd3Config(PatchSize: 2, Hidden: 32, Depth: 2, Heads: 4, ContextDim: 64, ContextLength: 16, PooledDim: 64), trainer.Template.Sd3);
        Assert.Equal(trainer.Template.Sd3!.ParameterCountFormula(), trainer.ParameterCount);

        // A fresh MMDiT outputs zeros, so the first loss is mean((ε − x₀)²) whatever t is: rebuild x₀ (the scaled latents of the
        // first batch's rows, the mirrored pictures after the plain ones) and ε (the run's generator after the dropout and t draws).
        var (ae, aeInfo) = AutoencoderFile.Load(LatentTests.ShippedAutoencoder);
        using var _ = ae;
        using var mirrored = new ImageDataset(data.Images[TensorIndex.Slice(0, 48)].flip(3).contiguous(), null, data.ClassNames, "mirrored");
        var latents = cat([LatentSpace.EncodeAll(ae, data, 48), LatentSpace.EncodeAll(ae, mirrored)], 0) * aeInfo.ScalingFactor;
        var rows = new BatchOrder(96, 16, 5).Next();
        var x0 = latents.index_select(0, tensor(rows));
        using var g = new Generator(5);
        rand([16], generator: g);                                                 // caption dropout
        randn([16], generator: g);                                                // logit-normal t
        var noise = Platform.Compute.Randn(x0.shape, g);
        double expected = (noise - x0).square().mean().item<float>();
        double first = trainer.TrainStep();
        Assert.Equal(expected, first, 4);

        trainer.Train();
        var losses = trainer.History.Select(h => h.Loss).ToArray();
        double start = losses.Take(10).Average(), end = losses.TakeLast(20).Average();
        Assert.True(end < 0.75 * start, $"the flow loss went {start:F4} → {end:F4} in {losses.Length} steps");
    }

    [Fact]
    public void TheFileRoundTripsTheEmaNetworkAndAMiniSd1FileReadsAndWritesByteForByte()
    {
        using var scope = NewDisposeScope();
        using var dir = TestSetup.Temp();
        using var data = ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train: true).Take(64);
        using (var trainer = TinyTrainer(data, 3))
        {
            trainer.Train();
            trainer.Save(dir["sd3.ckpt"], "test");
            using var model = TextToImageFile.Load(dir["sd3.ckpt"]);
            Assert.Equal(TextToImageKind.Sd3, model.Info.Kind);
            Assert.Equal(3, model.Info.Steps);
            Assert.Equal(FlowTimeDistribution.LogitNormal, model.Info.FlowTimes);
            Assert.Null(model.Info.Unet);
            Assert.Throws<InvalidOperationException>(() => model.Unet);
            using var g = new Generator(3);
            var x = randn([2, 4, 8, 8], generator: g);
            var t = tensor(new[] { 250f, 800f });
            var context = randn([2, 16, 64], generator: g);
            var pooled = randn([2, 64], generator: g);
            var mask = ones([2, 16], dtype: ScalarType.Bool);
            using var noGrad = no_grad();
            trainer.EmaModel!.eval();
            var saved = trainer.EmaModel.forward(x, t, context, pooled, mask);
            Assert.True(saved.abs().max().item<float>() > 0, "three steps move the output map off zero");
            Assert.Equal(saved.data<float>().ToArray(), model.Sd3!.forward(x, t, context, pooled, mask).data<float>().ToArray());
            var json = System.Text.Encoding.UTF8.GetString(File.ReadAllBytes(dir["sd3.ckpt"]));
            Assert.Contains("\"Kind\": \"Sd3\"", json);
            Assert.DoesNotContain("\"Unet\"", json);
        }

        // The shipped mini SD1, loaded and written again with its own description, is the same file byte for byte: the kind
        // field and the mini SD3's fields are absent from a mini SD1's description.
        using (var sd1 = TextToImageFile.Load(ShippedSd1))
        {
            Assert.Equal(TextToImageKind.Sd1, sd1.Info.Kind);
            Assert.Null(sd1.Sd3);
            TextToImageFile.Save(dir["sd1.ckpt"], sd1.Unet, sd1.Encoder, sd1.Autoencoder, sd1.Info);
            Assert.Throws<ArgumentException>(() => TextToImageFile.Save(dir["wrong.ckpt"], new MiniSd3(Tiny with { ContextDim = 64, PooledDim = 64 }), sd1.Encoder, sd1.Autoencoder, sd1.Info));
        }
        Assert.Equal(File.ReadAllBytes(ShippedSd1), File.ReadAllBytes(dir["sd1.ckpt"]));
        Assert.False(File.Exists(dir["wrong.ckpt"]));
    }

    [Fact]
    public void GenerateIsTheGuidedEulerLoopWrittenOut()
    {
        using var scope = NewDisposeScope();
        using var dir = TestSetup.Temp();
        using var data = ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train: true).Take(64);
        using (var trainer = TinyTrainer(data, 4, lr: 1e-2, ema: 0))
        {
            trainer.Train();
            trainer.Save(dir["sd3.ckpt"]);
        }
        using var model = TextToImageFile.Load(dir["sd3.ckpt"]);
        const double w = 2.5;
        const int seed = 9, steps = 3;
        using var images = model.Generate(["a dark bag"], 2, w, TextToImageSampler.Flow("euler", steps), seed);

        // By hand: the prompt's and the empty prompt's features, two separate network calls at 1000·t, guidance, Euler steps.
        using var noGrad = no_grad();
        var (ids, mask) = PromptTokens.Encode(model.Tokenizer, ["a dark bag", ""], model.Encoder.Config.ContextLength);
        var context = model.Encoder.call(ids, mask);
        var pooled = model.Encoder.Embed(context, mask);
        Tensor Row(Tensor x, int i) => x[i].unsqueeze(0).expand(2, -1).contiguous();
        Tensor Row3(Tensor x, int i) => x[i].unsqueeze(0).expand(2, -1, -1).contiguous();
        using var g = new Generator(seed);
        var z = Platform.Compute.Randn([2, 4, 8, 8], g);
        var sigmas = new FlowMatchSchedule(steps).Sigmas;
        for (int k = 0; k < steps; k++)
        {
            var t = full([2], (float)(sigmas[k] * 1000));
            var vc = model.Sd3!.forward(z, t, Row3(context, 0), Row(pooled, 0), Row(mask, 0));
            var vu = model.Sd3.forward(z, t, Row3(context, 1), Row(pooled, 1), Row(mask, 1));
            z = z + (sigmas[k + 1] - sigmas[k]) * ((1 + w) * vc - w * vu);
        }
        var expected = LatentSpace.Decode(model.Autoencoder, z, model.Info.ScalingFactor);
        Assert.True((images - expected).abs().max().item<float>() < 1e-4, "Generate differs from the guided Euler loop");
        Assert.True((images[0] - images[1]).abs().max().item<float>() > 1e-3, "two pictures of one prompt differ by their noise");

        Assert.Contains("flow solver", Assert.Throws<ArgumentException>(() => model.Generate(["a bag"], 1, 0, new SamplerSpec("ddim", 2), seed)).Message);
    }

    /// <summary>A tiny mini SD3 trained by the CLI on the shipped mini-CLIP; returns its path.</summary>
    static string TrainTinyByCli(TempDir dir)
    {
        var r = Cli.Run(dir.Path, "train-text2img", "--model", "sd3", "--clip", ShippedClip, "--out", dir["sd3.ckpt"], "--steps", "2", "--batch-size", "4",
            "--encode", "8", "--width", "16", "--depth", "1", "--heads", "2", "--patch", "2", "--threads", "1");
        Assert.True(r.ExitCode == 0, r.All);
        Assert.Contains("MMDiT", r.Stdout);
        return dir["sd3.ckpt"];
    }

    [Fact]
    public void TrainGenerateAndEvalAMiniSd3FromTheCommandLine()
    {
        using var dir = TestSetup.Temp();
        var path = TrainTinyByCli(dir);
        using (var model = TextToImageFile.Load(path))
        {
            Assert.Equal(TextToImageKind.Sd3, model.Info.Kind);
            Assert.Equal(new MiniSd3Config(PatchSize: 2, Hidden: 16, Depth: 1, Heads: 2, ContextDim: 64, ContextLength: 16, PooledDim: 64), model.Info.Sd3);
            Assert.Equal(2, model.Info.Steps);
        }

        var g = Cli.Run(dir.Path, "generate", "--checkpoint", path, "--prompt", "a dark ankle boot facing left", "--count", "2", "--steps", "2",
            "--out", dir["boots.png"], "--threads", "1");
        Assert.True(g.ExitCode == 0, g.All);
        Assert.Contains("euler:2", g.Stdout);
        Assert.True(File.Exists(dir["boots.png"]));
        var heun = Cli.Run(dir.Path, "generate", "--model", "sd3", "--checkpoint", path, "--prompt", "a bag", "--count", "1", "--sampler", "heun",
            "--steps", "2", "--shift", "3", "--out", dir["bag.png"], "--threads", "1");
        Assert.True(heun.ExitCode == 0, heun.All);
        Assert.Contains("heun:2, shift 3", heun.Stdout);

        var e = Cli.Run(dir.Path, "eval-text2img", "--checkpoint", path, "--prompts", "2", "--count", "2", "--guidance", "0,2", "--fcd-count", "10",
            "--steps", "2", "--threads", "1", "--json", dir["eval.json"]);
        Assert.True(e.ExitCode == 0, e.All);
        Assert.Contains("w = 2 (euler:2", e.Stdout);
        Assert.Contains("over 10 captions", e.Stdout);
        var root = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(dir["eval.json"]))!;
        Assert.Equal("euler:2", (string)root["sampler"]!);
        Assert.Equal(2, root["results"]!.AsArray().Count);
        foreach (var result in root["results"]!.AsArray())
            Assert.True((double)result!["fcd"]!["Fcd"]! > (double)result["fcd"]!["Floor"]!, "an all but untrained model is worse than real pictures");
    }

    public static TheoryData<string[], string> BadInputs() => new()
    {
        { ["train-text2img", "--model", "sd3", "--dim", "16"], "--dim sizes the mini SD1's U-Net" },
        { ["train-text2img", "--width", "64"], "--width sizes the mini SD3's MMDiT; add --model sd3" },
        { ["train-text2img", "--model", "sd3", "--width", "30", "--heads", "4"], "--width/--depth/--heads/--patch:" },
        { ["generate", "--checkpoint", "SD3", "--model", "sd1"], "--model sd1: " },
        { ["generate", "--checkpoint", "SD3", "--sampler", "ddim"], "--sampler ddim: " },
        { ["generate", "--checkpoint", "SD1", "--sampler", "euler"], "--sampler euler: " },
        { ["generate", "--checkpoint", "SD1", "--shift", "3"], "--shift: " },
        { ["eval-text2img", "--checkpoint", "SD1", "--model", "sd3"], "--model sd3: " },
        { ["eval-text2img", "--checkpoint", "SD3", "--sampler", "dpm++"], "--sampler dpm++: " },
    };

    /// <summary>A mini SD3 option on a mini SD1 (and the other way round): one clear error line, exit 2, nothing written.</summary>
    [Theory]
    [MemberData(nameof(BadInputs))]
    public void WrongKindOptionsGiveOneClearErrorAndWriteNothing(string[] args, string expected)
    {
        using var dir = TestSetup.Temp();
        bool needsSd3 = args.Contains("SD3");
        string sd3 = needsSd3 ? TrainTinyByCli(dir) : "";
        string output = args[0] switch { "generate" => dir["out.png"], "eval-text2img" => dir["out.json"], _ => dir["out.ckpt"] };
        var resolved = args.Select(a => a switch { "SD3" => sd3, "SD1" => ShippedSd1, _ => a }).ToList();
        if (args[0] == "generate") resolved.AddRange(["--prompt", "a bag", "--count", "1", "--out", output]);
        if (args[0] == "eval-text2img") resolved.AddRange(["--prompts", "1", "--count", "1", "--fcd-count", "0", "--json", output]);
        if (args[0] == "train-text2img") resolved.AddRange(["--clip", ShippedClip, "--steps", "1", "--out", output]);
        var r = Cli.Run(dir.Path, [.. resolved, "--threads", "1"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(expected, r.Stderr);
        Assert.Single(r.Stderr.Trim().Split('\n'));
        Assert.DoesNotContain("   at ", r.Stderr);
        Assert.False(File.Exists(output), "nothing may be written");
    }
}
