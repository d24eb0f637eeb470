using System.Diagnostics;
using Diffusion.Flow;
using Diffusion.Model.Transformer;
using Xunit.Abstractions;

namespace Diffusion.Tests;

/// <summary>A short run of a tiny DiT with the rectified-flow loss on Fashion-MNIST: the loss must fall clearly.</summary>
public class DitTrainingTests(ITestOutputHelper output)
{
    [Fact]
    public void ATinyDitLearnsTheFlowVelocityOnFashionMnist()
    {
        using var data = ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train: true).Take(2048);
        var config = new DitConfig(PatchSize: 4, Hidden: 64, Depth: 2, Heads: 4);
        using var dit = new Dit(config);
        using var g = new Generator(21);
        using var optimizer = optim.AdamW(dit.parameters(), 1e-3);
        var model = RectifiedFlow.OnNetworkTime((x, t) => dit.call(x, t));
        const int steps = 100, batch = 32;
        var losses = new List<double>();
        var sw = Stopwatch.StartNew();
        for (int step = 0; step < steps; step++)
        {
            using var scope = NewDisposeScope();
            var x0 = data.ModelInputs(randint(0, 2048, [batch], dtype: ScalarType.Int64, generator: g));
            var loss = RectifiedFlow.Loss(model, x0, FlowTimeDistribution.LogitNormal, g);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            losses.Add(loss.item<float>());
        }
        // A fresh DiT predicts 0, so its loss is E‖ε − x₀‖² = 1 + E[x₀²] (the data's mean square, about 0.6 here);
        // predicting each pixel's mean velocity −E[x₀] alone (no use of x_t) would reach 1 + the mean per-pixel variance
        // of x₀. The run must go clearly below both: it has to read x_t.
        double first = losses.Take(5).Average(), last = losses.Skip(steps - 30).Average();
        using var all = data.ModelInputs(arange(2048, dtype: ScalarType.Int64));
        double meanSquare = all.square().mean().item<float>();
        double variance = all.var(0).mean().item<float>();
        output.WriteLine($"{config}: loss {first:F3} (first 5) → {last:F3} (last 30) in {sw.Elapsed.TotalSeconds:F1} s; 1 + E[x₀²] = {1 + meanSquare:F3}, 1 + per-pixel Var[x₀] = {1 + variance:F3}");
        Assert.InRange(first, 1 + meanSquare - 0.15, 1 + meanSquare + 0.15);
        Assert.True(last < 0.6 * first && last < 1 + variance - 0.3, $"loss {first:F3} → {last:F3}");
    }
}
