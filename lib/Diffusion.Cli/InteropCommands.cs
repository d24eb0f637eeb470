using Diffusion.Interop;

namespace Diffusion.Cli;

/// <summary><c>export</c> and <c>import</c>: a checkpoint's weights to and from PyTorch files (.pt state_dict, .safetensors).</summary>
static class InteropCommands
{

    public static Command Export()
    {
        var format = Choice("--format", "pt: torch.load-able state_dict; safetensors: header + raw bytes (carries the configuration)",
            WeightsFormat.Safetensors, ("pt", WeightsFormat.PyTorch), ("safetensors", WeightsFormat.Safetensors));
        var output = OptionalOpt<string>("--out", "Output file (default: next to the checkpoint, <name>.pt or <name>.safetensors); never overwritten");

        var cmd = new Command("export", "Write a checkpoint's (EMA) weights as a PyTorch state_dict (.pt) or .safetensors file.")
        {
            format, output,
        };
        var checkpoint = new CheckpointOptions(cmd, rawWeights: false);
        cmd.SetAction(p =>
        {
            var path = checkpoint.File(p);
            var fmt = p.GetValue(format);
            var ext = fmt == WeightsFormat.PyTorch ? ".pt" : ".safetensors";
            var outPath = p.GetValue(output) ?? Path.ChangeExtension(path, ext);
            if (PyTorchWeights.FormatOf(outPath) != fmt)
                throw new CliException($"--out {outPath} does not end in {ext}, but --format asks for {(fmt == WeightsFormat.PyTorch ? "pt" : "safetensors")}. " +
                                       $"Name the file *{ext} or change --format.");
            var watch = Stopwatch.StartNew();
            var config = PyTorchWeights.ExportCheckpoint(path, outPath, fmt);
            var u = config.Unet;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {outPath} ({new FileInfo(outPath).Length:N0} bytes) in {watch.Elapsed.TotalSeconds:F2} s"));
            Console.WriteLine("In PyTorch (docs/pytorch/course_unet.py):");
            Console.WriteLine($"  model = Unet({PythonArguments(u)})");
            Console.WriteLine(fmt == WeightsFormat.PyTorch
                ? $"  model.load_state_dict(torch.load(\"{Path.GetFileName(outPath)}\", weights_only=True), strict=True)"
                : $"  model.load_state_dict(safetensors.torch.load_file(\"{Path.GetFileName(outPath)}\"), strict=True)");
            Console.WriteLine($"  schedule: {config.Schedule} T={config.Timesteps}, prediction {config.Prediction}, image {config.ImageSize}x{config.ImageSize}");
            return 0;
        });
        return cmd;
    }

    /// <summary>The keyword arguments of course_unet.Unet that build the same network.</summary>
    internal static string PythonArguments(Model.UnetConfig u)
    {
        static string Tuple(IEnumerable<int> xs) { var a = xs.ToArray(); return "(" + string.Join(", ", a) + (a.Length == 1 ? ",)" : ")"); }
        var args = new List<string> { $"dim={u.Dim}" };
        if (u.InitDim is { } i) args.Add($"init_dim={i}");
        if (u.OutDim is { } o) args.Add($"out_dim={o}");
        args.Add($"dim_mults={Tuple(u.DimMults)}");
        args.Add($"channels={u.Channels}");
        args.Add($"resnet_block_groups={u.ResnetBlockGroups}");
        if (u.Block == Model.BlockType.ConvNext) args.Add($"block=\"convnext\", convnext_mult={u.ConvNextMult}");
        if (u.AttentionHeads != 4 || u.AttentionDimHead != 32) args.Add($"heads={u.AttentionHeads}, dim_head={u.AttentionDimHead}");
        args.Add($"linear_attention_levels={(u.LinearAttentionLevels is null ? "None" : Tuple(u.LinearAttentionLevels))}");
        if (u.NumClasses > 0) args.Add($"num_classes={u.NumClasses}");
        return string.Join(", ", args);
    }

