using System.Globalization;

namespace Diffusion.Training;

/// <summary>
/// A check before a network, a batch or a dataset is allocated: an estimate of the bytes it needs against the memory this
/// process may use (the machine's or its container's limit), so that what cannot fit is refused with numbers instead of
/// growing until the kernel kills the process. The estimates are deliberately on the high side.
/// </summary>
public static class MemoryBudget
{
    /// <summary>The memory this process may use: physical memory, or the container's limit (what the .NET runtime sees).</summary>
    public static long Available
    {
        get
        {
            var env = Environment.GetEnvironmentVariable("DIFFUSION_MEMORY_LIMIT_MB");
            if (long.TryParse(env, NumberStyles.Integer, CultureInfo.InvariantCulture, out var mb) && mb > 0) return mb << 20;
            long total = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
            return AddressSpaceLeft() is { } left ? Math.Min(total, left) : total;
        }
    }

    /// <summary>Under an address-space limit (ulimit -v, prlimit --as): the limit minus what the process has mapped already (Linux).</summary>
    static long? AddressSpaceLeft()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            var limit = new ulong[2];
            if (getrlimit(9 /* RLIMIT_AS */, limit) != 0 || limit[0] == ulong.MaxValue || limit[0] > long.MaxValue) return null;
            long mapped = 0;
            foreach (var line in File.ReadLines("/proc/self/status"))
                if (line.StartsWith("VmSize:", StringComparison.Ordinal))
                    mapped = 1024 * long.Parse(line[7..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            return Math.Max(0, (long)limit[0] - mapped);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or IOException or FormatException) { return null; }
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    static extern int getrlimit(int resource, [System.Runtime.InteropServices.Out] ulong[] limit);

    /// <summary>Throws (an <see cref="ArgumentException"/> unless <paramref name="error"/> says otherwise) if <paramref name="bytes"/> exceed 80 % of <see cref="Available"/>.</summary>
    public static void Check(long bytes, string what, string fix, Func<string, Exception>? error = null)
    {
        long limit = (long)(0.8 * Available);
        if (bytes <= limit) return;
        throw (error ?? (m => new ArgumentException(m)))(
            $"{what} needs about {Gigabytes(bytes)} of memory, but this machine allows {Gigabytes(Available)} (at most {Gigabytes(limit)} for one thing): {fix}.");
    }

    /// <summary>"12.3 GB".</summary>
    public static string Gigabytes(long bytes) => (bytes / 1e9).ToString(bytes >= 100_000_000 ? "0.0" : "0.000", CultureInfo.InvariantCulture) + " GB";

    /// <summary>
    /// Bytes to train <paramref name="config"/> at <paramref name="batchSize"/>: weights, gradients, two Adam moments and an EMA
    /// copy (5 × 4 bytes per parameter), and the activations a training step keeps for the backward pass.
    /// </summary>
    public static long Training(DiffusionModelConfig config, int batchSize) =>
        checked(20 * EstimatedParameters(config) + 2 * Activations(config, batchSize));

    /// <summary>Bytes to sample <paramref name="count"/> images with <paramref name="config"/> at once (no gradients kept).</summary>
    public static long Sampling(DiffusionModelConfig config, int count) =>
        checked(4 * EstimatedParameters(config) + Activations(config, count) / 4);

    /// <summary>The parameters of the configuration's network, counted from its sizes.</summary>
    public static long EstimatedParameters(DiffusionModelConfig config) =>
        config.Dit is { } dit ? dit.ParameterCountFormula() : config.Unet.EstimatedParameters();

    static long Activations(DiffusionModelConfig config, int batch) =>
        config.Dit is { } dit ? Activations(dit, batch) : Activations(config.Unet, config.ImageSize, batch);

    /// <summary>
    /// Activations of one forward pass of a DiT: per block about 16 float32 tensors of the tokens' size N·D, two of the
    /// MLP's N·M and two attention matrices per head (N² each).
    /// </summary>
    public static long Activations(Model.Transformer.DitConfig dit, int batch)
    {
        long n = dit.Tokens, perBlock = checked(16L * n * dit.Hidden + 2L * n * dit.MlpHidden + 2L * dit.Heads * n * n);
        return checked(4L * batch * Math.Max(1, dit.Depth) * perBlock);
    }

    /// <summary>
    /// Activations of one forward pass: about 32 float32 tensors of each level's size (blocks, norms, attention, skips),
    /// levels at side S/2^i with Dim·mult_i channels.
    /// </summary>
    public static long Activations(Model.UnetConfig unet, int imageSize, int batch)
    {
        long perImage = 0;
        for (int i = 0; i < unet.DimMults.Length; i++)
        {
            long side = Math.Max(1, imageSize >> i);
            perImage = checked(perImage + (long)unet.Dim * unet.DimMults[i] * side * side);
        }
        return checked(32L * 4 * batch * perImage);
    }
}
