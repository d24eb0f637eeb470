using Diffusion.Benchmarks;
using Diffusion.Model;

namespace Diffusion.Cli;

/// <summary><c>bench</c>: training and sampling speed, the machine's matmul speed, and memory flatness.</summary>
static class BenchCommand
{
    public static Command Create()
    {
        var steps = Opt("--steps", "Timed training steps per configuration (after 3 warm-up steps)", 10).Range(1, 10000);
        var memorySteps = Opt("--memory-steps", "Training steps for the memory measurement (memory read at 100 and here)", 1000).Range(200, 100000);
        var samplingMemorySteps = Opt("--sampling-memory-steps", "Sampling steps for the memory measurement (read at 100 and here)", 1000).Range(200, 100000);
        var quick = Opt("--quick", "Small, fast settings (a smoke test of the command, not a measurement)", false);
        var json = OptionalOpt<string>("--json", "Also write the JSON line to this file");
        var peer = Opt("--peer", "Only compare training steps with PyTorch (docs/pytorch/bench_peer.py, /usr/bin/python3) on the annotated network, batch 64 and 128", false);
        var profile = Opt("--profile", "Only time each kind of layer of a training step (course U-Net, train's default and annotated U-Net, batch 64)", false);
        var transformers = Opt("--transformers", "Only time training steps of diffusion transformers (DiT on pixels and on latents, rectified flow) beside train's default U-Net, each as a share of a matmul timed between its own steps", false);

        var cmd = new Command("bench", "Measure training throughput, sampling speed, matmul GFLOP/s and memory flatness on this machine.")
        {
            steps, memorySteps, samplingMemorySteps, quick, json, profile, peer, transformers,
        };
        var machine = new MachineOptions(cmd, withDevice: false);
        var outputs = new OutputOptions(cmd);
        cmd.SetAction(p =>
        {
            if (p.GetValue(json) is { } jsonOut) outputs.Check(p, jsonOut, "--json");
            int threadCount = machine.Apply(p).Threads;
            bool q = p.GetValue(quick);
            if (p.GetValue(peer))
            {
                var (script, problem) = Peer.Find();
                if (script is null) throw new CliException(problem!);
                foreach (var row in BenchReport.PeerLines(script, threadCount, q, p.GetValue(steps)))
                    Console.WriteLine(row);
                return 0;
            }
            if (p.GetValue(profile))
            {
                foreach (var row in ModuleProfile.Report([("course U-Net", Recipe.CourseUnet), ($"train's default (dim {Recipe.Default.Model.Unet.Dim})", Recipe.Default.Model.Unet), ("annotated", new UnetConfig())], 64, q ? 2 : 5))
                    Console.WriteLine(row);
                return 0;
            }
            if (p.GetValue(transformers))
            {
                var dit = TransformerBench.Run(Recipe.Default.Model.Unet, q, Console.WriteLine, p.GetValue(steps));
                foreach (var row in dit.Summary()) Console.WriteLine(row);
                return 0;
            }
            using var data = ImageDataset.FashionMnist(DataLocator.FashionMnistFolder());
            var settings = new MachineBenchSettings(p.GetValue(steps), p.GetValue(memorySteps),
                p.GetValue(samplingMemorySteps), q);
            var results = MachineBench.Run(settings, data, Console.WriteLine);
            var line = results.Json();
            Console.WriteLine();
            Console.WriteLine(line);
            if (p.GetValue(json) is { } path) AtomicFile.WriteAllText(path, line + "\n");
            Console.WriteLine();
            foreach (var row in results.Summary()) Console.WriteLine(row);
            return 0;
        });
        return cmd;
    }
}
