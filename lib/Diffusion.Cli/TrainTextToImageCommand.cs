using Diffusion.Latent;
using Diffusion.TextToImage;

namespace Diffusion.Cli;

/// <summary>
/// <c>train-text2img</c>: the text-conditioned latent U-Net of the miniature Stable Diffusion, on the shipped (or a given)
/// autoencoder's latents and a trained mini-CLIP's frozen text encoder; writes one file that <c>generate</c> reads.
/// </summary>
static class TrainTextToImageCommand
{
    public static Command Create()
    {
        var clip = new Option<string>("--clip") { Description = "The mini-CLIP file that 'train-clip' wrote (its text encoder is used frozen)", Required = true };
        var autoencoder = OptionalOpt<string>("--autoencoder", "Autoencoder file (default: data/checkpoints/fashion-mnist-autoencoder.ckpt)");
        var encode = Opt("--encode", "Training pictures to encode (each also mirrored)", 20000).Range(2, 60000);
        var dim = Opt("--dim", "Base width of the U-Net", 28).Range(2, 1024);
        var dropout = Opt("--caption-dropout", "Probability of training on the empty prompt instead of the caption (for guidance)", 0.1).Range(0, 1);
        var holdOut = Opt("--hold-out", "Comma-separated (word, class) combinations no caption will say, for eval-text2img's held-out prompts " +
            "(\"none\" for none)", HeldOut.Default);
        var cmd = new Command("train-text2img",
            "Train the text-conditioned latent U-Net (cross-attention to a mini-CLIP's text encoder) of the miniature Stable Diffusion.")
        {
            clip, autoencoder, encode, dim, dropout, holdOut,
        };
        var file = new ModelFileTrainingOptions(cmd, "the text-to-image model", Path.Combine("runs", "text2img", TextToImageFile.ShippedFileName),
            steps: ("Training steps", 3000), batch: ("Latents per step", 64, 2, 65536), lr: ("AdamW peak learning rate (warm-up, cosine decay)", 1e-3));
        var machine = new MachineOptions(cmd);
        cmd.SetAction(p =>
        {
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
            TextToImageTrainer created;
            try { created = new TextToImageTrainer(config, options, train, p.GetValue(encode), clipFile, (ae, aeInfo), dev, heldOut); }
            catch
            {
                clipFile.Model.Dispose();                     // the trainer takes the mini-CLIP over only once it exists
                throw;
            }
            using (var trainer = created)
            {
                Console.WriteLine($"mini-CLIP {p.GetValue(clip)}: {clipFile.Info.Steps} steps, zero-shot {clipFile.Info.ZeroShotAccuracy?.ToString("P1", CultureInfo.InvariantCulture) ?? "not measured"}; " +
                                  $"autoencoder {aePath}; {trainer.Pictures} pictures encoded{(options.RandomFlip ? " (and mirrored)" : "")}; " +
                                  $"U-Net {Diffusion.Model.Layers.ParameterCount(trainer.Model):N0} parameters; " +
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
}
