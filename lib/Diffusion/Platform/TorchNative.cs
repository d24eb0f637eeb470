using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Diffusion.Platform;

/// <summary>What <see cref="TorchNative.EnsureLoaded"/> did.</summary>
/// <param name="LibTorchSharp">The libLibTorchSharp file that is loaded (a patched copy if <paramref name="Patched"/>).</param>
/// <param name="Patched">True when the GLIBCXX_3.4.32 requirement had to be weakened (Debian 12, Ubuntu 22.04).</param>
/// <param name="Summary">One line for a log or a notebook.</param>
public sealed record TorchLoadReport(string? LibTorchSharp, bool Patched, string Summary);

/// <summary>Thrown when TorchSharp's native library cannot be made to load; the message names the file and the fix.</summary>
public sealed class TorchLoadException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Makes TorchSharp 0.107.0 load on Linux systems whose libstdc++ is older than GCC 13 (Debian 12, Ubuntu 22.04).
/// <para>
/// Why: TorchSharp's libLibTorchSharp.so asks for the symbol version GLIBCXX_3.4.32, which only GCC 13's libstdc++
/// has. The one symbol under that version, <c>std::ios_base_library_init()</c>, is a marker with no relocation, so
/// the library runs fine with an older libstdc++ once the requirement is marked weak (VER_FLG_WEAK).
/// </para>
/// <para>
/// What it does, once per process and only on Linux: (1) loads the packaged libc10, libtorch_cpu and libtorch by
/// absolute path, so that a distribution libtorch on the loader path (Debian's python3-torch) is never picked up;
/// (2) tries to load the shipped libLibTorchSharp.so as it is; (3) only if that fails for GLIBCXX_3.4.32, writes a
/// copy with that one requirement marked weak into a per-user cache folder and loads the copy; (4) tells the runtime
/// to use the loaded library for TorchSharp's <c>DllImport("LibTorchSharp")</c>. Newer systems stop after (2) and
/// nothing is written. The NuGet cache and build output are never modified.
/// </para>
/// </summary>
public static class TorchNative
{
    /// <summary>The only version requirement this fix weakens: its one symbol is a marker without relocations.</summary>
    public const string MarkerVersion = "GLIBCXX_3.4.32";

