using System.Text.Json.Serialization;
using Diffusion.Forward;
using Diffusion.Schedules;
using static TorchSharp.torch;

namespace Diffusion.Sampling;

/// <summary>The variance σ²_t of each reverse step (DDPM §3.2: both give similar results).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ReverseVariance>))]
public enum ReverseVariance
{
    /// <summary>σ²_t = β_t ("fixed large"): right when x_0 ~ N(0, I).</summary>
    Beta,
    /// <summary>σ²_t = β̃_t = β_t(1−ᾱ_{t−1})/(1−ᾱ_t) ("fixed small"): right when x_0 is a single point.</summary>
    BetaTilde,
}

/// <summary>
/// DDPM ancestral sampling, Algorithm 2 of Ho et al. (2020):
/// x_T ~ N(0, I); for t = T..1: z ~ N(0, I) if t &gt; 1 else 0;
/// x_{t−1} = 1/√α_t (x_t − β_t/√(1−ᾱ_t) ε_θ(x_t, t)) + σ_t z.
/// With <see cref="ClipDenoised"/>, x̂_0 is clamped to [−1, 1] and the mean is the posterior mean μ̃_t(x_t, x̂_0),
/// which equals the formula above when nothing is clamped.
/// </summary>
public sealed class DdpmSampler(NoiseSchedule schedule, Prediction prediction = Prediction.Epsilon,
    ReverseVariance variance = ReverseVariance.BetaTilde, bool clipDenoised = true) : ISampler
{
    public NoiseSchedule Schedule { get; } = schedule;
    public Prediction Prediction { get; } = prediction;
    public ReverseVariance Variance { get; } = variance;
    public bool ClipDenoised { get; } = clipDenoised;
    public string Name => $"ddpm-{Schedule.Timesteps}";
    public int Steps => Schedule.Timesteps;

    /// <summary>One reverse step x_t → x_{t−1} for the whole batch at the same t (0-based).</summary>
    public Tensor Step(DenoisingModel model, Tensor xt, int t, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var tBatch = full([xt.shape[0]], t, dtype: ScalarType.Int64, device: xt.device);
        var output = model(xt, tBatch);
        var (x0, _) = ForwardProcess.StartAndNoise(Schedule, xt, tBatch, output, Prediction, ClipDenoised);
        // μ̃_t(x_t, x̂_0) = β_t √ᾱ_{t−1}/(1−ᾱ_t) x̂_0 + (1−ᾱ_{t−1}) √α_t/(1−ᾱ_t) x_t      (DDPM eq. 7)
        var (mean, _, _) = ForwardProcess.QPosterior(Schedule, x0, xt, tBatch);
        if (t == 0) return mean.MoveToOuterDisposeScope();       // Algorithm 2: z = 0 at the last step
        double sigma2 = Variance == ReverseVariance.Beta ? Schedule.Betas[t] : Schedule.PosteriorVariance[t];
        var z = Platform.Compute.Randn(xt.shape, generator, xt.device);
        // x_{t−1} = μ + σ_t z
        return (mean + Math.Sqrt(sigma2) * z).MoveToOuterDisposeScope();
    }

    public SamplingResult Sample(DenoisingModel model, long[] shape, Generator? generator = null, Device? device = null,
        int captureEvery = 0, IProgress<SamplingProgress>? progress = null, CancellationToken cancel = default)
    {
        var timesteps = Enumerable.Range(0, Schedule.Timesteps).Reverse().ToArray();
        return SamplingLoop.Run(shape, generator, device, captureEvery, progress, cancel, timesteps,
            (x, i) => Step(model, x, timesteps[i], generator));
    }
}
