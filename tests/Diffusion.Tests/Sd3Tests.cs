using Diffusion.Benchmarks;
using Diffusion.Model.Transformer;
using Diffusion.TextToImage;
using Xunit.Abstractions;

namespace Diffusion.Tests;

/// <summary>
/// The miniature Stable Diffusion 3 (MMDiT on latents, read from the mini-CLIP) against identities, counts from the layer
/// shapes and a forward pass written out by hand in float64; and the DiT on the autoencoder's latents.
/// </summary>
public class Sd3Tests(ITestOutputHelper output)
{
    static readonly MiniSd3Config Tiny = new(ImageSize: 8, Channels: 4, PatchSize: 2, Hidden: 32, Depth: 2, Heads: 4, ContextDim: 16, ContextLength: 5, PooledDim: 12);

    /// <summary>Every parameter that DiT's initialisation sets to zero (modulations, output map) gets small random values.</summary>
    static void PerturbZeros(nn.Module net, Generator g, double scale = 0.1)
    {
        using var noGrad = no_grad();
        foreach (var p in net.parameters())
            if (p.abs().max().to(ScalarType.Float64).item<double>() == 0) p.copy_(scale * randn(p.shape, dtype: p.dtype, generator: g));
    }

    static (Tensor X, Tensor T, Tensor Context, Tensor Pooled, Tensor Mask) Inputs(MiniSd3Config c, Generator g, int batch = 3)
    {
        var x = randn([batch, c.Channels, c.ImageSize, c.ImageSize], generator: g);
        var t = tensor(Enumerable.Range(0, batch).Select(i => 1000f * (i + 1) / (batch + 1)).ToArray());
        var context = randn([batch, c.ContextLength, c.ContextDim], generator: g);
        var pooled = randn([batch, c.PooledDim], generator: g);
        var mask = ones([batch, c.ContextLength], dtype: ScalarType.Bool);
        mask[0, (c.ContextLength - 2)..] = tensor(false);                          // two padding tokens in the first prompt
        return (x, t, context, pooled, mask);
    }

