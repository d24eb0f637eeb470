using System.Buffers.Binary;
using System.IO.Compression;

namespace Diffusion.Data;

/// <summary>Thrown for a data file that cannot be used; the message names the file, the problem and the fix.</summary>
public sealed class DataFormatException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>An unsigned-byte IDX array: its dimensions and its values in row-major order.</summary>
public sealed record IdxArray(int[] Dimensions, byte[] Data)
{
    public int Count => Dimensions[0];
}

/// <summary>
/// Reader for the IDX format of MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/), raw or gzip-compressed.
/// Header: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then each dimension as a
/// big-endian int32; then the values. Everything is checked before it is trusted: a lying header cannot make the
/// reader allocate more than the file really holds.
/// </summary>
public static class IdxFile
{
    /// <summary>Largest number of values accepted (1 G); Fashion-MNIST's training images are 47 M.</summary>
    public const long MaxValues = 1L << 30;

    public static IdxArray Read(string path)
    {
        if (!File.Exists(path))
            throw new DataFormatException($"{path}: file not found. Check the path (Fashion-MNIST ships in data/fashion-mnist).");
        InputFile.EnsureRegular(path, m => new DataFormatException(m));
        try
        {
            using var file = File.OpenRead(path);
            return Read(file, path);
        }
        catch (DataFormatException) { throw; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{path}: cannot be read ({e.Message}).", e);
        }
    }

    /// <summary>Reads from a stream; <paramref name="name"/> is used in error messages.</summary>
    public static IdxArray Read(Stream input, string name)
    {
        Stream stream = input;
        bool gzip = false;
        var peek = new byte[2];
        int peeked = ReadFully(input, peek);
        if (peeked == 2 && peek[0] == 0x1f && peek[1] == 0x8b)
        {
            gzip = true;
            stream = new GZipStream(new PrefixedStream(peek, input), CompressionMode.Decompress);
        }
        else
        {
            stream = new PrefixedStream(peek.AsSpan(0, peeked).ToArray(), input);
        }

        try
        {
            var head = new byte[4];
            if (ReadFully(stream, head) < 4)
                throw Bad(name, "is too short to hold an IDX header (4 bytes)", gzip);
            if (head[0] != 0 || head[1] != 0)
                throw Bad(name, $"does not start with an IDX magic number (first bytes {head[0]:X2} {head[1]:X2}, expected 00 00)", gzip);
            if (head[2] != 0x08)
                throw Bad(name, $"holds IDX type 0x{head[2]:X2} ({TypeName(head[2])}); only unsigned bytes (0x08) are images/labels", gzip);
            int rank = head[3];
            if (rank is < 1 or > 4)
                throw Bad(name, $"declares {rank} dimensions; labels have 1, images 3 (count, rows, columns)", gzip);

            var dimBytes = new byte[4 * rank];
            if (ReadFully(stream, dimBytes) < dimBytes.Length)
                throw Bad(name, "is truncated inside its header", gzip);
            var dims = new int[rank];
            long values = 1;
            for (int i = 0; i < rank; i++)
            {
                int d = BinaryPrimitives.ReadInt32BigEndian(dimBytes.AsSpan(4 * i));
                if (d <= 0) throw Bad(name, $"declares dimension {i} as {d}; every dimension must be positive", gzip);
                dims[i] = d;
                values *= d;
                if (values > MaxValues)
                    throw Bad(name, $"declares {string.Join("×", dims.Take(i + 1))}… values, more than the {MaxValues} this reader accepts", gzip);
            }

            // For a raw file the length is known: refuse before allocating anything.
            long headerLength = 4 + 4L * rank;
            if (!gzip && input.CanSeek)
            {
                long available = input.Length - headerLength;
                if (available != values)
                    throw Bad(name, available < values
                        ? $"is truncated: the header promises {values} values ({string.Join("×", dims)}) but only {available} bytes follow"
                        : $"has {available - values} bytes after the {values} values its header declares (wrong header or two files joined?)", gzip);
            }

            // Read in chunks so the buffer never outgrows what the file really holds.
            var data = new MemoryStream();
            var chunk = new byte[1 << 20];
            while (data.Length < values)
            {
                int want = (int)Math.Min(chunk.Length, values - data.Length);
                int got = ReadFully(stream, chunk.AsSpan(0, want));
                if (got == 0) break;
                data.Write(chunk, 0, got);
            }
            if (data.Length < values)
                throw Bad(name, $"is truncated: the header promises {values} values ({string.Join("×", dims)}) but only {data.Length} follow", gzip);
            if (stream.ReadByte() != -1)
                throw Bad(name, $"has data after the {values} values its header declares (wrong header or two files joined?)", gzip);
            return new IdxArray(dims, data.Length == data.Capacity ? data.GetBuffer() : data.ToArray());
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException($"{name}: the gzip stream is corrupt ({e.Message}). Restore the file from data/ or re-download it.", e);
        }
        catch (EndOfStreamException e)
        {
            throw new DataFormatException($"{name}: the gzip stream ends early (truncated .gz file). Restore the file.", e);
        }
        finally
        {
            if (!ReferenceEquals(stream, input)) stream.Dispose();
        }
    }

    /// <summary>Writes an unsigned-byte IDX file (raw, or gzip if the path ends in .gz), through the atomic writer.</summary>
    public static void Write(string path, IdxArray array)
    {
        long values = array.Dimensions.Aggregate(1L, (a, d) => a * d);
        if (values != array.Data.LongLength)
            throw new ArgumentException($"dimensions {string.Join("×", array.Dimensions)} do not match {array.Data.Length} values");
        bool gzip = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase);
        AtomicFile.Write(path, file =>
        {
            var output = gzip ? new GZipStream(file, CompressionLevel.Optimal, leaveOpen: true) : file;
            output.Write([0, 0, 0x08, (byte)array.Dimensions.Length]);
            var dim = new byte[4];
            foreach (var d in array.Dimensions)
            {
                BinaryPrimitives.WriteInt32BigEndian(dim, d);
                output.Write(dim);
            }
            output.Write(array.Data);
            if (gzip) output.Dispose();                 // finishes the gzip stream; the file itself is flushed and renamed by the writer
        });
    }

    static DataFormatException Bad(string name, string problem, bool gzip) =>
        new($"{name}: {(gzip ? "after gunzip, " : "")}{problem}. It is not a valid IDX file: restore it (data/README.md lists each file's sha256).");

    static string TypeName(byte type) => type switch
    {
        0x09 => "signed byte", 0x0B => "int16", 0x0C => "int32", 0x0D => "float32", 0x0E => "float64", _ => "unknown",
    };

    static int ReadFully(Stream s, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = s.Read(buffer[total..]);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    /// <summary>A stream that first replays a few already-read bytes.</summary>
    sealed class PrefixedStream(byte[] prefix, Stream inner) : Stream
    {
        int position;
        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
        public override int Read(Span<byte> buffer)
        {
            if (position < prefix.Length)
            {
                int n = Math.Min(buffer.Length, prefix.Length - position);
                prefix.AsSpan(position, n).CopyTo(buffer);
                position += n;
                return n;
            }
            return inner.Read(buffer);
        }
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
