using Diffusion.Model;
using Diffusion.TextToImage;

namespace Diffusion.Cli;

/// <summary>Where a command runs: the device and the thread count it settled on.</summary>
readonly record struct Machine(Device Device, int Threads);

/// <summary>--device and --threads, declared once: added to a command, applied once at the start of its action.</summary>
sealed class MachineOptions
{
    readonly Option<string> device = Opt("--device", "cpu, cuda or auto", "cpu");
    readonly Option<int?> threads = new("--threads")
    {
        Description = "libtorch threads (default: auto = the cores other processes leave free; fix it for bit-identical runs)",
    };

    readonly bool withDevice;

    /// <param name="withDevice">False for the CPU-only commands (bench, train-classifier): --threads alone.</param>
    public MachineOptions(Command command, bool withDevice = true)
    {
        threads.Range(1, 1024);
        this.withDevice = withDevice;
        if (withDevice) command.Options.Add(device);
        command.Options.Add(threads);
    }

    /// <summary>Sets libtorch's threads (and says how many and why), then picks the device.</summary>
    public Machine Apply(ParseResult p)
    {
        int count = Compute.SetThreads(p.GetValue(threads));
        Console.WriteLine(ThreadsNote(count, p.GetValue(threads) is null));
        Compute.ThreadsChanged -= ConsoleProgress.Note;
        Compute.ThreadsChanged += ConsoleProgress.Note;
        return new Machine(withDevice ? Compute.UseDevice(p.GetValue(device)!) : Compute.Device, count);
    }
}

/// <summary>--checkpoint (a file or a run folder) and, for commands that sample, --raw-weights.</summary>
sealed class CheckpointOptions
{
    readonly Option<string> checkpoint = Opt("--checkpoint", "Checkpoint file, or a run folder holding checkpoint.ckpt", Path.Combine("runs", "fashion-mnist"));
    readonly Option<bool>? rawWeights;

    public CheckpointOptions(Command command, bool rawWeights = true)
    {
        command.Options.Add(checkpoint);
        if (!rawWeights) return;
        this.rawWeights = Opt("--raw-weights", "Use the last trained weights instead of their EMA", false);
        command.Options.Add(this.rawWeights);
    }

    /// <summary>The checkpoint file: --checkpoint itself, or the run folder's checkpoint.ckpt.</summary>
    public string File(ParseResult p) => CheckpointFile(p.GetValue(checkpoint)!);

    /// <summary>What --checkpoint says, as typed.</summary>
    public string Given(ParseResult p) => p.GetValue(checkpoint)!;

    /// <summary>The network (EMA weights unless --raw-weights) on <paramref name="device"/>, its description and file. Dispose the model.</summary>
    public (IDenoisingNetwork Model, CheckpointInfo Info, string Path) Load(ParseResult p, Device device)
    {
        var path = File(p);
        var (model, info) = Checkpoint.LoadNetwork(path, preferEma: rawWeights is null || !p.GetValue(rawWeights), device);
        return (model, info, path);
    }
}

/// <summary>--seed, declared once for every command that draws random numbers; each says what the seed drives.</summary>
static class SeedOption
{
    /// <param name="drives">What the seed drives, e.g. "the sampling noise" (shown as "Random seed (the sampling noise)").</param>
    public static Option<int> Create(string? drives = null, int defaultValue = 0) =>
        Opt("--seed", drives is null ? "Random seed" : $"Random seed ({drives})", defaultValue);
}

/// <summary>
/// What the commands that train one small model into one new file share (train-classifier, train-clip, train-text2img),
/// declared once: --out (never overwritten), --steps (not for a run counted in epochs), --batch-size, --lr and --seed.
/// </summary>
sealed class ModelFileTrainingOptions
{
    readonly string command;
    readonly Option<string> output;
    readonly Option<int>? steps;
    readonly Option<int> batch;
    readonly Option<double> lr;
    readonly Option<int> seed = SeedOption.Create();

