using static TorchSharp.torch.nn;

namespace Diffusion.Model.Transformer;

/// <summary>
/// A DiT block with adaLN-Zero conditioning (Peebles &amp; Xie 2023, §3.2, Fig. 3; models.py DiTBlock). From the
/// conditioning vector c (time + class embedding) one linear map gives six vectors: shift, scale and gate for the
/// attention and for the MLP,
/// <code>x ← x + gate_msa · attn(LN(x)(1 + scale_msa) + shift_msa)
/// x ← x + gate_mlp · mlp(LN(x)(1 + scale_mlp) + shift_mlp)</code>
/// The map is zero-initialised, so every gate is 0 and the block is the identity at initialisation: a deep stack starts
/// as an identity map and each block learns its residual (the "Zero"; DiT's best variant in its Fig. 5).
/// </summary>
public sealed class DitBlock : Module<Tensor, Tensor, Tensor>
{
    readonly SelfAttention attn;
    readonly TokenMlp mlp;
    readonly Sequential adaLN_modulation;

    public DitBlock(long hidden, long heads, double mlpRatio = 4.0) : base(nameof(DitBlock))
    {
        attn = new SelfAttention(hidden, heads);
        mlp = new TokenMlp(hidden, (long)(hidden * mlpRatio));
        adaLN_modulation = AdaLayerNorm.Modulation(hidden, 6);
        RegisterComponents();
    }

    /// <summary>x [B, N, D], c [B, D] → [B, N, D].</summary>
    public override Tensor forward(Tensor x, Tensor c)
    {
        using var scope = NewDisposeScope();
        var m = adaLN_modulation.call(c).chunk(6, 1);
        // m: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp (DiT's order)
        x = AdaLayerNorm.GatedAdd(x, m[2], attn.call(AdaLayerNorm.NormModulate(x, m[0], m[1])));
        x = AdaLayerNorm.GatedAdd(x, m[5], mlp.call(AdaLayerNorm.NormModulate(x, m[3], m[4])));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// DiT's final layer: adaLN (shift and scale from c, no gate) then a linear map of each token to its p·p·C output values.
/// Both maps are zero-initialised, so a fresh DiT outputs zeros.
/// </summary>
public sealed class FinalLayer : Module<Tensor, Tensor, Tensor>
{
    readonly Linear linear;
    readonly Sequential adaLN_modulation;

    public FinalLayer(long hidden, long patchSize, long outChannels) : base(nameof(FinalLayer))
    {
        linear = Linear(hidden, patchSize * patchSize * outChannels, hasBias: true);
        using (no_grad())
        {
            linear.weight!.fill_(0);
            linear.bias!.fill_(0);
        }
        adaLN_modulation = AdaLayerNorm.Modulation(hidden, 2);
        RegisterComponents();
    }

    /// <summary>x [B, N, D], c [B, D] → [B, N, p·p·C].</summary>
    public override Tensor forward(Tensor x, Tensor c)
    {
        using var scope = NewDisposeScope();
        var m = adaLN_modulation.call(c).chunk(2, 1);
        return linear.call(AdaLayerNorm.NormModulate(x, m[0], m[1])).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// DiT's TimestepEmbedder: a sinusoidal embedding of t (the course's <see cref="SinusoidalPositionEmbeddings"/>, 256
/// frequencies) through Linear → SiLU → Linear to the hidden size. DiT's own sinusoid orders [cos, sin] and spaces the
/// frequencies by 1/half rather than 1/(half − 1); the parameters (<c>mlp.0</c>, <c>mlp.2</c>) have DiT's names and
/// shapes, but DiT's published weights would see a permuted input.
/// </summary>
public sealed class TimestepEmbedder : Module<Tensor, Tensor>
{
    /// <summary>DiT's frequency_embedding_size.</summary>
    public const long FrequencySize = 256;

    readonly SinusoidalPositionEmbeddings frequencies;
    readonly Sequential mlp;

    public TimestepEmbedder(long hidden) : base(nameof(TimestepEmbedder))
    {
        frequencies = new SinusoidalPositionEmbeddings(FrequencySize);
        mlp = Sequential(Linear(FrequencySize, hidden, hasBias: true), SiLU(), Linear(hidden, hidden, hasBias: true));
        RegisterComponents();
    }

    /// <summary>t [B] (any scale; the flow objective passes t·1000) → [B, D].</summary>
    public override Tensor forward(Tensor t)
    {
        using var scope = NewDisposeScope();
        return mlp.call(frequencies.call(t)).MoveToOuterDisposeScope();
    }
}
