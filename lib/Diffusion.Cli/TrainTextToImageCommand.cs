using Diffusion.Latent;
using Diffusion.Model.Transformer;
using Diffusion.TextToImage;

namespace Diffusion.Cli;

/// <summary>
/// <c>train-text2img</c>: the denoising network of a miniature Stable Diffusion on the shipped (or a given) autoencoder's
/// latents, reading a trained mini-CLIP's frozen text encoder: the mini SD1's text-conditioned latent U-Net (DDPM), or
/// with <c>--model sd3</c> the mini SD3's MMDiT (rectified flow); writes one file that <c>generate</c> reads.
/// </summary>
static class TrainTextToImageCommand
{
    public static Command Create()
    {
        var clip = new Option<string>("--clip") { Description = "The mini-CLIP file that 'train-clip' wrote (its text encoder is used frozen)", Required = true };
        var autoencoder = OptionalOpt<string>("--autoencoder", "Autoencoder file (default: data/checkpoints/fashion-mnist-autoencoder.ckpt)");
        var encode = Opt("--encode", "Training pictures to encode (each also mirrored)", 20000).Range(2, 60000);
        var kind = TextToImageOptions.ModelOption("Which miniature Stable Diffusion: sd1 (latent U-Net with cross-attention, DDPM's objective) " +
            "or sd3 (MMDiT, rectified flow with logit-normal t)");
        var dim = Opt("--dim", "Base width of the mini SD1's U-Net", 28).Range(2, 1024);
        var width = Opt("--width", "The mini SD3's MMDiT width D (divisible by 4 and by --heads)", DefaultSd3.Hidden).Range(4, 4096);
        var depth = Opt("--depth", "The mini SD3's MMDiT blocks", DefaultSd3.Depth).Range(1, 64);
        var heads = Opt("--heads", "The mini SD3's attention heads", DefaultSd3.Heads).Range(1, 256);
        var patch = Opt("--patch", "The mini SD3's patch size p on the latents ((8/p)² image tokens)", DefaultSd3.PatchSize).Range(1, 8);
        var dropout = Opt("--caption-dropout", "Probability of training on the empty prompt instead of the caption (for guidance)", 0.1).Range(0, 1);
        var holdOut = Opt("--hold-out", "Comma-separated (word, class) combinations no caption will say, for eval-text2img's held-out prompts " +
            "(\"none\" for none)", HeldOut.Default);
        var cmd = new Command("train-text2img",
            "Train a miniature Stable Diffusion on a mini-CLIP's frozen text encoder: the mini SD1's text-conditioned latent U-Net " +
            "(cross-attention, DDPM), or with --model sd3 the mini SD3's MMDiT (joint attention, rectified flow).")
        {
            kind, clip, autoencoder, encode, dim, width, depth, heads, patch, dropout, holdOut,
        };
        var file = new ModelFileTrainingOptions(cmd, "the text-to-image model", Path.Combine("runs", "text2img", TextToImageFile.ShippedFileName),
            steps: ("Training steps", 3000), batch: ("Latents per step", 64, 2, 65536), lr: ("AdamW peak learning rate (warm-up, cosine decay)", 1e-3));
        var machine = new MachineOptions(cmd);
        cmd.SetAction(p =>
        {
            bool sd3 = TextToImageOptions.Kind(p, kind) == TextToImageKind.Sd3;
            foreach (var (option, forSd3) in new (Option, bool)[] { (dim, false), (width, true), (depth, true), (heads, true), (patch, true) })
                if (p.Given(option) && forSd3 != sd3)
                    throw new CliException($"{option.Name} sizes the {(forSd3 ? "mini SD3's MMDiT" : "mini SD1's U-Net")}; " +
                                           $"{(forSd3 ? "add --model sd3" : "with --model sd3 give --width, --depth, --heads, --patch instead")}.");
            MiniSd3Config? sd3Config = null;
            if (sd3)
            {
                try { sd3Config = DefaultSd3 with { Hidden = p.GetValue(width), Depth = p.GetValue(depth), Heads = p.GetValue(heads), PatchSize = p.GetValue(patch) }; sd3Config.Validate(); }
                catch (ArgumentException e) { throw new CliException($"--width/--depth/--heads/--patch: {e.Message}"); }
            }
            var heldOut = HeldOut.ParseList(p.GetValue(holdOut)!);
            var path = file.NewFile(p);
            var dev = machine.Apply(p).Device;
            var folder = DataLocator.FashionMnistFolder();
            var aePath = p.GetValue(autoencoder) ?? Path.Combine(Path.GetDirectoryName(folder)!, "checkpoints", "fashion-mnist-autoencoder.ckpt");
            var (ae, aeInfo) = AutoencoderFile.Load(aePath, dev);
            using var _ = ae;
            using var train = ImageDataset.FashionMnist(folder, train: true);
            var options = file.Training(p) with { ClassDropout = p.GetValue(dropout) };
            var config = new TextUnetConfig { Unet = new TextUnetConfig().Unet with { Dim = p.GetValue(dim) } };
            var clipFile = MiniClipFile.Load(p.GetValue(clip)!, dev);
            TextToImageTrainerBase created;
            try
            {
                created = sd3Config is { } c
                    ? new MiniSd3Trainer(c, options, train, p.GetValue(encode), clipFile, (ae, aeInfo), dev, heldOut)
                    : new TextToImageTrainer(config, options, train, p.GetValue(encode), clipFile, (ae, aeInfo), dev, heldOut);
            }
            catch
            {
                clipFile.Model.Dispose();                     // the trainer takes the mini-CLIP over only once it exists
                throw;
            }
            using (var trainer = created)
            {
                Console.WriteLine($"mini-CLIP {p.GetValue(clip)}: {clipFile.Info.Steps} steps, zero-shot {clipFile.Info.ZeroShotAccuracy?.ToString("P1", CultureInfo.InvariantCulture) ?? "not measured"}; " +
                                  $"autoencoder {aePath}; {trainer.Pictures} pictures encoded{(options.RandomFlip ? " (and mirrored)" : "")}; " +
                                  $"{(sd3 ? "MMDiT" : "U-Net")} {trainer.ParameterCount:N0} parameters; " +
                                  $"held out: {(heldOut.Length == 0 ? "none" : string.Join(", ", heldOut))}");
                ConsoleProgress.Run("text-to-image training", options.Steps, report =>
                {
                    trainer.Progress += q => report(q.Step, string.Create(CultureInfo.InvariantCulture, $"loss {q.Loss:F4} {q.LatentsPerSecond:F0} latents/s"));
                    trainer.Train();
                });
                file.Save(path, to => trainer.Save(to, file.CommandLine()));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"trained {trainer.Step} steps in {trainer.Elapsed.TotalSeconds:F0} s, loss (last {Diffusion.Training.Trainer.RecentLossWindow}) {trainer.RecentLoss:F4}; wrote {path}. " +
                    $"Draw with: generate --checkpoint {path} --prompt \"a dark ankle boot facing left\""));
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>The mini SD3's default sizes: patch 1 on the 8×8×4 latents (64 image tokens), width 128, 4 blocks, 4 heads.</summary>
    static readonly MiniSd3Config DefaultSd3 = new(PatchSize: 1, Hidden: 128, Depth: 4, Heads: 4);
}
