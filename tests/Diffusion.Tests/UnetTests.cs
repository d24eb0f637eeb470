using TorchSharp.Modules;

namespace Diffusion.Tests;

public class UnetTests
{
    public static TheoryData<string, UnetConfig, int> Configs() => new()
    {
        { "annotated 28px", new UnetConfig(), 28 },
        { "convnext", new UnetConfig { Dim = 16, Block = BlockType.ConvNext }, 28 },
        { "rgb 32px 4 levels", new UnetConfig { Dim = 16, Channels = 3, DimMults = [1, 2, 4, 8] }, 32 },
        { "init/out dims, attention at level 2 only", new UnetConfig { Dim = 16, InitDim = 8, OutDim = 2, LinearAttentionLevels = [2] }, 28 },
        { "one level, no linear attention", new UnetConfig { Dim = 8, DimMults = [1], LinearAttentionLevels = [] }, 9 },
        { "class conditional", new UnetConfig { Dim = 16, NumClasses = 10 }, 28 },
    };

    [Theory]
    [MemberData(nameof(Configs))]
    public void OutputHasTheInputShapeAndIsFiniteAtInitialisation(string name, UnetConfig config, int size)
    {
        manual_seed(1);
        using var net = new Unet(config);
        using var scope = NewDisposeScope();
        var x = randn(3, config.Channels, size, size);
        var t = tensor(new long[] { 0, 5, 299 });
        var y = net.call(x, t);
        Assert.Equal(new long[] { 3, config.ResolvedOutDim, size, size }, y.shape);
        Assert.True(isfinite(y).all().item<bool>(), name);
        Assert.True(y.abs().max().item<float>() > 0, name);
    }

    [Theory]
    [InlineData(5, 28, 3, 1, 1)]     // channel counts that oneDNN pads internally
    [InlineData(16, 32, 3, 1, 1)]    // multiples of 16: no padding needed
    [InlineData(28, 28, 7, 3, 28)]   // depthwise, as in the ConvNeXt block
    [InlineData(24, 8, 3, 1, 1)]
    public void SafeConvolutionEqualsAnUnpaddedConvolution(int cin, int cout, int k, int padding, int groups)
    {
        manual_seed(3);
        using var conv = new SafeConv2d(cin, cout, k, padding, groups);
        using var scope = NewDisposeScope();
        var x = randn(2, cin, 9, 9).requires_grad_();
        var (w, b) = (conv.parameters().First(), conv.parameters().Last());
        var y = conv.call(x);
        // The reference: libtorch's own convolution, with oneDNN switched off (an independent implementation).
        Tensor reference;
        Tensor[] gr;
        lock (OneDnnGate)
        {
            Assert.False(Diffusion.Platform.TorchNative.SetOneDnnEnabled(false));
            try
            {
                reference = nn.functional.conv2d(x, w, b, padding: [padding, padding], groups: groups);
                gr = autograd.grad([reference.sum()], [x, w])!.ToArray();
            }
            finally { Diffusion.Platform.TorchNative.SetOneDnnEnabled(true); }
        }
        Assert.Equal(reference.shape, y.shape);
        Assert.True(y.allclose(reference, rtol: 1e-5, atol: 1e-5), $"max difference {(y - reference).abs().max().item<float>()}");
        // Gradients too: the padding must not leak into them.
        var gy = autograd.grad([y.sum()], [x, w])!;
        Assert.True(gy[0].allclose(gr[0], rtol: 1e-5, atol: 1e-5), $"∂/∂x max difference {(gy[0] - gr[0]).abs().max().item<float>()}");
        Assert.True(gy[1].allclose(gr[1], rtol: 1e-5, atol: 1e-4), $"∂/∂w max difference {(gy[1] - gr[1]).abs().max().item<float>()}");
        Assert.Equal(new[] { "weight", "bias" }, conv.named_parameters().Select(p => p.name));   // nn.Conv2d's names
    }

