using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Diffusion.Data;

namespace Diffusion.Training;

/// <summary>The readable part of a checkpoint.</summary>
public sealed record CheckpointInfo
{
    public int FormatVersion { get; init; } = Checkpoint.FormatVersion;
    public required DiffusionModelConfig Model { get; init; }
    public required TrainingOptions Training { get; init; }
    /// <summary>Optimiser steps done.</summary>
    public int Step { get; init; }
    /// <summary>Where the batch order stands (epoch, offset), so a resumed run sees the same batches.</summary>
    public OrderPosition DataPosition { get; init; }
    /// <summary>State of the seeded random generator (t, ε, flips), base64.</summary>
    public string GeneratorState { get; init; } = "";
    public bool HasEma { get; init; }
    public bool HasOptimizer { get; init; }
    /// <summary>Mean training loss over the last logged steps.</summary>
    public double RecentLoss { get; init; } = double.NaN;
    public DateTime SavedUtc { get; init; } = DateTime.UtcNow;
    public double TrainingSeconds { get; init; }
}

/// <summary>
/// A single-file checkpoint: "DDPMCKPT", format version, JSON <see cref="CheckpointInfo"/>, model weights, EMA weights,
/// optimiser state, then a SHA-256 of everything before it. Written with temp file + rename, so a crash at any moment
/// leaves either the old or the new checkpoint, never a torn one; the hash catches a file truncated or damaged later.
/// </summary>
public static class Checkpoint
{
    public const int FormatVersion = 1;
    static readonly byte[] Magic = "DDPMCKPT"u8.ToArray();
    public static JsonSerializerOptions JsonOptions => Json;
    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>The raw parts of a checkpoint.</summary>
    public sealed record Parts(CheckpointInfo Info, byte[] Model, byte[]? Ema, byte[]? Optimizer);

    public static void Save(string path, Parts parts)
    {
        AtomicFile.Write(path, stream =>
        {
            using var hashing = new HashingStream(stream);
            using (var w = new BinaryWriter(hashing, Encoding.UTF8, leaveOpen: true))
            {
                w.Write(Magic);
                w.Write(FormatVersion);
                HashedFile.WriteBlock(w, JsonSerializer.SerializeToUtf8Bytes(parts.Info, Json));
                HashedFile.WriteBlock(w, parts.Model);
                HashedFile.WriteBlock(w, parts.Ema ?? []);
                HashedFile.WriteBlock(w, parts.Optimizer ?? []);
            }
            stream.Write(hashing.Hash());
        });
    }

    /// <summary>Reads and verifies a checkpoint file.</summary>
    public static Parts Load(string path)
    {
        if (Directory.Exists(path))
            throw new CheckpointException($"{path} is a folder: pass the checkpoint file inside it (e.g. {Path.Combine(path, "checkpoint.ckpt")}).");
        if (!File.Exists(path))
            throw new CheckpointException($"checkpoint {path} not found. Train first (train --out DIR writes DIR/checkpoint.ckpt).");
        var bytes = InputFile.ReadAllBytes(path, InputFile.MaxModelFileBytes, "checkpoint");
        return Parse(bytes, path);
    }

    /// <summary>Only the readable info (config, step) of a checkpoint, after verifying the whole file.</summary>
    public static CheckpointInfo ReadInfo(string path) => Load(path).Info;

    internal static Parts Parse(byte[] bytes, string path)
    {
        using var reader = HashedFile.Open(bytes, Magic,
            () => new CheckpointException($"{path} is not a checkpoint of this course (wrong header). Pass the checkpoint.ckpt that 'train' wrote."),
            () => new CheckpointException(
                $"{path} is damaged or truncated (its SHA-256 check failed). Use an earlier copy, or train again; " +
                "checkpoints written by 'train' are replaced atomically, so this file was changed after it was written."),
            minimumBody: 4);
        try
        {
            int version = reader.ReadInt32();
            if (version != FormatVersion)
                throw new CheckpointException($"{path} has checkpoint format {version}; this library reads format {FormatVersion}.");
            var info = JsonSerializer.Deserialize<CheckpointInfo>(HashedFile.ReadBlock(reader), Json)
                       ?? throw new CheckpointException($"{path}: empty checkpoint description");
            Check(info, path);
            var model = HashedFile.ReadBlock(reader);
            var ema = HashedFile.ReadBlock(reader);
            var optimizer = HashedFile.ReadBlock(reader);
            return new Parts(info, model, ema.Length > 0 ? ema : null, optimizer.Length > 0 ? optimizer : null);
        }
        catch (Exception e) when (e is not CheckpointException and not OutOfMemoryException)
        {
            // Whatever a crafted description or block length makes the parser throw (JSON of the wrong types, a length
            // past the end, a value out of its type's range) is one error about this file.
            throw new CheckpointException($"{path}: the checkpoint's contents are malformed ({e.Message}).", e);
        }
    }

