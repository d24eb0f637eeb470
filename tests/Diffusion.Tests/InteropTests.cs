using System.Buffers.Binary;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Diffusion.Interop;
using TorchSharp.PyBridge;

namespace Diffusion.Tests;

/// <summary>Weights to and from PyTorch: .pt (torch.save state_dict) and .safetensors, library and CLI.</summary>
public sealed class InteropTests : IDisposable
{
    // One libtorch thread while these tests run: on a shared 2-core machine the default two threads made the small
    // forward passes here 8x slower (measured 35 s → 4 s for a round-trip test at load 25). Restored afterwards.
    readonly int threadsBefore = torch.get_num_threads();
    public InteropTests() => torch.set_num_threads(1);
    public void Dispose() => torch.set_num_threads(threadsBefore);

    /// <summary>The shipped checkpoint's U-Net (see docs/pytorch/unet-default.keys.txt).</summary>
    static readonly UnetConfig Default = new() { Dim = 28, DimMults = [1, 2, 4], Channels = 1, ResnetBlockGroups = 4, LinearAttentionLevels = [1, 2] };

    /// <summary>Every other option: ConvNeXt, RGB, attention at every level, 10 classes (docs/pytorch/unet-variant.keys.txt).</summary>
    static readonly UnetConfig Variant = new() { Dim = 16, DimMults = [1, 2], Channels = 3, Block = BlockType.ConvNext, ConvNextMult = 2, LinearAttentionLevels = null, NumClasses = 10 };

    /// <summary>A U-Net whose every parameter is seeded noise (GroupNorm γ, β included, so that no value is a default).</summary>
    static Unet RandomUnet(UnetConfig config, int seed)
    {
        manual_seed(seed);
        var model = new Unet(config);
        using (no_grad())
            foreach (var p in model.parameters()) p.copy_(randn_like(p) * 0.2);
        model.eval();
        return model;
    }

    /// <summary>ε_θ(x, t) on a seeded batch (different time steps per image).</summary>
    static Tensor Output(Unet model, int channels = 1)
    {
        using var g = new Generator(7);
        var x = randn([3, channels, 28, 28], generator: g);
        var t = tensor(new long[] { 0, 137, 499 });
        using var _ = no_grad();
        return model.call(x, t);
    }

    static byte[] Bytes(Tensor t) => t.detach().cpu().contiguous().bytes.ToArray();

