using System.Diagnostics;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Diffusion.Evaluation;
using Diffusion.Interop;
using Diffusion.Latent;
using Diffusion.TextToImage;

namespace Diffusion.Tests;

/// <summary>
/// Generated hostile files for every reader: truncations, bit flips, huge and negative sizes, wrong types — also inside
/// files whose SHA-256 was recomputed (what an attacker, not an accident, produces). Every case ends in the reader's own
/// error or a good load, allocates a bounded amount, and the CLI given such a file under a memory limit prints one
/// error line and exits 2.
/// </summary>
public class FuzzTests
{
    static string Shipped(string name) => Path.Combine(TestSetup.RepoRoot, "data", name);

    /// <summary>The frame of the course's hashed formats: the body (all but the last 32 bytes) and its SHA-256 again.</summary>
    static byte[] Rehash(byte[] body) => [.. body, .. SHA256.HashData(body)];

    static byte[] Body(byte[] file) => file[..^32];

    /// <summary>Mutations of <paramref name="file"/>: raw ones (caught by the hash) and ones inside a re-hashed body.</summary>
    static IEnumerable<(string Name, byte[] Bytes)> Mutations(byte[] file, int magicLength, bool hashed, Random rng)
    {
        foreach (var cut in new[] { 0, 1, magicLength, magicLength + 3, file.Length / 2, file.Length - 1 })
            yield return ($"truncated at {cut}", file[..cut]);
        for (int i = 0; i < 6; i++)
        {
            var flipped = (byte[])file.Clone();
            flipped[rng.Next(flipped.Length)] ^= (byte)(1 << rng.Next(8));
            yield return ("bit flip", flipped);
        }
        if (!hashed) yield break;
        var body = Body(file);
        // Length and count fields sit right after the magic (and the version): every 4 and 8 bytes there, huge and negative.
        foreach (var at in new[] { magicLength, magicLength + 4, magicLength + 8 })
            foreach (var value in new long[] { -1, -10, int.MaxValue, long.MaxValue, 1L << 40, 0 })
            {
                if (at + 8 > body.Length) continue;
                var b = (byte[])body.Clone();
                BitConverter.TryWriteBytes(b.AsSpan(at, 8), value);
                yield return ($"re-hashed int64 {value} at {at}", Rehash(b));
                var c = (byte[])body.Clone();
                BitConverter.TryWriteBytes(c.AsSpan(at, 4), (int)Math.Clamp(value, int.MinValue, int.MaxValue));
                yield return ($"re-hashed int32 {value} at {at}", Rehash(c));
            }
        for (int i = 0; i < 4; i++)
        {
            var b = (byte[])body.Clone();
            int at = magicLength + rng.Next(Math.Min(400, b.Length - magicLength));
            b[at] = (byte)rng.Next(256);
            yield return ($"re-hashed byte at {at}", Rehash(b));
        }
        yield return ("re-hashed, cut", Rehash(body[..(body.Length * 2 / 3)]));
        yield return ("re-hashed, invalid UTF-8", Rehash([.. body[..(magicLength + 8)], 0xC3, 0x28, 0xFF, 0xFE, .. body[(magicLength + 12)..]]));
    }