    /// <param name="model">What the file holds, for --out's description ("the mini-CLIP").</param>
    /// <param name="steps">--steps' description and default; null for a command that counts epochs instead.</param>
    public ModelFileTrainingOptions(Command command, string model, string defaultPath, (string Description, int Default)? steps,
        (string Description, int Default, int Min, int Max) batch, (string Description, double Default) lr)
    {
        this.command = command.Name;
        output = Opt("--out", $"Where to write {model} (refuses to overwrite)", defaultPath);
        this.batch = Opt("--batch-size", batch.Description, batch.Default).Range(batch.Min, batch.Max);
        this.lr = Opt("--lr", lr.Description, lr.Default).Range(1e-7, 1);
        command.Options.Add(output);
        if (steps is { } s)
        {
            this.steps = Opt("--steps", s.Description, s.Default).Range(1, 1e9);
            command.Options.Add(this.steps);
        }
        foreach (var option in new Option[] { this.batch, this.lr, seed }) command.Options.Add(option);
    }

    /// <summary>--out, checked before any work is done (an existing file is never overwritten); its folder is created.</summary>
    public string NewFile(ParseResult p)
    {
        var path = p.GetValue(output)!;
        if (File.Exists(path))
            throw new CliException($"{path} already exists: pass another --out, or delete it first (it is never overwritten).");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        return path;
    }