    [Theory]
    [InlineData("pt")]
    [InlineData("safetensors")]
    public void RoundTripGivesBitIdenticalWeightsAndOutputs(string extension)
    {
        using var dir = TestSetup.Temp();
        var file = dir["w." + extension];
        using var original = RandomUnet(Default, 1);
        PyTorchWeights.Export(original, file, PyTorchWeights.FormatOf(file));

        using var copy = RandomUnet(Default, 2);
        using (var before = Output(copy))
        using (var reference = Output(original))
            Assert.False(Bytes(before).AsSpan().SequenceEqual(Bytes(reference)));                    // the test can fail: different weights differ
        var (tensors, _) = PyTorchWeights.Read(file);
        PyTorchWeights.LoadInto(copy, tensors, file, "fix");

        var a = original.state_dict();
        var b = copy.state_dict();
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (k, v) in a) Assert.True(Bytes(v).AsSpan().SequenceEqual(Bytes(b[k])), $"{k} differs after the round trip");
        using var y0 = Output(original);
        using var y1 = Output(copy);
        Assert.True(Bytes(y0).AsSpan().SequenceEqual(Bytes(y1)), "outputs differ after the round trip");
    }

    [Fact]
    public void SafetensorsFileMatchesTheSpecificationByteForByte()
    {
        using var dir = TestSetup.Temp();
        var file = dir["w.safetensors"];
        using var model = RandomUnet(Default, 3);
        PyTorchWeights.Export(model, file, WeightsFormat.Safetensors, new Dictionary<string, string> { ["note"] = "é, \"quoted\"" });

        // Parsed here from the specification, not with the library's reader: u64 LE header length N, N bytes of JSON,
        // then the data; data_offsets are relative to the end of the header.
        var bytes = File.ReadAllBytes(file);
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + n) % 8);                                              // data section 8-byte aligned
        using var json = JsonDocument.Parse(bytes.AsMemory(8, (int)n));
        var entries = json.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__").ToList();
        var meta = json.RootElement.GetProperty("__metadata__");
        Assert.Equal("pt", meta.GetProperty("format").GetString());
        Assert.Equal("é, \"quoted\"", meta.GetProperty("note").GetString());

        var stateDict = model.state_dict();
        Assert.Equal(stateDict.Count, entries.Count);
        long expectedOffset = 0;
        foreach (var e in entries.OrderBy(e => e.Value.GetProperty("data_offsets")[0].GetInt64()))
        {
            Assert.True(stateDict.TryGetValue(e.Name, out var t), $"{e.Name} is not in the state_dict");
            Assert.Equal("F32", e.Value.GetProperty("dtype").GetString());
            Assert.Equal(t!.shape, e.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray());
            long begin = e.Value.GetProperty("data_offsets")[0].GetInt64(), end = e.Value.GetProperty("data_offsets")[1].GetInt64();
            Assert.Equal(expectedOffset, begin);                                   // contiguous, no gaps or overlaps
            Assert.Equal(t.numel() * 4, end - begin);
            var floats = t.data<float>().ToArray();
            var expected = new byte[floats.Length * 4];
            for (int i = 0; i < floats.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(expected.AsSpan(4 * i), floats[i]);
            Assert.True(bytes.AsSpan((int)(8 + n + begin), (int)(end - begin)).SequenceEqual(expected), $"{e.Name}: bytes differ");
            expectedOffset = end;
        }
        Assert.Equal(bytes.Length, 8 + n + expectedOffset);                       // nothing after the last tensor

        // A second, independent reader (TorchSharp.PyBridge's) loads the file into the same weights.
        using var viaPyBridge = RandomUnet(Default, 4);
        viaPyBridge.load_safetensors(file, strict: true);
        using var y0 = Output(model);
        using var y1 = Output(viaPyBridge);
        Assert.True(Bytes(y0).AsSpan().SequenceEqual(Bytes(y1)));
    }

    [Fact]
    public void PtFileHasPyTorchsZipLayout()
    {
        using var dir = TestSetup.Temp();
        var file = dir["w.pt"];
        using var model = RandomUnet(Default, 5);
        PyTorchWeights.Export(model, file, WeightsFormat.PyTorch);
        var stateDict = model.state_dict();

        using var zip = ZipFile.OpenRead(file);
        var names = zip.Entries.Select(e => e.FullName).ToList();
        // torch.save: <archive>/data.pkl, <archive>/version, <archive>/data/<key> — one folder for everything.
        var prefix = names[0].Split('/')[0] + "/";
        Assert.All(names, name => Assert.StartsWith(prefix, name));
        Assert.Contains(prefix + "data.pkl", names);
        Assert.Contains(prefix + "version", names);
        var data = zip.Entries.Where(e => e.FullName.StartsWith(prefix + "data/", StringComparison.Ordinal)).ToList();
        Assert.Equal(stateDict.Count, data.Count);
        Assert.All(data, e => Assert.Equal(e.Length, e.CompressedLength));        // stored, as torch.save writes them

        // data/<i> holds the i-th tensor of the state_dict, byte for byte (the dict is pickled in the module's order).
        var tensors = stateDict.Values.ToList();
        for (int i = 0; i < tensors.Count; i++)
        {
            using var s = zip.GetEntry($"{prefix}data/{i}")!.Open();
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            Assert.True(ms.ToArray().AsSpan().SequenceEqual(Bytes(tensors[i])), $"data/{i} is not {stateDict.Keys.ElementAt(i)}");
        }

        // The same weights give the same file (no zip time stamps or hash-order in it).
        PyTorchWeights.Export(model, dir["again.pt"], WeightsFormat.PyTorch);
        Assert.Equal(File.ReadAllBytes(file), File.ReadAllBytes(dir["again.pt"]));

        // data.pkl is a pickle (protocol 2, as torch.save) that rebuilds tensors with torch._utils._rebuild_tensor_v2.
        using var pkl = zip.GetEntry(prefix + "data.pkl")!.Open();
        using var pklBytes = new MemoryStream();
        pkl.CopyTo(pklBytes);
        var p = pklBytes.ToArray();
        Assert.Equal(0x80, p[0]);
        Assert.Equal(2, p[1]);
        var text = Encoding.ASCII.GetString(p);
        Assert.Contains("torch._utils\n_rebuild_tensor_v2", text);
        Assert.Contains("torch\nFloatStorage", text);
        foreach (var key in stateDict.Keys) Assert.Contains(key, text);
    }

    /// <summary>"name\t[d0, d1]" lines of a keys file written from the Python module definition.</summary>
    static List<(string Name, long[] Shape)> KeysFile(string name) =>
        File.ReadLines(Path.Combine(TestSetup.RepoRoot, "docs", "pytorch", name))
            .Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => l.Split('\t'))
            .Select(p => (p[0], p[1].Trim('[', ']').Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(long.Parse).ToArray()))
            .ToList();

    [Theory]
    [InlineData("unet-default.keys.txt", "default")]
    [InlineData("unet-variant.keys.txt", "variant")]
    public void StateDictMatchesThePythonModuleDefinition(string keysFile, string which)
    {
        var config = which == "default" ? Default : Variant;
        using var model = new Unet(config);
        var python = KeysFile(keysFile);
        var csharp = PyTorchWeights.Layout(model);
        static string Line((string Name, long[] Shape) e) => $"{e.Name} [{string.Join(", ", e.Shape)}]";
        // Same set of (name, shape); the order may differ (C# registers mid_block2 before mid_attn), which load_state_dict ignores.
        Assert.Equal(python.Select(Line).Order(), csharp.Select(Line).Order());
        Assert.Equal(model.parameters().Count(), csharp.Count);                    // no buffers: parameters are the whole state
        Assert.Empty(model.buffers());
        if (which == "default") Assert.Equal(1_991_305, python.Sum(e => e.Shape.Aggregate(1L, (a, d) => a * d)));
    }

    [Fact]
    public void WrongArchitectureMissingOrExtraKeysAndTruncatedFilesGiveClearErrors()
    {
        using var dir = TestSetup.Temp();
        using var model = RandomUnet(Default, 6);
        var st = dir["w.safetensors"];
        var pt = dir["w.pt"];
        PyTorchWeights.Export(model, st, WeightsFormat.Safetensors);
        PyTorchWeights.Export(model, pt, WeightsFormat.PyTorch);

        // Another architecture: every mismatch is named with both shapes, and the fix is given.
        using var other = new Unet(Default with { Dim = 16 });
        foreach (var file in new[] { st, pt })
        {
            var e = Assert.Throws<CheckpointException>(() => PyTorchWeights.LoadInto(other, PyTorchWeights.Read(file).Tensors, file, "Pass --like X."));
            Assert.Contains("key 'init_conv.weight': the file has shape [28, 1, 1, 1], the network expects [16, 1, 1, 1]", e.Message);
            Assert.Contains(file, e.Message);
            Assert.EndsWith("Pass --like X.", e.Message);
        }

        // A missing and an unexpected key.
        var full = model.state_dict().ToList();
        var missing = dir["missing.safetensors"];
        using (var s = File.Create(missing)) SafetensorsFile.Write(s, full.Where(kv => kv.Key != "final_conv.bias"));
        var e1 = Assert.Throws<CheckpointException>(() => PyTorchWeights.LoadInto(model, PyTorchWeights.Read(missing).Tensors, missing, "fix"));
        Assert.Contains("missing key 'final_conv.bias' (the network expects shape [1])", e1.Message);
        Assert.Contains("(1 problem)", e1.Message);
        var extra = dir["extra.safetensors"];
        using (var s = File.Create(extra)) SafetensorsFile.Write(s, full.Append(new("downs.9.weight", ones(2, 3))));
        var e2 = Assert.Throws<CheckpointException>(() => PyTorchWeights.LoadInto(model, PyTorchWeights.Read(extra).Tensors, extra, "fix"));
        Assert.Contains("unexpected key 'downs.9.weight' (shape [2, 3])", e2.Message);

        // Truncated files.
        var bytes = File.ReadAllBytes(st);
        File.WriteAllBytes(dir["cut.safetensors"], bytes[..^100]);          // final_conv: weight 112 bytes, then bias 4
        var e3 = Assert.Throws<CheckpointException>(() => PyTorchWeights.Read(dir["cut.safetensors"]));
        Assert.Contains("is truncated: tensor 'final_conv.weight' needs bytes", e3.Message);
        File.WriteAllBytes(dir["cut2.safetensors"], bytes[..50]);
        Assert.Contains("truncated: the header claims", Assert.Throws<CheckpointException>(() => PyTorchWeights.Read(dir["cut2.safetensors"])).Message);
        File.WriteAllBytes(dir["cut.pt"], File.ReadAllBytes(pt)[..(int)(new FileInfo(pt).Length / 2)]);
        Assert.Contains("cannot be read as a PyTorch state_dict", Assert.Throws<CheckpointException>(() => PyTorchWeights.Read(dir["cut.pt"])).Message);
        File.WriteAllText(dir["text.safetensors"], "this is not a safetensors file at all");
        Assert.Contains("is not a valid safetensors file", Assert.Throws<CheckpointException>(() => PyTorchWeights.Read(dir["text.safetensors"])).Message);

        // Never over an existing file.
        var hash = SHA256.HashData(File.ReadAllBytes(st));
        var e4 = Assert.Throws<ArgumentException>(() => PyTorchWeights.Export(other, st, WeightsFormat.Safetensors));
        Assert.Contains("already exists", e4.Message);
        Assert.Equal(hash, SHA256.HashData(File.ReadAllBytes(st)));
    }

    [Fact]
    public void CliExportThenImportSamplesTheSameImages()
    {
        using var dir = TestSetup.Temp();
        var shipped = Path.Combine(TestSetup.RepoRoot, "data", "checkpoints", "fashion-mnist-ddpm.ckpt");
        string[] sample = ["sample", "--count", "4", "--sampler", "ddim", "--steps", "4", "--threads", "1", "--seed", "3"];

        var original = Cli.Run(dir.Path, [.. sample, "--checkpoint", shipped, "--out", dir["original.png"]]);
        Assert.True(original.ExitCode == 0, original.All);
        foreach (var format in new[] { "pt", "safetensors" })
        {
            var weights = dir["weights." + format];
            var export = Cli.Run(dir.Path, "export", "--checkpoint", shipped, "--format", format, "--out", weights);
            Assert.True(export.ExitCode == 0, export.All);
            Assert.Contains("model = Unet(dim=28, dim_mults=(1, 2, 4), channels=1, resnet_block_groups=4, linear_attention_levels=(1, 2))", export.Stdout);

            // .safetensors carries its configuration; a .pt needs --like.
            string[] like = format == "pt" ? ["--like", shipped] : [];
            var imported = dir[$"imported-{format}.ckpt"];
            var import = Cli.Run(dir.Path, ["import", "--weights", weights, .. like, "--out", imported]);
            Assert.True(import.ExitCode == 0, import.All);
            if (format == "pt")
            {
                var again = Cli.Run(dir.Path, [.. sample, "--checkpoint", imported, "--out", dir["imported.png"]]);
                Assert.True(again.ExitCode == 0, again.All);
                Assert.Equal(File.ReadAllBytes(dir["original.png"]), File.ReadAllBytes(dir["imported.png"]));
            }
            else                                                                   // same weights as the .pt import: same samples
                Assert.Equal(Checkpoint.Load(dir["imported-pt.ckpt"]).Model, Checkpoint.Load(imported).Model);

            // Existing outputs are never overwritten.
            if (format != "pt") continue;
            var twice = Cli.Run(dir.Path, "export", "--checkpoint", shipped, "--format", format, "--out", weights);
            Assert.Equal(2, twice.ExitCode);
            Assert.StartsWith("error: ", twice.Stderr);
            Assert.Contains("already exists", twice.Stderr);
        }

        // A .pt without --like, and weights that do not fit the --like network: one error line naming the problem and the fix.
        var noLike = Cli.Run(dir.Path, "import", "--weights", dir["weights.pt"], "--out", dir["x.ckpt"]);
        Assert.Equal(2, noLike.ExitCode);
        Assert.Contains("error: --like is needed", noLike.Stderr);
        var tinyRun = dir["tiny.ckpt"];                                            // a checkpoint of a smaller U-Net (dim 8)
        var tinyConfig = TrainingTests.TinyModel();
        using (var tiny = new Unet(tinyConfig.Unet))
            Checkpoint.Save(tinyRun, new Checkpoint.Parts(new CheckpointInfo { Model = tinyConfig, Training = new TrainingOptions() },
                Checkpoint.ModuleBytes(tiny), null, null));
        var wrong = Cli.Run(dir.Path, "import", "--weights", dir["weights.pt"], "--like", tinyRun, "--out", dir["y.ckpt"]);
        Assert.Equal(2, wrong.ExitCode);
        Assert.Single(wrong.Stderr.Trim().Split('\n'));
        Assert.Contains("error: the weights in", wrong.Stderr);
        Assert.Contains("key 'init_conv.weight': the file has shape [28, 1, 1, 1], the network expects [8, 1, 1, 1]", wrong.Stderr);
        Assert.Contains("Pass --like a checkpoint whose U-Net matches", wrong.Stderr);
        Assert.False(File.Exists(dir["y.ckpt"]));
    }
}
