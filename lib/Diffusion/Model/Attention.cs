using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Diffusion.Model;

/// <summary>
/// Multi-head self-attention over the pixels of a feature map (Vaswani et al. 2017):
/// softmax(q·kᵀ/√d)·v for every pair of positions, so its cost grows with (H·W)².
/// </summary>
public sealed class Attention : Module<Tensor, Tensor>
{
    readonly PointwiseConv2d to_qkv;
    readonly PointwiseConv2d to_out;
    readonly long heads, dimHead;
    readonly double scale;

    /// <summary>heads · dim_head, the channel count of q, k and v.</summary>
    public long HiddenDim => heads * dimHead;

    public Attention(long dim, long heads = 4, long dimHead = 32) : base(nameof(Attention))
    {
        this.heads = heads;
        this.dimHead = dimHead;
        scale = 1 / Math.Sqrt(dimHead);
        to_qkv = new PointwiseConv2d(dim, heads * dimHead * 3, hasBias: false);
        to_out = new PointwiseConv2d(heads * dimHead, dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], h = x.shape[2], w = x.shape[3], n = h * w;
        var qkv = to_qkv.call(x).chunk(3, dim: 1);
        // "b (h c) x y -> b h c (x y)"
        var q = qkv[0].reshape(b, heads, dimHead, n) * scale;
        var k = qkv[1].reshape(b, heads, dimHead, n);
        var v = qkv[2].reshape(b, heads, dimHead, n);
        // sim_ij = q_i · k_j  ("b h d i, b h d j -> b h i j")
        var sim = matmul(q.transpose(-2, -1), k);
        sim = sim - sim.amax([-1], keepdim: true).detach();
        var attn = sim.softmax(-1);
        // out_i = Σ_j attn_ij v_j  ("b h i j, b h d j -> b h i d"), then "b h (x y) d -> b (h d) x y"
        var output = matmul(attn, v.transpose(-2, -1)).permute(0, 1, 3, 2).reshape(b, heads * dimHead, h, w);
        return to_out.call(output).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Linear attention (Shen et al. 2018; as in the annotated notebook): softmax over features for q and over positions
/// for k, then (k·vᵀ) first, a d×d context per head, so the cost grows only linearly with H·W.
/// </summary>
public sealed class LinearAttention : Module<Tensor, Tensor>
{
    readonly PointwiseConv2d to_qkv;
    readonly Sequential to_out;
    readonly long heads, dimHead;
    readonly double scale;

    /// <summary>heads · dim_head, the channel count of q, k and v.</summary>
    public long HiddenDim => heads * dimHead;
    public long DimHead => dimHead;
    /// <summary>[q, k, v] = to_qkv(x), computed as three convolutions (see forward).</summary>
    Tensor[] Project(Tensor x)
    {
        var weight = to_qkv.Weight;
        long hidden = heads * dimHead;
        return [PointwiseConv2d.Apply(x, weight[..(int)hidden]), PointwiseConv2d.Apply(x, weight[(int)hidden..(int)(2 * hidden)]),
                PointwiseConv2d.Apply(x, weight[(int)(2 * hidden)..])];
    }

    public LinearAttention(long dim, long heads = 4, long dimHead = 32) : base(nameof(LinearAttention))
    {
        this.heads = heads;
        this.dimHead = dimHead;
        scale = 1 / Math.Sqrt(dimHead);
        to_qkv = new PointwiseConv2d(dim, heads * dimHead * 3, hasBias: false);
        to_out = Sequential(new PointwiseConv2d(heads * dimHead, dim), Layers.GroupNorm(1, dim));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], h = x.shape[2], w = x.shape[3], n = h * w;
        // q, k and v by three 1×1 convolutions with slices of to_qkv's weight: the same numbers as one convolution and
        // a chunk, but three 25 MB outputs instead of one 77 MB one at full resolution (batch 64), which glibc serves
        // from fresh pages every time: measured 54 → 61–67 images/s for the annotated U-Net on 2 CPU cores.
        var qkv = Project(x);
        var q = qkv[0].reshape(b, heads, dimHead, n).softmax(-2) * scale;
        var k = qkv[1].reshape(b, heads, dimHead, n).softmax(-1);
        var v = qkv[2].reshape(b, heads, dimHead, n);
        // context = "b h d n, b h e n -> b h d e" = k·vᵀ
        var context = matmul(k, v.transpose(-2, -1));
        // out = "b h d e, b h d n -> b h e n" = contextᵀ·q, then "b h c (x y) -> b (h c) x y"
        var output = matmul(context.transpose(-2, -1), q).reshape(b, heads * dimHead, h, w);
        return to_out.call(output).MoveToOuterDisposeScope();
    }
}
