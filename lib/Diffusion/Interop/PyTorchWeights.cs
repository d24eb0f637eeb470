using System.Collections;
using System.IO.Compression;
using Diffusion.Training;
using TorchSharp.PyBridge;

namespace Diffusion.Interop;

/// <summary>The two files PyTorch users load weights from.</summary>
public enum WeightsFormat
{
    /// <summary><c>torch.save(model.state_dict(), "x.pt")</c>: a zip holding <c>data.pkl</c> (the pickled dict) and <c>data/0, 1, …</c> (raw tensor bytes).</summary>
    PyTorch,
    /// <summary>Hugging Face's safetensors: a JSON header and raw bytes, no pickle (safe to open from strangers).</summary>
    Safetensors,
}

/// <summary>
/// Moves a U-Net's weights between this course and PyTorch. The course's modules are named like the annotated
/// notebook's PyTorch modules (and <see cref="SafeConv2d"/> / <see cref="PointwiseConv2d"/> keep nn.Conv2d's
/// <c>weight</c> [out, in, k, k] and <c>bias</c> [out]), so the state_dict keys and shapes are the ones
/// docs/pytorch/course_unet.py gives; the U-Net has no buffers, only parameters.
/// The .pt side uses TorchSharp.PyBridge (its PyTorch pickler/unpickler); safetensors is written by hand (<see cref="SafetensorsFile"/>).
/// </summary>
public static class PyTorchWeights
{
    /// <summary>Metadata key (safetensors) holding the <see cref="DiffusionModelConfig"/> as JSON, so the file describes its network.</summary>
    public const string ConfigMetadataKey = "diffusion_config";