    static readonly object Gate = new();
    static TorchLoadReport? done;
    static IntPtr libTorchSharpHandle;
    static IntPtr torchCpuHandle;

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] delegate IntPtr GlobalContextFn();
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] delegate void SetFlagFn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool value);
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)] [return: MarshalAs(UnmanagedType.U1)] delegate bool GetFlagFn(IntPtr context);

    /// <summary>
    /// Switches libtorch's oneDNN (MKL-DNN) CPU kernels on or off — <c>torch.backends.mkldnn.enabled</c> in PyTorch,
    /// which TorchSharp does not expose — by calling <c>at::globalContext().setUserEnabledMkldnn</c> in libtorch_cpu.
    /// Returns the setting now in force, or null when libtorch_cpu was not loaded by this class (not Linux).
    /// </summary>
    public static bool? SetOneDnnEnabled(bool enabled)
    {
        EnsureLoaded();
        return OneDnnEnabled = SetContextFlag("Mkldnn", enabled);
    }

    /// <summary>Whether libtorch's oneDNN kernels are on (null: unknown, left as libtorch decides).</summary>
    public static bool? OneDnnEnabled { get; private set; }

    /// <summary>Set to "0" to run without libtorch's oneDNN kernels (for diagnosing a CPU-specific numerical problem).</summary>
    public const string OneDnnVariable = "DIFFUSION_ONEDNN";

    /// <summary>
    /// oneDNN stays on unless DIFFUSION_ONEDNN=0. It is the fast path for convolutions (72–76 vs 14 images/s for the
    /// default U-Net on 2 cores); the NaN it produced on this project's CPU for channel counts that are not multiples
    /// of 16 is avoided by <see cref="Diffusion.Model.SafeConv2d"/>, not by switching it off.
    /// </summary>
    static bool? ApplyOneDnnPolicy() =>
        Environment.GetEnvironmentVariable(OneDnnVariable) is "0" or "false" or "off" ? SetContextFlag("Mkldnn", false) : null;

    /// <summary>
    /// at::globalContext().setUserEnabled{name}(value) from libtorch_cpu, read back; null when not available.
    /// </summary>
    static bool? SetContextFlag(string name, bool enabled)
    {
        // Itanium C++ mangling of at::Context::setUserEnabled<name>(bool) and the const getter.
        int length = "setUserEnabled".Length + name.Length;
        if (torchCpuHandle == IntPtr.Zero
            || !NativeLibrary.TryGetExport(torchCpuHandle, "_ZN2at13globalContextEv", out var contextFn)
            || !NativeLibrary.TryGetExport(torchCpuHandle, $"_ZN2at7Context{length}setUserEnabled{name}Eb", out var setFn)
            || !NativeLibrary.TryGetExport(torchCpuHandle, $"_ZNK2at7Context{length - 3}userEnabled{name}Ev", out var getFn))
            return null;
        var context = Marshal.GetDelegateForFunctionPointer<GlobalContextFn>(contextFn)();
        Marshal.GetDelegateForFunctionPointer<SetFlagFn>(setFn)(context, enabled);
        return Marshal.GetDelegateForFunctionPointer<GetFlagFn>(getFn)(context);
    }

    /// <summary>The result of the first successful call, or null before it.</summary>
    public static TorchLoadReport? Report => done;

    /// <summary>
    /// Makes <c>TorchSharp.torch</c> usable. Idempotent and thread-safe; call it before the first <c>torch.*</c> call.
    /// The library calls it itself when it is first used (module initializer).
    /// </summary>
    public static TorchLoadReport EnsureLoaded()
    {
        lock (Gate)
        {
            if (done is not null) return done;
            done = OperatingSystem.IsLinux() ? LoadOnLinux() : new TorchLoadReport(null, false, "not Linux: TorchSharp loads its native library itself");
            // Touch torch once so that any remaining problem shows up here, with our explanation, not later.
            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
                OneDnnEnabled = ApplyOneDnnPolicy();
                // NNPACK (a convolution library inside libtorch) cannot run on CPUs it does not know, such as this
                // project's, and then prints "Could not initialize NNPACK! Reason: Unsupported hardware" for every new
                // convolution shape — dozens of lines in a notebook or a log. Switched off (PyTorch:
                // torch.backends.nnpack.set_flags(False)), libtorch uses its other convolution paths (oneDNN).
                SetContextFlag("NNPACK", false);
            }
            catch (Exception e)
            {
                var report = done;
                done = null;
                throw new TorchLoadException(
                    $"TorchSharp's native backend did not initialise ({report.Summary}). {Hint}\nInner error: {Flatten(e)}", e);
            }
            return done;
        }
    }

    const string Hint =
        "Build or run through the project (dotnet build / the CLI / the tests) so that the libtorch-cpu package is " +
        "restored, or in a notebook run the setup cell first. See README, 'If TorchSharp does not load'.";

    static TorchLoadReport LoadOnLinux()
    {
        var torchSharpDir = FindNativeDir("libLibTorchSharp.so", "torchsharp", TorchSharpVersion());
        var libTorchDir = FindNativeDir("libtorch.so", "libtorch-cpu-linux-x64", null);

        // (1) Packaged libtorch first, by absolute path.
        if (libTorchDir is not null)
            foreach (var name in new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" })
            {
                var path = Path.Combine(libTorchDir, name);
                if (!File.Exists(path)) continue;
                try
                {
                    var handle = NativeLibrary.Load(path);
                    if (name == "libtorch_cpu.so") torchCpuHandle = handle;
                }
                catch (DllNotFoundException e)
                {
                    throw new TorchLoadException($"Could not load {path}: {e.Message}. {Hint}", e);
                }
            }

        if (torchSharpDir is null)
            return new TorchLoadReport(null, false,
                "libLibTorchSharp.so not found next to the application or in the NuGet cache; leaving the search to TorchSharp");

        // (2) The shipped file as it is.
        var original = Path.Combine(torchSharpDir, "libLibTorchSharp.so");
        string firstError;
        try
        {
            libTorchSharpHandle = NativeLibrary.Load(original);
            UseForTorchSharp();
            return new TorchLoadReport(original, false, $"loaded {original} as shipped");
        }
        catch (DllNotFoundException e) { firstError = e.Message; }

        if (!firstError.Contains(MarkerVersion, StringComparison.Ordinal))
            throw new TorchLoadException($"Could not load {original}: {firstError}. {Hint}");

        // (3) A copy with the marker version marked weak.
        string patched;
        try { patched = WritePatchedCopy(original); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new TorchLoadException(
                $"{original} needs {MarkerVersion} (GCC 13's libstdc++), which this system lacks, and a patched copy " +
                $"could not be written ({e.Message}). Fix: make $XDG_CACHE_HOME or ~/.cache writable, or install a " +
                "libstdc++ from GCC 13 or newer.", e);
        }
        try { libTorchSharpHandle = NativeLibrary.Load(patched); }
        catch (DllNotFoundException e)
        {
            throw new TorchLoadException(
                $"Even with {MarkerVersion} marked weak, {patched} did not load: {e.Message}. Fix: install a libstdc++ " +
                "from GCC 13 or newer (e.g. Debian 13, Ubuntu 24.04).", e);
        }
        UseForTorchSharp();
        return new TorchLoadReport(patched, true,
            $"this libstdc++ lacks {MarkerVersion}: loaded a copy of {original} with that requirement marked weak ({patched})");
    }

    /// <summary>(4) TorchSharp's DllImport("LibTorchSharp") gets the handle we loaded.</summary>
    static void UseForTorchSharp()
    {
        try
        {
            NativeLibrary.SetDllImportResolver(typeof(torch).Assembly,
                (name, _, _) => name == "LibTorchSharp" ? libTorchSharpHandle : IntPtr.Zero);
        }
        catch (InvalidOperationException)
        {
            // Someone set a resolver already. The loader still finds our copy: its soname is libLibTorchSharp.so.
        }
    }

    /// <summary>Writes (once, atomically) a copy of <paramref name="original"/> with <see cref="MarkerVersion"/> weak.</summary>
    internal static string WritePatchedCopy(string original)
    {
        var bytes = File.ReadAllBytes(original);
        var id = Convert.ToHexString(SHA256.HashData(bytes))[..16].ToLowerInvariant();
        var dir = Path.Combine(CacheRoot(), "diffusion-course", "libtorchsharp-weak-glibcxx", id);
        var target = Path.Combine(dir, "libLibTorchSharp.so");
        if (File.Exists(target) && ElfVersionNeeds.Read(File.ReadAllBytes(target))
                .Where(r => r.Version == MarkerVersion).All(r => r.IsWeak))
            return target;

        if (!ElfVersionNeeds.MarkWeak(bytes, MarkerVersion))
            throw new InvalidDataException($"{original} has no {MarkerVersion} requirement to weaken");
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".libLibTorchSharp.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        File.WriteAllBytes(tmp, bytes);
        File.Move(tmp, target, overwrite: true);
        return target;
    }

    static string CacheRoot()
    {
        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (!string.IsNullOrEmpty(xdg)) return xdg;
        var home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        return string.IsNullOrEmpty(home) ? Path.GetTempPath() : Path.Combine(home, ".cache");
    }

    static string? TorchSharpVersion()
    {
        var v = typeof(torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        return v?.Split('+')[0];
    }

    /// <summary>
    /// The folder holding <paramref name="file"/>: next to the application (runtimes/linux-x64/native), next to the
    /// TorchSharp assembly (NuGet layout, as in a notebook kernel), or in the NuGet global packages folder.
    /// </summary>
    static string? FindNativeDir(string file, string package, string? version)
    {
        var candidates = new List<string>
        {
            Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native"),
            AppContext.BaseDirectory,
        };
        var asmDir = Path.GetDirectoryName(typeof(torch).Assembly.Location);
        if (!string.IsNullOrEmpty(asmDir))
        {
            candidates.Add(Path.Combine(asmDir, "runtimes", "linux-x64", "native"));
            candidates.Add(Path.GetFullPath(Path.Combine(asmDir, "..", "..", "runtimes", "linux-x64", "native")));
        }
        var nuget = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (string.IsNullOrEmpty(nuget))
            nuget = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var packageDir = Path.Combine(nuget, package);
        if (Directory.Exists(packageDir))
        {
            var versions = version is not null && Directory.Exists(Path.Combine(packageDir, version))
                ? new[] { Path.Combine(packageDir, version) }
                : Directory.GetDirectories(packageDir).OrderByDescending(d => d, StringComparer.Ordinal).ToArray();
            candidates.AddRange(versions.Select(v => Path.Combine(v, "runtimes", "linux-x64", "native")));
        }
        return candidates.FirstOrDefault(d => File.Exists(Path.Combine(d, file)));
    }

    static string Flatten(Exception e)
    {
        var parts = new List<string>();
        for (var x = e; x is not null; x = x.InnerException) parts.Add(x.Message.Split('\n')[0]);
        return string.Join(" -> ", parts);
    }
}
