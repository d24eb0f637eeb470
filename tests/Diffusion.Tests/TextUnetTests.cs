using Diffusion.TextToImage;

namespace Diffusion.Tests;

/// <summary>The spatial transformer against a by-hand computation, the text U-Net's shapes and masking, guidance with the empty prompt.</summary>
public class TextUnetTests
{
    /// <summary>A tiny text U-Net on 4×8×8 latents: levels at 8×8 and 4×4, transformers at level 1 and in the middle.</summary>
    internal static TextUnetConfig Tiny(bool zeroInit = false, bool pooled = true) => new()
    {
        Unet = new UnetConfig { Dim = 8, DimMults = [1, 2], Channels = 4, LinearAttentionLevels = [], ResnetBlockGroups = 4 },
        ContextDim = 16, TransformerLevels = [1], Heads = 2, DimHead = 4, PooledText = pooled, ZeroInitTransformers = zeroInit,
    };

    static Tensor Mask(params bool[][] rows) => tensor(rows.SelectMany(r => r).ToArray()).view(rows.Length, rows[0].Length);

    // ---- by hand, float64 ----
    static Tensor Linear64(Tensor x, Dictionary<string, Tensor> p, string name) =>
        matmul(x, p[name + ".weight"].t()) + (p.TryGetValue(name + ".bias", out var b) ? b : zeros(1, dtype: ScalarType.Float64));

    static Tensor LayerNorm64(Tensor x, Dictionary<string, Tensor> p, string name)
    {
        var mean = x.mean([-1], keepdim: true);
        var variance = (x - mean).square().mean([-1], keepdim: true);
        return (x - mean) / (variance + 1e-5).sqrt() * p[name + ".weight"] + p[name + ".bias"];
    }

    /// <summary>W_out · concat_h softmax(q kᵀ/√d, padding weighted 0) v + b_out, the softmax written out as e^{s−max}·m / Σ e^{s−max}·m.</summary>
    static (Tensor Output, Tensor Weights) Attention64(Tensor x, Tensor context, Tensor? keyMask, Dictionary<string, Tensor> p, string name, int heads, int d)
    {
        long b = x.shape[0], n = x.shape[1], m = context.shape[1];
        Tensor Heads(Tensor t, long len) => t.view(b, len, heads, d).permute(0, 2, 1, 3);
        var q = Heads(matmul(x, p[name + ".to_q.weight"].t()), n);
        var k = Heads(matmul(context, p[name + ".to_k.weight"].t()), m);
        var v = Heads(matmul(context, p[name + ".to_v.weight"].t()), m);
        var s = matmul(q, k.transpose(-2, -1)) / Math.Sqrt(d);
        var keep = keyMask is null ? ones(b, 1, 1, m, dtype: ScalarType.Float64) : keyMask.to(ScalarType.Float64).view(b, 1, 1, m);
        var e = (s - s.amax([-1], keepdim: true)).exp() * keep;
        var weights = e / e.sum(-1, keepdim: true);
        var heads2 = matmul(weights, v).permute(0, 2, 1, 3).reshape(b, n, heads * d);
        return (Linear64(heads2, p, name + ".to_out"), weights);
    }

    [Fact]
    public void SpatialTransformerIsSelfAttentionCrossAttentionAndFeedForwardByHand()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        const int channels = 8, contextDim = 6, heads = 2, d = 4, groups = 4;
        using var st = new SpatialTransformer(channels, contextDim, heads, d, groups, zeroInitOutput: false);
        var x = randn(2, channels, 3, 4);
        var context = randn(2, 5, contextDim);
        var mask = Mask([true, true, true, false, false], [true, true, true, true, true]);   // picture 0: two padded tokens
        var y = st.call(x, context, mask);
        Assert.Equal(x.shape, y.shape);

        var p = st.named_parameters().ToDictionary(n => n.name, n => n.parameter.detach().to(ScalarType.Float64));
        var x64 = x.to(ScalarType.Float64);
        // GroupNorm: each of the 4 groups of 2 channels normalised over its channels and pixels, then γ, β per channel.
        var grouped = x64.view(2, groups, -1);
        var gMean = grouped.mean([-1], keepdim: true);
        var gVar = (grouped - gMean).square().mean([-1], keepdim: true);
        var normed = ((grouped - gMean) / (gVar + 1e-5).sqrt()).view(2, channels, 3, 4) * p["norm.weight"].view(1, channels, 1, 1) + p["norm.bias"].view(1, channels, 1, 1);
        // Pixels as tokens: [B, H·W, C]
        var h = Linear64(normed.flatten(2).transpose(1, 2), p, "proj_in");
        var n1 = LayerNorm64(h, p, "norm1");
        h = h + Attention64(n1, n1, null, p, "attn1", heads, d).Output;
        var (cross, crossWeights) = Attention64(LayerNorm64(h, p, "norm2"), context.to(ScalarType.Float64), mask, p, "attn2", heads, d);
        h = h + cross;
        // Feed-forward with the exact GELU, ½ u (1 + erf(u/√2))
        var u = Linear64(LayerNorm64(h, p, "norm3"), p, "ff.0");
        h = h + Linear64(0.5 * u * (1 + (u / Math.Sqrt(2)).erf()), p, "ff.2");
        var expected = x64 + Linear64(h, p, "proj_out").transpose(1, 2).reshape(2, channels, 3, 4);
        Assert.True(y.to(ScalarType.Float64).allclose(expected, rtol: 1e-4, atol: 1e-5),
            $"max |Δ| = {(y.to(ScalarType.Float64) - expected).abs().max().item<double>()}");