    /// <summary>
    /// LinearAttention regroups the products (it never forms v or contextᵀq); the annotated notebook's order, written
    /// out with einsum on the same parameters, must give the same output and the same gradients.
    /// </summary>
    [Fact]
    public void LinearAttentionEqualsTheNotebooksOrderOfProducts()
    {
        manual_seed(6);
        using var attention = new LinearAttention(12, heads: 2, dimHead: 8);
        using var scope = NewDisposeScope();
        var p = attention.named_parameters().ToDictionary(n => n.name, n => (Tensor)n.parameter);
        using (no_grad()) { p["to_out.1.weight"].normal_(1, 0.2); p["to_out.1.bias"].normal_(0, 0.2); }
        var x = randn(3, 12, 5, 6).requires_grad_();
        long b = 3, n = 30;
        var qkv = nn.functional.conv2d(x, p["to_qkv.weight"]).chunk(3, dim: 1);
        var q = qkv[0].reshape(b, 2, 8, n).softmax(-2) * (1 / Math.Sqrt(8));
        var k = qkv[1].reshape(b, 2, 8, n).softmax(-1);
        var v = qkv[2].reshape(b, 2, 8, n);
        var context = einsum("bhdn,bhen->bhde", k, v);
        var output = einsum("bhde,bhdn->bhen", context, q).reshape(b, 16, 5, 6);
        var reference = nn.functional.group_norm(nn.functional.conv2d(output, p["to_out.0.weight"], p["to_out.0.bias"]), 1,
            p["to_out.1.weight"], p["to_out.1.bias"]);
        var y = attention.call(x);
        Assert.True(y.allclose(reference, rtol: 1e-5, atol: 1e-5), $"max difference {(y - reference).abs().max().item<float>()}");
        Tensor[] wrt = [x, p["to_qkv.weight"], p["to_out.0.weight"], p["to_out.0.bias"]];
        var gy = autograd.grad([(y * y.detach().cos()).sum()], wrt, retain_graph: true)!.ToArray();
        var gr = autograd.grad([(reference * reference.detach().cos()).sum()], wrt)!.ToArray();
        for (int i = 0; i < wrt.Length; i++)
            Assert.True(gy[i].allclose(gr[i], rtol: 1e-4, atol: 1e-5), $"gradient {i}: max difference {(gy[i] - gr[i]).abs().max().item<float>()}");
    }

    /// <summary>oneDNN is a process-wide switch: tests that turn it off do so one at a time.</summary>
    public static readonly object OneDnnGate = new();

    [Fact]
    public void PointwiseConvolutionEqualsAOneByOneConvolution()
    {
        manual_seed(4);
        using var conv = new PointwiseConv2d(12, 20);
        using var scope = NewDisposeScope();
        var x = randn(3, 12, 5, 7);
        var reference = nn.functional.conv2d(x, conv.Weight, conv.parameters().Last());
        Assert.True(conv.call(x).allclose(reference, rtol: 1e-5, atol: 1e-5));
        Assert.Equal(new long[] { 20, 12, 1, 1 }, conv.Weight.shape);
        Assert.Equal(new[] { "weight", "bias" }, conv.named_parameters().Select(p => p.name));
        using var noBias = new PointwiseConv2d(12, 20, hasBias: false);
        Assert.Equal(new[] { "weight" }, noBias.named_parameters().Select(p => p.name));
    }

    /// <summary>
    /// The regression that SafeConv2d fixes: on the project's CPU, with oneDNN convolutions over channel counts that are
    /// not multiples of 16 (dim 8 and 28), 10–29 of these 30 forward passes came out NaN once backward passes had run.
    /// </summary>
    [Theory]
    [InlineData(8, new[] { 1, 2 })]
    [InlineData(28, new[] { 1, 2, 4 })]
    public void RepeatedTrainingPassesStayFinite(int dim, int[] mults)
    {
        manual_seed(5);
        using var net = new Unet(new UnetConfig { Dim = dim, DimMults = mults, LinearAttentionLevels = [.. Enumerable.Range(1, mults.Length - 1)] });
        int nonFinite = 0;
        for (int pass = 0; pass < 30; pass++)
        {
            using var scope = NewDisposeScope();
            var x = randn(4, 1, 28, 28);
            var t = randint(0, 20, [4], dtype: ScalarType.Int64);
            var loss = nn.functional.mse_loss(net.call(x, t), randn(4, 1, 28, 28));
            if (!double.IsFinite(loss.item<float>())) nonFinite++;
            net.zero_grad();
            loss.backward();
        }
        Assert.Equal(0, nonFinite);
    }