    /// <summary>
    /// Writes the trained model to <paramref name="path"/> (checked by <see cref="NewFile"/> before training) with
    /// <paramref name="save"/>, which is given a hidden temporary name beside it; the finished file is then moved to
    /// <paramref name="path"/> only if nothing is there by now. A file that appeared at --out while training ran is never
    /// replaced: the error names it, and the trained model is kept beside it as <c>&lt;--out&gt;.new</c>.
    /// </summary>
    public void Save(string path, Action<string> save)
    {
        var tmp = AtomicFile.TemporaryPath(path);
        try
        {
            save(tmp);
            if (AtomicFile.MoveNew(tmp, path)) return;
            for (int i = 1; ; i++)
            {
                var kept = i == 1 ? path + ".new" : $"{path}.new{i}";
                if (AtomicFile.MoveNew(tmp, kept))
                    throw new CliException($"--out {path} was created by something else while this command ran, and it is never overwritten: " +
                                           $"the trained model was written to {kept} instead. Rename it, or move the other file away first.");
            }
        }
        finally
        {
            try { if (File.Exists(tmp)) File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    public int BatchSize(ParseResult p) => p.GetValue(batch);
    public double LearningRate(ParseResult p) => p.GetValue(lr);
    public int Seed(ParseResult p) => p.GetValue(seed);

    /// <summary>--steps, --batch-size, --lr and --seed as a run's options, with a warm-up of a tenth of the run (at most 100 steps).</summary>
    public TrainingOptions Training(ParseResult p)
    {
        int n = p.GetValue(steps ?? throw new InvalidOperationException($"{command} counts epochs, not steps"));
        return new TrainingOptions { Steps = n, BatchSize = BatchSize(p), LearningRate = LearningRate(p), WarmupSteps = Math.Min(100, n / 10), Seed = Seed(p) };
    }

    /// <summary>"train-clip --steps 10 …": the command line as typed, stored in the file it writes.</summary>
    public string CommandLine() => command + " " + string.Join(" ", Environment.GetCommandLineArgs().Skip(2));
}

/// <summary>
/// What the commands that draw with a text-to-image model share (generate, eval-text2img), declared once: --model (which
/// shipped model is the default, checked against the file), --checkpoint, --sampler (DPM-Solver++ for the mini SD1, Euler
/// for the mini SD3 by default), --steps, --shift (the mini SD3's) and --seed.
/// </summary>
sealed class TextToImageOptions
{
    /// <summary>--model: which miniature Stable Diffusion (the file says which it holds; this picks the default file and is checked against it).</summary>
    public static Option<string> ModelOption(string description) => Choice("--model", description, "sd1", ("sd1", "sd1"), ("sd3", "sd3"));

    /// <summary>The kind --model names.</summary>
    public static TextToImageKind Kind(ParseResult p, Option<string> option) => p.GetValue(option) == "sd3" ? TextToImageKind.Sd3 : TextToImageKind.Sd1;

    /// <summary>"sd1" / "sd3", as the command line spells the kinds.</summary>
    public static string Name(TextToImageKind kind) => kind == TextToImageKind.Sd3 ? "sd3" : "sd1";

    readonly Option<string> model = ModelOption("Which miniature Stable Diffusion: sd1 (latent U-Net, DDPM) or sd3 (MMDiT, rectified flow); " +
        "picks the default --checkpoint, and must match the file's");
    readonly Option<string?> checkpoint = OptionalOpt<string>("--checkpoint", $"Text-to-image model file (default: data/checkpoints/{TextToImageFile.ShippedFileName}, " +
        $"with --model sd3 data/checkpoints/{TextToImageFile.ShippedSd3FileName})");
    readonly Option<string> sampler = Choice("--sampler", "Sampler: for the mini SD1 DPM-Solver++ (default), DDIM or DDPM; for the mini SD3 Euler (default) or Heun on the flow ODE",
        "dpm++", SamplerSpec.Names.Concat(TextToImageSampler.FlowKinds).Select(n => (n, n)).ToArray());
    readonly Option<int> steps = Opt("--steps", "Sampler steps (default: the sampler's own, 20 for dpm++ and euler)", 20).Range(1, 100000);
    readonly Option<double> shift = Opt("--shift", "Timestep shift of the mini SD3's flow solver (1 = evenly spaced t; SD3 uses 3 at 1024²)", 1.0).Range(0.01, 100);
    readonly Option<int> seed = SeedOption.Create("the sampling noise");

    public TextToImageOptions(Command command)
    {
        foreach (var option in new Option[] { model, checkpoint, sampler, steps, shift, seed }) command.Options.Add(option);
    }

    /// <summary>--checkpoint, or the shipped file of --model next to the located data/fashion-mnist (relative, if there is none).</summary>
    public string File(ParseResult p)
    {
        if (p.GetValue(checkpoint) is { } given) return given;
        var name = TextToImageFile.ShippedFile(Kind(p, model));
        try
        {
            return Path.Combine(Path.GetDirectoryName(DataLocator.FashionMnistFolder())!, "checkpoints", name);
        }
        catch (CliException)
        {
            return Path.Combine("data", "checkpoints", name);
        }
    }

    /// <summary>The model of <see cref="File"/> on <paramref name="device"/>, checked against --model. Dispose it.</summary>
    public TextToImageModel Load(ParseResult p, Device device)
    {
        var file = File(p);
        var loaded = TextToImageFile.Load(file, device);
        if (p.Given(model) && Kind(p, model) != loaded.Info.Kind)
        {
            var kind = loaded.Info.Kind;
            loaded.Dispose();
            throw new CliException($"--model {Name(Kind(p, model))}: {file} holds {TextToImageKindText(kind)}; give --model {Name(kind)} or leave --model out.");
        }
        return loaded;
    }

    static string TextToImageKindText(TextToImageKind kind) => kind == TextToImageKind.Sd3 ? "a mini SD3 (sd3)" : "a mini SD1 (sd1)";

    /// <summary>
    /// The sampler --sampler, --steps and --shift ask for, checked against the model. The mini SD1 takes DDPM, DDIM or
    /// DPM-Solver++ (its notes printed); latents are not bounded to [−1, 1]: x̂_0 is kept within their range by the model
    /// (LatentSpace.ClipStart) instead of the sampler's clip. The mini SD3 takes Euler or Heun.
    /// </summary>
    public TextToImageSampler Spec(ParseResult p, TextToImageModel model)
    {
        var name = p.GetValue(sampler)!;
        bool flowKind = TextToImageSampler.FlowKinds.Contains(name, StringComparer.OrdinalIgnoreCase);
        if (model.Info.Kind == TextToImageKind.Sd3)
        {
            if (p.Given(sampler) && !flowKind)
                throw new CliException($"--sampler {name}: {File(p)} is a mini SD3, a rectified flow; draw it with --sampler euler or heun.");
            return TextToImageSampler.Flow(flowKind ? name : "euler", p.GetValue(steps), p.GetValue(shift));
        }
        if (flowKind)
            throw new CliException($"--sampler {name}: {File(p)} is a mini SD1 (DDPM); draw it with --sampler {string.Join(", ", SamplerSpec.Names)}, or pass a mini SD3 file.");
        if (p.Given(shift))
            throw new CliException($"--shift: {File(p)} is a mini SD1 (DDPM); the timestep shift is for the mini SD3's flow solver. Leave --shift out.");
        var kind = SamplerSpec.Parse(name);
        return (kind with { Steps = p.Given(steps) ? p.GetValue(steps) : kind.Steps, Clip = false }).Validate(model.Info.Diffusion.Timesteps, model.Info.Diffusion.Variance == VarianceType.Learned, Console.WriteLine);
    }

    public int Seed(ParseResult p) => p.GetValue(seed);
}
