using System.Diagnostics;
using Diffusion.Benchmarks;
using Diffusion.Model.Transformer;
using Xunit.Abstractions;

namespace Diffusion.Tests;

/// <summary>The diffusion transformer's parts against identities, hand computations and counts from the layer shapes.</summary>
public class DitTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(2, 1, 28)]
    [InlineData(4, 3, 8)]
    [InlineData(7, 2, 14)]
    public void PatchifyAndUnpatchifyAreInverses(int p, int channels, int size)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(1);
        var x = randn([3, channels, size, size], generator: g);
        var tokens = Patches.Patchify(x, p);
        Assert.Equal(new long[] { 3, (size / p) * (size / p), p * p * channels }, tokens.shape);
        Assert.True(Patches.Unpatchify(tokens, p, channels).equal(x).all().item<bool>());
        var back = randn([2, (size / p) * (size / p), p * p * channels], generator: g);
        Assert.True(Patches.Patchify(Patches.Unpatchify(back, p, channels), p).equal(back).all().item<bool>());

        // one token by hand: token (row r, column c) holds x[:, :, r·p + i, c·p + j] at position (i·p + j)·C + channel
        int r = size / p - 1, col = 0;
        var token = tokens[1, r * (size / p) + col];
        for (int i = 0; i < p; i++)
            for (int j = 0; j < p; j++)
                for (int ch = 0; ch < channels; ch++)
                    Assert.Equal(x[1, ch, r * p + i, col * p + j].item<float>(), token[(i * p + j) * channels + ch].item<float>());
    }

    [Fact]
    public void PatchEmbeddingIsTheStridedConvolutionOfItsWeight()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(2);
        var embed = new PatchEmbed(4, 3, 32);
        using (no_grad())
            foreach (var p in embed.parameters()) p.copy_(randn(p.shape, generator: g));
        var x = randn([2, 3, 8, 8], generator: g);
        var weight = embed.state_dict()["proj.weight"];
        var bias = embed.state_dict()["proj.bias"];
        Assert.Equal(new long[] { 32, 3, 4, 4 }, weight.shape);
        // the p×p, stride-p convolution (in float64, off oneDNN's float32 path), flattened to tokens
        var conv = nn.functional.conv2d(x.to(ScalarType.Float64), weight.to(ScalarType.Float64), bias.to(ScalarType.Float64), strides: [4, 4]);
        var expected = conv.flatten(2).transpose(1, 2);
        var actual = embed.call(x).to(ScalarType.Float64);
        Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-4), $"max |Δ| {(actual - expected).abs().max().item<double>()}");
    }

    [Fact]
    public void ADitBlockIsTheIdentityAtInitialisationAndNotAfterTraining()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(3);
        var block = new DitBlock(64, 4);
        var x = randn([2, 10, 64], generator: g);
        var c = randn([2, 64], generator: g);
        Assert.True(block.call(x, c).equal(x).all().item<bool>(), "adaLN-Zero: every gate is 0 at initialisation, so the block returns its input");
        // the zero is in the modulation only: once it moves, the block does something
        using (no_grad())
            foreach (var (name, p) in block.named_parameters())
                if (name.StartsWith("adaLN_modulation", StringComparison.Ordinal)) p.copy_(0.1 * randn(p.shape, generator: g));
        Assert.True((block.call(x, c) - x).abs().max().item<float>() > 1e-2);
    }

    [Fact]
    public void AFreshDitOutputsZerosOfTheInputShape()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(4);
        var dit = new Dit(new DitConfig(ImageSize: 8, Channels: 2, PatchSize: 2, Hidden: 32, Depth: 2, Heads: 4, NumClasses: 3));
        var x = randn([3, 2, 8, 8], generator: g);
        var t = tensor(new float[] { 0, 500, 999 });
        var y = tensor(new long[] { 0, 2, 3 });
        var output = dit.call(x, t);
        Assert.Equal(x.shape, output.shape);
        Assert.Equal(0, output.abs().max().item<float>());
        Assert.Equal(0, dit.forward(x, t, y).abs().max().item<float>());
        // only the final layer's zero makes that so: with it moved, time and label change the output
        using (no_grad())
            foreach (var (name, p) in dit.named_parameters())
                if (name.StartsWith("final_layer", StringComparison.Ordinal)) p.copy_(0.1 * randn(p.shape, generator: g));
        var a = dit.forward(x, t, y);
        var b = dit.forward(x, t + 100, y);
        var c = dit.forward(x, t, tensor(new long[] { 1, 1, 1 }));
        Assert.True((a - b).abs().max().item<float>() > 1e-4 && (a - c).abs().max().item<float>() > 1e-4);
    }

    [Theory]
    [InlineData(28, 1, 2, 128, 6, 4, 0, false)]
    [InlineData(28, 1, 4, 256, 8, 8, 10, false)]
    [InlineData(8, 4, 2, 64, 3, 2, 5, true)]
    public void ParameterCountsFollowTheLayerShapes(int size, int channels, int patch, int hidden, int depth, int heads, int classes, bool learnSigma)
    {
        var config = new DitConfig(size, channels, patch, hidden, depth, heads, NumClasses: classes, LearnSigma: learnSigma);
        using var dit = new Dit(config);
        output.WriteLine($"{config}: {dit.ParameterCount():N0} parameters");
        Assert.Equal(config.ParameterCountFormula(), dit.ParameterCount());
    }

    [Fact]
    public void StateDictNamesAreDiTs()
    {
        using var dit = new Dit(new DitConfig(ImageSize: 8, PatchSize: 2, Hidden: 32, Depth: 2, Heads: 2, NumClasses: 3));
        var keys = dit.state_dict().Keys.ToHashSet();
        foreach (var name in new[] { "x_embedder.proj.weight", "x_embedder.proj.bias", "pos_embed", "t_embedder.mlp.0.weight",
                     "t_embedder.mlp.2.bias", "y_embedder.embedding_table.weight", "blocks.0.attn.qkv.weight", "blocks.1.attn.proj.bias",
                     "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc2.bias", "blocks.1.adaLN_modulation.1.weight",
                     "final_layer.linear.weight", "final_layer.adaLN_modulation.1.bias" })
            Assert.Contains(name, keys);
        Assert.Equal(new long[] { 1, 16, 32 }, dit.state_dict()["pos_embed"].shape);
        Assert.DoesNotContain(dit.parameters(), p => p.shape.SequenceEqual(new long[] { 1, 16, 32 }));   // a fixed buffer, not learnt
    }

    [Fact]
    public void PositionEmbeddingFollowsDiTsFormula()
    {
        // get_2d_sincos_pos_embed(D, G): token (row i, column j) = [sin(j ω), cos(j ω), sin(i ω), cos(i ω)], ω_k = 10000^(−k/(D/4))
        const int d = 16, grid = 3;
        using var pos = Patches.SinCosPositions(d, grid, grid);
        for (int i = 0; i < grid; i++)
            for (int j = 0; j < grid; j++)
                for (int k = 0; k < d / 4; k++)
                {
                    double omega = Math.Pow(10000, -k / (d / 4.0));
                    int token = i * grid + j;
                    Assert.Equal(Math.Sin(j * omega), pos[token, k].item<float>(), 6);
                    Assert.Equal(Math.Cos(j * omega), pos[token, d / 4 + k].item<float>(), 6);
                    Assert.Equal(Math.Sin(i * omega), pos[token, d / 2 + k].item<float>(), 6);
                    Assert.Equal(Math.Cos(i * omega), pos[token, 3 * d / 4 + k].item<float>(), 6);
                }
    }

    [Fact]
    public void JointAttentionIsOneSoftmaxOverBothSequences()
    {
        // Written out by hand in float64 from two separate attentions: for an image query, attention over the image keys
        // alone (A_x, with normaliser Z_x = Σ exp(q·k/√d)) and over the text keys alone (A_c, Z_c); one softmax over the
        // joint sequence is their mixture (Z_x A_x + Z_c A_c)/(Z_x + Z_c). Likewise for text queries.
        using var scope = NewDisposeScope();
        using var g = new Generator(5);
        const int dim = 24, heads = 3, n = 5, m = 4;
        var attention = new JointAttention(dim, heads);
        var x = randn([2, n, dim], generator: g);
        var context = randn([2, m, dim], generator: g);
        var (image, text) = attention.call(x, context);

        var w = attention.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float64));
        Tensor Map(string name, Tensor input) => input.to(ScalarType.Float64).matmul(w[name + ".weight"].t()) + w[name + ".bias"];
        Tensor Split(Tensor t) => t.view(2, -1, heads, dim / heads).transpose(1, 2);
        var (qx, kx, vx) = (Split(Map("to_q", x)), Split(Map("to_k", x)), Split(Map("to_v", x)));
        var (qc, kc, vc) = (Split(Map("add_q_proj", context)), Split(Map("add_k_proj", context)), Split(Map("add_v_proj", context)));
        double scale = 1 / Math.Sqrt(dim / heads);
        (Tensor Out, Tensor Z) Separate(Tensor q, Tensor k, Tensor v)
        {
            var e = (q.matmul(k.transpose(-2, -1)) * scale).exp();
            var z = e.sum(-1, keepdim: true);
            return (e.matmul(v) / z, z);
        }
        Tensor Mixed(Tensor q)
        {
            var (ax, zx) = Separate(q, kx, vx);
            var (ac, zc) = Separate(q, kc, vc);
            return ((zx * ax + zc * ac) / (zx + zc)).transpose(1, 2).reshape(2, -1, dim);
        }
        var expectedImage = Map("to_out", Mixed(qx));
        var expectedText = Map("to_add_out", Mixed(qc));
        Assert.True(image.to(ScalarType.Float64).allclose(expectedImage, atol: 1e-5), $"image: max |Δ| {(image - expectedImage).abs().max().item<double>()}");
        Assert.True(text.to(ScalarType.Float64).allclose(expectedText, atol: 1e-5), $"text: max |Δ| {(text - expectedText).abs().max().item<double>()}");
        // and it is not two separate attentions: the image output changes with the text
        var (image2, _) = attention.call(x, context + 1);
        Assert.True((image2 - image).abs().max().item<float>() > 1e-3);
    }

    [Fact]
    public void AnMmditBlockIsTheIdentityOnBothStreamsAtInitialisation()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(6);
        var block = new MmditBlock(32, 4);
        var x = randn([2, 9, 32], generator: g);
        var context = randn([2, 5, 32], generator: g);
        var c = randn([2, 32], generator: g);
        var (image, text) = block.call(x, context, c);
        Assert.True(image.equal(x).all().item<bool>() && text.equal(context).all().item<bool>());
        // separate weights for the two streams: its parameters are two DiT blocks' worth sharing one attention's count
        long d = 32, mlp = 4 * d;
        long perStream = 6 * d * d + 6 * d + 2 * d * mlp + mlp + d + 4 * (d * d + d);   // adaLN, MLP, q/k/v/out maps
        Assert.Equal(2 * perStream, block.ParameterCount());
    }

    [Fact]
    public void FusedAttentionMatchesTheWrittenOutOne()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(7);
        var q = randn([64, 4, 196, 32], generator: g);
        var k = randn([64, 4, 196, 32], generator: g);
        var v = randn([64, 4, 196, 32], generator: g);
        var fused = nn.functional.scaled_dot_product_attention(q, k, v);
        var written = TokenAttention.Written(q, k, v);
        Assert.True(fused.allclose(written, atol: 1e-5), $"max |Δ| {(fused - written).abs().max().item<float>()}");
    }
}
