using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Diffusion.IO;

/// <summary>
/// The frame of the course's single-file formats (autoencoder, mini-CLIP, text-to-image model, classifier; checkpoints
/// hash as they stream): an 8-byte magic, the body, then a SHA-256 of everything before it. Written atomically
/// (<see cref="AtomicFile"/>: a crash leaves the old file or the new one, never a torn one); the hash catches a file
/// truncated or damaged later. Blocks of the body are an int64 length and that many bytes.
/// </summary>
public static class HashedFile
{
    /// <summary>Bytes of the SHA-256 at the end of the file.</summary>
    public const int HashLength = 32;

    /// <summary>Writes <paramref name="magic"/>, what <paramref name="write"/> writes, and the hash of both, atomically.</summary>
    public static void Write(string path, byte[] magic, Action<BinaryWriter> write)
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(magic);
            write(w);
        }
        var body = ms.ToArray();
        AtomicFile.WriteAllBytes(path, [.. body, .. SHA256.HashData(body)]);
    }

    /// <summary>
    /// A reader of the body of <paramref name="bytes"/> (a whole file), placed after the magic, once the frame is
    /// checked: <paramref name="wrongHeader"/> is thrown when the file does not start with <paramref name="magic"/> or is
    /// shorter than the magic, <paramref name="minimumBody"/> bytes and the hash; <paramref name="damaged"/> when the hash
    /// does not match.
    /// </summary>
    public static BinaryReader Open(byte[] bytes, byte[] magic, Func<Exception> wrongHeader, Func<Exception> damaged, int minimumBody = 0)
    {
        if (bytes.Length < magic.Length + minimumBody + HashLength || !bytes.AsSpan(0, magic.Length).SequenceEqual(magic))
            throw wrongHeader();
        var body = bytes.AsSpan(0, bytes.Length - HashLength);
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(bytes.AsSpan(bytes.Length - HashLength)))
            throw damaged();
        var r = new BinaryReader(new MemoryStream(bytes, 0, body.Length, writable: false));
        r.ReadBytes(magic.Length);
        return r;
    }

    /// <summary>
    /// A reader of the body of the file at <paramref name="path"/>, as <see cref="Open(byte[], byte[], Func{Exception}, Func{Exception}, int)"/>,
    /// after checking it is a file: each problem is a <see cref="CheckpointException"/> with the message <paramref name="say"/> gives for it.
    /// </summary>
    public static BinaryReader Open(string path, byte[] magic, FileMessages say, int minimumBody = 0)
    {
        if (Directory.Exists(path)) throw new CheckpointException(say.Folder);
        if (!File.Exists(path)) throw new CheckpointException(say.Missing);
        var bytes = InputFile.ReadAllBytes(path, InputFile.MaxModelFileBytes, "model file");
        return Open(bytes, magic, () => new CheckpointException(say.WrongHeader), () => new CheckpointException(say.Damaged), minimumBody);
    }

    /// <summary>Writes <paramref name="value"/> as UTF-8 JSON after its length as an int32 (the description block of the formats that start with one).</summary>
    public static void WriteJson<T>(BinaryWriter w, T value, JsonSerializerOptions? options = null)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(value, options);
        w.Write(json.Length);
        w.Write(json);
    }

    /// <summary>Writes a block: its length (int64), then its bytes.</summary>
    public static void WriteBlock(BinaryWriter w, byte[] block)
    {
        w.Write((long)block.Length);
        w.Write(block);
    }

    /// <summary>Reads a block written by <see cref="WriteBlock"/>.</summary>
    public static byte[] ReadBlock(BinaryReader r) => ReadBytes(r, r.ReadInt64());

    /// <summary>Reads the JSON block of <see cref="WriteJson"/> (an int32 length, then UTF-8 JSON); the length is checked against the file first.</summary>
    public static byte[] ReadJson(BinaryReader r) => ReadBytes(r, r.ReadInt32());

    /// <summary>
    /// Reads a hashed format's contents with <paramref name="read"/>; whatever a crafted file makes the parser throw (a length
    /// past the end, JSON of the wrong types, values out of bounds, weights that do not fit) becomes one
    /// <see cref="CheckpointException"/> that names <paramref name="path"/>.
    /// </summary>
    public static T Guard<T>(string path, string what, Func<T> read)
    {
        try { return read(); }
        catch (Exception e) when (e is not CheckpointException and not OutOfMemoryException)
        {
            throw new CheckpointException($"{path}: the {what}'s contents are malformed ({e.Message}).", e);
        }
    }

    /// <summary>Reads <paramref name="length"/> bytes; <see cref="EndOfStreamException"/> when the rest of the file is shorter (or the length negative).</summary>
    public static byte[] ReadBytes(BinaryReader r, long length) =>
        length < 0 || length > r.BaseStream.Length - r.BaseStream.Position
            ? throw new EndOfStreamException($"a block claims {length} bytes but the file has fewer")
            : r.ReadBytes((int)length);
}

/// <summary>
/// What a single-file format says when the path it is given is a folder, missing, not one of its files, or damaged: each
/// message names the path and how to get a good file.
/// </summary>
public sealed record FileMessages(string Folder, string Missing, string WrongHeader, string Damaged);
