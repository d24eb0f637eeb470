using System.Text.Json;
using Diffusion.Benchmarks;
using Diffusion.Model;

namespace Diffusion.Cli;

/// <summary><c>bench</c>: training and sampling speed, the machine's matmul speed, and memory flatness.</summary>
static class BenchCommand
{
    public static Command Create()
    {
        var steps = Opt("--steps", "Timed training steps per configuration (after 3 warm-up steps)", 10).Range(1, 10000);
        var memorySteps = Opt("--memory-steps", "Training steps for the memory measurement (memory read at 100 and here)", 1000).Range(100, 100000);
        var samplingMemorySteps = Opt("--sampling-memory-steps", "Sampling steps for the memory measurement", 1000).Range(100, 100000);
        var quick = Opt("--quick", "Small, fast settings (a smoke test of the command, not a measurement)", false);
        var json = OptionalOpt<string>("--json", "Also write the JSON line to this file");
        var peer = Opt("--peer", "Only compare training steps with PyTorch (docs/pytorch/bench_peer.py, /usr/bin/python3) on the annotated network, batch 64 and 128", false);
        var profile = Opt("--profile", "Only time each kind of layer of a training step (default and annotated U-Net, batch 64)", false);

        var cmd = new Command("bench", "Measure training throughput, sampling speed, matmul GFLOP/s and memory flatness on this machine.")
        {
            steps, memorySteps, samplingMemorySteps, quick, json, profile, peer,
        };
        var machine = new MachineOptions(cmd, withDevice: false);
        cmd.SetAction(p =>
        {
            int threadCount = machine.Apply(p).Threads;
            bool q = p.GetValue(quick);
            if (p.GetValue(peer))
            {
                var (script, problem) = Peer.Find();
                if (script is null) throw new CliException(problem!);
                foreach (var row in BenchReport.PeerLines(script, threadCount, q, TrainCommand.DefaultModel.Unet, p.GetValue(steps)))
                    Console.WriteLine(row);
                return 0;
            }
            if (p.GetValue(profile))
            {
                foreach (var row in ModuleProfile.Report([("course default", TrainCommand.DefaultModel.Unet), ("annotated", new UnetConfig())], 64, q ? 2 : 5))
                    Console.WriteLine(row);
                return 0;
            }
            int timed = q ? 2 : p.GetValue(steps);
            int memN = q ? 110 : p.GetValue(memorySteps);
            int sampN = q ? 110 : p.GetValue(samplingMemorySteps);
            using var data = ImageDataset.FashionMnist(DataLocator.FashionMnistFolder());
            var results = new Dictionary<string, object?>
            {
                ["machine"] = $"{Environment.ProcessorCount} cores, {Environment.OSVersion}, .NET {Environment.Version}",
                ["threads"] = TorchSharp.torch.get_num_threads(),
            };

            Console.WriteLine("matmul 2048×2048 fp32 …");
            double matmul = Bench.MatmulGflops();
            results["matmul_gflops"] = Math.Round(matmul, 1);

            // --quick swaps in a tiny network everywhere: it checks that the command works, it measures nothing.
            var tiny = new UnetConfig { Dim = 8, DimMults = [1, 2], LinearAttentionLevels = [1] };
            var memoryModel = q ? tiny : TrainCommand.DefaultModel.Unet;
            int memoryBatch = q ? 8 : 64;
            var configs = q
                ? new (string Name, UnetConfig Config, int Batch)[] { ("tiny (--quick)", tiny, 16) }
                : [
                    ("course default (dim 28, attention levels 1,2)", TrainCommand.DefaultModel.Unet, 64),
                    ("annotated (dim 28, linear attention everywhere)", new UnetConfig(), 64),
                    ("annotated", new UnetConfig(), 128),
                ];
            var training = new List<TrainingThroughput>();
            foreach (var (name, config, batch) in configs)
            {
                Console.WriteLine($"training: {name}, batch {batch} …");
                training.Add(Bench.Training(name, config, data, batch, timed));
            }
            results["training"] = training;

            using var net = new Unet(q ? tiny : TrainCommand.DefaultModel.Unet);
            Console.WriteLine("sampling steps/s at batch 64 …");
            double stepsPerSecond = Bench.SamplingStepsPerSecond(net, 1, 28, 64, q ? 3 : 10);
            results["sampling_steps_per_s_batch64"] = Math.Round(stepsPerSecond, 2);

            using var schedule = new NoiseSchedule(ScheduleKind.Cosine, 500);
            int images = q ? 8 : 64;
            Console.WriteLine($"DDIM-50 and DDPM-500 for {images} images …");
            using var ddimSampler = new DdimSampler(schedule, q ? 5 : 50);
            using var ddpmSampler = new DdpmSampler(schedule);
            double ddim = Bench.SamplingSeconds(ddimSampler, net, [images, 1, 28, 28]);
            double ddpm = q ? double.NaN : Bench.SamplingSeconds(ddpmSampler, net, [images, 1, 28, 28]);
            results["ddim50_seconds"] = Math.Round(ddim, 1);
            results["ddpm500_seconds"] = double.IsNaN(ddpm) ? null : Math.Round(ddpm, 1);

            Console.WriteLine($"training memory to step {memN} …");
            var trainMem = Bench.TrainingMemory(memoryModel, data, memoryBatch, [100, memN],
                s => { if (s % 100 == 0) Console.WriteLine($"  step {s}"); });
            Console.WriteLine($"sampling memory over {sampN} steps …");
            var sampMem = Bench.SamplingMemory(net, 1, 28, memoryBatch, [100, sampN]);
            double trainGrowth = 100.0 * (trainMem[1].Bytes - trainMem[0].Bytes) / trainMem[0].Bytes;
            double sampGrowth = 100.0 * (sampMem[^1].Bytes - sampMem[0].Bytes) / sampMem[0].Bytes;
            results["training_rss_mb"] = trainMem.ToDictionary(m => m.Step.ToString(CultureInfo.InvariantCulture), m => m.Bytes / 1_000_000);
            results["training_rss_growth_percent"] = Math.Round(trainGrowth, 2);
            results["sampling_rss_mb"] = sampMem.ToDictionary(m => m.Step.ToString(CultureInfo.InvariantCulture), m => m.Bytes / 1_000_000);
            results["sampling_rss_growth_percent"] = Math.Round(sampGrowth, 2);

            var line = JsonSerializer.Serialize(results);
            Console.WriteLine();
            Console.WriteLine(line);
            if (p.GetValue(json) is { } path) AtomicFile.WriteAllText(path, line + "\n");

            Console.WriteLine();
            Console.WriteLine($"matmul 2048² fp32: {matmul:F0} GFLOP/s ({TorchSharp.torch.get_num_threads()} threads)");
            Console.WriteLine($"{"configuration",-52} {"batch",5} {"ms/step",8} {"img/s",7} {"GFLOP/img",9} {"GFLOP/s",8} {"of matmul",9}");
            foreach (var t in training)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{t.Name,-52} {t.BatchSize,5} {t.MedianStepMs,8:F0} {t.ImagesPerSecond,7:F1} {t.ForwardGflopsPerImage,9:F3} {t.AchievedGflops,8:F1} {t.AchievedGflops / matmul,9:P0}"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"sampling: {stepsPerSecond:F2} network evaluations/s at batch 64; {images} images: DDIM-50 {ddim:F1} s, DDPM-500 {ddpm:F1} s"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"memory: training RSS {trainMem[0].Bytes / 1e6:F0} MB at step 100 → {trainMem[1].Bytes / 1e6:F0} MB at step {memN} ({trainGrowth:+0.0;-0.0}%); " +
                $"sampling {sampMem[0].Bytes / 1e6:F0} → {sampMem[^1].Bytes / 1e6:F0} MB ({sampGrowth:+0.0;-0.0}%)"));
            return 0;
        });
        return cmd;
    }
}
