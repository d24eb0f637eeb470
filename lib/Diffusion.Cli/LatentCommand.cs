using System.Text.Json;
using Diffusion.Latent;
using Diffusion.Visuals;

namespace Diffusion.Cli;

/// <summary>
/// <c>latent</c>: latent diffusion in two stages (Rombach et al. 2022). Trains the small KL autoencoder on Fashion-MNIST,
/// measures the latent scaling factor, encodes the training set, trains the course's diffusion model (the same
/// Trainer) on the scaled latents, then samples latents and decodes them. Writes autoencoder.ckpt,
/// latent-ddpm.ckpt (EMA weights), samples.png, reconstructions.png, ae-loss.csv, loss.csv and run.json into --out.
/// </summary>
static class LatentCommand
{
    public const string AutoencoderFileName = "autoencoder.ckpt";
    public const string DiffusionFileName = "latent-ddpm.ckpt";

    public static Command Create()
    {
        var aeSteps = Opt("--ae-steps", "Autoencoder training steps", 600).Range(1, 1e9);
        var steps = Opt("--steps", "Latent diffusion training steps", 1200).Range(1, 1e9);
        var batch = Opt("--batch-size", "Images (latents) per step", 64).Range(2, 65536);
        var encodeCount = Opt("--encode", "Training images to encode for the diffusion stage", 20000).Range(64, 60000);
        var sampleSteps = Opt("--sample-steps", "DDIM steps for the 80 final samples", 100).Range(1, 100000);
        var seed = SeedOption.Create();
        var output = Opt("--out", "Run folder", Path.Combine("runs", "latent"));
        var autoencoder = OptionalOpt<string>("--autoencoder", "Skip stage 1: use this trained autoencoder file (e.g. data/checkpoints/fashion-mnist-autoencoder.ckpt)");
        var cmd = new Command("latent",
            "Latent diffusion: train a small KL autoencoder, then the course's DDPM on its scaled latents; sample and decode.")
        {
            aeSteps, steps, batch, encodeCount, sampleSteps, seed, output, autoencoder,
        };
        var machine = new MachineOptions(cmd);
        cmd.SetAction(p =>
        {
            var dev = machine.Apply(p).Device;
            var outDir = p.GetValue(output)!;
            // One run per folder (held until this process ends), in a new, empty or run folder only.
            using var folder = RunFolder.Claim(outDir, ownFiles: [DiffusionFileName, AutoencoderFileName, "ae-loss.csv", "reconstructions.png"]);
            if (File.Exists(Path.Combine(outDir, DiffusionFileName)) || File.Exists(Path.Combine(outDir, Trainer.CheckpointFileName)))
                throw new CliException($"{outDir} already holds a latent run; choose another --out (nothing was overwritten).");
            int batchSize = p.GetValue(batch), s = p.GetValue(seed);
            using var train = ImageDataset.FashionMnist(DataLocator.FashionMnistFolder(), train: true);
            using var test = ImageDataset.FashionMnist(DataLocator.FashionMnistFolder(), train: false);
            // Stage 1: the autoencoder (trained here, or loaded with --autoencoder), and the encoded training images.
            using var stage1 = p.GetValue(autoencoder) is { } aePath
                ? AutoencoderStage.Load(aePath, train, test, p.GetValue(encodeCount), dev)
                : AutoencoderStage.Train(outDir, new TrainingOptions { Steps = p.GetValue(aeSteps), BatchSize = batchSize, LearningRate = 2e-3, WarmupSteps = 50, Seed = s },
                    train, test, p.GetValue(encodeCount), dev);
            // Stage 2: the course's diffusion model on the scaled latents — the same Trainer, no flips (a flipped latent
            // is not the latent of the flipped image).
            using var latentData = LatentSpace.Dataset(stage1.Latents, stage1.Info.ScalingFactor, train);
            stage1.Latents.Dispose();
            var config = LatentSpace.DiffusionConfig(stage1.Info.Config, train.ClassNames);
            var options = new TrainingOptions { Steps = p.GetValue(steps), BatchSize = batchSize, RandomFlip = false, Seed = s, CheckpointEvery = 1000 };
            using var trainer = new Trainer(config, options, latentData, runDirectory: outDir, dev);
            ConsoleProgress.Run("latent diffusion", options.Steps, report =>
            {
                trainer.Progress += pr => report(pr.Step, string.Create(CultureInfo.InvariantCulture, $"loss {pr.Loss:F4} {pr.ImagesPerSecond:F0} latents/s"));
                trainer.Train();
            });
            trainer.SaveModelForSampling(Path.Combine(outDir, DiffusionFileName));
            // x̂_0 is clipped to the latents' range by LatentSpace.ClipStart, not to [−1, 1] by the sampler.
            var ddim = new SamplerSpec(DdimSampler.Kind.Name, p.GetValue(sampleSteps), Clip: false).Validate(config.Timesteps, config.Variance == VarianceType.Learned, Console.WriteLine);
            double sampleSeconds = WriteImages(stage1.Model, stage1.Info.ScalingFactor, trainer, test, outDir, s, ddim);
            WriteSummary(outDir, stage1, latentData.Count, trainer, sampleSeconds, ddim.Steps!.Value);
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// Samples one row per class (guidance w = 2, i.e. s = 3, with <paramref name="spec"/>, x̂_0 clipped to the latents'
    /// range), decodes them into samples.png, and writes reconstructions.png; returns the seconds spent sampling 80 images.
    /// </summary>
    static double WriteImages(Autoencoder ae, double scale, Trainer trainer, ImageDataset test, string outDir, int seed, SamplerSpec spec)
    {
        var sw = Stopwatch.StartNew();
        var config = trainer.Config;
        using var schedule = config.CreateSchedule();
        using var sampler = spec.Create(schedule, config.Prediction);
        using var g = new Generator((ulong)seed);
        using var classes = ClassifierFreeGuidance.OneRowPerClass(10, 8);
        trainer.EmaModel!.eval();
        using var images = LatentSpace.SampleImages(ae, scale, LatentSpace.ClipStart(LatentSpace.Guided(trainer.EmaModel!, classes, 2.0), schedule), sampler, config, 80, g);
        ImageGrid.SaveGridPng(images, Path.Combine(outDir, "samples.png"), columns: 8, scale: 2);
        double seconds = sw.Elapsed.TotalSeconds;
        using (NewDisposeScope())
        using (no_grad())
        {
            var originals = test.ModelInputs(arange(16, dtype: ScalarType.Int64));
            ImageGrid.SaveGridPng(cat([originals, ae.forward(originals).clamp(-1, 1)]), Path.Combine(outDir, "reconstructions.png"), columns: 16, scale: 2);
        }
        return seconds;
    }

    static void WriteSummary(string outDir, AutoencoderStage stage1, long encoded, Trainer trainer, double sampleSeconds, int ddimSteps)
    {
        double diffusionLoss = trainer.RecentLoss;
        var summary = new
        {
            Autoencoder = stage1.Info, TestReconstructionMsePerPixel = stage1.TestMse, EncodedImages = encoded,
            Diffusion = new { config = trainer.Config, options = trainer.Options, trainer.Step, RecentLoss = diffusionLoss, Parameters = Diffusion.Model.Layers.ParameterCount(trainer.Model) },
            DiffusionTrainingSeconds = trainer.LossHistory.Count > 0 ? ReadSeconds(outDir) : 0, SamplingSeconds80 = sampleSeconds,
        };
        AtomicFile.WriteAllText(Path.Combine(outDir, "run.json"), JsonSerializer.Serialize(summary, Checkpoint.JsonOptions));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"latent diffusion: loss (last 50) {diffusionLoss:F4}; 80 samples (DDIM-{ddimSteps}, w = 2) + decoding {sampleSeconds:F0} s; wrote {outDir}"));
    }

    /// <summary>Stage 1's results: the autoencoder (owned, with its trainer if trained here), its description and the encoded images.</summary>
    sealed class AutoencoderStage : IDisposable
    {
        public required Autoencoder Model { get; init; }
        public required AutoencoderInfo Info { get; init; }
        public required double TestMse { get; init; }
        public required Tensor Latents { get; init; }
        AutoencoderTrainer? trainer;

        public static AutoencoderStage Load(string path, ImageDataset train, ImageDataset test, int encode, Device dev)
        {
            var sw = Stopwatch.StartNew();
            var (ae, info) = AutoencoderFile.Load(path, dev);
            var stage = new AutoencoderStage { Model = ae, Info = info, TestMse = LatentSpace.ReconstructionMse(ae, test, 2000), Latents = LatentSpace.EncodeAll(ae, train, encode) };
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"autoencoder {path}: scaling factor {info.ScalingFactor:G5}, t10k reconstruction MSE per pixel {stage.TestMse:F5}; encoded {stage.Latents.shape[0]} images in {sw.Elapsed.TotalSeconds:F0} s"));
            return stage;
        }