    /// <summary>Runs <paramref name="read"/> on every case: a load, or one of <paramref name="errors"/>; bounded allocation; no hang.</summary>
    static void Survives(string what, IEnumerable<(string Name, byte[] Bytes)> cases, Action<string> read, params Type[] errors)
    {
        using var dir = TestSetup.Temp();
        int loaded = 0, rejected = 0;
        foreach (var (name, bytes) in cases)
        {
            var path = dir[$"case{loaded + rejected}.bin"];
            File.WriteAllBytes(path, bytes);
            long before = GC.GetTotalAllocatedBytes(precise: true);
            var task = Task.Run(() =>
            {
                try
                {
                    using var scope = NewDisposeScope();
                    read(path);
                    return (Exception?)null;
                }
                catch (Exception e) { return e; }
            });
            Assert.True(task.Wait(TimeSpan.FromSeconds(30)), $"{what}, {name}: no answer in 30 s");
            long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            // What a reader may allocate: a few times the file (its bytes, a copy, the tensors) and a fixed slack.
            Assert.True(allocated < 8L * bytes.Length + 64_000_000, $"{what}, {name}: {allocated / 1e6:F0} MB allocated for a {bytes.Length / 1e3:F0} kB file");
            if (task.Result is { } e)
            {
                Assert.True(errors.Any(t => t.IsInstanceOfType(e)), $"{what}, {name}: {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                Assert.False(string.IsNullOrWhiteSpace(e.Message));
                rejected++;
            }
            else loaded++;
            File.Delete(path);
        }
        Assert.True(rejected > 0, $"{what}: no case was rejected");
    }

    static byte[] TinyCheckpoint(Action<JsonObject>? change = null, int step = 4)
    {
        var config = new DiffusionModelConfig
        {
            Unet = new UnetConfig { Dim = 8, DimMults = [1, 2], LinearAttentionLevels = [1] }, Timesteps = 20, ImageSize = 28,
        };
        using var model = new Unet(config.Unet);
        using var dir = TestSetup.Temp();
        var info = new CheckpointInfo { Model = config, Training = new TrainingOptions(), Step = step };
        Checkpoint.Save(dir["c.ckpt"], new Checkpoint.Parts(info, Checkpoint.ModuleBytes(model), null, null));
        var bytes = File.ReadAllBytes(dir["c.ckpt"]);
        if (change is null) return bytes;
        // Rewrite the description block and hash again: a file whose check passes but whose contents are hostile.
        long jsonLength = BitConverter.ToInt64(bytes, 12);
        var json = JsonNode.Parse(bytes.AsSpan(20, (int)jsonLength))!.AsObject();
        change(json);
        var newJson = Encoding.UTF8.GetBytes(json.ToJsonString());
        var body = new List<byte>(bytes[..12]);
        body.AddRange(BitConverter.GetBytes((long)newJson.Length));
        body.AddRange(newJson);
        body.AddRange(bytes[(20 + (int)jsonLength)..^32]);
        return Rehash([.. body]);
    }

    [Fact]
    public void CheckpointReaderSurvivesHostileFiles()
    {
        var rng = new Random(1);
        var valid = TinyCheckpoint();
        var cases = Mutations(valid, 8, hashed: true, rng).ToList();
        Survives("checkpoint", cases, p => Checkpoint.Load(p), typeof(CheckpointException));

        // Hostile values in a file whose hash is right: refused at load, before any network is built.
        var hostile = new (string, Action<JsonObject>)[]
        {
            ("Dim 4096", j => j["Model"]!["Unet"]!["Dim"] = 4096),
            ("DimMults of 9 levels", j => j["Model"]!["Unet"]!["DimMults"] = new JsonArray(1, 1, 1, 1, 1, 1, 1, 1, 1)),
            ("DimMults 1000", j => j["Model"]!["Unet"]!["DimMults"] = new JsonArray(1, 1000)),
            ("ImageSize 1<<20", j => j["Model"]!["ImageSize"] = 1 << 20),
            ("Timesteps 10^9", j => j["Model"]!["Timesteps"] = 1_000_000_000),
            ("step −10", j => j["Step"] = -10),
            ("batch size 0", j => j["Training"]!["BatchSize"] = 0),
            ("NaN learning rate", j => j["Training"]!["LearningRate"] = "NaN"),
            ("Dim a string", j => j["Model"]!["Unet"]!["Dim"] = "wide"),
            ("Unet null", j => j["Model"]!["Unet"] = null),
            ("NumClasses 10^9", j => j["Model"]!["Unet"]!["NumClasses"] = 1_000_000_000),
        };
        foreach (var (name, change) in hostile)
        {
            using var dir = TestSetup.Temp();
            File.WriteAllBytes(dir["h.ckpt"], TinyCheckpoint(change));
            var e = Record.Exception(() => Checkpoint.Load(dir["h.ckpt"]));
            Assert.True(e is CheckpointException, $"{name}: {e?.GetType().Name ?? "loaded"} {e?.Message}");
        }
    }

    [Fact]
    public void HashedFormatReadersSurviveHostileFiles()
    {
        var rng = new Random(2);
        var ae = File.ReadAllBytes(Shipped("checkpoints/fashion-mnist-autoencoder.ckpt"));
        Survives("autoencoder", Mutations(ae, 8, true, rng), p => AutoencoderFile.Load(p).Model.Dispose(), typeof(CheckpointException));
        var clip = File.ReadAllBytes(Shipped("checkpoints/fashion-mnist-mini-clip.bin"));
        Survives("mini-CLIP", Mutations(clip, 8, true, rng), p => MiniClipFile.Load(p).Model.Dispose(), typeof(CheckpointException));
        var classifier = File.ReadAllBytes(Shipped("classifier/fashion-mnist-classifier.bin"));
        Survives("classifier", Mutations(classifier, 8, true, rng), p => FashionClassifier.Load(p).Dispose(), typeof(CheckpointException), typeof(InvalidDataException));
        var t2i = File.ReadAllBytes(Shipped("checkpoints/fashion-mnist-text2img.ckpt"));
        Survives("text-to-image", Mutations(t2i, 8, true, rng).Where((_, i) => i % 2 == 0), p => TextToImageFile.Load(p).Dispose(), typeof(CheckpointException));
    }

    static byte[] TinySafetensors(IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var model = new Unet(new UnetConfig { Dim = 8, DimMults = [1, 2], LinearAttentionLevels = [1] });
        using var ms = new MemoryStream();
        SafetensorsFile.Write(ms, model.state_dict(), metadata);
        return ms.ToArray();
    }

    static byte[] SafetensorsWithHeader(string json)
    {
        var header = Encoding.UTF8.GetBytes(json);
        return [.. BitConverter.GetBytes((long)header.Length), .. header, .. new byte[64]];
    }

    [Fact]
    public void SafetensorsReaderSurvivesHostileFiles()
    {
        var rng = new Random(3);
        var valid = TinySafetensors();
        var cases = Mutations(valid, 8, hashed: false, rng).ToList();
        foreach (var n in new long[] { -1, long.MaxValue, 1L << 40, 99_999_999 })
            cases.Add(($"header length {n}", [.. BitConverter.GetBytes(n), .. valid[8..]]));
        cases.Add(("shape product overflows", SafetensorsWithHeader("""{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}""")));
        cases.Add(("huge shape", SafetensorsWithHeader("""{"a":{"dtype":"F32","shape":[1000000000000],"data_offsets":[0,4000000000000]}}""")));
        cases.Add(("negative dimension", SafetensorsWithHeader("""{"a":{"dtype":"F32","shape":[-4,-4],"data_offsets":[0,64]}}""")));
        cases.Add(("negative offsets", SafetensorsWithHeader("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[-16,0]}}""")));
        cases.Add(("dtype a number", SafetensorsWithHeader("""{"a":{"dtype":7,"shape":[4],"data_offsets":[0,16]}}""")));
        cases.Add(("shape a string", SafetensorsWithHeader("""{"a":{"dtype":"F32","shape":"4","data_offsets":[0,16]}}""")));
        cases.Add(("duplicate keys", SafetensorsWithHeader("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""")));
        cases.Add(("metadata an array", SafetensorsWithHeader("""{"__metadata__":[1,2]}""")));
        cases.Add(("top level an array", SafetensorsWithHeader("""[1,2,3]""")));
        var invalidUtf8 = SafetensorsWithHeader("""{"ab":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""");
        invalidUtf8[10] = 0xFF;                                               // inside the key "ab"
        cases.Add(("invalid UTF-8 in a key", invalidUtf8));
        Survives("safetensors", cases, p =>
        {
            var (tensors, _) = SafetensorsFile.Read(p);
            foreach (var (_, t) in tensors) t.Dispose();
        }, typeof(CheckpointException));
        // The configuration in the metadata is validated too.
        var config = new DiffusionModelConfig { Unet = new UnetConfig { Dim = 4096 } };
        var json = System.Text.Json.JsonSerializer.Serialize(config, Checkpoint.JsonOptions);
        var e = Record.Exception(() => PyTorchWeights.ConfigFrom(new Dictionary<string, string> { [PyTorchWeights.ConfigMetadataKey] = json }, "x.safetensors"));
        Assert.True(e is CheckpointException, $"Dim 4096 in the metadata: {e?.GetType().Name ?? "accepted"}");
    }

    /// <summary>A .pt whose pickle entry inflates to <paramref name="inflated"/> bytes of zeros (deflated to a few hundred kB).</summary>
    static byte[] ZipBomb(int inflated)
    {
        using var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        {
            using var d = zip.CreateEntry("archive/data.pkl", CompressionLevel.SmallestSize).Open();
            var zeros = new byte[1 << 20];
            for (int i = 0; i < inflated >> 20; i++) d.Write(zeros);
        }
        return ms.ToArray();
    }

    [Fact]
    public void PyTorchReaderSurvivesHostileFilesAndZipBombs()
    {
        var rng = new Random(4);
        using var dir = TestSetup.Temp();
        using (var model = new Unet(new UnetConfig { Dim = 8, DimMults = [1, 2], LinearAttentionLevels = [1] }))
            PyTorchWeights.Export(model, dir["tiny.pt"], WeightsFormat.PyTorch);
        var valid = File.ReadAllBytes(dir["tiny.pt"]);
        var cases = Mutations(valid, 4, hashed: false, rng).ToList();
        cases.Add(("zip bomb: 256 MB of zeros in a few hundred kB", ZipBomb(256 << 20)));
        Survives("pt", cases.Select(c => c), p =>
        {
            var pt = Path.ChangeExtension(p, ".pt");
            File.Move(p, pt);
            try
            {
                var (tensors, _) = PyTorchWeights.Read(pt);
                foreach (var (_, t) in tensors) t.Dispose();
            }
            finally { File.Move(pt, p); }
        }, typeof(CheckpointException));
    }

    /// <summary>The CLI as a child process under an address-space limit: one error line, exit 2, within a minute.</summary>
    static Cli.Result RunLimited(string workingDir, params string[] args) => RunLimited(6_000_000_000, workingDir, args);

    static Cli.Result RunLimited(long addressSpace, string workingDir, params string[] args)
    {
        var psi = new ProcessStartInfo("prlimit") { WorkingDirectory = workingDir, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { $"--as={addressSpace}", "dotnet", Path.Combine(AppContext.BaseDirectory, "Diffusion.Cli.dll") }) psi.ArgumentList.Add(a);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DIFFUSION_DATA_DIR"] = Path.Combine(TestSetup.RepoRoot, "data");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(90)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{string.Join(' ', args)}: no answer in 90 s");
        }
        return new Cli.Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    static void AssertOneError(Cli.Result r, string what)
    {
        Assert.True(r.ExitCode == 2, $"{what}: exit {r.ExitCode}\n{r.All}");
        var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1 && lines[0].StartsWith("error: "), $"{what}:\n{r.Stderr}");
    }

    [Fact]
    public void TheCommandLineGivenHostileFilesUnderAMemoryLimitPrintsOneErrorLine()
    {
        using var dir = TestSetup.Temp();
        string[] sample = ["sample", "--count", "1", "--sampler", "ddim", "--steps", "1", "--threads", "1", "--out", dir["s.png"]];
        // Special files are refused before they are read: a device that never ends, a FIFO that never answers.
        AssertOneError(RunLimited(dir.Path, [.. sample, "--checkpoint", "/dev/zero"]), "/dev/zero");
        var fifo = dir["fifo.ckpt"];
        Process.Start("mkfifo", fifo)!.WaitForExit();
        AssertOneError(RunLimited(dir.Path, [.. sample, "--checkpoint", fifo]), "a FIFO");

        // Hashed checkpoints with hostile configurations: refused at load, nothing built.
        foreach (var (name, change) in new (string, Action<JsonObject>)[]
                 {
                     ("Dim 4096", j => j["Model"]!["Unet"]!["Dim"] = 4096),
                     ("ImageSize 65536", j => j["Model"]!["ImageSize"] = 65536),
                     ("Timesteps 10^9", j => j["Model"]!["Timesteps"] = 1_000_000_000),
                 })
        {
            File.WriteAllBytes(dir["h.ckpt"], TinyCheckpoint(change));
            AssertOneError(RunLimited(dir.Path, [.. sample, "--checkpoint", dir["h.ckpt"]]), name);
        }

        // A safetensors file whose metadata asks for a network of gigabytes, and a .pt zip bomb.
        var config = new DiffusionModelConfig { Unet = new UnetConfig { Dim = 4096 } };
        File.WriteAllBytes(dir["big.safetensors"], TinySafetensors(new Dictionary<string, string>
        {
            [PyTorchWeights.ConfigMetadataKey] = System.Text.Json.JsonSerializer.Serialize(config, Checkpoint.JsonOptions),
        }));
        AssertOneError(RunLimited(dir.Path, "import", "--weights", dir["big.safetensors"], "--out", dir["i.ckpt"]), "Dim 4096 safetensors");
        File.WriteAllBytes(dir["bomb.pt"], ZipBomb(512 << 20));
        AssertOneError(RunLimited(dir.Path, "import", "--weights", dir["bomb.pt"], "--like", Shipped("checkpoints/fashion-mnist-default.ckpt"), "--out", dir["j.ckpt"]), "zip bomb");
        Assert.False(File.Exists(dir["i.ckpt"]) || File.Exists(dir["j.ckpt"]));
    }

    [Fact]
    public void ResumeFromACheckpointWithHostileValuesIsOneErrorLine()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        Cli.TrainTiny(dir.Path, run, "--samples", "0", "--threads", "1");
        var path = Path.Combine(run, "checkpoint.ckpt");
        var good = Checkpoint.Load(path);
        // A state of the right size whose fields libtorch refuses by aborting the process (left = 0).
        var state = Convert.FromBase64String(good.Info.GeneratorState);
        Assert.Equal(5056, state.Length);
        BitConverter.TryWriteBytes(state.AsSpan(8, 4), 0);
        foreach (var (name, info) in new (string, CheckpointInfo)[]
                 {
                     ("a generator state with invalid fields", good.Info with { GeneratorState = Convert.ToBase64String(state) }),
                     ("a generator state of 3 bytes", good.Info with { GeneratorState = "AAAA" }),
                     ("a generator state that is not base64", good.Info with { GeneratorState = "%%%" }),
                     ("step −10", good.Info with { Step = -10 }),
                     ("a data position beyond the data", good.Info with { DataPosition = new OrderPosition(-5, int.MaxValue) }),
                 })
        {
            Checkpoint.Save(path, good with { Info = info });
            AssertOneError(RunLimited(dir.Path, ["train", "--out", run, "--resume", "--steps", "6", "--samples", "0", "--threads", "1"]), name);
        }
    }

    [Fact]
    public void TrainRefusesWhatCannotFitWithTheNumbersInTheMessage()
    {
        using var dir = TestSetup.Temp();
        // Refused by the estimate (about 120 GB) before anything is built; the limit only guards against a regression.
        var big = RunLimited(16_000_000_000, dir.Path, "train", "--dim", "512", "--dim-mults", "1,2,4,8", "--groups", "8", "--batch-size", "4096", "--image-size", "32",
            "--steps", "1", "--out", dir["run"]);
        AssertOneError(big, "dim 512");
        Assert.Matches(@"\d+(\.\d+)? GB", big.Stderr);
        AssertOneError(RunLimited(dir.Path, "train", "--image-size", "1024", "--steps", "1", "--out", dir["run2"]), "--image-size 1024");
        AssertOneError(RunLimited(dir.Path, "train", "--timesteps", "100000", "--steps", "1", "--out", dir["run3"]), "--timesteps 100000");
    }
}
