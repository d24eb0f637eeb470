using System.Diagnostics;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace Diffusion.Tests;

/// <summary>Crashes, full disks, foreign or damaged files and hostile inputs: one clear error, nothing lost.</summary>
public class FaultTests
{
    static readonly string[] KillRun =
        ["train", "--steps", "30", "--batch-size", "4", "--dim", "8", "--dim-mults", "1,2", "--attention-levels", "1",
         "--timesteps", "20", "--checkpoint-every", "1", "--samples", "0", "--seed", "5", "--threads", "1"];

    static float[] Weights(string checkpoint)
    {
        var (model, _) = Checkpoint.LoadModel(checkpoint, preferEma: false);
        using (model) return model.parameters().SelectMany(p => p.detach().flatten().data<float>().ToArray()).ToArray();
    }

    [Fact]
    public void TrainingKilledAtRandomMomentsAlwaysLeavesALoadableCheckpointAndResumesExactly()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        var dll = Path.Combine(AppContext.BaseDirectory, "Diffusion.Cli.dll");
        var rng = new Random(2024);
        int kills = 0, lastStep = 0;
        for (int attempt = 0; attempt < 8 && lastStep < 30; attempt++)
        {
            bool resume = File.Exists(Path.Combine(run, "checkpoint.ckpt"));
            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            psi.ArgumentList.Add(dll);
            foreach (var a in KillRun) psi.ArgumentList.Add(a);
            psi.ArgumentList.Add("--out");
            psi.ArgumentList.Add(run);
            if (resume) psi.ArgumentList.Add("--resume");
            psi.Environment["DIFFUSION_DATA_DIR"] = Path.Combine(TestSetup.RepoRoot, "data");
            // SIGKILL at a random moment: during start-up, a training step or a checkpoint write. The moment is
            // chosen from the run's own progress lines (not wall-clock time, which depends on the machine): wait for a
            // random step, then a random few milliseconds more, so kills land inside steps and inside writes.
            int killAfterStep = attempt == 0 ? 0 : lastStep + rng.Next(1, 8);
            int extraDelayMs = rng.Next(0, 250);
            using var reached = new ManualResetEventSlim(killAfterStep == 0);
            using var p = new Process { StartInfo = psi };
            p.OutputDataReceived += (_, e) =>
            {
                // Non-interactive progress lines look like "training 7/30 (23%) ...".
                var m = e.Data is null ? null : System.Text.RegularExpressions.Regex.Match(e.Data, @"^training (\d+)/");
                if (m is { Success: true } && int.Parse(m.Groups[1].Value) >= killAfterStep) reached.Set();
            };
            var stderr = new System.Text.StringBuilder();
            p.ErrorDataReceived += (_, e) => { lock (stderr) stderr.AppendLine(e.Data); };
            p.Start();
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            var exited = Task.Run(() => p.WaitForExit());
            WaitHandle.WaitAny([reached.WaitHandle, ((IAsyncResult)exited).AsyncWaitHandle], TimeSpan.FromMinutes(2));
            if (attempt == 0) extraDelayMs += 300;                          // the first kill lands during start-up
            if (!p.WaitForExit(extraDelayMs))
            {
                p.Kill();                                                   // SIGKILL on Linux: no chance to clean up
                p.WaitForExit();
                kills++;
            }
            var checkpoint = Path.Combine(run, "checkpoint.ckpt");
            if (File.Exists(checkpoint))
            {
                var info = Checkpoint.ReadInfo(checkpoint);                  // verifies the SHA-256: never torn
                Assert.InRange(info.Step, lastStep, 30);
                lastStep = info.Step;
            }
            // The loss log as the kill left it: whole rows with strictly increasing steps; only the last line may be torn
            // (the next --resume drops it).
            var log = Path.Combine(run, "loss.csv");
            if (File.Exists(log))
            {
                var rows = File.ReadAllLines(log).Skip(1).Where(l => l.Length > 0).ToList();
                int previous = 0;
                for (int i = 0; i < rows.Count; i++)
                {
                    var fields = rows[i].Split(',');
                    bool whole = fields.Length == 5 && int.TryParse(fields[0], out var step) && step > previous && (previous = step) > 0;
                    Assert.True(whole || i == rows.Count - 1, $"loss.csv row {i + 1} after a kill: '{rows[i]}'");
                }
            }
            Console.WriteLine($"attempt {attempt}: kill after step {killAfterStep} + {extraDelayMs} ms; killed: {kills}; checkpoint at step {lastStep}; exit {(p.HasExited ? p.ExitCode : -1)} {stderr}");
        }
        Assert.True(kills >= 4, $"only {kills} runs were killed; the test did not exercise crashes");

