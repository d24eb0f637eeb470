using Diffusion.Flow;


namespace Diffusion.Cli;

/// <summary><c>sample</c>: checkpoint → grid PNG (+ GIF) with any sampler <see cref="SamplerSpec"/> names (<c>--sampler</c>).</summary>
static class SampleCommand
{
    public static Command Create()
    {
        var count = Opt("--count", "Number of images", 64).Range(1, 4096);
        var sampler = SamplerOptions.Kind("DDPM (Algorithm 2, T steps), DDIM or DPM-Solver++ (fewer steps); euler or heun for a rectified-flow model");
        var steps = Opt("--steps", "DDIM / DPM-Solver++ / Euler / Heun steps; with ddpm, when given: respace to this many steps (Improved DDPM §4)", 50).Range(1, 100000);
        var eta = SamplerOptions.Eta();
        var variance = SamplerOptions.Variance();
        var noClip = Opt("--no-clip", "Do not clamp the predicted x_0 (a flow sampler: the samples) to [-1, 1]", false);
        var seed = SeedOption.Create();
        var output = Opt("--out", "Output PNG (grid)", "samples.png");
        var gif = OptionalOpt<string>("--gif", "Also write an animated GIF of the reverse process here");
        var cls = Opt("--class", "Conditional models: a class index for every sample, or all (one grid row per class)", "all");
        var guidance = Opt("--guidance", "Classifier-free guidance weight w (Ho & Salimans eq. 6: (1+w)·ε(x,c) − w·ε(x,∅); 0 = plain conditional, " +
            "−1 = unconditional; diffusers' guidance_scale = 1 + w). Conditional models only", 0.0);

        var autoencoder = OptionalOpt<string>("--autoencoder", "A model of latents (train --latents): the autoencoder that decodes its samples");
        var cmd = new Command("sample", "Sample images from a trained checkpoint.")
        {
            count, sampler, steps, eta, variance, noClip, seed, output, gif, cls, guidance, autoencoder,
        };
        var checkpoint = new CheckpointOptions(cmd);
        var machine = new MachineOptions(cmd);
        var outputs = new OutputOptions(cmd);
        cmd.SetAction(p =>
        {
            // Outputs are checked before anything is loaded or drawn.
            var input = ("--checkpoint", (string?)checkpoint.File(p));
            var png = outputs.Check(p, p.GetValue(output)!, "--out", input);
            var gifPath = p.GetValue(gif) is { } g ? outputs.Check(p, g, "--gif", input, ("--out", png)) : null;
            var dev = machine.Apply(p).Device;
            var (model, info, path) = checkpoint.Load(p, dev);
            using (model)
            using (var decoder = p.GetValue(autoencoder) is { } aePath ? LatentFile.Load(aePath, "--autoencoder", dev) : null)
            {
                Console.WriteLine($"checkpoint {path}: step {info.Step}, {info.Model.NetworkName}, {info.Model.ObjectiveName}, loss {info.RecentLoss:F4}");
                // --sampler without --steps: a flow model's default sampler is Euler; --steps names the step count of any sampler.
                var kind = info.Model.IsRectifiedFlow && !p.Given(sampler) ? FlowSamplerSpec.Euler.Name : p.GetValue(sampler)!;
                SampleWriter.Write(model, info.Model, new SampleRequest
                {
                    Count = p.GetValue(count), Seed = p.GetValue(seed), PngPath = png, Source = path,
                    Sampler = p.Given(steps) ? $"{kind}:{p.GetValue(steps)}" : kind,
                    SamplerOptions = spec => spec with
                    {
                        Eta = p.GetValue(eta), Clip = !p.GetValue(noClip),
                        // A learned-variance model samples with its learned σ² unless --variance says otherwise.
                        Variance = p.Given(variance) || info.Model.Variance != VarianceType.Learned ? p.GetValue(variance) : ReverseVariance.Learned,
                    },
                    Clip = !p.GetValue(noClip), Decoder = decoder,
                    GifPath = gifPath, Class = ParseClass(p.GetValue(cls)!), Guidance = p.GetValue(guidance),
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
        if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var k)) return k;
        throw new CliException($"--class {text}: give a class index such as 3, or all (one grid row per class)");
    }
}