        public static AutoencoderStage Train(string outDir, TrainingOptions options, ImageDataset train, ImageDataset test, int encode, Device dev)
        {
            var inv = CultureInfo.InvariantCulture;
            var aeConfig = new AutoencoderConfig();
            var aeTrainer = new AutoencoderTrainer(aeConfig, options, train, dev);
            // The autoencoder's loss log is written with the autoencoder, through the atomic writer: a run that stops during
            // stage 1 leaves the folder's earlier ae-loss.csv and autoencoder.ckpt as they were, and never half of a log.
            var log = new System.Text.StringBuilder("step,loss,squared_error,kl,pixel_mse,elapsed_seconds\n");
            ConsoleProgress.Run("autoencoder", options.Steps, report =>
            {
                aeTrainer.Progress += pr =>
                {
                    log.Append(string.Create(inv, $"{pr.Step},{pr.Loss:R},{pr.SquaredError:R},{pr.Kl:R},{pr.PixelMse:R},{pr.Elapsed.TotalSeconds:F2}\n"));
                    report(pr.Step, string.Create(inv, $"mse/pixel {pr.PixelMse:F4} KL {pr.Kl:F0}"));
                };
                aeTrainer.Train();
            });
            var ae = aeTrainer.Model;
            var recent = aeTrainer.History.TakeLast(50).ToList();
            double testMse = LatentSpace.ReconstructionMse(ae, test, 2000);
            Console.WriteLine(string.Create(inv, $"autoencoder: {aeTrainer.Elapsed.TotalSeconds:F0} s, t10k reconstruction MSE per pixel {testMse:F5}"));

            // The scaling factor s = 1/std of the latents of the training data.
            var sw = Stopwatch.StartNew();
            var latents = LatentSpace.EncodeAll(ae, train, encode);
            double factor = LatentSpace.ScalingFactor(latents);
            Console.WriteLine(string.Create(inv, $"encoded {latents.shape[0]} images in {sw.Elapsed.TotalSeconds:F0} s; scaling factor {factor:G5}"));
            var info = new AutoencoderInfo
            {
                Config = aeConfig, ScalingFactor = factor, Steps = aeTrainer.Step, BatchSize = options.BatchSize,
                TrainingSeconds = aeTrainer.Elapsed.TotalSeconds, RecentPixelMse = recent.Average(r => r.PixelMse),
                RecentKl = recent.Average(r => r.Kl), Data = train.Description,
            };
            AtomicFile.WriteAllText(Path.Combine(outDir, "ae-loss.csv"), log.ToString());
            AutoencoderFile.Save(Path.Combine(outDir, AutoencoderFileName), ae, info);
            return new AutoencoderStage { Model = ae, Info = info, TestMse = testMse, Latents = latents, trainer = aeTrainer };
        }

        public void Dispose()
        {
            Latents.Dispose();
            if (trainer is not null) trainer.Dispose();   // disposes Model too
            else Model.Dispose();
        }
    }

    static double ReadSeconds(string outDir)
    {
        var last = File.ReadLines(Path.Combine(outDir, Trainer.LossLogFileName)).Last().Split(',');
        return double.Parse(last[^1], CultureInfo.InvariantCulture);
    }
}
