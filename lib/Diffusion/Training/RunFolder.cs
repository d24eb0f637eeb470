using System.Globalization;
using System.Runtime.InteropServices;

namespace Diffusion.Training;

/// <summary>A run folder that cannot be used: in use by another process, or holding files a run did not write.</summary>
public sealed class RunFolderException(string message) : IOException(message);

/// <summary>
/// One run per folder. <see cref="Claim"/> takes an exclusive operating-system lock on the folder's marker file
/// <c>run.lock</c> (flock on Linux and macOS, a share-none handle on Windows), held until <see cref="Dispose"/> — or until
/// the process dies: the kernel releases it, so a killed run never leaves a stale lock. A second process is refused with
/// the holder's PID (written into the marker). The marker also says "this folder is a run's": a new run starts only in a
/// new or empty folder or in one that carries the marker, so files the project did not write are never overwritten, and
/// the only files ever deleted are the temporary files of the project's own atomic writes.
/// </summary>
public sealed class RunFolder : IDisposable
{
    public const string MarkerFileName = "run.lock";
    const string MarkerText = "diffusion course run folder";

    /// <summary>The files a run writes (their leftover temporary files are the only files removed).</summary>
    public static readonly string[] RunFiles =
        [Trainer.CheckpointFileName, "model.ckpt", LossLog.FileName, "run.json", "samples.png", "denoising.gif"];

    readonly FileStream marker;

    /// <summary>The folder, as given.</summary>
    public string Path { get; }

    readonly bool createdMarker;

    RunFolder(string path, FileStream marker, bool createdMarker)
    {
        Path = path;
        this.marker = marker;
        this.createdMarker = createdMarker;
    }

    /// <summary>
    /// Creates <paramref name="path"/> if needed and locks it for this process. <paramref name="resume"/>: the folder may be a
    /// run folder written before run folders carried a marker (it holds a checkpoint.ckpt).
    /// </summary>
    public static RunFolder Claim(string path, bool resume = false, IEnumerable<string>? ownFiles = null)
    {
        if (File.Exists(path)) throw new RunFolderException($"--out {path} is a file, not a folder: choose a folder for the run.");
        Directory.CreateDirectory(path);
        var markerPath = System.IO.Path.Combine(path, MarkerFileName);
        bool existed = File.Exists(markerPath);
        FileStream stream;
        try
        {
            stream = new FileStream(markerPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException && File.Exists(markerPath))
        {
            throw InUse(path, markerPath);
        }
        try
        {
            if (!Lock(stream)) throw InUse(path, markerPath);
            var own = new HashSet<string>(RunFiles.Concat(ownFiles ?? []).Append(MarkerFileName), StringComparer.Ordinal);
            // An empty marker is one a process made and was killed before writing to.
            bool marked = existed && (stream.Length == 0 || ReadAll(stream).StartsWith(MarkerText, StringComparison.Ordinal));
            if (!marked)
            {
                var foreign = Directory.EnumerateFileSystemEntries(path).Select(System.IO.Path.GetFileName)
                    .Where(n => n != MarkerFileName).Order(StringComparer.Ordinal).ToList();
                bool olderRun = resume && File.Exists(System.IO.Path.Combine(path, Trainer.CheckpointFileName));
                if ((existed || foreign.Count > 0) && !olderRun)
                {
                    var shown = (existed ? foreign.Prepend(MarkerFileName) : foreign).Take(4).ToList();
                    throw new RunFolderException(
                        $"--out {path} is not empty and not a run folder (it holds {string.Join(", ", shown)}{(foreign.Count + (existed ? 1 : 0) > 4 ? ", …" : "")}): " +
                        "a run starts in a new or empty folder, so that nothing of yours is overwritten. Choose another --out; nothing in it was changed.");
                }
            }
            stream.SetLength(0);
            stream.Write(System.Text.Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
                $"{MarkerText}; in use by process {Environment.ProcessId} while this file is locked\n")));
            stream.Flush(flushToDisk: true);
            var folder = new RunFolder(path, stream, createdMarker: !existed);
            folder.RemoveTemporaryFiles(own);
            return folder;
        }
        catch
        {
            bool created = !existed && stream.Length == 0;
            stream.Dispose();
            if (created) TryDelete(markerPath);                         // the empty marker this call made, nothing else
            throw;
        }
    }

    /// <summary>
    /// Removes what a killed run's atomic writes left behind (hidden temporary files of the run's own files, named as
    /// <see cref="AtomicFile"/> names them). The checkpoint itself is intact: it is only ever replaced by a rename.
    /// </summary>
    void RemoveTemporaryFiles(IEnumerable<string> own)
    {
        foreach (var file in Directory.EnumerateFiles(Path, ".*.tmp"))
        {
            var name = System.IO.Path.GetFileName(file);
            if (own.Any(o => AtomicFile.IsTemporaryFileOf(name, o))) TryDelete(file);
        }
    }

    static void TryDelete(string file)
    {
        try { File.Delete(file); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    static string ReadAll(FileStream stream)
    {
        stream.Position = 0;
        var buffer = new byte[Math.Min(stream.Length, 4096)];
        stream.ReadExactly(buffer);
        return System.Text.Encoding.UTF8.GetString(buffer);
    }

    static RunFolderException InUse(string path, string markerPath)
    {
        var text = ReadWithoutLock(markerPath);
        var holder = System.Text.RegularExpressions.Regex.Match(text ?? "", @"process (\d+)");
        return new RunFolderException(
            $"--out {path} is in use by {(holder.Success ? $"process {holder.Groups[1].Value}" : "another process")} (a train or --resume " +
            "running there): one run per folder. Wait for it to finish or stop it, or choose another --out.");
    }

    /// <summary>flock(LOCK_EX | LOCK_NB) on the stream's descriptor: true if this process holds the lock.</summary>
    static bool Lock(FileStream stream)
    {
        if (OperatingSystem.IsWindows()) return true;                    // FileShare.None is the lock there
        try
        {
            return flock((int)stream.SafeFileHandle.DangerousGetHandle(), 2 | 4) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return true; }
    }

    /// <summary>The marker's text, read past the lock (a flock does not stop reading; .NET's FileStream would ask for a shared lock).</summary>
    static string? ReadWithoutLock(string file)
    {
        if (OperatingSystem.IsWindows()) return null;
        try
        {
            int fd = open(file, 0);
            if (fd < 0) return null;
            try
            {
                var buffer = new byte[4096];
                nint n = read(fd, buffer, buffer.Length);
                return n > 0 ? System.Text.Encoding.UTF8.GetString(buffer, 0, (int)n) : null;
            }
            finally { close(fd); }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
    }

    /// <summary>
    /// Releases the lock. The marker stays (the folder remains a run folder), unless this claim made it and the run wrote
    /// nothing beside it (it failed before its first file): then the folder is left as empty as it was found.
    /// </summary>
    public void Dispose()
    {
        try
        {
            // Deleted while still locked, so that no other process can have claimed this marker in between.
            if (createdMarker && Directory.EnumerateFileSystemEntries(Path).All(e => System.IO.Path.GetFileName(e) == MarkerFileName))
                TryDelete(marker.Name);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        marker.Dispose();
    }

    [DllImport("libc", SetLastError = true)]
    static extern int flock(int fd, int operation);

    [DllImport("libc", SetLastError = true)]
    static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", SetLastError = true)]
    static extern nint read(int fd, [Out] byte[] buffer, nint count);

    [DllImport("libc", SetLastError = true)]
    static extern int close(int fd);
}