        // The cross-attention map the module reports is the by-hand softmax(QKᵀ/√d) over the real tokens.
        var weights = st.CrossAttn.Weights(st.CrossAttentionInput(x), context, mask).to(ScalarType.Float64);
        Assert.Equal([2L, heads, 12, 5], weights.shape);
        Assert.True(weights.allclose(crossWeights, rtol: 1e-4, atol: 1e-6));
        Assert.Equal(0, weights[0, .., .., 3..].abs().max().item<double>());
        Assert.True(weights[1, .., .., 3..].min().item<double>() > 0);

        // Recording (notebook 11's attention maps) keeps those weights and leaves the output as it was.
        st.RecordCrossAttention = true;
        var recordedY = st.call(x, context, mask);
        Assert.NotNull(st.LastCrossAttention);
        Assert.True(st.LastCrossAttention!.to(ScalarType.Float64).allclose(weights, rtol: 1e-6, atol: 1e-7));
        Assert.Equal(0, (recordedY - y).abs().max().item<float>());
        st.RecordCrossAttention = false;
        st.ClearRecorded();
        Assert.Null(st.LastCrossAttention);
        st.call(x, context, mask);
        Assert.Null(st.LastCrossAttention);
    }

    [Fact]
    public void ShapesAndClearErrors()
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        using var unet = new TextUnet(Tiny());
        Assert.Equal(3, unet.Transformers.Count());                          // level 1 down, middle, level 1 up
        var x = randn(3, 4, 8, 8);
        var t = tensor(new long[] { 0, 7, 19 });
        var context = randn(3, 6, 16);
        var mask = ones(3, 6, dtype: ScalarType.Bool);
        Assert.Equal([3L, 4, 8, 8], unet.forward(x, t, context, mask).shape);
        Assert.Contains("token features [3, tokens, 16]", Assert.Throws<ArgumentException>(() => unet.forward(x, t, randn(3, 6, 12), mask)).Message);
        Assert.Contains("booleans", Assert.Throws<ArgumentException>(() => unet.forward(x, t, context, ones(3, 6))).Message);
        Assert.Contains("[batch, 4, height, width]", Assert.Throws<ArgumentException>(() => unet.forward(randn(3, 1, 8, 8), t, context, mask)).Message);
        Assert.Throws<ArgumentException>(() => new TextUnet(Tiny() with { TransformerLevels = [2] }));
        Assert.Throws<ArgumentException>(() => new TextUnet(Tiny() with { Unet = Tiny().Unet with { NumClasses = 10 } }));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void PaddedTokensHaveNoInfluenceAndRealTokensDo(bool pooled)
    {
        using var scope = NewDisposeScope();
        manual_seed(2);
        using var unet = new TextUnet(Tiny(pooled: pooled));
        var x = randn(2, 4, 8, 8);
        var t = tensor(new long[] { 3, 12 });
        var context = randn(2, 6, 16);
        var mask = Mask([true, true, true, false, false, false], [true, true, true, true, true, true]);
        var y = unet.forward(x, t, context, mask);

        var garbage = context.clone();
        garbage[0, 3..] = full(3, 16, 100f);                                  // what sits in the padding of prompt 0
        Assert.True(unet.forward(x, t, garbage, mask).allclose(y, rtol: 0, atol: 1e-5));

        var otherWord = context.clone();
        otherWord[0, 1] = randn(16);                                          // a real token of prompt 0
        var y2 = unet.forward(x, t, otherWord, mask);
        Assert.True((y2[0] - y[0]).abs().max().item<float>() > 1e-4, "a real token must change the prediction");
        Assert.True(y2[1].allclose(y[1], rtol: 0, atol: 1e-6), "and only for its own picture");
    }

    [Fact]
    public void ZeroInitialisedTransformersMakeTheUntrainedNetworkIgnoreTheText()
    {
        using var scope = NewDisposeScope();
        manual_seed(4);
        using var unet = new TextUnet(Tiny(zeroInit: true, pooled: false));
        var x = randn(2, 4, 8, 8);
        var t = tensor(new long[] { 3, 12 });
        var mask = ones(2, 6, dtype: ScalarType.Bool);
        Assert.True(unet.forward(x, t, randn(2, 6, 16), mask).allclose(unet.forward(x, t, randn(2, 6, 16), mask), rtol: 0, atol: 0));
        using var pooled = new TextUnet(Tiny(zeroInit: true, pooled: true));   // the pooled text reaches the ResNet blocks at once
        Assert.False(pooled.forward(x, t, randn(2, 6, 16), mask).allclose(pooled.forward(x, t, randn(2, 6, 16), mask), rtol: 0, atol: 1e-4));
    }

    [Fact]
    public void GuidanceWithTheEmptyPromptIsTheLibrarysFormulaOnSeparateCalls()
    {
        using var scope = NewDisposeScope();
        var tok = WordTokenizer.ForCaptions();
        manual_seed(11);
        using var encoder = new TextEncoder(new TextEncoderConfig { VocabularySize = tok.Count, ContextLength = 8, Dim = 16, Heads = 2, Layers = 1, EmbedDim = 8 });
        using var unet = new TextUnet(Tiny());
        unet.eval();
        string[] prompts = ["a dark coat", "a bag facing left"];
        using var text = TextCondition.Encode(encoder, tok, prompts);
        Assert.Equal(2, text.EmptyIndex);
        Assert.Equal([3L, 8, 16], text.Context.shape);

        var x = randn(3, 4, 8, 8);
        var t = tensor(new long[] { 5, 10, 15 });
        var index = tensor(new long[] { 0, 1, text.EmptyIndex });             // the third picture is unconditional
        using var noGrad = no_grad();
        // Each picture on its own, its prompt encoded on its own.
        Tensor Direct(string prompt, int b)
        {
            var (ids, mask) = PromptTokens.Encode(tok, [prompt], 8);
            return unet.forward(x[b..(b + 1)], t[b..(b + 1)], encoder.call(ids, mask), mask);
        }
        var conditional = cat([Direct(prompts[0], 0), Direct(prompts[1], 1), Direct("", 2)]);
        var unconditional = cat([Direct("", 0), Direct("", 1), Direct("", 2)]);
        Assert.False(conditional[..2].allclose(unconditional[..2], rtol: 0, atol: 1e-4));   // the prompts matter

        Assert.True(text.Guided(unet, index, 0)(x, t).allclose(conditional, rtol: 1e-4, atol: 1e-5), "w = 0 is the conditional model");
        Assert.True(text.Guided(unet, index, -1)(x, t).allclose(unconditional, rtol: 1e-4, atol: 1e-5), "w = −1 is the empty prompt's");
        // ε̃ = (1 + w) ε_c − w ε_∅
        Assert.True(text.Guided(unet, index, 2.5)(x, t).allclose(3.5 * conditional - 2.5 * unconditional, rtol: 1e-4, atol: 1e-4));
    }
}

