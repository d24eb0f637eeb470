using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Diffusion.Training;

namespace Diffusion.Interop;

/// <summary>
/// The safetensors format (https://github.com/huggingface/safetensors), written and read here by hand because it is
/// this simple: an 8-byte little-endian header length N, N bytes of JSON
/// <c>{"__metadata__": {str: str}, name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}</c>
/// (offsets relative to the end of the header), then the tensors' raw little-endian bytes, row-major.
/// Why not TorchSharp.PyBridge's <c>save_safetensors</c>: 1.4.4 writes no <c>__metadata__</c> (so the file cannot carry
/// the network's configuration) and does not pad the header, so float32 data may start at an offset that is not a
/// multiple of 4; the reference writer pads the header with spaces to a multiple of 8, and so does this one.
/// </summary>
public static class SafetensorsFile
{
    /// <summary>Largest header accepted (the reference implementation's limit is 100 MB).</summary>
    const long MaxHeaderBytes = 100_000_000;

    /// <summary>The safetensors name of a dtype ("F32", ...) and its size in bytes.</summary>
    public static (string Name, int Size) DType(ScalarType type) => type switch
    {
        ScalarType.Float32 => ("F32", 4),
        ScalarType.Float64 => ("F64", 8),
        ScalarType.Float16 => ("F16", 2),
        ScalarType.BFloat16 => ("BF16", 2),
        ScalarType.Int64 => ("I64", 8),
        ScalarType.Int32 => ("I32", 4),
        ScalarType.Int16 => ("I16", 2),
        ScalarType.Int8 => ("I8", 1),
        ScalarType.Byte => ("U8", 1),
        ScalarType.Bool => ("BOOL", 1),
        _ => throw new ArgumentException($"safetensors has no dtype for {type}"),
    };

    static ScalarType? FromName(string name) => name switch
    {
        "F32" => ScalarType.Float32, "F64" => ScalarType.Float64, "F16" => ScalarType.Float16, "BF16" => ScalarType.BFloat16,
        "I64" => ScalarType.Int64, "I32" => ScalarType.Int32, "I16" => ScalarType.Int16, "I8" => ScalarType.Int8,
        "U8" => ScalarType.Byte, "BOOL" => ScalarType.Bool, _ => null,
    };

    /// <summary>Writes <paramref name="tensors"/> (in the given order) and string metadata to <paramref name="stream"/>.</summary>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var header = new JsonObject();
        if (metadata is { Count: > 0 })
        {
            var meta = new JsonObject();
            foreach (var (k, v) in metadata) meta[k] = v;
            header["__metadata__"] = meta;
        }
        long offset = 0;
        var blobs = new List<byte[]>();
        foreach (var (name, tensor) in list)
        {
            using var cpu = tensor.detach().cpu().contiguous();
            var (dtype, size) = DType(cpu.dtype);
            var bytes = cpu.bytes.ToArray();
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors stores little-endian data");
            if (bytes.LongLength != cpu.numel() * size) throw new InvalidOperationException($"{name}: {bytes.LongLength} bytes for {cpu.numel()} elements");
            header[name] = new JsonObject
            {
                ["dtype"] = dtype,
                ["shape"] = new JsonArray(cpu.shape.Select(d => (JsonNode)d).ToArray()),
                ["data_offsets"] = new JsonArray(offset, offset + bytes.LongLength),
            };
            offset += bytes.LongLength;
            blobs.Add(bytes);
        }
        var json = Encoding.UTF8.GetBytes(header.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        // Pad with spaces so that the data section starts at a multiple of 8 bytes (as the reference writer does).
        int padded = (json.Length + 7) / 8 * 8;
        var headerBytes = new byte[padded];
        json.CopyTo(headerBytes, 0);
        headerBytes.AsSpan(json.Length).Fill((byte)' ');
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
        stream.Write(length);
        stream.Write(headerBytes);
        foreach (var blob in blobs) stream.Write(blob);
    }

    /// <summary>One entry of the header.</summary>
    public sealed record Entry(string Name, string DType, long[] Shape, long Begin, long End);

    /// <summary>The parsed header: entries in file order, metadata, and where the data section starts.</summary>
    public sealed record Header(IReadOnlyList<Entry> Entries, IReadOnlyDictionary<string, string> Metadata, long DataStart);