    [Fact]
    public void EveryGroupNormIsInitialisedToIdentity()
    {
        using var net = new Unet(new UnetConfig { Dim = 16, Block = BlockType.ConvNext });
        var norms = net.modules().OfType<GroupNorm>().ToList();
        Assert.NotEmpty(norms);
        foreach (var n in norms)
        {
            Assert.True(n.weight!.eq(1).all().item<bool>());
            Assert.True(n.bias!.eq(0).all().item<bool>());
        }
    }

    [Fact]
    public void SinusoidalEmbeddingMatchesTheFormula()
    {
        using var emb = new SinusoidalPositionEmbeddings(16);
        var t = tensor(new long[] { 0, 1, 17, 999 });
        var e = emb.call(t).data<float>().ToArray();
        for (int b = 0; b < 4; b++)
        {
            double time = new[] { 0, 1, 17, 999 }[b];
            for (int i = 0; i < 8; i++)
            {
                double omega = Math.Pow(10000, -i / 7.0);
                Assert.Equal(Math.Sin(time * omega), e[b * 16 + i], 3);
                Assert.Equal(Math.Cos(time * omega), e[b * 16 + 8 + i], 3);
            }
        }
    }

    [Fact]
    public void AttentionMatchesANaiveComputation()
    {
        manual_seed(2);
        using var attn = new Attention(dim: 6, heads: 2, dimHead: 3);
        using var scope = NewDisposeScope();
        var x = randn(1, 6, 2, 3);
        var got = attn.call(x);
        using var noGrad = no_grad();
        // Naive: project with the same 1×1 convs, loop over heads and positions, softmax by hand, all in float64 arrays.
        var named = attn.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        double[] Flat(Tensor t) => t.detach().to(ScalarType.Float64).contiguous().data<double>().ToArray();
        var wqkv = Flat(named["to_qkv.weight"]);          // [18, 6]
        var wout = Flat(named["to_out.weight"]);          // [6, 6]
        var bout = Flat(named["to_out.bias"]);
        var xs = Flat(x);                                 // [6 channels, 6 positions]
        const int C = 6, P = 6, D = 3;
        var qkv = new double[18, P];
        for (int o = 0; o < 18; o++)
            for (int p = 0; p < P; p++)
                for (int c = 0; c < C; c++) qkv[o, p] += wqkv[o * C + c] * xs[c * P + p];
        var heads = new double[C, P];
        for (int h = 0; h < 2; h++)
            for (int i = 0; i < P; i++)
            {
                var scores = new double[P];
                for (int j = 0; j < P; j++)
                    for (int d = 0; d < D; d++) scores[j] += qkv[h * D + d, i] / Math.Sqrt(D) * qkv[6 + h * D + d, j];
                double max = scores.Max(), sum = scores.Sum(v => Math.Exp(v - max));
                for (int j = 0; j < P; j++)
                    for (int d = 0; d < D; d++) heads[h * D + d, i] += Math.Exp(scores[j] - max) / sum * qkv[12 + h * D + d, j];
            }
        var expectedValues = new double[C * P];
        for (int o = 0; o < C; o++)
            for (int p = 0; p < P; p++)
            {
                expectedValues[o * P + p] = bout[o];
                for (int c = 0; c < C; c++) expectedValues[o * P + p] += wout[o * C + c] * heads[c, p];
            }
        var expected = tensor(expectedValues).reshape(1, 6, 2, 3);
        Assert.True(allclose(got.to(ScalarType.Float64), expected, rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void LinearAttentionMatchesTheEinsumDefinition()
    {
        manual_seed(3);
        using var attn = new LinearAttention(dim: 4, heads: 2, dimHead: 5);
        using var scope = NewDisposeScope();
        var x = randn(2, 4, 3, 3);
        var got = attn.call(x);
        var named = attn.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var qkv = nn.functional.conv2d(x, named["to_qkv.weight"]).chunk(3, 1);
        Tensor Heads(Tensor z) => z.reshape(2, 2, 5, 9);
        var q = Heads(qkv[0]).softmax(-2) * (1 / Math.Sqrt(5));
        var k = Heads(qkv[1]).softmax(-1);
        var v = Heads(qkv[2]);
        var context = einsum("bhdn,bhen->bhde", k, v);
        var output = einsum("bhde,bhdn->bhen", context, q).reshape(2, 10, 3, 3);
        var projected = nn.functional.conv2d(output, named["to_out.0.weight"], named["to_out.0.bias"]);
        var expected = nn.functional.group_norm(projected, 1, named["to_out.1.weight"], named["to_out.1.bias"]);
        Assert.True(allclose(got, expected, rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void DownsampleKeepsEveryPixelInTheEinopsOrder()
    {
        // "b c (h p1) (w p2) -> b (c p1 p2) h w": channel c·4 + p1·2 + p2 holds pixel (2h + p1, 2w + p2) of channel c.
        var x = arange(2 * 4 * 4, dtype: ScalarType.Float32).reshape(1, 2, 4, 4);
        var y = nn.functional.pixel_unshuffle(x, 2);
        for (int c = 0; c < 2; c++)
            for (int p1 = 0; p1 < 2; p1++)
                for (int p2 = 0; p2 < 2; p2++)
                    for (int h = 0; h < 2; h++)
                        for (int w = 0; w < 2; w++)
                            Assert.Equal(x[0, c, 2 * h + p1, 2 * w + p2].item<float>(), y[0, c * 4 + p1 * 2 + p2, h, w].item<float>());
    }

    [Fact]
    public void ParameterNamesFollowThePyTorchModule()
    {
        using var net = new Unet(new UnetConfig());
        var names = net.named_parameters().Select(p => p.name).ToHashSet();
        foreach (var expected in new[]
                 {
                     "init_conv.weight", "time_mlp.1.weight", "time_mlp.3.bias", "downs.0.0.mlp.1.weight", "downs.0.0.block1.proj.weight",
                     "downs.0.1.block2.norm.bias", "downs.0.2.fn.fn.to_qkv.weight", "downs.0.2.fn.norm.weight", "downs.0.3.1.weight",
                     "downs.2.3.weight", "mid_attn.fn.fn.to_out.weight", "ups.0.0.res_conv.weight", "ups.1.3.1.weight",
                     "final_res_block.block1.proj.weight", "final_conv.bias",
                 })
            Assert.Contains(expected, names);
        Assert.Equal(net.ParameterCount(), net.parameters().Sum(p => p.numel()));
    }

    [Fact]
    public void ClassLabelsChangeTheOutputAndNullMeansNoLabel()
    {
        manual_seed(4);
        using var net = new Unet(new UnetConfig { Dim = 8, DimMults = [1, 2], NumClasses = 3 });
        using var scope = NewDisposeScope();
        // Give the label embedding weight so that labels matter at initialisation.
        var x = randn(3, 1, 8, 8);
        var t = tensor(new long[] { 3, 3, 3 });
        var a = net.forward(x, t, tensor(new long[] { 0, 1, 2 }));
        var none = net.forward(x, t, null);
        var explicitNone = net.forward(x, t, tensor(new long[] { 3, 3, 3 }));
        Assert.False(allclose(a, none));
        Assert.True(allclose(none, explicitNone));
    }

    [Fact]
    public void BadConfigurationsAndInputsGiveClearErrors()
    {
        Assert.Contains("divisible by ResnetBlockGroups",
            Assert.Throws<ArgumentException>(() => new Unet(new UnetConfig { Dim = 10, ResnetBlockGroups = 4 })).Message);
        Assert.Contains("multiple of 8", Assert.Throws<ArgumentException>(() => new UnetConfig { DimMults = [1, 2, 4, 8] }.ValidateImageSize(28)).Message);
        Assert.Contains("even", Assert.Throws<ArgumentException>(() => new UnetConfig { Dim = 7, ResnetBlockGroups = 1 }.Validate()).Message);
        using var net = new Unet(new UnetConfig { Dim = 8, DimMults = [1, 2] });
        Assert.Contains("expects images shaped", Assert.Throws<ArgumentException>(() => net.call(zeros(2, 3, 8, 8), zeros(2, dtype: ScalarType.Int64))).Message);
        Assert.Contains("one time step per image", Assert.Throws<ArgumentException>(() => net.call(zeros(2, 1, 8, 8), zeros(3, dtype: ScalarType.Int64))).Message);
        Assert.Contains("unconditional", Assert.Throws<ArgumentException>(() => net.forward(zeros(2, 1, 8, 8), zeros(2, dtype: ScalarType.Int64), zeros(2, dtype: ScalarType.Int64))).Message);
    }
}
