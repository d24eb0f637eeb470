using Diffusion.TextToImage;
using Diffusion.Visuals;

namespace Diffusion.Cli;

/// <summary>
/// <c>generate</c>: a prompt → a grid of pictures, with a miniature Stable Diffusion (text encoder, the mini SD1's
/// text-conditioned latent U-Net or the mini SD3's MMDiT, autoencoder; one file that says which). The prompt is checked before anything is drawn: "" is unconditional, unknown
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
        var guidance = Opt("--guidance", "Classifier-free guidance weight w: (1+w)·ε(z,text) − w·ε(z,\"\") (the mini SD3: of its velocity); 0 = plain conditional, " +
            "−1 = unconditional; Stable Diffusion's guidance_scale s is w = s − 1", 3.0);
        var output = Opt("--out", "Output PNG (grid)", "generated.png");
        var cmd = new Command("generate", "Draw Fashion-MNIST garments from a text prompt with the course's miniature Stable Diffusion (the mini SD1, or with --model sd3 the mini SD3).")
        {
            prompt, count, guidance, output,
        };
        var model = new TextToImageOptions(cmd);
        var machine = new MachineOptions(cmd);
        var outputs = new OutputOptions(cmd);
        cmd.SetAction(p =>
        {
            var png = outputs.Check(p, p.GetValue(output)!, "--out", ("--checkpoint", model.File(p)));
            double w = p.GetValue(guidance);
            Guidance.Check(w, numClasses: 1);
            var dev = machine.Apply(p).Device;
            using var t2i = model.Load(p, dev);
            int context = t2i.Encoder.Config.ContextLength;
            var checkedPrompt = t2i.CheckPrompt(p.GetValue(prompt) ?? "");
            foreach (var line in PromptCheck.Notices(checkedPrompt, context)) Console.WriteLine(line);
            var spec = model.Spec(p, t2i);
            int n = p.GetValue(count);
            var sw = Stopwatch.StartNew();
            string what = checkedPrompt.IsEmpty ? "unconditional" : $"\"{checkedPrompt.Text}\"";
            using var images = ConsoleProgress.Run($"drawing {n} × {what} ({spec}, w = {w.ToString("0.###", CultureInfo.InvariantCulture)})", spec.Evaluations(t2i.Info.Timesteps), report =>
                t2i.Generate([checkedPrompt.Text], n, w, spec, model.Seed(p), dev,
                    new SyncProgress<SamplingProgress>(q => report(q.Step, $"t={q.Timestep}"))));
            ImageGrid.SaveGridPng(images, png, columns: (int)Math.Ceiling(Math.Sqrt(n)), padding: 2, scale: 2);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {png} ({n} pictures of {what}, {sw.Elapsed.TotalSeconds:F1} s)"));
            return 0;
        });
        return cmd;
    }
}