    /// <summary>Parses and validates the header of a safetensors file held in <paramref name="bytes"/>.</summary>
    public static Header ReadHeader(ReadOnlySpan<byte> bytes, string path)
    {
        string Bad(string why) => $"{path} is not a valid safetensors file: {why}. Export it again (export --format safetensors) " +
                                  "or, from PyTorch, save it with safetensors.torch.save_file(model.state_dict(), path).";
        if (bytes.Length < 8) throw new CheckpointException(Bad($"it has {bytes.Length} bytes, fewer than the 8-byte header length"));
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (n > MaxHeaderBytes) throw new CheckpointException(Bad($"its header claims {n} bytes"));
        if ((long)n > bytes.Length - 8)
            throw new CheckpointException(Bad($"it is truncated: the header claims {n} bytes but only {bytes.Length - 8} follow"));
        long dataStart = 8 + (long)n, dataLength = bytes.Length - dataStart;
        var metadata = new Dictionary<string, string>();
        var entries = new List<Entry>();
        string? current = null;
        try
        {
            // Parsing the header whole first: invalid UTF-8, duplicate keys and wrong types surface here or below, and every one
            // of them is this file's error (the catch at the end), never a crash.
            var root = JsonNode.Parse(bytes.Slice(8, (int)n)) as JsonObject ?? throw new JsonException("the header is not a JSON object");
            foreach (var (name, node) in root)
            {
                current = name;
                if (name == "__metadata__")
                {
                    var meta = node as JsonObject ?? throw new JsonException("__metadata__ is not an object of strings");
                    foreach (var (k, v) in meta) metadata[k] = v?.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : v?.ToJsonString() ?? "";
                    continue;
                }
                var o = node as JsonObject ?? throw new JsonException("not an object");
                var dtype = o["dtype"]?.GetValue<string>() ?? throw new JsonException("no dtype");
                var shape = (o["shape"] ?? throw new JsonException("no shape")).AsArray().Select(d => d!.GetValue<long>()).ToArray();
                var offsets = (o["data_offsets"] ?? throw new JsonException("no data_offsets")).AsArray().Select(d => d!.GetValue<long>()).ToArray();
                if (offsets.Length != 2) throw new JsonException("data_offsets must be [begin, end]");
                var type = FromName(dtype) ?? throw new JsonException($"unknown dtype {dtype}");
                if (shape.Length > 16 || shape.Any(d => d < 0)) throw new JsonException($"shape [{string.Join(", ", shape)}] has negative or too many dimensions");
                if (offsets[0] < 0 || offsets[1] < offsets[0]) throw new JsonException($"data_offsets [{offsets[0]}, {offsets[1]}] are not an increasing pair of positions");
                long expected;
                try { expected = checked(shape.Aggregate(1L, (a, d) => a * d) * DType(type).Size); }
                catch (OverflowException) { throw new JsonException($"shape [{string.Join(", ", shape)}] has more elements than any file can hold"); }
                if (offsets[1] - offsets[0] != expected)
                    throw new JsonException($"shape [{string.Join(", ", shape)}] of {dtype} needs {expected} bytes, data_offsets give {offsets[1] - offsets[0]}");
                if (offsets[1] > dataLength)
                    throw new CheckpointException(Bad($"it is truncated: tensor '{name}' needs bytes {offsets[0]}..{offsets[1]} of the data, " +
                                                      $"but the file holds only {dataLength}"));
                entries.Add(new Entry(name, dtype, shape, offsets[0], offsets[1]));
            }
        }
        catch (Exception e) when (e is not CheckpointException and not OutOfMemoryException)
        {
            throw new CheckpointException(Bad(current is null ? $"its header is not JSON ({e.Message})" : $"its entry for '{current}' is malformed ({e.Message})"), e);
        }
        return new Header(entries, metadata, dataStart);
    }

    /// <summary>Reads every tensor of a safetensors file (CPU tensors, in file order) and its metadata.</summary>
    public static (List<KeyValuePair<string, Tensor>> Tensors, IReadOnlyDictionary<string, string> Metadata) Read(string path)
    {
        var bytes = InputFile.ReadAllBytes(path, InputFile.MaxModelFileBytes, "safetensors file");
        var header = ReadHeader(bytes, path);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var e in header.Entries)
        {
            var t = empty(e.Shape, FromName(e.DType)!.Value);
            t.bytes = bytes.AsSpan((int)(header.DataStart + e.Begin), (int)(e.End - e.Begin));
            tensors.Add(new(e.Name, t));
        }
        return (tensors, header.Metadata);
    }
}