    public static Command Import()
    {
        var weights = OptionalOpt<string>("--weights", "A .pt (torch.save of a state_dict) or .safetensors file (required)");
        var like = OptionalOpt<string>("--like",
            "Checkpoint (or run folder) whose configuration builds the network; optional for .safetensors files exported by this course");
        var output = OptionalOpt<string>("--out", "The new checkpoint file (required; never overwritten)");

        var cmd = new Command("import", "Load PyTorch weights (.pt or .safetensors) into the course's U-Net and write a checkpoint for 'sample'.")
        {
            weights, like, output,
        };
        cmd.SetAction(p =>
        {
            var weightsPath = p.GetValue(weights)
                ?? throw new CliException("--weights is required: the .pt or .safetensors file to import (e.g. --weights my-unet.pt).");
            var outPath = p.GetValue(output)
                ?? throw new CliException("--out is required: the checkpoint file to write (e.g. --out runs/imported.ckpt).");
            PyTorchWeights.FormatOf(weightsPath);
            if (!File.Exists(weightsPath))
                throw new CliException($"--weights {weightsPath} not found. Export one with: export --checkpoint <ckpt> --format pt|safetensors --out <file>.");
            if (File.Exists(outPath) || Directory.Exists(outPath))
                throw new CliException($"--out {outPath} already exists; it is not overwritten. Choose another --out or delete the file first.");
            var (config, template, fix) = ImportTarget(weightsPath, p.GetValue(like));
            var watch = Stopwatch.StartNew();
            PyTorchWeights.ImportToCheckpoint(weightsPath, config, template, outPath, fix);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {outPath} ({new FileInfo(outPath).Length:N0} bytes) in {watch.Elapsed.TotalSeconds:F2} s: every key and shape matched " +
                $"Unet({PythonArguments(config.Unet)}); sample from it with: sample --checkpoint {outPath}"));
            return 0;
        });
        return cmd;
    }

    /// <summary>
    /// The configuration that builds the network for imported weights: --like's checkpoint (which also gives the new
    /// checkpoint its template), or a course-exported .safetensors file's own metadata; and the fix to name when the
    /// weights do not fit it.
    /// </summary>
    static (DiffusionModelConfig Config, CheckpointInfo? Template, string Fix) ImportTarget(string weightsPath, string? likePath)
    {
        if (likePath is not null)
        {
            var template = Checkpoint.ReadInfo(CheckpointFile(likePath));
            var config = template.Model;
            if (PyTorchWeights.FormatOf(weightsPath) == WeightsFormat.Safetensors
                && PyTorchWeights.ConfigFrom(SafetensorsFile.ReadHeader(InputFile.ReadAllBytes(weightsPath, InputFile.MaxModelFileBytes, "safetensors file"), weightsPath).Metadata, weightsPath) is { } own
                && own.DifferencesFrom(config) is { Count: > 0 } differences)
                Console.WriteLine($"note: {weightsPath} was exported with other settings than --like ({string.Join("; ", differences)}); using --like's.");
            return (config, template, $"Pass --like a checkpoint whose U-Net matches the one the weights came from (this one: Unet({PythonArguments(config.Unet)})), " +
                  "or build the PyTorch model with those options (docs/pytorch/course_unet.py).");
        }
        if (PyTorchWeights.FormatOf(weightsPath) != WeightsFormat.Safetensors)
            throw new CliException($"--like is needed for {weightsPath}: a .pt state_dict does not say which network it belongs to. " +
                                   "Pass --like <checkpoint or run folder> trained with the same U-Net options.");
        var header = SafetensorsFile.ReadHeader(InputFile.ReadAllBytes(weightsPath, InputFile.MaxModelFileBytes, "safetensors file"), weightsPath);
        var fromFile = PyTorchWeights.ConfigFrom(header.Metadata, weightsPath)
                  ?? throw new CliException($"{weightsPath} carries no '{PyTorchWeights.ConfigMetadataKey}' metadata (it was not exported by this course). " +
                                           "Pass --like <checkpoint or run folder> trained with the same U-Net options.");
        fromFile.Validate();
        return (fromFile, null, "The file's own configuration metadata does not match its tensors; pass --like <checkpoint> with the right U-Net options.");
    }
}
