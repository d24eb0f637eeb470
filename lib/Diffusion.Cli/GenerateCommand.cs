using Diffusion.Text;
using Diffusion.Visuals;

namespace Diffusion.Cli;

/// <summary>
/// <c>generate</c>: a prompt → a grid of pictures, with the miniature Stable Diffusion (text encoder, text-conditioned
/// latent U-Net, autoencoder; one file). The prompt is checked before anything is drawn: "" is unconditional, unknown
/// words are left out with a notice, a prompt longer than the text encoder's context is cut with a notice, a prompt with
/// no known word is an error that lists the words the model knows.
/// </summary>
static class GenerateCommand
{
    public static Command Create()
    {
        var prompt = new Option<string>("--prompt")
        {
            Description = "What to draw, e.g. \"a dark ankle boot facing left\"; \"\" = unconditional", Required = true,
        };
        var count = Opt("--count", "Pictures to draw", 16).Range(1, 4096);
        var guidance = Opt("--guidance", "Classifier-free guidance weight w: (1+w)·ε(z,text) − w·ε(z,\"\"); 0 = plain conditional, " +
            "−1 = unconditional; Stable Diffusion's guidance_scale s is w = s − 1", 3.0);
        var sampler = SamplerOptions.Kind("DPM-Solver++ (default), DDIM or DDPM", "dpm++");
        var steps = Opt("--steps", "Sampler steps (default: the sampler's own, 20 for dpm++)", 20).Range(1, 100000);
        var seed = SeedOption.Create();
        var output = Opt("--out", "Output PNG (grid)", "generated.png");
        var checkpoint = OptionalOpt<string>("--checkpoint", $"Text-to-image model file (default: data/checkpoints/{TextToImageFile.ShippedFileName})");
        var cmd = new Command("generate", "Draw Fashion-MNIST garments from a text prompt with the course's miniature Stable Diffusion.")
        {
            prompt, count, guidance, sampler, steps, seed, output, checkpoint,
        };
        var machine = new MachineOptions(cmd);
        cmd.SetAction(p =>
        {
            double w = p.GetValue(guidance);
            Guidance.Check(w, numClasses: 1);
            var kind = SamplerSpec.Parse(p.GetValue(sampler)!);
            // Latents are not bounded to [−1, 1]: x̂_0 is kept within their range by the model (LatentSpace.ClipStart) instead.
            var spec = kind with { Steps = p.Given(steps) ? p.GetValue(steps) : kind.Steps, Clip = false };
            var dev = machine.Apply(p).Device;
            var path = p.GetValue(checkpoint) ?? DefaultCheckpoint();
            using var model = TextToImageFile.Load(path, dev);
            int context = model.Encoder.Config.ContextLength;
            var checkedPrompt = model.CheckPrompt(p.GetValue(prompt) ?? "");
            foreach (var line in PromptCheck.Notices(checkedPrompt, context)) Console.WriteLine(line);
            spec = spec.Validate(model.Info.Diffusion, Console.WriteLine);
            int n = p.GetValue(count);
            var sw = Stopwatch.StartNew();
            string what = checkedPrompt.IsEmpty ? "unconditional" : $"\"{checkedPrompt.Text}\"";
            using var images = ConsoleProgress.Run($"drawing {n} × {what} ({spec}, w = {w.ToString("0.###", CultureInfo.InvariantCulture)})", spec.Steps ?? model.Info.Timesteps, report =>
                model.Generate([checkedPrompt.Text], n, w, spec, p.GetValue(seed), dev,
                    new SyncProgress<SamplingProgress>(q => report(q.Step, $"t={q.Timestep}"))));
            var png = p.GetValue(output)!;
            ImageGrid.SaveGridPng(images, png, columns: (int)Math.Ceiling(Math.Sqrt(n)), padding: 2, scale: 2);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {png} ({n} pictures of {what}, {sw.Elapsed.TotalSeconds:F1} s)"));
            return 0;
        });
        return cmd;
    }

    /// <summary>data/checkpoints/fashion-mnist-text2img.ckpt next to the located data/fashion-mnist (or relative, if there is none).</summary>
    static string DefaultCheckpoint()
    {
        try
        {
            return Path.Combine(Path.GetDirectoryName(DataLocator.FashionMnistFolder())!, "checkpoints", TextToImageFile.ShippedFileName);
        }
        catch (CliException)
        {
            return Path.Combine("data", "checkpoints", TextToImageFile.ShippedFileName);
        }
    }
}
