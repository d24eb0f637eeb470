using System.CommandLine;
using Diffusion.Platform;
using Diffusion.Sampling;
using Diffusion.Training;
using static Diffusion.Cli.Parsing;

namespace Diffusion.Cli;

/// <summary><c>sample</c>: checkpoint → grid PNG (+ GIF) with DDPM or DDIM.</summary>
static class SampleCommand
{
    public static Command Create()
    {
        var checkpoint = Opt("--checkpoint", "Checkpoint file, or a run folder holding checkpoint.ckpt", Path.Combine("runs", "fashion-mnist"));
        var count = Opt("--count", "Number of images", 64).Range(1, 4096);
        var sampler = Choice("--sampler", "DDPM (Algorithm 2, T steps), DDIM or DPM-Solver++ (fewer steps)", "ddpm", SamplerSpec.Names.Select(n => (n, n)).ToArray());
        var steps = Opt("--steps", "DDIM / DPM-Solver++ steps; with ddpm, when given: respace to this many steps (Improved DDPM §4)", 50).Range(1, 100000);
        var eta = Opt("--eta", "DDIM η (0 = deterministic, 1 = DDPM-like)", 0.0).Range(0, 10);
        var variance = Choice("--variance", "DDPM σ²_t", ReverseVariance.BetaTilde, ("beta-tilde", ReverseVariance.BetaTilde), ("beta", ReverseVariance.Beta), ("learned", ReverseVariance.Learned));
        var noClip = Opt("--no-clip", "Do not clamp the predicted x_0 to [-1, 1]", false);
        var seed = Opt("--seed", "Random seed", 0);
        var output = Opt("--out", "Output PNG (grid)", "samples.png");
        var gif = OptionalOpt<string>("--gif", "Also write an animated GIF of the reverse process here");
        var rawWeights = Opt("--raw-weights", "Use the last trained weights instead of their EMA", false);
        var cls = Opt("--class", "Conditional models: a class index for every sample, or all (one grid row per class)", "all");
        var guidance = Opt("--guidance", "Classifier-free guidance weight w (Ho & Salimans eq. 6: (1+w)·ε(x,c) − w·ε(x,∅); 0 = plain conditional, " +
            "−1 = unconditional; diffusers' guidance_scale = 1 + w). Conditional models only", 0.0);
        var device = Opt("--device", "cpu, cuda or auto", "cpu");
        var threads = new Option<int?>("--threads") { Description = "libtorch threads (default: auto = the cores other processes leave free; fix it for bit-identical runs)" };
        threads.Range(1, 1024);

        var cmd = new Command("sample", "Sample images from a trained checkpoint.")
        {
            checkpoint, count, sampler, steps, eta, variance, noClip, seed, output, gif, rawWeights, cls, guidance, device, threads,
        };
        cmd.SetAction(p =>
        {
            int threadCount = Compute.SetThreads(p.GetValue(threads));
            Console.WriteLine(ThreadsNote(threadCount, p.GetValue(threads) is null));
            var dev = Compute.UseDevice(p.GetValue(device)!);
            var path = CheckpointFile(p.GetValue(checkpoint)!);
            var (model, info) = Checkpoint.LoadModel(path, preferEma: !p.GetValue(rawWeights), dev);
            using (model)
            {
                Console.WriteLine($"checkpoint {path}: step {info.Step}, {info.Model.Schedule} T={info.Model.Timesteps}, loss {info.RecentLoss:F4}");
                var kind = p.GetValue(sampler)!;
                var spec = new SamplerSpec(kind, Steps: new SamplerSpec(kind).Info.DefaultSteps is not null || p.Given(steps) ? p.GetValue(steps) : null, Eta: p.GetValue(eta),
                    Variance: p.Given(variance) || info.Model.Variance != Forward.VarianceType.Learned ? p.GetValue(variance) : ReverseVariance.Learned,
                    Clip: !p.GetValue(noClip));
                SampleWriter.Write(model, info.Model, new SampleRequest
                {
                    Count = p.GetValue(count), Sampler = spec, Seed = p.GetValue(seed), PngPath = p.GetValue(output)!,
                    GifPath = p.GetValue(gif), Class = ParseClass(p.GetValue(cls)!), Guidance = p.GetValue(guidance),
                }, dev);
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>"all" → null (one row per class); an integer → that class (its range is checked against the model).</summary>
    static int? ParseClass(string text)
    {
        if (string.Equals(text.Trim(), "all", StringComparison.OrdinalIgnoreCase)) return null;
        if (int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var k)) return k;
        throw new CliException($"--class {text}: give a class index such as 3, or all (one grid row per class)");
    }
}