    [Fact]
    public void AFreshMiniSd3OutputsZerosOfTheLatentShape()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(11);
        var net = new MiniSd3(Tiny);
        var (x, t, context, pooled, mask) = Inputs(Tiny, g);
        var y = net.forward(x, t, context, pooled, mask);
        Assert.Equal(x.shape, y.shape);
        // norm_out and proj_out start at zero (adaLN-Zero, DiT's zero final layer), so the prediction is 0 everywhere
        Assert.Equal(0, y.abs().max().item<float>());
        Assert.Equal(0, net.call(x, t, context, pooled).abs().max().item<float>());
        // and it is only that zero: with the output maps moved, the output depends on the input
        using (no_grad())
            foreach (var (name, p) in net.named_parameters())
                if (name.StartsWith("norm_out", StringComparison.Ordinal) || name.StartsWith("proj_out", StringComparison.Ordinal))
                    p.copy_(0.1 * randn(p.shape, generator: g));
        Assert.True((net.forward(x, t, context, pooled, mask) - net.forward(x + 1, t, context, pooled, mask)).abs().max().item<float>() > 1e-3);
    }

    [Fact]
    public void EveryMmditBlockIsTheIdentityAtInitialisationIncludingTheLastOne()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(12);
        var x = randn([2, 9, 32], generator: g);
        var context = randn([2, 5, 32], generator: g);
        var c = randn([2, 32], generator: g);
        var last = new MmditBlock(32, 4, contextPreOnly: true);
        var (image, text) = last.call(x, context, c);
        Assert.True(image.equal(x).all().item<bool>());
        Assert.Null(text);                                                        // the text stream ends in the last block
        PerturbZeros(last, g);
        Assert.True((last.call(x, context, c).Image - x).abs().max().item<float>() > 1e-2);
    }

    [Theory]
    [InlineData(8, 4, 2, 32, 2, 4, 16, 12)]
    [InlineData(8, 4, 1, 64, 1, 2, 64, 64)]
    [InlineData(16, 3, 4, 48, 3, 3, 8, 20)]
    public void ParameterCountsFollowTheLayerShapes(int size, int channels, int patch, int hidden, int depth, int heads, int contextDim, int pooledDim)
    {
        var config = new MiniSd3Config(size, channels, patch, hidden, depth, heads, ContextDim: contextDim, PooledDim: pooledDim);
        using var net = new MiniSd3(config);
        output.WriteLine($"{config}: {net.ParameterCount():N0} parameters");
        Assert.Equal(config.ParameterCountFormula(), net.ParameterCount());
    }

    [Fact]
    public void StateDictNamesAreDiffusersSd3Names()
    {
        using var net = new MiniSd3(Tiny);
        var sd = net.state_dict();
        foreach (var name in new[] { "pos_embed.proj.weight", "pos_embed.proj.bias", "pos_embed.pos_embed",
                     "time_text_embed.timestep_embedder.linear_1.weight", "time_text_embed.timestep_embedder.linear_2.bias",
                     "time_text_embed.text_embedder.linear_1.weight", "time_text_embed.text_embedder.linear_2.weight",
                     "context_embedder.weight", "transformer_blocks.0.norm1.linear.weight", "transformer_blocks.0.norm1_context.linear.bias",
                     "transformer_blocks.0.attn.to_q.weight", "transformer_blocks.0.attn.add_q_proj.weight", "transformer_blocks.0.attn.add_k_proj.weight",
                     "transformer_blocks.0.attn.to_add_out.weight", "transformer_blocks.0.ff.net.0.proj.weight", "transformer_blocks.0.ff.net.2.bias",
                     "transformer_blocks.0.ff_context.net.0.proj.weight", "transformer_blocks.1.attn.add_v_proj.weight",
                     "norm_out.linear.weight", "proj_out.weight", "proj_out.bias" })
            Assert.Contains(name, sd.Keys);
        // the last block is context-pre-only: no text output map, no text MLP, a 2-vector text modulation
        Assert.DoesNotContain("transformer_blocks.1.attn.to_add_out.weight", sd.Keys);
        Assert.DoesNotContain("transformer_blocks.1.ff_context.net.0.proj.weight", sd.Keys);
        Assert.Equal(new long[] { 2 * 32, 32 }, sd["transformer_blocks.1.norm1_context.linear.weight"].shape);
        Assert.Equal(new long[] { 6 * 32, 32 }, sd["transformer_blocks.0.norm1_context.linear.weight"].shape);
        Assert.Equal(new long[] { 32, 4, 2, 2 }, sd["pos_embed.proj.weight"].shape);
        Assert.Equal(new long[] { 32, 16 }, sd["context_embedder.weight"].shape);
    }

    [Fact]
    public void EachStreamHasItsOwnWeightsAndTheTextReachesTheImage()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(13);
        var block = new MmditBlock(32, 4);
        PerturbZeros(block, g);
        var x = randn([2, 9, 32], generator: g);
        var context = randn([2, 5, 32], generator: g);
        var c = randn([2, 32], generator: g);
        var (image, text) = block.call(x, context, c);
        // the image MLP changes the image stream only; the text MLP the text stream only
        void Bump(string prefix)
        {
            using var noGrad = no_grad();
            foreach (var (name, p) in block.named_parameters())
                if (name.StartsWith(prefix, StringComparison.Ordinal)) p.add_(0.5);
        }
        Bump("ff.");
        var (image2, text2) = block.call(x, context, c);
        Assert.True(text2.equal(text).all().item<bool>());
        Assert.True((image2 - image).abs().max().item<float>() > 1e-3);
        Bump("ff_context.");
        var (image3, text3) = block.call(x, context, c);
        Assert.True(image3.equal(image2).all().item<bool>());
        Assert.True((text3 - text2).abs().max().item<float>() > 1e-3);

        // in the whole network, the prompt changes the picture through the tokens and through the pooled vector
        var net = new MiniSd3(Tiny);
        PerturbZeros(net, g);
        var (lx, t, ctx, pooled, mask) = Inputs(Tiny, g);
        var y = net.forward(lx, t, ctx, pooled, mask);
        var byTokens = net.forward(lx, t, ctx + randn(ctx.shape, generator: g), pooled, mask);
        var byPooled = net.forward(lx, t, ctx, pooled + randn(pooled.shape, generator: g), mask);
        Assert.True((byTokens - y).abs().max().item<float>() > 1e-3, "the text tokens reach the image through the joint attention");
        Assert.True((byPooled - y).abs().max().item<float>() > 1e-3, "the pooled vector reaches the image through the modulation");
        // padding tokens are not attended: changing them changes nothing
        var padded = ctx.clone();
        padded[0, (Tiny.ContextLength - 2)..] = randn([2, Tiny.ContextDim], generator: g);
        Assert.True(net.forward(lx, t, padded, pooled, mask).allclose(y, rtol: 0, atol: 1e-6));
    }

    [Fact]
    public void AOneBlockMiniSd3IsTheCompositionOfItsPartsInFloat64()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(14);
        var config = new MiniSd3Config(ImageSize: 4, Channels: 2, PatchSize: 2, Hidden: 16, Depth: 1, Heads: 2, ContextDim: 6, ContextLength: 4, PooledDim: 5);
        var net = new MiniSd3(config);
        net.to(ScalarType.Float64);
        using (no_grad())
            foreach (var p in net.parameters()) p.copy_(0.3 * randn(p.shape, dtype: ScalarType.Float64, generator: g));
        const int b = 2;
        long d = config.Hidden, heads = config.Heads, p2 = config.PatchSize, n = 4, l = config.ContextLength;
        var x = randn([b, config.Channels, 4, 4], dtype: ScalarType.Float64, generator: g);
        var t = tensor(new double[] { 250, 900 });
        var context = randn([b, l, config.ContextDim], dtype: ScalarType.Float64, generator: g);
        var pooled = randn([b, config.PooledDim], dtype: ScalarType.Float64, generator: g);
        var mask = tensor(new[] { true, true, true, false, true, true, true, true }).view(b, l);
        var actual = net.forward(x, t, context, pooled, mask);

        var w = net.state_dict();
        Tensor Lin(string name, Tensor input) => input.matmul(w[name + ".weight"].t()) + w[name + ".bias"];
        Tensor Silu(Tensor z) => z * z.sigmoid();
        Tensor Norm(Tensor z) => (z - z.mean([-1], keepdim: true)) / (z.var(-1, unbiased: false, keepdim: true) + 1e-6).sqrt();
        Tensor Modulate(Tensor z, Tensor shift, Tensor scale) => Norm(z) * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1);
        Tensor Gelu(Tensor z) => 0.5 * z * (1 + (Math.Sqrt(2 / Math.PI) * (z + 0.044715 * z.pow(3))).tanh());

        // patch embedding: the stride-p convolution of its weight, plus the fixed positions
        var image = nn.functional.conv2d(x, w["pos_embed.proj.weight"], w["pos_embed.proj.bias"], strides: [p2, p2]).flatten(2).transpose(1, 2)
                    + Patches.SinCosPositions(d, 2, 2).to(ScalarType.Float64);
        var text = Lin("context_embedder", context);
        // c = MLP(sinusoid(t)) + MLP(pooled)
        var frequencies = new SinusoidalPositionEmbeddings(256).call(t).to(ScalarType.Float64);
        var c = Lin("time_text_embed.timestep_embedder.linear_2", Silu(Lin("time_text_embed.timestep_embedder.linear_1", frequencies)))
                + Lin("time_text_embed.text_embedder.linear_2", Silu(Lin("time_text_embed.text_embedder.linear_1", pooled)));
        // the one block is context-pre-only: six image modulations, (scale, shift) for the text
        var m = Lin("transformer_blocks.0.norm1.linear", Silu(c)).chunk(6, 1);
        var mc = Lin("transformer_blocks.0.norm1_context.linear", Silu(c)).chunk(2, 1);
        var hx = Modulate(image, m[0], m[1]);
        var hc = Modulate(text, mc[1], mc[0]);
        Tensor Split(Tensor z) => z.view(b, -1, heads, d / heads).transpose(1, 2);
        var q = Split(Lin("transformer_blocks.0.attn.to_q", hx));
        var k = Split(cat([Lin("transformer_blocks.0.attn.to_k", hx), Lin("transformer_blocks.0.attn.add_k_proj", hc)], 1));
        var v = Split(cat([Lin("transformer_blocks.0.attn.to_v", hx), Lin("transformer_blocks.0.attn.add_v_proj", hc)], 1));
        var scores = q.matmul(k.transpose(-2, -1)) / Math.Sqrt(d / heads);                  // [b, heads, N, N + L]
        var keyMask = cat([ones([b, n], dtype: ScalarType.Bool), mask], 1).view(b, 1, 1, -1);
        var weights = scores.masked_fill(keyMask.logical_not(), double.NegativeInfinity).softmax(-1);
        var attended = weights.matmul(v).transpose(1, 2).reshape(b, n, d);
        image = image + m[2].unsqueeze(1) * Lin("transformer_blocks.0.attn.to_out", attended);
        var hidden = Gelu(Lin("transformer_blocks.0.ff.net.0.proj", Modulate(image, m[3], m[4])));
        image = image + m[5].unsqueeze(1) * Lin("transformer_blocks.0.ff.net.2", hidden);
        var mo = Lin("norm_out.linear", Silu(c)).chunk(2, 1);                                // scale, shift
        var patches = Lin("proj_out", Modulate(image, mo[1], mo[0]));                        // [b, N, p·p·C]
        // unpatchify: token (row r, column s) holds pixel (r·p + i, s·p + j) of channel ch at (i·p + j)·C + ch
        var expected = zeros([b, config.Channels, 4, 4], dtype: ScalarType.Float64);
        for (int r = 0; r < 2; r++)
            for (int s = 0; s < 2; s++)
                for (int i = 0; i < p2; i++)
                    for (int j = 0; j < p2; j++)
                        for (int ch = 0; ch < config.Channels; ch++)
                            expected[.., ch, r * p2 + i, s * p2 + j] = patches[.., r * 2 + s, (i * p2 + j) * config.Channels + ch];
        double err = (actual - expected).abs().max().item<double>();
        output.WriteLine($"max |Δ| = {err:E2}, max |y| = {expected.abs().max().item<double>():F3}");
        Assert.True(err < 1e-10, $"max |Δ| {err}");
    }

    [Fact]
    public void PromptsIndexTheirRowsAndTheLastRowIsTheEmptyPrompt()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(15);
        var tokenizer = WordTokenizer.ForCaptions();
        var encoder = new TextEncoder(new TextEncoderConfig { VocabularySize = tokenizer.Count, ContextLength = 8, Dim = 16, Heads = 2, Layers = 1, EmbedDim = 12 });
        var config = Tiny with { ContextDim = 16, ContextLength = 8, PooledDim = 12 };
        var net = new MiniSd3(config);
        PerturbZeros(net, g);
        using var prompts = MiniSd3Prompts.Encode(encoder, tokenizer, ["a photo of a dark shirt", "a photo of a bag"]);
        Assert.Equal(2, prompts.EmptyIndex);
        // the empty row is the encoder's reading of "" (start and end tokens), and its pooled vector is Embed of that
        var (ids, mask) = PromptTokens.Encode(tokenizer, [""], 8);
        using (no_grad())
        {
            var emptyTokens = encoder.call(ids, mask);
            Assert.True(prompts.Context[2].allclose(emptyTokens[0], atol: 1e-6));
            Assert.True(prompts.Pooled[2].allclose(encoder.Embed(emptyTokens, mask)[0], atol: 1e-6));
        }
        var x = randn([3, 4, 8, 8], generator: g);
        var t = tensor(new float[] { 100, 500, 900 });
        var index = tensor(new long[] { 1, 2, 0 });
        var actual = prompts.Predict(net, x, t, index);
        for (int i = 0; i < 3; i++)
        {
            long row = index[i].item<long>();
            var one = net.forward(x[i..(i + 1)], t[i..(i + 1)], prompts.Context[row].unsqueeze(0), prompts.Pooled[row].unsqueeze(0), prompts.Mask[row].unsqueeze(0));
            Assert.True(actual[i..(i + 1)].allclose(one, atol: 1e-5), $"image {i}");
        }
        // guidance with w: (1 + w) v(c) − w v(∅), the network called at t·1000
        var guided = prompts.Guided(net, tensor(new long[] { 0, 1, 0 }), 2.0)(x, t / 1000);
        var cond = prompts.Predict(net, x, t, tensor(new long[] { 0, 1, 0 }));
        var uncond = prompts.Predict(net, x, t, tensor(new long[] { 2, 2, 2 }));
        Assert.True(guided.allclose(3 * cond - 2 * uncond, atol: 1e-4), $"max |Δ| {(guided - (3 * cond - 2 * uncond)).abs().max().item<float>()}");
    }

    [Fact]
    public void ADitDenoisesTheAutoencodersLatents()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(16);
        var ae = new Diffusion.Latent.AutoencoderConfig();
        var config = new DitConfig(ImageSize: ae.LatentSize, Channels: ae.LatentChannels, PatchSize: 2, Hidden: 32, Depth: 2, Heads: 4);
        var dit = new Dit(config);
        Assert.Equal(config.ParameterCountFormula(), dit.ParameterCount());
        Assert.Equal(16, config.Tokens);
        using (no_grad())
            foreach (var (name, p) in dit.named_parameters())
                if (name.StartsWith("final_layer", StringComparison.Ordinal)) p.copy_(0.1 * randn(p.shape, generator: g));
        var z = randn([2, ae.LatentChannels, ae.LatentSize, ae.LatentSize], generator: g);
        var y = dit.call(z, tensor(new float[] { 10, 990 }));
        Assert.Equal(z.shape, y.shape);
        Assert.True(y.abs().max().item<float>() > 0);
        // a latent side the patch does not divide is refused with the sizes that would work
        var e = Assert.Throws<ArgumentException>(() => new DitConfig(ImageSize: 7, Channels: 4, PatchSize: 2).Validate());
        Assert.Contains("must divide the image size 7", e.Message);
        Assert.Contains("use one of 1, 7", e.Message);
        var wrong = Assert.Throws<ArgumentException>(() => dit.call(randn([1, 4, 7, 7]), tensor(new float[] { 1 })));
        Assert.Contains("[B, 4, 8, 8]", wrong.Message);
        Assert.Throws<ArgumentException>(() => new MiniSd3Config(ImageSize: 7, PatchSize: 2).Validate());
    }

    [Fact]
    public void FlopEstimatesAgreeWithTheLinearLayersCountedByHooks()
    {
        // FlopCounter counts every Linear layer as it runs (2·in·out per token); what it cannot see is the patch
        // projection (a custom module) and attention's two products, added here from their shapes.
        var dit = new DitConfig(PatchSize: 4, Hidden: 64, Depth: 3, Heads: 4);
        using (var net = new Dit(dit))
        {
            double hooked = FlopCounter.ForwardFlops(net, () => net.call(zeros(1, 1, 28, 28), zeros(1)));
            double n = dit.Tokens, d = dit.Hidden;
            double expected = hooked + 2 * n * d * 16 + dit.Depth * 2 * 2 * n * n * d;
            Assert.True(Math.Abs(expected - dit.ForwardFlopsPerImage()) <= 1e-9 * expected, $"DiT: hooks + patches + attention {expected}, formula {dit.ForwardFlopsPerImage()}");
        }
        var sd3 = Tiny;
        using (var net = new MiniSd3(sd3))
        {
            double hooked = FlopCounter.ForwardFlops(net, () => net.call(zeros(1, 4, 8, 8), zeros(1), zeros(1, sd3.ContextLength, sd3.ContextDim), zeros(1, sd3.PooledDim)));
            double n = sd3.Tokens, l = sd3.ContextLength, d = sd3.Hidden;
            double attention = (sd3.Depth - 1) * 2 * 2 * (n + l) * (n + l) * d + 2 * 2 * n * (n + l) * d;
            double expected = hooked + 2 * n * d * sd3.Channels * 4 + attention;
            Assert.True(Math.Abs(expected - sd3.ForwardFlopsPerImage()) <= 1e-9 * expected, $"mini SD3: hooks + patches + attention {expected}, formula {sd3.ForwardFlopsPerImage()}");
        }
    }

    [Fact]
    public void TheTransformerBenchTimesTrainingSteps()
    {
        var results = TransformerBench.Run(null, quick: true, output.WriteLine);
        foreach (var line in results.Summary()) output.WriteLine(line);
        var row = Assert.Single(results.Rows);
        Assert.True(results.MatmulGflops > 0 && row.MatmulGflops > 0 && row.MedianStepMs > 0 && double.IsFinite(row.MatmulShare) && row.MatmulShare > 0);
        Assert.Equal(row.AchievedGflops / row.MatmulGflops, row.MatmulShare, 1e-12);
        Assert.Equal(TransformerBench.Configurations(true)[0].Config.ForwardFlopsPerImage() / 1e9, row.ForwardGflopsPerImage, 9);
        Assert.Equal(3 * row.ForwardGflopsPerImage * row.BatchSize * 1000 / row.MedianStepMs, row.AchievedGflops, 1e-9);
    }
}
