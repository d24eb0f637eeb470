using System.Text.Json.Serialization;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Forward;

/// <summary>What the network says about the variance of the reverse step.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<VarianceType>))]
public enum VarianceType
{
    /// <summary>Nothing: σ²_t is fixed (β_t or β̃_t, chosen at sampling time); the network outputs C channels (DDPM).</summary>
    Fixed,
    /// <summary>
    /// The network outputs 2C channels, [prediction, v], and Σ_θ = exp(v log β_t + (1−v) log β̃_t)
    /// (Improved DDPM eq. 15), trained with <see cref="HybridLoss"/>.
    /// </summary>
    Learned,
}

/// <summary>The three numbers of a hybrid-loss step (all scalars): total = simple + vlb.</summary>
public sealed record HybridLossTerms(Tensor Total, Tensor Simple, Tensor Vlb) : IDisposable
{
    public void Dispose()
    {
        Total.Dispose();
        Simple.Dispose();
        Vlb.Dispose();
    }
}

/// <summary>
/// Improved DDPM's hybrid objective (Nichol &amp; Dhariwal 2021, §3.1): L_hybrid = L_simple + λ L_vlb with λ = 0.001.
/// L_simple trains the prediction (ε) as in DDPM; L_vlb trains only the variance: the mean it sees is computed from a
/// stop-gradient copy of the prediction. L_vlb = Σ_t L_t is estimated from the batch's uniformly drawn t as T · L_t, with
/// L_t in bits/dim (<see cref="VariationalBound.TermBitsPerDim"/>), exactly as the paper's code does (vb · T/1000).
/// </summary>
public static class HybridLoss
{
    /// <summary>λ of L_hybrid = L_simple + λ L_vlb (Improved DDPM §3.1).</summary>
    public const double DefaultLambda = 0.001;

    /// <summary>Splits a learned-variance output [B, 2C, H, W] into (prediction [B, C, H, W], v [B, C, H, W]).</summary>
    public static (Tensor Prediction, Tensor V) Split(Tensor output, long channels)
    {
        if (output.shape[1] != 2 * channels)
            throw new ArgumentException(
                $"a learned-variance network outputs 2·{channels} channels ([prediction, v]), got {output.shape[1]}; build the U-Net with OutDim = 2·Channels");
        var parts = output.split([channels, channels], dim: 1);
        return (parts[0], parts[1]);
    }

    /// <summary>
    /// The hybrid loss for given t and ε. <paramref name="model"/> returns [B, 2C, H, W].
    /// </summary>
    public static HybridLossTerms Compute(Func<Tensor, Tensor, Tensor> model, NoiseSchedule s, Tensor x0, Tensor t, Tensor noise,
        Prediction prediction = Prediction.Epsilon, LossType loss = LossType.L2, double lambda = DefaultLambda,
        double minSnrGamma = 0)
    {
        using var scope = NewDisposeScope();
        var xt = ForwardProcess.QSample(s, x0, t, noise);
        var (predicted, v) = Split(model(xt, t), x0.shape[1]);
        // L_simple = ‖ε − ε_θ(x_t, t)‖²                       (DDPM eq. 14; min-SNR-weighted per image when γ > 0)
        var simple = DenoisingLoss.Weighted(predicted, DenoisingLoss.Target(s, x0, t, noise, prediction), s, t, prediction,
            loss, minSnrGamma);

        // L_vlb sees μ_θ through a stop-gradient: it trains Σ_θ only                           (Improved DDPM §3.1)
        var (x0Hat, _) = ForwardProcess.StartAndNoise(s, xt, t, predicted.detach(), prediction, clipStart: false);
        var (mean, _, _) = ForwardProcess.QPosterior(s, x0Hat, xt, t);
        var logVariance = VariationalBound.LearnedLogVariance(s, t, v);
        var term = VariationalBound.TermBitsPerDim(s, x0, xt, t, mean, logVariance);
        // λ L_vlb ≈ λ · T · E_t[L_t]
        var vlb = lambda * s.Timesteps * term.mean();
        var total = simple + vlb;
        return new HybridLossTerms(total.MoveToOuterDisposeScope(), simple.MoveToOuterDisposeScope(), vlb.MoveToOuterDisposeScope());
    }
}
