using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Platform;

/// <summary>
/// The one place where the device and the thread count are chosen. Every tensor of a run lives on
/// <see cref="Device"/>; random numbers are drawn on the CPU (from a seeded generator) and moved there, so a seed
/// gives the same noise on every device.
/// </summary>
public static class Compute
{
    static Device? device;

    /// <summary>The device of the current run (CPU until <see cref="UseDevice"/> says otherwise).</summary>
    public static Device Device => device ??= CPU;

    /// <summary>
    /// Chooses the device: "cpu", "cuda" (fails clearly if CUDA is not there) or "auto" (CUDA when available).
    /// </summary>
    public static Device UseDevice(string name)
    {
        TorchNative.EnsureLoaded();
        device = Resolve(name);
        return device;
    }

    /// <summary>Resolves a device name without making it the current one.</summary>
    public static Device Resolve(string name)
    {
        switch (name.Trim().ToLowerInvariant())
        {
            case "cpu": return CPU;
            case "auto": return cuda.is_available() ? CUDA : CPU;
            case "cuda":
                if (!cuda.is_available())
                    throw new ArgumentException(
                        "--device cuda was asked for, but CUDA is not available: either no NVIDIA GPU/driver is visible, or " +
                        "this build uses the CPU backend. Rebuild with -p:TorchBackend=cuda on a machine with a GPU " +
                        "(README, 'GPU'), or use --device cpu.");
                return CUDA;
            default:
                throw new ArgumentException($"unknown device '{name}': use cpu, cuda or auto");
        }
    }

    /// <summary>True if a CUDA device can be used by this process.</summary>
    public static bool CudaAvailable
    {
        get
        {
            TorchNative.EnsureLoaded();
            return cuda.is_available();
        }
    }

    /// <summary>
    /// Sets libtorch's intra-op thread count (null = leave libtorch's default, one per core). On a 2-core machine shared
    /// with another busy process, 2 threads were measured 4× slower than 1: oversubscription is catastrophic.
    /// </summary>
    public static void SetThreads(int? threads)
    {
        TorchNative.EnsureLoaded();
        if (threads is null) return;
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "thread count must be ≥ 1");
        set_num_threads(threads.Value);
    }

    /// <summary>N(0, I) noise of <paramref name="shape"/>, drawn on the CPU from <paramref name="generator"/>, on <paramref name="on"/>.</summary>
    public static Tensor Randn(long[] shape, Generator? generator, Device? on = null)
    {
        var x = randn(shape, generator: generator);
        if (on is null || on.type == DeviceType.CPU) return x;
        using (x) return x.to(on);
    }
}
