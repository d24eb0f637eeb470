using static TorchSharp.torch.nn;

namespace Diffusion.Model.Transformer;

// Field names in these modules are snake_case on purpose: TorchSharp names parameters after the fields, and these names
// then match facebookresearch/DiT's models.py state_dict (e.g. "blocks.0.adaLN_modulation.1.weight").

/// <summary>
/// Images ↔ sequences of patches (Dosovitskiy et al. 2021; DiT, Peebles &amp; Xie 2023, §3.2). A [B, C, H, W] image
/// cut into p×p patches is a sequence of (H/p)(W/p) tokens, row by row, each token the p·p·C values of its patch in the
/// order (row in patch, column in patch, channel) — DiT's unpatchify einsum "nhwpqc → nchpwq" read backwards.
/// </summary>
public static class Patches
{
    /// <summary>[B, C, H, W] → [B, (H/p)(W/p), p·p·C].</summary>
    public static Tensor Patchify(Tensor x, long p)
    {
        long b = x.shape[0], c = x.shape[1], h = x.shape[2] / p, w = x.shape[3] / p;
        CheckDivisible(x, p);
        using var scope = NewDisposeScope();
        // n c (h p) (w q) → n h w p q c
        return x.reshape(b, c, h, p, w, p).permute(0, 2, 4, 3, 5, 1).reshape(b, h * w, p * p * c).MoveToOuterDisposeScope();
    }

    /// <summary>[B, h·w, p·p·C] → [B, C, h·p, w·p] (DiT's <c>unpatchify</c>; h = w unless given).</summary>
    public static Tensor Unpatchify(Tensor tokens, long p, long channels, long? heightPatches = null)
    {
        long b = tokens.shape[0], n = tokens.shape[1];
        long h = heightPatches ?? (long)Math.Round(Math.Sqrt(n));
        if (h <= 0 || n % h != 0 || tokens.shape[2] != p * p * channels)
            throw new ArgumentException($"cannot unpatchify [{string.Join(", ", tokens.shape)}] into {channels} channels of {p}×{p} patches in {h} rows");
        long w = n / h;
        using var scope = NewDisposeScope();
        // n h w p q c → n c h p w q
        return tokens.reshape(b, h, w, p, p, channels).permute(0, 5, 1, 3, 2, 4).reshape(b, channels, h * p, w * p).MoveToOuterDisposeScope();
    }

    internal static void CheckDivisible(Tensor x, long p)
    {
        if (x.dim() != 4 || x.shape[2] % p != 0 || x.shape[3] % p != 0)
            throw new ArgumentException($"patch size {p} must divide the image's height and width, got [{string.Join(", ", x.shape)}]");
    }

    /// <summary>
    /// DiT's fixed 2-D sine–cosine position embedding (models.py, get_2d_sincos_pos_embed, after MAE): [gridH·gridW, D],
    /// the first D/2 channels encode the row, the last D/2 the column, each as [sin(pos·ω), cos(pos·ω)] with
    /// ω_i = 10000^(−i/(D/4)). Computed in float64 as numpy does.
    /// </summary>
    public static Tensor SinCosPositions(long dim, long gridH, long gridW)
    {
        if (dim % 4 != 0) throw new ArgumentException($"the 2-D position embedding needs a hidden size divisible by 4, got {dim}");
        long quarter = dim / 4;
        var values = new float[gridH * gridW * dim];
        for (long r = 0; r < gridH; r++)
            for (long col = 0; col < gridW; col++)
            {
                long row = (r * gridW + col) * dim;
                // DiT's grid: grid[0] is from meshgrid(w, h)[0], the column index; it fills the first half
                Fill(values, row, col);
                Fill(values, row + 2 * quarter, r);
            }
        return tensor(values, [gridH * gridW, dim]);

        void Fill(float[] v, long offset, long pos)
        {
            for (long i = 0; i < quarter; i++)
            {
                double omega = 1 / Math.Pow(10000, (double)i / quarter);
                v[offset + i] = (float)Math.Sin(pos * omega);
                v[offset + quarter + i] = (float)Math.Cos(pos * omega);
            }
        }
    }
}

/// <summary>
/// The patch embedding (timm's PatchEmbed as DiT uses it): a p×p convolution with stride p, i.e. one linear map of each
/// patch. Written as that linear map (one matrix product) rather than a convolution, so it runs on the BLAS path and
/// avoids oneDNN's convolutions (see <c>SafeConv2d</c>); the parameter <c>proj.weight</c> keeps the convolution's shape
/// [D, C, p, p], so state_dicts match.
/// </summary>
public sealed class PatchEmbed : Module<Tensor, Tensor>
{
    readonly PatchProjection proj;

    public long PatchSize { get; }

    public PatchEmbed(long patchSize, long inChannels, long hidden) : base(nameof(PatchEmbed))
    {
        PatchSize = patchSize;
        proj = new PatchProjection(patchSize, inChannels, hidden);
        RegisterComponents();
    }

    /// <summary>[B, C, H, W] → [B, (H/p)(W/p), D].</summary>
    public override Tensor forward(Tensor x) => proj.call(x);
}

/// <summary>
/// The patch projection <c>proj</c> of <see cref="PatchEmbed"/> and of MMDiT's <c>pos_embed</c>: weight [D, C, p, p]
/// (a p×p, stride-p convolution's shape) and bias [D], applied as one matrix product on the flattened patches.
/// </summary>
public sealed class PatchProjection : Module<Tensor, Tensor>
{
    readonly Parameter weight;
    readonly Parameter bias;
    readonly long p;

    public PatchProjection(long patchSize, long inChannels, long hidden) : base("proj")
    {
        p = patchSize;
        weight = new Parameter(empty(hidden, inChannels, patchSize, patchSize));
        bias = new Parameter(zeros(hidden));
        // DiT's initialize_weights: xavier_uniform on the weight viewed as [D, C·p·p], bias 0
        using (no_grad())
        using (var flat = weight.view(hidden, -1)) init.xavier_uniform_(flat);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        Patches.CheckDivisible(x, p);
        long b = x.shape[0], c = x.shape[1], h = x.shape[2] / p, w = x.shape[3] / p, d = weight.shape[0];
        using var scope = NewDisposeScope();
        // tokens in the convolution's weight order (c, p, q), so weight.view(D, C·p·p) applies directly
        var patches = x.reshape(b, c, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w, c * p * p);
        return functional.linear(patches, weight.view(d, c * p * p), bias).MoveToOuterDisposeScope();
    }
}
