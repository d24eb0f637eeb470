using System.Runtime.InteropServices;

namespace Diffusion.Cli;

/// <summary>
/// Outputs never clobber, declared once for every command that writes files the user names: each output is checked
/// before any work starts. An output that is one of the command's inputs (the same file, also through a symbolic link) is
/// refused always; an output that exists is refused unless --overwrite is given; a folder is never an output file. The
/// files themselves are written through <see cref="AtomicFile"/>, so a failure leaves the old file as it was.
/// </summary>
sealed class OutputOptions
{
    readonly Option<bool> overwrite = Opt("--overwrite", "Replace output files that already exist (never one of the command's inputs)", false);

    public OutputOptions(Command command) => command.Options.Add(overwrite);

    /// <summary>Whether --overwrite was given.</summary>
    public bool Overwrite(ParseResult p) => p.GetValue(overwrite);

    /// <summary>
    /// <paramref name="path"/>, given as <paramref name="option"/>, checked against the inputs (option name, path; null paths
    /// are skipped) and against what exists. Returns the path.
    /// </summary>
    public string Check(ParseResult p, string path, string option, params (string Option, string? Path)[] inputs)
    {
        foreach (var (inputOption, input) in inputs)
            if (input is not null && Outputs.SameFile(path, input))
                throw new CliException($"{option} {path} is the {inputOption} this command reads: it is never written over (not even with --overwrite). Choose another {option}.");
        if (Directory.Exists(path))
            throw new CliException($"{option} {path} is a folder: name a file to write.");
        // A device or FIFO (/dev/null, /dev/stdout) would be replaced by a regular file by the atomic rename: never.
        if (InputFile.SpecialKind(path) is { } kind)
            throw new CliException($"{option} {path} is {kind}, not a file: name a regular file to write (not even --overwrite replaces it).");
        if (File.Exists(path) && !p.GetValue(overwrite))
            throw new CliException($"{option} {path} already exists: choose another {option}, or pass --overwrite to replace it.");
        return path;
    }

    /// <summary>
    /// A folder that files named by the command are written into (--grids): refused if it is a file, or if it already holds
    /// files matching <paramref name="pattern"/> (unless --overwrite), since their names are known only as the work goes on.
    /// </summary>
    public string CheckFolder(ParseResult p, string folder, string option, string pattern)
    {
        if (File.Exists(folder)) throw new CliException($"{option} {folder} is a file: name a folder to write into.");
        if (Directory.Exists(folder) && !p.GetValue(overwrite) && Directory.EnumerateFiles(folder, pattern).FirstOrDefault() is { } existing)
            throw new CliException($"{option} {folder} already holds {Path.GetFileName(existing)}: choose a new or empty folder, or pass --overwrite to replace its files.");
        return folder;
    }
}

static class Outputs
{
    /// <summary>True if <paramref name="a"/> and <paramref name="b"/> name the same file (symbolic links and relative parts resolved).</summary>
    public static bool SameFile(string a, string b)
    {
        var ra = Canonical(a);
        var rb = Canonical(b);
        return string.Equals(ra, rb, OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);
    }

    /// <summary>The absolute path with every symbolic link resolved (of the file if it exists, else of its folder).</summary>
    static string Canonical(string path)
    {
        var full = Path.GetFullPath(path);
        if (RealPath(full) is { } real) return real;
        var dir = Path.GetDirectoryName(full);
        return dir is not null && RealPath(dir) is { } realDir ? Path.Combine(realDir, Path.GetFileName(full)) : full;
    }

    static string? RealPath(string path)
    {
        if (OperatingSystem.IsWindows()) return File.Exists(path) || Directory.Exists(path) ? Path.GetFullPath(path) : null;
        try
        {
            var p = realpath(path, IntPtr.Zero);
            if (p == IntPtr.Zero) return null;
            try { return Marshal.PtrToStringUTF8(p); }
            finally { free(p); }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
    }

    [DllImport("libc", SetLastError = true)]
    static extern IntPtr realpath([MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr resolved);

    [DllImport("libc")]
    static extern void free(IntPtr p);
}
