using System.Text.Json;
using System.Text.Json.Serialization;

namespace Diffusion.Model;

/// <summary>The residual block used at every level of the U-Net.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<BlockType>))]
public enum BlockType
{
    /// <summary>Wide-ResNet block: two (weight-standardised conv, GroupNorm, SiLU) with time as scale/shift.</summary>
    ResNet,
    /// <summary>ConvNeXt block: depthwise 7×7 conv, time added, then GroupNorm and two 3×3 convs with GELU.</summary>
    ConvNext,
}

/// <summary>The names of the block types (<c>train --block</c>).</summary>
public static class BlockTypes { public static readonly NameTable<BlockType> Names = new(("resnet", BlockType.ResNet), ("convnext", BlockType.ConvNext)); }

/// <summary>
/// The shape of the U-Net, as in The Annotated Diffusion Model's <c>Unet(dim, init_dim, out_dim, dim_mults, channels,
/// resnet_block_groups)</c>. The defaults are the annotated notebook's Fashion-MNIST model (about 2 M parameters).
/// </summary>
public sealed record UnetConfig
{
    /// <summary>Base channel count; level i has Dim·DimMults[i] channels; the time embedding has 4·Dim.</summary>
    public int Dim { get; init; } = 28;
    /// <summary>Channels after the first 1×1 convolution (default: Dim).</summary>
    public int? InitDim { get; init; }
    /// <summary>Output channels (default: Channels; 2·Channels for a learned variance).</summary>
    public int? OutDim { get; init; }
    /// <summary>Channel multiplier per resolution level; the image is halved between levels.</summary>
    public int[] DimMults { get; init; } = [1, 2, 4];
    /// <summary>Image channels: 1 for grayscale, 3 for RGB.</summary>
    public int Channels { get; init; } = 1;
    /// <summary>GroupNorm groups inside ResNet blocks.</summary>
    public int ResnetBlockGroups { get; init; } = 4;
    public BlockType Block { get; init; } = BlockType.ResNet;
    /// <summary>Channel expansion inside a ConvNeXt block.</summary>
    public int ConvNextMult { get; init; } = 2;
    public int AttentionHeads { get; init; } = 4;
    public int AttentionDimHead { get; init; } = 32;
    /// <summary>
    /// Resolution levels (0 = full resolution) that get a linear-attention layer after their two blocks.
    /// null = every level, as in the annotated notebook. Full-resolution attention is the costliest layer on a CPU.
    /// </summary>
    public int[]? LinearAttentionLevels { get; init; }
    /// <summary>Number of classes for class conditioning; 0 = unconditional. Index NumClasses means "no label".</summary>
    public int NumClasses { get; init; }

    [JsonIgnore] public int ResolvedInitDim => InitDim ?? Dim;
    [JsonIgnore] public int ResolvedOutDim => OutDim ?? Channels;
    [JsonIgnore] public int TimeDim => Dim * 4;
    [JsonIgnore] public int Levels => DimMults.Length;

    public bool HasLinearAttention(int level) => LinearAttentionLevels is null || LinearAttentionLevels.Contains(level);