    /// <summary>
    /// The description's values within their bounds (the same validation the command line uses), before anything is built
    /// from them: a file with a valid hash may still have been written to harm.
    /// </summary>
    static void Check(CheckpointInfo info, string path)
    {
        try
        {
            if (info.Model is null || info.Training is null) throw new ArgumentException("the model or training description is missing");
            info.Model.Validate();
            info.Training.Validate();
            if (info.Step < 0) throw new ArgumentException($"it claims step {info.Step}; steps count from 0");
            if (info.DataPosition.Epoch < 0 || info.DataPosition.Offset < 0)
                throw new ArgumentException($"its data position (epoch {info.DataPosition.Epoch}, offset {info.DataPosition.Offset}) is negative");
            if (info.GeneratorState is null || info.GeneratorState.Length > 1 << 20) throw new ArgumentException("its random-generator state is missing or too long");
            if (!double.IsFinite(info.TrainingSeconds) || info.TrainingSeconds < 0)
                throw new ArgumentException($"its training time {info.TrainingSeconds} s is not a number ≥ 0");
        }
        catch (ArgumentException e)
        {
            throw new CheckpointException($"{path} cannot be used: {e.Message}. Use the checkpoint 'train' wrote, or an earlier copy.", e);
        }
    }

    /// <summary>Serialises a module's weights (TorchSharp's format) to bytes.</summary>
    public static byte[] ModuleBytes(TorchSharp.torch.nn.Module module)
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, Encoding.UTF8, leaveOpen: true)) module.save(w);
        return ms.ToArray();
    }

    /// <summary>Loads weights saved by <see cref="ModuleBytes"/> into a module of the same architecture.</summary>
    public static void LoadModule(TorchSharp.torch.nn.Module module, byte[] bytes, string what)
    {
        try
        {
            using var r = new BinaryReader(new MemoryStream(bytes));
            module.load(r, strict: true);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or EndOfStreamException or IOException
                                       or FormatException or OverflowException or System.Runtime.InteropServices.ExternalException)
        {
            throw new CheckpointException(
                $"the {what} weights in the checkpoint do not fit the network built from its configuration ({e.Message}).", e);
        }
    }

    /// <summary>
    /// Builds the network of a checkpoint (<see cref="DiffusionModelConfig.CreateNetwork"/>) and loads its weights (EMA
    /// weights if present and asked for); in eval mode.
    /// </summary>
    public static (IDenoisingNetwork Network, CheckpointInfo Info) LoadNetwork(string path, bool preferEma = true,
        TorchSharp.torch.Device? device = null)
    {
        var parts = Load(path);
        Platform.MemoryLimit.Check(MemoryBudget.Sampling(parts.Info.Model, 1), $"the network of {path}", "it is too large for this machine",
            m => new CheckpointException(m));
        var network = parts.Info.Model.CreateNetwork();
        try
        {
            bool ema = preferEma && parts.Ema is not null;
            LoadModule(network.AsModule(), ema ? parts.Ema! : parts.Model, ema ? "EMA" : "model");
            if (device is not null) network.MoveTo(device);
            network.eval();
        }
        catch
        {
            network.Dispose();
            throw;
        }
        return (network, parts.Info);
    }

    /// <summary>
    /// <see cref="LoadNetwork"/> for a checkpoint of a U-Net (the course's network), typed as one; another family's
    /// checkpoint is a <see cref="CheckpointException"/> that says to use <see cref="LoadNetwork"/>.
    /// </summary>
    public static (Unet Model, CheckpointInfo Info) LoadModel(string path, bool preferEma = true,
        TorchSharp.torch.Device? device = null)
    {
        var (network, info) = LoadNetwork(path, preferEma, device);
        if (network is Unet unet) return (unet, info);
        network.Dispose();
        throw new CheckpointException($"{path} holds a {info.Model.NetworkName}, not a U-Net: load it with Checkpoint.LoadNetwork.");
    }

    /// <summary>A stream that hashes everything written through it.</summary>
    sealed class HashingStream(Stream inner) : Stream
    {
        readonly IncrementalHash hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        public byte[] Hash() => hash.GetHashAndReset();
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
        public override void Write(ReadOnlySpan<byte> buffer)
        {
            hash.AppendData(buffer);
            inner.Write(buffer);
        }
        public override void Flush() => inner.Flush();
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        protected override void Dispose(bool disposing)
        {
            if (disposing) hash.Dispose();
            base.Dispose(disposing);
        }
    }
}
