using Diffusion.Cli;

// diffusion CLI: thin wiring of the library — parse, call, report. Every failure is one clear line and a non-zero exit.
var root = new RootCommand(
    "Train a DDPM on Fashion-MNIST (or your own images) and sample from it. Part of the C# diffusion course.");
root.Subcommands.Add(TrainCommand.Create());
root.Subcommands.Add(SampleCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(SolutionsCommand.Create());
root.Subcommands.Add(BpdCommand.Create());
root.Subcommands.Add(TrainClassifierCommand.Create());
root.Subcommands.Add(EvalCommand.Create());
root.Subcommands.Add(InteropCommands.Export());
root.Subcommands.Add(InteropCommands.Import());
root.Subcommands.Add(LatentCommand.Create());
root.Subcommands.Add(TrainClipCommand.Create());
root.Subcommands.Add(TrainTextToImageCommand.Create());
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(EvalTextToImageCommand.Create());
Parsing.RequireFiniteNumbers(root);
// A command line that does not parse is one error line (the first problem, naming the option and its value) and exit 2;
// the help is printed only when asked for (--help).
int exitCode = CliErrors.Run(() =>
{
    var parsed = root.Parse(args);
    if (parsed.Errors.Count > 0)
    {
        Console.Error.WriteLine($"error: {Parsing.Describe(parsed)}");
        return CliErrors.BadInput;
    }
    return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
});
// For the leak tests: tensors this thread created and did not dispose (a finalizer's late release does not count).
if (Environment.GetEnvironmentVariable("DIFFUSION_REPORT_LIVE_TENSORS") == "1")
    Console.Error.WriteLine($"live tensors: {TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount}");
// For the allocator test: page faults of the whole run (NativeAllocator keeps freed tensor memory instead of faulting it in again).
if (Environment.GetEnvironmentVariable("DIFFUSION_REPORT_PAGE_FAULTS") == "1" && File.Exists("/proc/self/stat"))
{
    var stat = File.ReadAllText("/proc/self/stat");
    Console.Error.WriteLine($"minor page faults: {stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[7]}");   // state ppid pgrp session tty tpgid flags minflt
}
return exitCode;