    /// <summary>The format a file name asks for: .safetensors, or .pt / .pth / .bin (PyTorch's pickled state_dict).</summary>
    public static WeightsFormat FormatOf(string path) => Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".safetensors" => WeightsFormat.Safetensors,
        ".pt" or ".pth" or ".bin" => WeightsFormat.PyTorch,
        var ext => throw new ArgumentException(
            $"{path}: cannot tell the weights format from the extension '{ext}'. Name the file *.pt (PyTorch state_dict) or *.safetensors."),
    };

    /// <summary>(name, shape) of every entry of the module's state_dict, in the module's order.</summary>
    public static IReadOnlyList<(string Name, long[] Shape)> Layout(nn.Module module) =>
        module.state_dict().Select(kv => (kv.Key, kv.Value.shape)).ToList();

    /// <summary>
    /// Writes the module's state_dict to <paramref name="path"/> (never over an existing file) in the given format.
    /// <paramref name="metadata"/> goes into the safetensors header (a .pt state_dict has no room for it).
    /// </summary>
    public static void Export(nn.Module module, string path, WeightsFormat format, IReadOnlyDictionary<string, string>? metadata = null)
    {
        if (File.Exists(path) || Directory.Exists(path))
            throw new ArgumentException($"{path} already exists; it is not overwritten. Choose another --out or delete the file first.");
        var stateDict = module.state_dict();
        // Written new: a file that appeared at path meanwhile is not replaced.
        if (!AtomicFile.CreateNew(path, tmp => AtomicFile.Write(tmp, stream =>
        {
            if (format == WeightsFormat.Safetensors)
            {
                var meta = new Dictionary<string, string> { ["format"] = "pt" };   // what safetensors.torch.save_file writes
                if (metadata is not null) foreach (var (k, v) in metadata) meta[k] = v;
                SafetensorsFile.Write(stream, stateDict, meta);
            }
            else
            {
                // PyBridge pickles the dict as torch.save does: model/data.pkl with persistent ids → model/data/<i>.
                using var _ = NewDisposeScope();
                var table = new InsertionOrderedTable();
                foreach (var (k, v) in stateDict) table[k] = v.detach().cpu().contiguous();
                using var pickled = new MemoryStream();
                PyTorchPickler.PickleStateDict(pickled, table, leaveOpen: true);
                StoreUncompressed(pickled, stream);
            }
        })))
            throw new ArgumentException($"{path} already exists; it is not overwritten. Choose another --out or delete the file first.");
    }

    /// <summary>
    /// Copies a zip with every entry stored uncompressed, as torch.save writes them (PyBridge's zip deflates them;
    /// PyTorch's reader also takes deflated entries, but stored ones are what its own files hold, and what
    /// torch.load(mmap=True) needs).
    /// </summary>
    static void StoreUncompressed(MemoryStream zipBytes, Stream output)
    {
        zipBytes.Position = 0;
        using var source = new ZipArchive(zipBytes, ZipArchiveMode.Read, leaveOpen: true);
        using var target = new ZipArchive(output, ZipArchiveMode.Create, leaveOpen: true);
        foreach (var entry in source.Entries)
        {
            using var from = entry.Open();
            var copy = target.CreateEntry(entry.FullName, CompressionLevel.NoCompression);
            copy.LastWriteTime = FixedZipTime;                         // the same weights give the same bytes
            using var to = copy.Open();
            from.CopyTo(to);
        }
    }

    static readonly DateTimeOffset FixedZipTime = new(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>
    /// A Hashtable (what PyBridge's pickler takes) that enumerates in insertion order, so that the pickled dict, and the
    /// numbering of data/0, data/1, …, follow the state_dict's order instead of string hash codes, which .NET randomises
    /// per process: the same weights then give the same file, and Python's state_dict.keys() come out in module order.
    /// </summary>
    sealed class InsertionOrderedTable : Hashtable
    {
        readonly List<object> order = new();
        public override object? this[object key]
        {
            get => base[key];
            set
            {
                if (!ContainsKey(key)) order.Add(key);
                base[key] = value;
            }
        }
        public override void Add(object key, object? value)
        {
            base.Add(key, value);
            order.Add(key);
        }
        public override ICollection Keys => order.ToArray();
        public override ICollection Values => order.Select(k => base[k]).ToArray();
        public override IDictionaryEnumerator GetEnumerator() => new Enumerator(order.Select(k => new DictionaryEntry(k, base[k])).ToList());

        sealed class Enumerator(List<DictionaryEntry> entries) : IDictionaryEnumerator
        {
            int index = -1;
            public DictionaryEntry Entry => entries[index];
            public object Key => Entry.Key;
            public object? Value => Entry.Value;
            public object Current => Entry;
            public bool MoveNext() => ++index < entries.Count;
            public void Reset() => index = -1;
        }
    }

    /// <summary>Reads a .pt (torch.save of a state_dict) or .safetensors file into CPU tensors, with clear errors.</summary>
    public static (List<KeyValuePair<string, Tensor>> Tensors, IReadOnlyDictionary<string, string> Metadata) Read(string path) =>
        Read(path, InputFile.MaxModelFileBytes);

    /// <summary>
    /// As <see cref="Read(string)"/>, reading at most <paramref name="maxTensorBytes"/> bytes of tensors (what the expected
    /// network can hold): a .pt's zip entries are measured as they inflate before PyTorch's unpickler reads any of them, so
    /// a small file that inflates to gigabytes is refused instead of read.
    /// </summary>
    public static (List<KeyValuePair<string, Tensor>> Tensors, IReadOnlyDictionary<string, string> Metadata) Read(string path, long maxTensorBytes)
    {
        if (!File.Exists(path))
            throw new CheckpointException($"weights file {path} not found. Export one with: export --checkpoint <ckpt> --format pt|safetensors --out {path}");
        InputFile.EnsureRegular(path);
        var format = FormatOf(path);
        if (format == WeightsFormat.Safetensors) return SafetensorsFile.Read(path);
        CheckZipSizes(path, maxTensorBytes);
        try
        {
            using var stream = File.OpenRead(path);
            var table = PyTorchUnpickler.UnpickleStateDict(stream, leaveOpen: false);
            var tensors = new List<KeyValuePair<string, Tensor>>();
            foreach (DictionaryEntry e in table)
            {
                if (e.Key is not string key || e.Value is not Tensor t)
                    throw new InvalidDataException($"entry {e.Key} is a {e.Value?.GetType().Name ?? "null"}, not a tensor");
                tensors.Add(new(key, t));
            }
            return (tensors, new Dictionary<string, string>());
        }
        catch (Exception e) when (e is not CheckpointException and not OutOfMemoryException)
        {
            throw new CheckpointException(
                $"{path} cannot be read as a PyTorch state_dict ({e.GetType().Name}: {e.Message}). It must be what " +
                "torch.save(model.state_dict(), path) writes (a zip with data.pkl and data/…); a whole pickled model, a " +
                "TorchScript file or a truncated copy does not work. Save it again, or use safetensors.", e);
        }
    }

    /// <summary>
    /// Refuses a .pt whose entries, inflated, hold more than <paramref name="maxBytes"/> bytes, or more than 64 times the file
    /// (stored weights do not compress; torch.save stores them uncompressed): every entry is inflated into a counter, never
    /// into memory, and the count stops at the bound. A declared size that the data does not keep is refused too.
    /// </summary>
    static void CheckZipSizes(string path, long maxBytes)
    {
        long fileLength = new FileInfo(path).Length;
        long limit = Math.Min(maxBytes, Math.Max(16L << 20, 64 * fileLength));
        string Refuse(string why) =>
            $"{path} cannot be read as a PyTorch state_dict: {why}. A torch.save of this course's networks holds at most {limit / 1e6:0.#} MB; " +
            "save the state_dict again, or use safetensors.";
        try
        {
            using var zip = ZipFile.OpenRead(path);
            if (zip.Entries.Count > 100_000) throw new CheckpointException(Refuse($"it has {zip.Entries.Count} entries"));
            long total = 0;
            var buffer = new byte[1 << 16];
            foreach (var entry in zip.Entries)
            {
                if (entry.Length < 0 || entry.Length > limit - total)
                    throw new CheckpointException(Refuse($"its entry {entry.FullName} claims {entry.Length / 1e6:0.#} MB"));
                using var s = entry.Open();
                long read = 0;
                for (int k; (k = s.Read(buffer)) > 0;)
                {
                    read += k;
                    if (read > entry.Length)
                        throw new CheckpointException(Refuse($"its entry {entry.FullName} inflates beyond the {entry.Length} bytes it declares"));
                }
                total += read;
            }
        }
        catch (Exception e) when (e is not CheckpointException and not OutOfMemoryException)
        {
            throw new CheckpointException(
                $"{path} cannot be read as a PyTorch state_dict ({e.GetType().Name}: {e.Message}). It must be what " +
                "torch.save(model.state_dict(), path) writes (a zip with data.pkl and data/…). Save it again, or use safetensors.", e);
        }
    }

    /// <summary>
    /// Checks that <paramref name="tensors"/> are exactly the module's state_dict (same keys, same shapes) and copies
    /// them in (cast to the module's dtype, as PyTorch's load_state_dict does). Every mismatch is named in the error.
    /// </summary>
    public static void LoadInto(nn.Module module, IReadOnlyList<KeyValuePair<string, Tensor>> tensors, string source, string fix)
    {
        var target = module.state_dict();
        var given = new Dictionary<string, Tensor>();
        var problems = new List<string>();
        foreach (var (k, v) in tensors)
            if (!given.TryAdd(k, v)) problems.Add($"key '{k}' appears twice in the file");
        static string S(long[] shape) => "[" + string.Join(", ", shape) + "]";
        foreach (var (k, v) in target)
        {
            if (!given.TryGetValue(k, out var t)) problems.Add($"missing key '{k}' (the network expects shape {S(v.shape)})");
            else if (!t.shape.SequenceEqual(v.shape)) problems.Add($"key '{k}': the file has shape {S(t.shape)}, the network expects {S(v.shape)}");
            else if (!t.is_floating_point() && v.is_floating_point()) problems.Add($"key '{k}': the file holds {t.dtype}, the network needs floating-point values");
        }
        foreach (var k in given.Keys.Where(k => !target.ContainsKey(k)))
            problems.Add($"unexpected key '{k}' (shape {S(given[k].shape)}) that this network does not have");
        if (problems.Count > 0)
        {
            const int shown = 8;
            var list = string.Join("; ", problems.Take(shown)) + (problems.Count > shown ? $"; and {problems.Count - shown} more" : "");
            throw new CheckpointException(
                $"the weights in {source} do not fit this U-Net ({problems.Count} problem{(problems.Count == 1 ? "" : "s")}): {list}. {fix}");
        }
        using var _ = no_grad();
        foreach (var (k, v) in target) v.copy_(given[k].to(v.dtype, v.device));
    }

    static readonly System.Text.Json.JsonSerializerOptions CompactJson = new(Checkpoint.JsonOptions)
    {
        WriteIndented = false,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>The configuration stored in a safetensors file exported by this course, if any.</summary>
    public static DiffusionModelConfig? ConfigFrom(IReadOnlyDictionary<string, string> metadata, string source)
    {
        if (!metadata.TryGetValue(ConfigMetadataKey, out var json)) return null;
        try
        {
            var config = System.Text.Json.JsonSerializer.Deserialize<DiffusionModelConfig>(json, Checkpoint.JsonOptions)
                         ?? throw new System.Text.Json.JsonException("null");
            config.Validate();                                            // bounds before any network is built from it
            return config;
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or ArgumentException or NotSupportedException or InvalidOperationException)
        {
            throw new CheckpointException($"{source}: the '{ConfigMetadataKey}' metadata is not a valid configuration ({e.Message}). Pass --like <checkpoint> instead.", e);
        }
    }

    /// <summary>Exports the (EMA, if present) weights of a course checkpoint; returns the network's configuration.</summary>
    public static DiffusionModelConfig ExportCheckpoint(string checkpointPath, string outPath, WeightsFormat format)
    {
        var (model, info) = Checkpoint.LoadModel(checkpointPath, preferEma: true);
        using (model)
        {
            var meta = new Dictionary<string, string>
            {
                [ConfigMetadataKey] = System.Text.Json.JsonSerializer.Serialize(info.Model, CompactJson),
                ["source"] = $"{Path.GetFileName(checkpointPath)}, step {info.Step}, {(info.HasEma ? "its EMA weights" : "its model weights (the checkpoint holds no separate EMA copy)")}",
            };
            Export(model, outPath, format, meta);
        }
        return info.Model;
    }

    /// <summary>
    /// Builds the U-Net of <paramref name="config"/>, loads <paramref name="weightsPath"/> into it (strict: every key, every
    /// shape) and writes a course checkpoint holding those weights (no EMA, no optimiser), which 'sample' can use.
    /// <paramref name="template"/> supplies the training options recorded in the new checkpoint.
    /// </summary>
    public static void ImportToCheckpoint(string weightsPath, DiffusionModelConfig config, CheckpointInfo? template, string outPath, string fix)
    {
        if (File.Exists(outPath) || Directory.Exists(outPath))
            throw new ArgumentException($"{outPath} already exists; it is not overwritten. Choose another --out or delete the file first.");
        try { config.Validate(); }
        catch (ArgumentException e) { throw new CheckpointException($"{weightsPath}: the network's configuration is invalid ({e.Message}).", e); }
        Platform.MemoryLimit.Check(MemoryBudget.Sampling(config, 1), "the network to import into", "it is too large for this machine", m => new CheckpointException(m));
        // The file may hold float64 tensors (8 bytes a parameter, as PyTorch's .double() writes), and a little pickle.
        long expected = 8 * config.Unet.EstimatedParameters() + (16 << 20);
        var (tensors, _) = Read(weightsPath, expected);
        try
        {
            using var model = new Unet(config.Unet);
            LoadInto(model, tensors, weightsPath, fix);
            var info = new CheckpointInfo
            {
                Model = config,
                Training = template?.Training ?? new TrainingOptions(),
                Step = template?.Step ?? 0,
                HasEma = false,
                HasOptimizer = false,
                RecentLoss = template?.RecentLoss ?? double.NaN,
                TrainingSeconds = template?.TrainingSeconds ?? 0,
            };
            // Written new: a file that appeared at outPath meanwhile is not replaced.
            if (!AtomicFile.CreateNew(outPath, tmp => Checkpoint.Save(tmp, new Checkpoint.Parts(info, Checkpoint.ModuleBytes(model), null, null))))
                throw new ArgumentException($"{outPath} already exists; it is not overwritten. Choose another --out or delete the file first.");
        }
        finally
        {
            foreach (var (_, t) in tensors) t.Dispose();
        }
    }

    /// <summary>The names of the zip entries of a .pt file (for checks and for people curious about the layout).</summary>
    public static IReadOnlyList<string> ZipEntries(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        return zip.Entries.Select(e => e.FullName).ToList();
    }
}
