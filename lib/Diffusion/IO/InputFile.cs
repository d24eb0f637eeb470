using System.Runtime.InteropServices;

namespace Diffusion.IO;

/// <summary>
/// Opens the files a user hands to a reader with bounds: only regular files are read (a device such as /dev/zero never
/// ends, a FIFO never answers: both are refused before anything is opened), and never more bytes than the format allows
/// and the machine has. Every refusal is a <see cref="CheckpointException"/> (or the caller's own exception) naming the
/// path and the limit.
/// </summary>
public static class InputFile
{
    /// <summary>The largest model file read: one .NET array (the readers hold a file in one array to check its hash).</summary>
    public static readonly long MaxModelFileBytes = Array.MaxLength;

    /// <summary>What kind of thing <paramref name="path"/> is, when it is not a regular file or a folder ("a character device"); null otherwise.</summary>
    public static string? SpecialKind(string path)
    {
        if (OperatingSystem.IsWindows()) return null;
        int mode;
        try { mode = UnixMode(path); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
        if (mode < 0) return null;                                       // missing: the caller says so in its own words
        return (mode & 0xF000) switch
        {
            0x8000 or 0x4000 => null,                                    // regular file, folder
            0x1000 => "a FIFO (named pipe)",
            0x2000 => "a character device",
            0x6000 => "a block device",
            0xC000 => "a socket",
            _ => "not a regular file",
        };
    }

    /// <summary>Throws <paramref name="error"/>'s exception unless <paramref name="path"/> is a regular file (devices, FIFOs and sockets are refused unopened).</summary>
    public static void EnsureRegular(string path, Func<string, Exception>? error = null)
    {
        if (SpecialKind(path) is { } kind)
            throw (error ?? (m => new CheckpointException(m)))($"{path} is {kind}, not a file: pass a file.");
    }

    /// <summary>
    /// Reads a regular file of at most <paramref name="maxBytes"/> bytes whole. Special files, files larger than the
    /// limit or than half the memory this process may use are refused before anything is allocated.
    /// </summary>
    public static byte[] ReadAllBytes(string path, long maxBytes, string what, Func<string, Exception>? error = null)
    {
        var fail = error ?? (m => new CheckpointException(m));
        EnsureRegular(path, fail);
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            long length = stream.Length;
            if (length > Math.Min(maxBytes, Array.MaxLength))
                throw fail($"{path} holds {Megabytes(length)}, more than a {what} can be ({Megabytes(Math.Min(maxBytes, Array.MaxLength))}): it is not a {what} of this course.");
            Platform.MemoryLimit.Check(2 * length, $"reading {path} ({Megabytes(length)})", "free memory or use a smaller file", fail);
            var bytes = new byte[length];
            stream.ReadExactly(bytes);
            return bytes;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw fail($"{path} cannot be read: {e.Message}");
        }
    }

    static string Megabytes(long bytes) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{bytes / 1e6:0.#} MB");

    /// <summary>st_mode of <paramref name="path"/> (symbolic links followed), or −1 if it does not exist.</summary>
    static int UnixMode(string path)
    {
        // The runtime's own stat (System.Native), whose FileStatus layout is the same on every Unix .NET runs on:
        // int32 Flags, int32 Mode (S_IF* type bits in 0xF000), … 
        var status = new byte[256];
        if (SystemNativeStat(path, status) != 0) return -1;
        return BitConverter.ToInt32(status, 4);
    }

    [DllImport("libSystem.Native", EntryPoint = "SystemNative_Stat", CharSet = CharSet.Ansi, SetLastError = true)]
    static extern int SystemNativeStat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, [Out] byte[] output);
}