public class PromptCheckTests
{
    [Fact]
    public void EmptyUnknownTooLongAndUnknownOnlyPrompts()
    {
        var tok = WordTokenizer.ForCaptions();
        var empty = PromptCheck.Check(tok, "  ,  ", 16);
        Assert.True(empty.IsEmpty);
        Assert.Contains(PromptCheck.Notices(empty, 16), n => n.Contains("unconditional"));

        var shiny = PromptCheck.Check(tok, "A shiny, DARK boot!", 16);
        Assert.Equal("a dark boot", shiny.Text);
        Assert.Equal(["shiny"], shiny.UnknownWords);
        Assert.Empty(shiny.TruncatedWords);
        Assert.Contains(PromptCheck.Notices(shiny, 16), n => n.Contains("shiny"));

        var clean = PromptCheck.Check(tok, "a dark ankle boot facing left", 16);
        Assert.Empty(PromptCheck.Notices(clean, 16));

        var cut = PromptCheck.Check(tok, "a dark wide plain ankle boot facing left", 8);    // 8 words, room for 6
        Assert.Equal("a dark wide plain ankle boot", cut.Text);
        Assert.Equal(["facing", "left"], cut.TruncatedWords);
        Assert.Contains(PromptCheck.Notices(cut, 8), n => n.Contains("cut off: facing left"));
        Assert.Equal(8, tok.Encode(cut.Text, 8).Length);                                    // exactly fills the context

        var e = Assert.Throws<ArgumentException>(() => PromptCheck.Check(tok, "purple elephant", 16));
        Assert.Contains("no word this model was trained on (purple, elephant)", e.Message);
        Assert.All(tok.Words, w => Assert.Contains(w, e.Message));
    }
}
