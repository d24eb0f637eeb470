using System.Runtime.InteropServices;

namespace Diffusion.IO;

/// <summary>
/// Writes files so that a reader (or a crash) never sees half of one: the bytes go to a temporary file in the same
/// folder, are flushed to disk (fsync), the temporary file is renamed over the target (an atomic step on POSIX and NTFS),
/// and on POSIX the folder is synced too, so that the rename itself survives a power cut.
/// </summary>
public static class AtomicFile
{
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        var copy = bytes.ToArray();
        Write(path, s => s.Write(copy));
    }

    public static void WriteAllText(string path, string text) =>
        WriteAllBytes(path, System.Text.Encoding.UTF8.GetBytes(text));

    /// <summary>Calls <paramref name="write"/> on a temporary file, then renames it to <paramref name="path"/>.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        // The rename would replace a device or FIFO (/dev/null, as root) with a regular file: never.
        if (InputFile.SpecialKind(full) is { } kind)
            throw new IOException($"{path} is {kind}, not a file: name a regular file to write.");
        var dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        var tmp = TemporaryPath(full);
        try
        {
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
            SyncFolder(dir);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>A new hidden name in <paramref name="path"/>'s folder for a temporary file of it (see <see cref="IsTemporaryFileOf"/>).</summary>
    public static string TemporaryPath(string path)
    {
        var full = Path.GetFullPath(path);
        return Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
    }

    /// <summary>
    /// Moves the finished file <paramref name="source"/> (in the same folder) to <paramref name="path"/> only if nothing is
    /// there, in one step that itself refuses an existing name: on POSIX a hard link (link(2) fails with EEXIST if the name
    /// exists) and then the removal of <paramref name="source"/>; on Windows MoveFileEx without replace. So a file created at
    /// <paramref name="path"/> at any moment before is never replaced. (File.Move without overwrite is not enough on Linux:
    /// it checks, then renames.) Returns false, leaving <paramref name="source"/> where it is, if <paramref name="path"/> exists.
    /// </summary>
    public static bool MoveNew(string source, string path)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full)!;
        if (File.Exists(full) || Directory.Exists(full) || InputFile.SpecialKind(full) is not null) return false;
        if (!OperatingSystem.IsWindows())
        {
            try
            {
                if (link(source, full) == 0)
                {
                    File.Delete(source);
                    SyncFolder(dir);
                    return true;
                }
                if (Marshal.GetLastPInvokeError() == EEXIST) return false;
                // Any other failure (a file system without hard links): the check-then-rename below.
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        }
        try { File.Move(source, full, overwrite: false); }
        catch (IOException) when (File.Exists(full) || Directory.Exists(full)) { return false; }
        SyncFolder(dir);
        return true;
    }

    /// <summary>
    /// Writes a new file: <paramref name="save"/> writes a hidden temporary file beside <paramref name="path"/> (given its
    /// name), which <see cref="MoveNew"/> then puts in place. Returns false, with nothing left behind, if
    /// <paramref name="path"/> exists by then.
    /// </summary>
    public static bool CreateNew(string path, Action<string> save)
    {
        var tmp = TemporaryPath(path);
        try
        {
            save(tmp);
            return MoveNew(tmp, path);
        }
        finally
        {
            try { if (File.Exists(tmp)) File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    const int EEXIST = 17;                                            // Linux and macOS alike

    [DllImport("libc", SetLastError = true)]
    static extern int link([MarshalAs(UnmanagedType.LPUTF8Str)] string oldPath, [MarshalAs(UnmanagedType.LPUTF8Str)] string newPath);

    /// <summary>The name <see cref="Write"/> gives its temporary file for <paramref name="fileName"/>: hidden, with this process's id and a GUID.</summary>
    public static bool IsTemporaryFileOf(string name, string fileName) =>
        System.Text.RegularExpressions.Regex.IsMatch(name, "^\\." + System.Text.RegularExpressions.Regex.Escape(fileName) + "\\.[0-9]+\\.[0-9a-f]{32}\\.tmp$");

    /// <summary>fsync on the folder, which makes a rename in it durable (POSIX; on Windows NTFS journals the rename itself).</summary>
    static void SyncFolder(string dir)
    {
        if (OperatingSystem.IsWindows()) return;
        try
        {
            int fd = open(dir, 0);                                     // O_RDONLY: a folder can be opened for reading and synced
            if (fd < 0) return;
            try { fsync(fd); }
            finally { close(fd); }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    [DllImport("libc", SetLastError = true)]
    static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", SetLastError = true)]
    static extern int fsync(int fd);

    [DllImport("libc", SetLastError = true)]
    static extern int close(int fd);
}
