using System.Runtime.CompilerServices;

namespace Diffusion.Platform;

static class ModuleSetup
{
    /// <summary>Any use of the library first makes TorchSharp loadable (see <see cref="TorchNative"/>) and keeps freed
    /// tensor memory for reuse (see <see cref="NativeAllocator"/>).</summary>
#pragma warning disable CA2255 // a library module initializer is exactly what is wanted here
    [ModuleInitializer]
    internal static void Init()
    {
        // A failure here must not make the whole assembly unusable: say why once, and let the next explicit
        // EnsureLoaded() (the CLI, tests and notebook setup call it) throw the same explanation.
        NativeAllocator.KeepFreedMemory();
        try { TorchNative.EnsureLoaded(); }
        catch (TorchLoadException e) { Console.Error.WriteLine(e.Message); }
    }
#pragma warning restore CA2255
}