        // Finish the run, then compare with one that was never interrupted.
        var finish = Cli.Run(dir.Path, [.. KillRun, "--out", run, .. (File.Exists(Path.Combine(run, "checkpoint.ckpt")) ? new[] { "--resume" } : [])]);
        Assert.True(finish.ExitCode == 0, finish.All);
        Assert.Empty(Directory.GetFiles(run, ".*.tmp"));                     // leftovers of killed writes were cleaned
        var straight = Cli.Run(dir.Path, [.. KillRun, "--out", dir["straight"]]);
        Assert.True(straight.ExitCode == 0, straight.All);
        Assert.Equal(Weights(Path.Combine(dir["straight"], "checkpoint.ckpt")), Weights(Path.Combine(run, "checkpoint.ckpt")));
        var steps = File.ReadAllLines(Path.Combine(run, "loss.csv")).Skip(1).Select(l => int.Parse(l.Split(',')[0])).ToArray();
        Assert.Equal(Enumerable.Range(1, 30), steps);
    }

    [Fact]
    public void AFailedWriteLeavesTheOldFileIntactAndNoTemporaryFile()
    {
        using var dir = TestSetup.Temp();
        var path = dir["file.bin"];
        AtomicFile.WriteAllBytes(path, [1, 2, 3]);
        var e = Assert.Throws<IOException>(() => AtomicFile.Write(path, s =>
        {
            s.Write(new byte[1000]);
            throw new IOException("No space left on device");
        }));
        Assert.Contains("No space left", e.Message);
        Assert.Equal(new byte[] { 1, 2, 3 }, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void DiskFullDuringACheckpointKeepsThePreviousCheckpoint()
    {
        using var dir = TestSetup.Temp();
        var mountPoint = dir["small-disk"];
        Directory.CreateDirectory(mountPoint);
        // A 1.6 MB disk: the first checkpoint (≈1 MB) fits, writing the second beside it does not.
        var mount = Process.Start(new ProcessStartInfo("mount", $"-t tmpfs -o size=1600k tmpfs {mountPoint}") { RedirectStandardError = true })!;
        mount.WaitForExit();
        if (mount.ExitCode != 0)
        {
            // No permission to mount here: the same guarantee is covered in-process by
            // AFailedWriteLeavesTheOldFileIntactAndNoTemporaryFile. Say so instead of pretending.
            Console.WriteLine("DiskFull test: cannot mount a tmpfs (" + mount.StandardError.ReadToEnd().Trim() + ")");
            return;
        }
        try
        {
            var run = Path.Combine(mountPoint, "run");
            var r = Cli.Run(dir.Path, "train", "--steps", "6", "--batch-size", "4", "--dim", "8", "--dim-mults", "1,2",
                "--attention-levels", "1", "--timesteps", "20", "--checkpoint-every", "1", "--samples", "0", "--out", run);
            Assert.Equal(2, r.ExitCode);
            Assert.Contains("disk is full", r.Stderr);
            Assert.DoesNotContain("   at ", r.Stderr);
            var info = Checkpoint.ReadInfo(Path.Combine(run, "checkpoint.ckpt"));   // the last good one, intact
            Assert.InRange(info.Step, 1, 5);
            Assert.Empty(Directory.GetFiles(run, ".*.tmp"));
        }
        finally
        {
            Process.Start("umount", mountPoint)!.WaitForExit();
        }
    }

    [Fact]
    public void AnOutputFolderThatCannotBeCreatedIsAClearError()
    {
        using var dir = TestSetup.Temp();
        File.WriteAllText(dir["a-file"], "not a folder");
        var r = Cli.Run(dir.Path, "train", "--steps", "1", "--batch-size", "4", "--dim", "8", "--dim-mults", "1,2",
            "--out", Path.Combine(dir["a-file"], "run"));
        Assert.Equal(2, r.ExitCode);
        Assert.StartsWith("error:", r.Stderr.Trim());
        Assert.Contains("a-file", r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Fact]
    public void ACheckpointWhoseWeightsDoNotFitItsConfigurationIsRejected()
    {
        using var dir = TestSetup.Temp();
        using var data = TrainingTests.TinyData();
        using (var trainer = new Trainer(TrainingTests.TinyModel(), new TrainingOptions { Steps = 1, BatchSize = 4 }, data, dir.Path))
            trainer.Train();
        var parts = Checkpoint.Load(Path.Combine(dir.Path, Trainer.CheckpointFileName));
        // Same weights, but a description that claims another network (as if files were mixed up).
        var lying = parts with { Info = parts.Info with { Model = parts.Info.Model with { Unet = parts.Info.Model.Unet with { Dim = 16 } } } };
        Checkpoint.Save(dir["lying.ckpt"], lying);
        Assert.Contains("do not fit", Assert.Throws<CheckpointException>(() => Checkpoint.LoadModel(dir["lying.ckpt"])).Message);
        var r = Cli.Run(dir.Path, "sample", "--checkpoint", dir["lying.ckpt"], "--count", "2");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("do not fit the network", r.Stderr);
        Assert.False(File.Exists(dir["samples.png"]));
    }

    [Fact]
    public void FloatDataWithNaNIsRefusedClearly()
    {
        // IDX files can hold float32 (type 0x0D), and a float file can hold NaN. The course reads pixels as bytes only.
        using var dir = TestSetup.Temp();
        var bytes = new List<byte> { 0, 0, 0x0D, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2 };
        foreach (var v in new[] { 0.5f, float.NaN, 1f, 0f }) bytes.AddRange(BitConverter.GetBytes(v).Reverse());
        File.WriteAllBytes(dir["nan.idx"], bytes.ToArray());
        var r = Cli.Run(dir.Path, "train", "--data", dir["nan.idx"], "--steps", "1", "--out", dir["run"]);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("type 0x0D (float32)", r.Stderr);
        // And NaN cannot sneak in through the API either (float32 data is accepted only when finite: latents, notebook 10).
        Assert.Contains("uint8", Assert.Throws<ArgumentException>(() =>
            new ImageDataset(tensor(new[] { float.NaN }).reshape(1, 1, 1, 1), null, [], "nan")).Message);
    }

    [Fact]
    public void EmptyAndMixedSizeImageFoldersAreClearErrors()
    {
        using var dir = TestSetup.Temp();
        Directory.CreateDirectory(dir["empty"]);
        var empty = Cli.Run(dir.Path, "train", "--data", dir["empty"], "--steps", "1", "--out", dir["run"]);
        Assert.Equal(2, empty.ExitCode);
        Assert.Contains("no images found", empty.Stderr);

        Directory.CreateDirectory(dir["mixed"]);
        using (var a = new Image<Rgb24>(16, 16)) a.SaveAsPng(dir["mixed/a.png"]);
        using (var b = new Image<Rgb24>(24, 24)) b.SaveAsPng(dir["mixed/b.png"]);
        var mixed = Cli.Run(dir.Path, "train", "--data", dir["mixed"], "--steps", "1", "--out", dir["run"]);
        Assert.Equal(2, mixed.ExitCode);
        Assert.Contains("different sizes", mixed.Stderr);
        Assert.Contains("--image-size", mixed.Stderr);
        Assert.False(Directory.Exists(dir["run"]) && Directory.EnumerateFiles(dir["run"]).Any());

        // With --image-size the same folder trains.
        var resized = Cli.Run(dir.Path, "train", "--data", dir["mixed"], "--image-size", "16", "--channels", "1", "--steps", "1",
            "--batch-size", "2", "--dim", "8", "--dim-mults", "1,2", "--samples", "0", "--out", dir["run"]);
        Assert.True(resized.ExitCode == 0, resized.All);
    }

    [Fact]
    public void SquareImagesOfOneSizeAreUsedAsTheyAre()
    {
        using var dir = TestSetup.Temp();
        for (int i = 0; i < 3; i++)
            using (var im = new Image<Rgb24>(12, 12, new Rgb24((byte)(i * 100), 0, 0))) im.SaveAsPng(dir[$"{i}.png"]);
        using var ds = ImageDataset.FromImageFolder(dir.Path);
        Assert.Equal(new long[] { 3, 3, 12, 12 }, ds.Images.shape);
        Assert.Equal(200, ds.Images[2, 0, 5, 5].item<byte>());
        File.Copy(dir["0.png"], dir["3.png"]);
        using (var wide = new Image<Rgb24>(20, 10)) wide.SaveAsPng(dir["0.png"]);
        Assert.Contains("different sizes", Assert.Throws<DataFormatException>(() => ImageDataset.FromImageFolder(dir.Path)).Message);
    }

    [Fact]
    public async Task IdxReaderSurvivesThousandsOfRandomAndMutatedFiles()
    {
        var rng = new Random(12345);
        // A valid seed file to mutate: 5 images of 6×7 with labels.
        var valid = new List<byte> { 0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 7 };
        valid.AddRange(Enumerable.Range(0, 5 * 6 * 7).Select(i => (byte)i));
        byte[] Gzip(byte[] raw)
        {
            using var ms = new MemoryStream();
            using (var gz = new System.IO.Compression.GZipStream(ms, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true)) gz.Write(raw);
            return ms.ToArray();
        }
        var seeds = new[] { valid.ToArray(), Gzip(valid.ToArray()) };
        int ok = 0, rejected = 0;
        long worstAllocation = 0;
        for (int i = 0; i < 3000; i++)
        {
            byte[] input;
            switch (i % 4)
            {
                case 0:                                                          // random bytes
                    input = new byte[rng.Next(0, 300)];
                    rng.NextBytes(input);
                    break;
                case 1:                                                          // flipped bytes
                {
                    input = (byte[])seeds[rng.Next(2)].Clone();
                    for (int k = rng.Next(1, 4); k > 0; k--) input[rng.Next(input.Length)] ^= (byte)rng.Next(1, 256);
                    break;
                }
                case 2:                                                          // truncated or extended
                {
                    var s = seeds[rng.Next(2)];
                    input = rng.Next(2) == 0 ? s[..rng.Next(s.Length)] : [.. s, .. Enumerable.Repeat((byte)rng.Next(256), rng.Next(1, 50))];
                    break;
                }
                default:                                                         // a lying header: huge dimensions
                {
                    input = (byte[])valid.ToArray().Clone();
                    int at = 4 + 4 * rng.Next(3);
                    input[at] = (byte)rng.Next(0, 128);
                    input[at + 1] = (byte)rng.Next(256);
                    if (rng.Next(2) == 0) input = Gzip(input);
                    break;
                }
            }
            long before = GC.GetTotalAllocatedBytes(precise: true);
            var task = Task.Run(() =>
            {
                try
                {
                    var a = IdxFile.Read(new MemoryStream(input), $"case {i}");
                    Assert.Equal(a.Dimensions.Aggregate(1L, (x, y) => x * y), a.Data.LongLength);
                    return true;
                }
                catch (DataFormatException e)
                {
                    Assert.Contains($"case {i}", e.Message);
                    return false;
                }
            });
            bool accepted;
            try { accepted = await task.WaitAsync(TimeSpan.FromSeconds(10)); }
            catch (TimeoutException) { Assert.Fail($"case {i} hung"); throw; }
            if (accepted) ok++; else rejected++;
            worstAllocation = Math.Max(worstAllocation, GC.GetTotalAllocatedBytes(precise: true) - before);
        }
        Assert.True(ok > 10 && rejected > 1000, $"{ok} accepted, {rejected} rejected: the mutations did not cover both outcomes");
        // A lying header never makes the reader allocate more than the file holds (plus a 1 MB read buffer).
        Assert.True(worstAllocation < 8_000_000, $"a case allocated {worstAllocation} bytes");
    }

    [Fact]
    public void TheAtomicWriterNeverReplacesADeviceOrFifo()
    {
        using var dir = TestSetup.Temp();
        var fifo = dir["pipe"];
        Process.Start("mkfifo", fifo)!.WaitForExit();
        var e = Assert.Throws<IOException>(() => AtomicFile.WriteAllText(fifo, "text"));
        Assert.Contains("FIFO", e.Message);
        Assert.Equal("a FIFO (named pipe)", InputFile.SpecialKind(fifo));             // still the FIFO
        Assert.Single(Directory.GetFileSystemEntries(dir.Path));                        // and no temporary file beside it
    }

    [Fact]
    public void TheLossLogDropsATornLastRowAndRowsThatRepeatAStep()
    {
        using var dir = TestSetup.Temp();
        var path = dir["loss.csv"];
        var header = "step,loss,learning_rate,images_per_second,elapsed_seconds";
        string Row(int step) => $"{step},0.5,0.001,10.00,{step}.00";
        // Rows 1..5, a repeated step 3 (a resumed run that wrote over an old log), and a row torn by a crash mid-write.
        File.WriteAllText(path, string.Join('\n', [header, Row(1), Row(2), Row(3), Row(3), Row(4), Row(5), "6,0.4"]));
        using (new LossLog(dir.Path, step: 6)) { }
        Assert.Equal([header, Row(1), Row(2), Row(3), Row(4), Row(5)], File.ReadAllLines(path));
        File.WriteAllText(path, string.Join('\n', [header, Row(1), Row(2), "3,"]));
        using (new LossLog(dir.Path, step: 3)) { }
        Assert.Equal([header, Row(1), Row(2)], File.ReadAllLines(path));
    }

    [Fact]
    public void CtrlCSavesTheCheckpointAndExits130()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        using var training = new RunFolderTests.Background(["train", "--steps", "400", "--batch-size", "4", "--dim", "8", "--dim-mults", "1,2",
            "--attention-levels", "1", "--timesteps", "20", "--checkpoint-every", "100", "--samples", "0", "--threads", "1", "--out", run]);
        training.WaitForStep(3);
        Process.Start("kill", $"-INT {training.Process.Id}")!.WaitForExit();    // what Ctrl+C sends
        Assert.True(training.Process.WaitForExit(TimeSpan.FromMinutes(1)), training.Output);
        training.Process.WaitForExit();
        Assert.True(training.Process.ExitCode == 130, $"exit {training.Process.ExitCode}:\n{training.Output}");
        Assert.Contains("--resume", training.Output);
        Assert.InRange(Checkpoint.ReadInfo(Path.Combine(run, "checkpoint.ckpt")).Step, 3, 399);
    }

    [Fact]
    public void TheAtomicWriterSyncsTheFileAndItsFolder()
    {
        if (!File.Exists("/usr/bin/strace"))
        {
            Console.WriteLine("TheAtomicWriterSyncsTheFileAndItsFolder: strace is not installed; skipped");
            return;
        }
        using var dir = TestSetup.Temp();
        var ckpt = dir["model.ckpt"];
        File.Copy(Path.Combine(TestSetup.RepoRoot, "data", "checkpoints", "fashion-mnist-default.ckpt"), ckpt);
        // export writes one file through the atomic writer (a hard link that refuses an existing name, or a rename);
        // strace shows the system calls on the folder's descriptor.
        var log = dir["strace.log"];
        var psi = new ProcessStartInfo("strace", ["-f", "-o", log, "-e", "trace=openat,fsync,fdatasync,rename,renameat,renameat2,link,linkat",
            "dotnet", Path.Combine(AppContext.BaseDirectory, "Diffusion.Cli.dll"), "export", "--checkpoint", ckpt, "--format", "safetensors",
            "--out", dir["w.safetensors"]]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using (var p = Process.Start(psi)!)
        {
            p.StandardOutput.ReadToEnd();
            p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.Equal(0, p.ExitCode);
        }
        var lines = File.ReadAllLines(log);
        int rename = Array.FindIndex(lines, l => (l.Contains("rename") || l.Contains("link(") || l.Contains("linkat(")) && l.Contains("w.safetensors\""));
        Assert.True(rename > 0, "no rename or link onto the output");
        // The folder is opened and synced after the rename; the temporary file was synced before it.
        var folderOpen = lines.Skip(rename).Select(l => System.Text.RegularExpressions.Regex.Match(l, $@"openat\(AT_FDCWD, ""{System.Text.RegularExpressions.Regex.Escape(dir.Path)}"", O_RDONLY[^)]*\) = (\d+)"))
            .FirstOrDefault(m => m.Success);
        Assert.True(folderOpen is not null, "the folder is not opened after the rename:\n" + string.Join('\n', lines.Skip(rename).Take(20)));
        var fd = folderOpen.Groups[1].Value;
        Assert.Contains(lines.Skip(rename), l => System.Text.RegularExpressions.Regex.IsMatch(l, $@"f(data)?sync\({fd}\)"));
        Assert.Contains(lines.Take(rename), l => System.Text.RegularExpressions.Regex.IsMatch(l, @"f(data)?sync\(\d+\)"));
    }
}
