using System.Diagnostics;
using System.Text.RegularExpressions;
using Diffusion.Platform;

namespace Diffusion.Tests;

/// <summary>
/// The automatic thread count sees through <c>dotnet run</c>: the processes that launched the CLI (and their build
/// children) are not "other processes", however busy they are while it starts.
/// </summary>
public class ThreadChoiceTests
{
    [Fact]
    public void CliStartedThroughDotnetRunUsesTheCoresOthersLeaveFree()
    {
        if (!OperatingSystem.IsLinux() || Environment.ProcessorCount < 2) return;
        int cores = Environment.ProcessorCount;
        using var dir = TestSetup.Temp();
        var psi = new ProcessStartInfo("dotnet") { WorkingDirectory = TestSetup.RepoRoot, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "run", "-c", "Release", "--project", "lib/Diffusion.Cli", "--", "train", "--out", dir["run"],
                     "--steps", "1", "--batch-size", "2", "--dim", "8", "--dim-mults", "1,2", "--attention-levels", "1",
                     "--timesteps", "20", "--samples", "0" })
            psi.ArgumentList.Add(a);
        psi.Environment["DIFFUSION_DATA_DIR"] = Path.Combine(TestSetup.RepoRoot, "data");

        // This test process is one of the CLI's launchers: keep one core busy in it while the CLI measures the load.
        // Without seeing through its launchers the CLI would count that core (and dotnet run's own work) as taken.
        using var stop = new CancellationTokenSource();
        var spinner = new Thread(() => { while (!stop.IsCancellationRequested) Thread.SpinWait(1000); }) { IsBackground = true };
        var before = CpuLoad.Sample(withOwnChildren: true);
        spinner.Start();
        var (code, stdout, stderr) = RunToEnd(psi);
        Assert.True(code == 0, stdout + stderr);
        stop.Cancel();
        spinner.Join();
        var after = CpuLoad.Sample(withOwnChildren: true);
        // What processes outside this test's whole tree did meanwhile: the load the CLI should have seen.
        double strangers = CpuLoad.OtherBusyCores(before, after, cores);

        var m = Regex.Match(stdout, @"threads: (\d+) \(auto: other processes keep ([\d.]+) of (\d+) cores busy\)");
        Assert.True(m.Success, "no automatic thread line in:\n" + stdout);
        int threads = int.Parse(m.Groups[1].Value);
        double seen = double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(seen < strangers + 0.6,
            $"the CLI counted {seen:F1} busy cores; processes outside its launchers kept only {strangers:F2} busy (spinning launcher counted as load?)\n{stdout}");
        if (strangers < 0.3)
            Assert.True(threads == cores, $"an otherwise idle {cores}-core machine, but the CLI chose {threads} threads:\n{stdout}");
    }

    static (int Code, string Out, string Err) RunToEnd(ProcessStartInfo psi)
    {
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5))) { p.Kill(true); throw new TimeoutException("dotnet run … train did not finish in 5 minutes"); }
        return (p.ExitCode, o.Result, e.Result);
    }

    [Fact]
    public void RecheckRaisesTheCountWhenTheMachineIsFreeAndNeverTouchesAFixedCount()
    {
        if (!OperatingSystem.IsLinux() || Environment.ProcessorCount < 2) return;
        int old = TorchSharp.torch.get_num_threads();
        try
        {
            Compute.SetThreads(1);
            Assert.Null(Compute.RecheckThreads(everySeconds: 0));                      // fixed by the user: never changed
            Assert.Equal(1, TorchSharp.torch.get_num_threads());

            Compute.SetThreads(null);
            // Pretend the first choice was 1 thread (as under a busy launcher), then work on this thread for a while.
            TorchSharp.torch.set_num_threads(1);
            Compute.Threads = 1;
            var sw = Stopwatch.StartNew();
            while (sw.ElapsedMilliseconds < 600) Thread.SpinWait(1000);                 // our own work: not "other" load
            var line = Compute.RecheckThreads(everySeconds: 0);
            if (Compute.OtherProcessesBusyCores < 0.3)
            {
                Assert.NotNull(line);
                Assert.Contains("threads: 1 → ", line);
                Assert.Equal(Compute.Threads, TorchSharp.torch.get_num_threads());
                Assert.True(Compute.Threads > 1);
            }
        }
        finally
        {
            Compute.SetThreads(old);
        }
    }
}
