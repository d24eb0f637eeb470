using System.Text.Json;
using Diffusion.Flow;
using Diffusion.Latent;
using Diffusion.Model;
using Diffusion.Model.Transformer;

namespace Diffusion.Cli;

/// <summary>
/// <c>train</c>: training a U-Net or a diffusion transformer with DDPM's objective or rectified flow into a run folder
/// (checkpoint, loss log, samples grid, denoising GIF).
/// </summary>
static class TrainCommand
{
    public const string ModelFileName = "model.ckpt";

    public static Command Create()
    {
        // The defaults of every option are the library's default recipe: changing it there changes them here.
        var (m, o) = (Recipe.Default.Model, Recipe.Default.Training);
        var data = Opt("--data", "Training data: fashion-mnist, a folder of MNIST-format files, an IDX image file, or a folder of PNG/JPEG images (subfolders = classes)", DataLocator.FashionMnist);
        var labels = OptionalOpt<string>("--labels", "IDX label file for an IDX image file given to --data");
        var imageSize = new Option<int?>("--image-size") { Description = "Resize images to this square size (default: the data's own size; an image folder of mixed sizes needs it)" };
        imageSize.Range(4, DiffusionModelConfig.MaxImageSize);
        var channels = Opt("--channels", "Channels for an image folder: 1 (grayscale) or 3 (RGB)", 3).Range(1, 3);
        var dim = Opt("--dim", "U-Net base channel count", m.Unet.Dim).Range(2, UnetConfig.MaxDim);
        var dimMults = IntList("--dim-mults", "Channel multipliers per resolution level", m.Unet.DimMults);
        var block = Choice("--block", "Residual block type", m.Unet.Block, BlockTypes.Names);
        var groups = Opt("--groups", "GroupNorm groups in ResNet blocks", m.Unet.ResnetBlockGroups).Range(1, UnetConfig.MaxChannels);
        var attention = Opt("--attention-levels", "Levels with linear attention: auto (every level but full resolution), all, none, or a list such as 1,2 (0 = full resolution)", "auto");
        var conditional = Opt("--conditional", "Class-conditional model (labels with dropout, for classifier-free guidance)", false);
        var timesteps = Opt("--timesteps", "T, the number of diffusion steps", m.Timesteps).Range(1, DiffusionModelConfig.MaxTimesteps);
        var schedule = Choice("--schedule", "β schedule", m.Schedule, ScheduleKinds.Names);
        var prediction = Choice("--prediction", "What the network predicts", m.Prediction, Predictions.Names);
        var loss = Choice("--loss", "Loss between prediction and target", o.Loss, LossTypes.Names);
        var minSnr = Opt("--min-snr", "Min-SNR-γ loss weighting (Hang et al. 2023; 5 is the paper's γ, 0 = off)", o.MinSnrGamma).Range(0, 1e6);
        var steps = Opt("--steps", "Optimiser steps in the whole run", o.Steps).Range(1, 1e9);
        var epochs = new Option<double?>("--epochs") { Description = "Train for this many passes over the data instead of --steps" };
        epochs.Range(1e-6, 1e6);
        var minutes = new Option<double?>("--minutes")
        {
            Description = "Train for about M minutes instead of --steps: the step time is measured during the warm-up and the step " +
                          "count fixed from it (printed and stored in run.json; --steps N repeats the run exactly). Sampling comes after",
        };
        minutes.Range(0.01, 1e6);
        var batch = Opt("--batch-size", "Images per step", o.BatchSize).Range(1, TrainingOptions.MaxBatchSize);
        var lr = Opt("--lr", "Peak learning rate (AdamW)", o.LearningRate).Range(1e-8, 1);
        var warmup = Opt("--warmup", "Learning-rate warm-up steps", o.WarmupSteps).Range(0, 1e9);
        var lrSchedule = Choice("--lr-schedule", "Learning rate after warm-up", o.LearningRateSchedule, LearningRateSchedules.Names);
        var emaDecay = Opt("--ema-decay", "EMA decay of the weights (0 = off)", o.EmaDecay).Range(0, 0.999999);
        var gradClip = Opt("--grad-clip", "Max global gradient norm (0 = off)", o.GradientClipNorm).Range(0, 1e6);
        var noFlip = Opt("--no-flip", "Do not flip training images at random", false);
        var classDropout = Opt("--class-dropout", "Probability of dropping the label (conditional models)", o.ClassDropout).Range(0, 1);
        var seed = SeedOption.Create("weights, data order, noise", o.Seed);
        var output = Opt("--out", "Run folder (checkpoint.ckpt, model.ckpt, loss.csv, samples.png, denoising.gif, run.json)", Path.Combine("runs", "fashion-mnist"));
        var resume = Opt("--resume", "Continue the run in --out from its checkpoint", false);
        var checkpointEvery = Opt("--checkpoint-every", "Checkpoint every N steps", o.CheckpointEvery).Range(1, 1e9);
        var samples = Opt("--samples", "Images to sample at the end (0 = none)", 64).Range(0, 4096);
        // DPM-Solver++ with 20 steps samples the default model as well as DDPM with all T = 500 steps, in a twenty-fifth of the
        // network evaluations (docs/results.md); a learned-variance run keeps DDPM, the sampler its variance is for.
        var sampler = SamplerOptions.Kind("Sampler for the final samples (a learned-variance run: ddpm unless given; a rectified-flow run: euler unless given)", "dpm++");
        var sampleSteps = Opt("--sample-steps", "DDIM / DPM-Solver++ / Euler / Heun steps for the final samples", 20).Range(1, 100000);
        var network = Choice("--network", "The network: unet (the course's U-Net) or dit (a diffusion transformer on patches, Peebles & Xie 2023)", "unet",
            ("unet", "unet"), ("dit", "dit"));
        var patchSize = Opt("--patch-size", "DiT: p, each token a p×p patch ((size/p)² tokens)", DitDefaults.PatchSize).Range(1, DiffusionModelConfig.MaxImageSize);
        var hidden = Opt("--hidden", "DiT: the token width D", DitDefaults.Hidden).Range(4, 4096);
        var depth = Opt("--depth", "DiT: the number of transformer blocks", DitDefaults.Depth).Range(1, 256);
        var heads = Opt("--heads", "DiT: attention heads per block", DitDefaults.Heads).Range(1, 256);
        var objective = Choice("--objective", "What the network learns: ddpm (DDPM's Algorithm 1 with --prediction) or flow (rectified flow: the velocity ε − x₀ on a straight path)", "ddpm",
            ("ddpm", "ddpm"), ("flow", "flow"));
        var flowTimes = Choice("--flow-times", "Rectified flow: how training draws t (logit-normal: Stable Diffusion 3's, uniform)", FlowTimeSampling.LogitNormal, FlowTimeDistribution.Names);
        var latents = OptionalOpt<string>("--latents", "Train on this autoencoder's scaled latents of --data instead of its pixels (latent diffusion, e.g. " +
            "data/checkpoints/fashion-mnist-autoencoder.ckpt; no flips); the samples are decoded. Give it again with --resume");
        var learnVariance = Opt("--learn-variance", "Learn the reverse-step variance (Improved DDPM): the U-Net outputs [ε, v], trained with L_simple + 0.001·L_vlb", false);
        var trainOnly = OptionalOpt<string>("--train-only", "Fine-tune only these top-level modules, comma-separated (e.g. final_res_block,final_conv); the rest stay frozen");
        var initFrom = OptionalOpt<string>("--init-from", "Start from this checkpoint's weights (fine-tuning); a learned-variance run may start from a fixed-variance model");

        var cmd = new Command("train",
            "Train a diffusion model — a U-Net or a diffusion transformer (--network), with DDPM's Algorithm 1 or rectified flow " +
            "(--objective), on pixels or an autoencoder's latents (--latents) — and write checkpoint, loss log, samples and a denoising GIF into --out.")
        {
            data, labels, imageSize, channels, latents, network, dim, dimMults, block, groups, attention, patchSize, hidden, depth, heads,
            conditional, objective, timesteps, schedule, prediction, loss, minSnr, flowTimes, steps, epochs, minutes, batch, lr, warmup,
            lrSchedule, emaDecay, gradClip, noFlip, classDropout, seed, output, resume, checkpointEvery, samples, sampler, sampleSteps,
            learnVariance, initFrom, trainOnly,
        };

        var machine = new MachineOptions(cmd);

        // The previous run's description on --resume (null for a new run); refuses to overwrite a run by accident.
        CheckpointInfo? Previous(ParseResult p, string checkpointPath, string outDir)
        {
            if (p.GetValue(resume))
            {
                if (!File.Exists(checkpointPath))
                    throw new CliException($"--resume: no checkpoint at {checkpointPath}. Start a new run without --resume.");
                return Checkpoint.ReadInfo(checkpointPath);
            }
            if (File.Exists(checkpointPath))
                throw new CliException(
                    $"{outDir} already holds a checkpoint ({checkpointPath}). Continue it with --resume, or choose another --out; " +
                    "nothing was overwritten.");
            // Results of an earlier run whose checkpoint is gone (the sampling weights, the summary, the pictures) are not
            // replaced by a new run; only a loss log of a run that ended before its first checkpoint is.
            if (new[] { ModelFileName, "run.json", "samples.png", "denoising.gif" }.FirstOrDefault(f => File.Exists(Path.Combine(outDir, f))) is { } result)
                throw new CliException(
                    $"{outDir} holds {result} of an earlier run: a new run would replace it. Choose another --out, or move that run's files away; " +
                    "nothing was overwritten.");
            return null;
        }

        // On --resume, every model option not typed on the command line comes from the checkpoint.
        DiffusionModelConfig ModelConfig(ParseResult p, ImageDataset ds, CheckpointInfo? previous)
        {
            T Pick<T>(Option<T> option, Func<DiffusionModelConfig, T> saved) =>
                previous is not null && !p.Given(option) ? saved(previous.Model) : p.GetValue(option)!;
            // Options of one network family or one objective may not be typed for the other (one error names them all).
            bool dit = Pick(network, c => c.Dit is null ? "unet" : "dit") == "dit";
            bool flow = Pick(objective, c => c.IsRectifiedFlow ? "flow" : "ddpm") == "flow";
            RefuseOptionsOf(p, dit ? "a U-Net" : "a DiT", dit ? "--network dit" : "--network unet (the default)",
                dit ? [dim, dimMults, block, groups, attention] : [patchSize, hidden, depth, heads]);
            RefuseOptionsOf(p, flow ? "DDPM's objective" : "rectified flow", flow ? "--objective flow" : "--objective ddpm (the default)",
                flow ? [timesteps, schedule, prediction, loss, minSnr, learnVariance] : [flowTimes]);
            var unet = new UnetConfig
            {
                Dim = Pick(dim, c => c.Unet.Dim), DimMults = Pick(dimMults, c => c.Unet.DimMults), Block = Pick(block, c => c.Unet.Block),
                ResnetBlockGroups = Pick(groups, c => c.Unet.ResnetBlockGroups), Channels = ds.Channels,
                LinearAttentionLevels = previous is not null && !p.Given(attention)
                    ? previous.Model.Unet.LinearAttentionLevels
                    : ParseLevels(p.GetValue(attention)!, Pick(dimMults, c => c.Unet.DimMults).Length),
                NumClasses = Pick(conditional, c => c.Unet.NumClasses > 0) ? Math.Max(1, ds.ClassNames.Count) : 0,
            };
            bool learned = Pick(learnVariance, c => c.Variance == VarianceType.Learned);
            if (learned) unet = unet with { OutDim = 2 * unet.Channels };
            if (unet.NumClasses > 0 && ds.Labels is null)
                throw new CliException("--conditional needs labelled data: this data has no labels (IDX without --labels, or an image folder without class subfolders).");
            var transformer = dit
                ? new DitConfig(ImageSize: ds.Height, Channels: ds.Channels, PatchSize: Pick(patchSize, c => c.Dit?.PatchSize ?? p.GetValue(patchSize)),
                    Hidden: Pick(hidden, c => c.Dit?.Hidden ?? p.GetValue(hidden)), Depth: Pick(depth, c => c.Dit?.Depth ?? p.GetValue(depth)),
                    Heads: Pick(heads, c => c.Dit?.Heads ?? p.GetValue(heads)), NumClasses: unet.NumClasses, LearnSigma: learned)
                : null;
            return new DiffusionModelConfig
            {
                Unet = unet, Dit = transformer, Schedule = Pick(schedule, c => c.Schedule), Timesteps = Pick(timesteps, c => c.Timesteps),
                FlowTimes = flow ? new FlowTimeDistribution(Pick(flowTimes, c => c.FlowTimes?.Kind ?? p.GetValue(flowTimes))) : null,
                Prediction = Pick(prediction, c => c.Prediction), ImageSize = ds.Height,
                Variance = learned ? VarianceType.Learned : VarianceType.Fixed,
                ClassNames = unet.NumClasses > 0 ? ds.ClassNames.ToArray() : [], Data = ds.Description,
            };
        }

        TrainingOptions Training(ParseResult p, ImageDataset ds) => new()
        {
            // A flipped latent is not the latent of the flipped image: latents are never flipped.
            Steps = TotalSteps(p, ds), BatchSize = p.GetValue(batch), LearningRate = p.GetValue(lr), WarmupSteps = p.GetValue(warmup),
            LearningRateSchedule = p.GetValue(lrSchedule), EmaDecay = p.GetValue(emaDecay), GradientClipNorm = p.GetValue(gradClip),
            Loss = p.GetValue(loss), MinSnrGamma = p.GetValue(minSnr), RandomFlip = !p.GetValue(noFlip) && p.GetValue(latents) is null, ClassDropout = p.GetValue(classDropout),
            Seed = p.GetValue(seed), CheckpointEvery = p.GetValue(checkpointEvery),
            TrainOnly = p.GetValue(trainOnly)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
        };

        int TotalSteps(ParseResult p, ImageDataset ds) =>
            p.GetValue(epochs) is { } e ? Math.Max(1, (int)Math.Ceiling(e * (ds.Count / Math.Max(1, p.GetValue(batch))))) : p.GetValue(steps);

        // Resume (the checkpoint's settings, a new total if asked), or a new run, optionally started from --init-from.
        Trainer StartOrResume(ParseResult p, ImageDataset ds, CheckpointInfo? previous, string checkpointPath, string outDir, Device dev)
        {
            var config = ModelConfig(p, ds, previous);
            if (previous is not null)
            {
                // Model options typed on the command line (and the data's shape) must agree with the checkpoint.
                var diffs = config.DifferencesFrom(previous.Model);
                if (diffs.Count > 0)
                    throw new CliException(
                        $"{checkpointPath} was trained with another configuration: {string.Join("; ", diffs)} (this command vs the checkpoint). " +
                        "Resume without those options (the checkpoint's are used), or start a new run in another --out.");
                var resumed = Trainer.Resume(checkpointPath, ds, outDir, dev, p.Given(steps) || p.Given(epochs) ? TotalSteps(p, ds) : null);
                Console.WriteLine($"resuming {checkpointPath} at step {resumed.Step} of {resumed.Options.Steps}");
                return resumed;
            }
            var training = Training(p, ds);
            // Min-SNR weights DDPM's loss over its time steps; rectified flow's loss is not weighted.
            if (config.IsRectifiedFlow) training = training with { MinSnrGamma = 0 };
            config.Validate();
            var trainer = new Trainer(config, training, ds, outDir, dev);
            try { if (p.GetValue(initFrom) is { } initPath) InitializeFrom(trainer, initPath); }
            catch
            {
                trainer.Dispose();                                        // a missing or unfitting --init-from file
                throw;
            }
            return trainer;
        }

        cmd.SetAction(p =>
        {
            var dev = machine.Apply(p).Device;
            var outDir = p.GetValue(output)!;
            var checkpointPath = Path.Combine(outDir, Trainer.CheckpointFileName);
            if (p.GetValue(resume) && !File.Exists(checkpointPath))
                throw new CliException($"--resume: no checkpoint at {checkpointPath}. Start a new run without --resume.");
            EnsureWritable(outDir);
            // One run per folder, held until this process ends (the kernel releases it if the process is killed).
            using var folder = ClaimFolder(outDir, p.GetValue(resume));
            var previous = Previous(p, checkpointPath, outDir);
            Console.WriteLine($"TorchSharp: {TorchNative.Report?.Summary}");
            using var autoencoder = p.GetValue(latents) is { } aePath ? LatentFile.Load(aePath, "--latents", dev) : null;
            using var images = DataLocator.Load(p.GetValue(data)!, p.GetValue(labels),
                p.GetValue(imageSize) ?? (autoencoder is null ? previous?.Model.ImageSize : null), p.GetValue(channels));
            using var encoded = autoencoder?.Encode(images);
            var ds = encoded ?? images;
            Console.WriteLine($"data: {ds.Description}: {ds.Count} {(encoded is null ? "images" : "latents")} {ds.Width}×{ds.Height}×{ds.Channels}");
            if (p.GetValue(minutes) is not null && (p.Given(steps) || p.Given(epochs) || previous is not null))
                throw new CliException("--minutes sets the number of steps itself: give it without --steps, --epochs and --resume " +
                                       "(a resumed run keeps its step count; add steps with --resume --steps N).");
            using var trainer = StartOrResume(p, ds, previous, checkpointPath, outDir, dev);
            var c = trainer.Config;
            string shape = c.Dit is { } d
                ? $"patch {d.PatchSize} ({d.Tokens} tokens), width {d.Hidden}, depth {d.Depth}, {d.Heads} heads"
                : $"dim {c.Unet.Dim}, mults [{string.Join(",", c.Unet.DimMults)}]";
            Console.WriteLine($"model: {c.NetworkName} {trainer.ParameterCount:N0} parameters, {shape}, {c.ObjectiveName}, " +
                              $"batch {trainer.Options.BatchSize}, {(p.GetValue(minutes) is { } m ? $"steps to fit {m:0.##} min" : $"{trainer.Options.Steps} steps")}, device {dev.type}");
            if (p.GetValue(minutes) is { } budget) FitToMinutes(trainer, budget);
            RunTraining(trainer);
            var modelPath = trainer.SaveModelForSampling(Path.Combine(outDir, ModelFileName));
            Console.WriteLine($"wrote {modelPath} (weights for sampling only, {new FileInfo(modelPath).Length / 1e6:F1} MB)");
            WriteSummary(trainer, outDir);
            if (p.GetValue(samples) is var n and > 0)
            {
                var kind = p.Given(sampler) ? p.GetValue(sampler)!
                    : trainer.Config.IsRectifiedFlow ? FlowSamplerSpec.Euler.Name
                    : trainer.Config.Variance == VarianceType.Learned ? DdpmSampler.Kind.Name : p.GetValue(sampler)!;
                SampleWriter.Write(trainer.EmaNetwork ?? trainer.Network, trainer.Config, new SampleRequest
                {
                    Count = n, Seed = trainer.Options.Seed, Source = "this run",
                    // --sample-steps counts for the samplers with a step choice (DDIM, DPM-Solver++, Euler, Heun); DDPM takes all T.
                    Sampler = kind == DdpmSampler.Kind.Name ? kind : $"{kind}:{p.GetValue(sampleSteps)}",
                    SamplerOptions = spec => spec with
                    {
                        Variance = trainer.Config.Variance == VarianceType.Learned ? ReverseVariance.Learned : ReverseVariance.BetaTilde,
                    },
                    PngPath = Path.Combine(outDir, "samples.png"), GifPath = Path.Combine(outDir, "denoising.gif"), Decoder = autoencoder,
                }, dev);
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// The sizes a new DiT gets unless its options say otherwise: patch 4 (49 tokens on 28×28), width 192, depth 6, 4 heads
    /// (4.2 M parameters), a training step of about the default U-Net's cost on a CPU (docs/benchmarks.md).
    /// </summary>
    static readonly DitConfig DitDefaults = new(PatchSize: 4, Hidden: 192, Depth: 6, Heads: 4);

    /// <summary>One error naming every option of <paramref name="options"/> typed on the command line, which belong to what this run is not.</summary>
    static void RefuseOptionsOf(ParseResult p, string owner, string choice, Option[] options)
    {
        var typed = options.Where(p.Given).Select(o => o.Name).ToList();
        if (typed.Count > 0)
            throw new CliException($"{string.Join(", ", typed)} {(typed.Count == 1 ? "is an option" : "are options")} of {owner}, and this run uses {choice}: " +
                                   $"drop {(typed.Count == 1 ? "it" : "them")}, or choose the other network or objective.");
    }

    /// <summary>--init-from: a new run's weights from another checkpoint (fine-tuning).</summary>
    static void InitializeFrom(Trainer trainer, string initPath)
    {
        var (source, sourceInfo) = Checkpoint.LoadNetwork(Directory.Exists(initPath) ? Path.Combine(initPath, Trainer.CheckpointFileName) : initPath);
        using (source)
        {
            if (sourceInfo.Model.IsRectifiedFlow != trainer.Config.IsRectifiedFlow)
                throw new CliException(
                    $"--init-from {initPath}: that network was trained with {sourceInfo.Model.ObjectiveName}, this run uses {trainer.Config.ObjectiveName}; " +
                    $"fine-tuning keeps the objective: add --objective {(sourceInfo.Model.IsRectifiedFlow ? "flow" : "ddpm")}.");
            if (!sourceInfo.Model.IsRectifiedFlow && sourceInfo.Model.Prediction != trainer.Config.Prediction)
                throw new CliException(
                    $"--init-from {initPath}: that network predicts {Predictions.Names.Name(sourceInfo.Model.Prediction)}, this run {Predictions.Names.Name(trainer.Config.Prediction)}; " +
                    $"fine-tuning keeps what a network predicts: add --prediction {Predictions.Names.Name(sourceInfo.Model.Prediction)}" +
                    (sourceInfo.Model.Prediction == Prediction.Epsilon ? " (and --min-snr 0 to train as that model was trained)." : "."));
            try { trainer.InitializeFrom(source); }
            catch (ArgumentException error)
            {
                throw new CliException($"--init-from {initPath}: its network does not fit this one ({error.Message}). Use the same network options as that model " +
                                       "(--dim, --dim-mults, --block, --groups, --attention-levels; for a DiT --patch-size, --hidden, --depth, --heads).");
            }
        }
        Console.WriteLine($"initialised from {initPath} (step {sourceInfo.Step}, {sourceInfo.Model.Variance} variance)");
    }

    /// <summary>
    /// --minutes: trains the first steps of the warm-up (at most 30), times the later two thirds of them, and fixes the
    /// run's total so that the whole training takes about <paramref name="minutes"/>. The learning rate of the warm-up
    /// does not depend on the total, so the run is the same as one started with <c>--steps</c> of that total.
    /// </summary>
    static void FitToMinutes(Trainer trainer, double minutes)
    {
        int probe = Math.Min(30, Math.Min(trainer.Options.WarmupSteps, trainer.Options.CheckpointEvery - 1));
        if (probe < 6)
            throw new CliException($"--minutes measures the step time during the learning-rate warm-up, which needs at least 6 steps " +
                                   $"(--warmup {trainer.Options.WarmupSteps}, --checkpoint-every {trainer.Options.CheckpointEvery}); raise them or use --steps.");
        int skip = probe / 3;
        // Seconds per step over steps skip+1..probe, and the training seconds spent so far.
        var (perStep, spent) = ConsoleProgress.Run("measuring the step time", probe, report =>
        {
            var sw = new Stopwatch();
            double elapsed = 0;
            void OnStep(TrainingProgress pr)
            {
                if (pr.Step == skip) sw.Restart();
                elapsed = pr.Elapsed.TotalSeconds;
                report(pr.Step, string.Create(CultureInfo.InvariantCulture, $"loss {pr.Loss:F4}"));
            }
            trainer.Progress += OnStep;
            try { trainer.Train(until: probe); }
            finally { trainer.Progress -= OnStep; }                      // the run's own progress takes over
            return (sw.Elapsed.TotalSeconds / (probe - skip), elapsed);
        });
        int total = Math.Max(probe, (int)Math.Floor(probe + (minutes * 60 - spent) / perStep));
        trainer.FixTotalSteps(total);
        if (trainer.Step == total && trainer.RunDirectory is not null) trainer.SaveCheckpoint();   // the budget ended with the probe
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"--minutes {minutes:0.##}: {perStep:F2} s per step (steps {skip + 1}–{probe}, {Compute.Threads} thread{(Compute.Threads == 1 ? "" : "s")}) → {total} steps in all " +
            $"(≈ {total * perStep / 60:F1} min); `--steps {total}` repeats this run exactly"));
    }

    static void RunTraining(Trainer trainer)
    {
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            cancel.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            ConsoleProgress.Run("training", trainer.Options.Steps, report =>
            {
                trainer.Progress += pr => report(pr.Step, string.Create(CultureInfo.InvariantCulture,
                    $"loss {pr.Loss:F4} lr {pr.LearningRate:0.0e0} {pr.ImagesPerSecond:F0} img/s"));
                trainer.Train(cancel.Token);
            });
        }
        catch (OperationCanceledException)
        {
            var path = trainer.SaveCheckpoint();
            throw new StoppedException($"stopped at step {trainer.Step}; checkpoint saved to {path}. Continue with the same command and --resume.");
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"trained to step {trainer.Step}: mean loss of the last {Trainer.RecentLossWindow} steps {trainer.RecentLoss:F4}; checkpoint {trainer.CheckpointPath}"));
    }

    static void WriteSummary(Trainer trainer, string outDir)
    {
        var summary = new
        {
            trainer.Step,
            trainer.RecentLoss,
            trainer.TrainingSeconds,
            Parameters = trainer.ParameterCount,
            trainer.Config,
            trainer.Options,
        };
        AtomicFile.WriteAllText(Path.Combine(outDir, "run.json"), JsonSerializer.Serialize(summary, Checkpoint.JsonOptions));
    }

    /// <summary>Fails early, before minutes of work, if the run folder cannot be created (claiming it then writes its marker).</summary>
    static void EnsureWritable(string outDir)
    {
        try
        {
            Directory.CreateDirectory(outDir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"cannot write to the run folder --out {outDir}: {e.Message} Choose a folder you can write to.");
        }
    }

    /// <summary>The run folder, locked for this process; a folder that cannot be written is the same clear error as one that cannot be created.</summary>
    static RunFolder ClaimFolder(string outDir, bool resume)
    {
        try { return RunFolder.Claim(outDir, resume); }
        catch (UnauthorizedAccessException e)
        {
            throw new CliException($"cannot write to the run folder --out {outDir}: {e.Message} Choose a folder you can write to.");
        }
    }

    static int[]? ParseLevels(string text, int levels) => text.Trim().ToLowerInvariant() switch
    {
        "auto" => Enumerable.Range(1, Math.Max(0, levels - 1)).ToArray(),
        "all" => null,
        "none" or "" => [],
        _ => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(s =>
            int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
                : throw new CliException($"--attention-levels: '{text}' is not all, none, or a list of levels such as 1,2")).ToArray(),
    };
}
