using Diffusion.Model;

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
    public (Unet Model, CheckpointInfo Info, string Path) Load(ParseResult p, Device device)
    {
        var path = File(p);
        var (model, info) = Checkpoint.LoadModel(path, preferEma: rawWeights is null || !p.GetValue(rawWeights), device);
        return (model, info, path);
    }
}
