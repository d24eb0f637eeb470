using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Tests;

/// <summary>
/// Min-SNR-γ weighting (Hang et al. 2023). The paper defines it on the x_0 loss: w_t = min(SNR(t), γ), and derives the
/// weights of the ε and v losses from ‖ε − ε̂‖² = SNR·‖x_0 − x̂_0‖² and ‖v − v̂‖² = (1 + SNR)·‖x_0 − x̂_0‖². So whatever the
/// network predicts, the weighted loss must equal the mean over images of min(SNR(t), γ)·‖x_0 − x̂_0‖², where x̂_0 is
/// computed here by hand from the network's output (no library conversion).
/// </summary>
public class MinSnrTests
{
    [Theory]
    [InlineData(Prediction.Epsilon, 5.0)]
    [InlineData(Prediction.Velocity, 5.0)]
    [InlineData(Prediction.Start, 5.0)]
    [InlineData(Prediction.Epsilon, 0.5)]
    [InlineData(Prediction.Velocity, 50.0)]
    public void WeightedLossIsMinSnrTimesTheStartError(Prediction prediction, double gamma)
    {
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 200);
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        var x0 = (rand([6, 1, 5, 5], generator: g) * 2 - 1).to(ScalarType.Float64);
        var eps = randn([6, 1, 5, 5], generator: g).to(ScalarType.Float64);
        var output = randn([6, 1, 5, 5], generator: g).to(ScalarType.Float64);    // what an untrained network might say
        long[] ts = [0, 3, 40, 100, 170, 199];                                         // SNR from ~10⁵ down to ~0
        var t = tensor(ts);

        double loss = DenoisingLoss.Compute((_, _) => output, s, x0, t, eps, prediction, LossType.L2, gamma).item<double>();

        double expected = 0;
        for (int i = 0; i < ts.Length; i++)
        {
            double ab = s.AlphasCumprod[ts[i]], a = Math.Sqrt(ab), b = Math.Sqrt(1 - ab), snr = ab / (1 - ab);
            var xt = a * x0[i] + b * eps[i];
            var x0Hat = prediction switch
            {
                Prediction.Epsilon => (xt - b * output[i]) / a,
                Prediction.Velocity => a * xt - b * output[i],
                _ => output[i],
            };
            expected += Math.Min(snr, gamma) * (x0[i] - x0Hat).square().mean().item<double>() / ts.Length;
        }
        Assert.Equal(expected, loss, expected * 1e-5);      // the schedule terms and weights are float32 tensors
    }

    [Fact]
    public void EpsilonWeightIsOneWhereSnrIsBelowGammaAndGammaZeroIsThePlainLoss()
    {
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 500);
        var w = DenoisingLoss.MinSnrWeights(s, Prediction.Epsilon, 5);
        for (int t = 0; t < s.Timesteps; t++)
            Assert.Equal(s.SignalToNoise[t] <= 5 ? 1.0 : 5 / s.SignalToNoise[t], w[t], 12);
        Assert.True(w[0] < 0.01 && w[^1] == 1);      // the easiest step is weighted down by SNR ≈ 10⁴ / 5
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        var x0 = rand([4, 1, 3, 3], generator: g);
        var eps = randn([4, 1, 3, 3], generator: g);
        var output = randn([4, 1, 3, 3], generator: g);
        var t4 = tensor(new long[] { 0, 10, 200, 499 });
        Assert.Equal(F.mse_loss(output, eps).item<float>(), DenoisingLoss.Compute((_, _) => output, s, x0, t4, eps, minSnrGamma: 0).item<float>());
        Assert.Throws<ArgumentOutOfRangeException>(() => DenoisingLoss.MinSnrWeights(s, Prediction.Epsilon, 0));
        Assert.Contains("min-SNR γ", Assert.Throws<ArgumentException>(() => new TrainingOptions { MinSnrGamma = -1 }.Validate()).Message);
    }
}