    /// <summary>Throws with a clear message if the configuration cannot build a network.</summary>
    public void Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok) throw new ArgumentException(message);
        }
        // The bounds (docs/guarantees.md): far above every model of the course, far below what a file could ask for.
        Require(Dim is >= 2 and <= MaxDim && Dim % 2 == 0, $"Dim must be an even number from 2 to {MaxDim} (the sinusoidal embedding has Dim/2 frequencies), got {Dim}");
        Require(ResolvedInitDim is >= 1 and <= MaxChannels, $"InitDim must be 1 to {MaxChannels}, got {ResolvedInitDim}");
        Require(ResolvedOutDim is >= 1 and <= 2 * 4, $"OutDim must be 1 to 8, got {ResolvedOutDim}");
        Require(Channels is >= 1 and <= 4, $"Channels must be 1 (grayscale) to 4, got {Channels}");
        Require(DimMults is { Length: >= 1 and <= MaxLevels } && DimMults.All(m => m is >= 1 and <= MaxDimMult),
            $"DimMults must be 1 to {MaxLevels} multipliers from 1 to {MaxDimMult}, such as 1,2,4, got [{string.Join(",", DimMults ?? [])}]");
        Require(DimMults!.All(m => (long)m * Dim <= MaxChannels), $"every level's channels Dim·mult must be at most {MaxChannels}, got Dim {Dim} and DimMults [{string.Join(",", DimMults!)}]");
        Require(ResnetBlockGroups is >= 1 and <= MaxChannels, $"ResnetBlockGroups must be 1 to {MaxChannels}, got {ResnetBlockGroups}");
        if (Block == BlockType.ResNet)
            foreach (var c in Dims())
                Require(c % ResnetBlockGroups == 0,
                    $"every level's channel count must be divisible by ResnetBlockGroups={ResnetBlockGroups}; {c} is not " +
                    $"(channels per level: {string.Join(",", Dims())}). Pick Dim and groups so that they divide.");
        Require(ConvNextMult is >= 1 and <= 16, $"ConvNextMult must be 1 to 16, got {ConvNextMult}");
        Require(AttentionHeads is >= 1 and <= 64 && AttentionDimHead is >= 1 and <= 512, $"AttentionHeads must be 1 to 64 and AttentionDimHead 1 to 512, got {AttentionHeads} and {AttentionDimHead}");
        Require(NumClasses is >= 0 and <= MaxClasses, $"NumClasses must be 0 to {MaxClasses}, got {NumClasses}");
        if (LinearAttentionLevels is not null)
            Require(LinearAttentionLevels.Length <= MaxLevels && LinearAttentionLevels.All(l => l >= 0 && l < Levels),
                $"LinearAttentionLevels must name levels 0..{Levels - 1}, got [{string.Join(",", LinearAttentionLevels)}]");
    }

    /// <summary>Largest <see cref="Dim"/> accepted (from the command line and from files alike).</summary>
    public const int MaxDim = 1024;
    /// <summary>Most resolution levels (DimMults entries) and largest multiplier accepted.</summary>
    public const int MaxLevels = 6, MaxDimMult = 16;
    /// <summary>Most channels at any level (Dim · mult, InitDim, GroupNorm groups).</summary>
    public const int MaxChannels = 4096;
    /// <summary>Most classes of a class-conditional model.</summary>
    public const int MaxClasses = 10_000;

    /// <summary>
    /// An upper estimate of the parameter count, without building the network: per level two blocks down and two up (3×3
    /// convolutions, the up path on concatenated skips), the time MLPs, attention and the middle, about 200·c² for a level of
    /// c channels (the course's U-Net at dim 28 has 1.99 M parameters; this says 2.6 M).
    /// </summary>
    public long EstimatedParameters()
    {
        long sum = (long)TimeDim * TimeDim * 2 + (long)NumClasses * TimeDim;
        long widest = 0;
        foreach (long c in Dims())
        {
            sum = checked(sum + 200 * c * c + 8 * c * TimeDim);
            widest = Math.Max(widest, c);
        }
        return checked(sum + 100 * widest * widest);
    }

    /// <summary>The channel counts [init_dim, dim·m_0, dim·m_1, ...] of the annotated notebook.</summary>
    public int[] Dims() => [ResolvedInitDim, .. DimMults.Select(m => Dim * m)];

    /// <summary>
    /// Throws unless an image of this side length can pass through the network: it is halved (by 2×2 pixel
    /// unshuffle) Levels−1 times, so it must be divisible by 2^(Levels−1).
    /// </summary>
    public void ValidateImageSize(int size)
    {
        int factor = 1 << (Levels - 1);
        if (size < factor || size % factor != 0)
            throw new ArgumentException(
                $"image size {size} cannot go through a U-Net with {Levels} levels: it is halved {Levels - 1} times, so it " +
                $"must be a multiple of {factor}. Use an image size such as {Math.Max(factor, (size / factor) * factor)} or fewer DimMults.");
    }

    static readonly JsonSerializerOptions Json = new() { WriteIndented = false };

    /// <summary>Stable text form (for checkpoints and for comparing configurations).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);
    public static UnetConfig FromJson(string json) =>
        JsonSerializer.Deserialize<UnetConfig>(json, Json) ?? throw new InvalidDataException("empty U-Net configuration");

    /// <summary>Field-by-field differences, for "this checkpoint was trained with another configuration".</summary>
    public IReadOnlyList<string> DifferencesFrom(UnetConfig other)
    {
        var a = JsonSerializer.SerializeToElement(this, Json);
        var b = JsonSerializer.SerializeToElement(other, Json);
        var diffs = new List<string>();
        foreach (var p in a.EnumerateObject())
        {
            var theirs = b.TryGetProperty(p.Name, out var v) ? v.GetRawText() : "(missing)";
            if (p.Value.GetRawText() != theirs) diffs.Add($"{p.Name}: {p.Value.GetRawText()} vs {theirs}");
        }
        return diffs;
    }
}
