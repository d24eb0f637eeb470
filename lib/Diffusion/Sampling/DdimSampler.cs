using Diffusion.Forward;
using Diffusion.Schedules;
using static TorchSharp.torch;

namespace Diffusion.Sampling;

/// <summary>
/// DDIM (Song, Meng &amp; Ermon 2021), eq. 12: on a subsequence τ of the time steps,
/// x_{τ_{i−1}} = √ᾱ_{τ_{i−1}} x̂_0 + √(1 − ᾱ_{τ_{i−1}} − σ²) ε̂ + σ z, with
/// σ = η √((1−ᾱ_{τ_{i−1}})/(1−ᾱ_{τ_i})) √(1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}).
/// η = 0 is deterministic; η = 1 on every step is DDPM with σ² = β̃.
/// </summary>
public sealed class DdimSampler : ISampler
{
    public NoiseSchedule Schedule { get; }
    public Prediction Prediction { get; }
    public int Steps { get; }
    public double Eta { get; }
    public bool ClipDenoised { get; }
    /// <summary>The time steps visited, from high to low (τ_S, ..., τ_1), 0-based.</summary>
    public int[] Timesteps { get; }
    public string Name => Eta == 0 ? $"ddim-{Steps}" : $"ddim-{Steps}-eta{Eta:0.##}";

    public DdimSampler(NoiseSchedule schedule, int steps, double eta = 0, Prediction prediction = Prediction.Epsilon,
        bool clipDenoised = true)
    {
        if (steps < 1 || steps > schedule.Timesteps)
            throw new ArgumentOutOfRangeException(nameof(steps), steps,
                $"DDIM steps must be between 1 and T = {schedule.Timesteps}");
        if (!(eta >= 0)) throw new ArgumentOutOfRangeException(nameof(eta), eta, "η must be ≥ 0 (0 = deterministic, 1 = DDPM-like)");
        Schedule = schedule;
        Steps = steps;
        Eta = eta;
        Prediction = prediction;
        ClipDenoised = clipDenoised;
        Timesteps = SpacedTimesteps(schedule.Timesteps, steps);
    }

    /// <summary>
    /// <paramref name="steps"/> time steps evenly spread over 0..T−1, always including T−1 (so sampling starts from the
    /// noisiest step) and 0, from high to low.
    /// </summary>
    public static int[] SpacedTimesteps(int timesteps, int steps)
    {
        if (steps == 1) return [timesteps - 1];
        var ts = new SortedSet<int>();
        for (int i = 0; i < steps; i++) ts.Add((int)Math.Round((double)i * (timesteps - 1) / (steps - 1)));
        return ts.Reverse().ToArray();
    }

    /// <summary>One DDIM step from time step <paramref name="t"/> to <paramref name="tPrev"/> (−1 = the end, ᾱ = 1).</summary>
    public Tensor Step(DenoisingModel model, Tensor xt, int t, int tPrev, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var tBatch = full([xt.shape[0]], t, dtype: ScalarType.Int64, device: xt.device);
        var output = model(xt, tBatch);
        // A learned-variance network outputs [ε, v]: DDIM uses only the prediction.
        if (output.shape[1] == 2 * xt.shape[1]) output = HybridLoss.Split(output, xt.shape[1]).Prediction;
        var (x0, eps) = ForwardProcess.StartAndNoise(Schedule, xt, tBatch, output, Prediction, ClipDenoised);

        double alphaBar = Schedule.AlphasCumprod[t];
        double alphaBarPrev = tPrev >= 0 ? Schedule.AlphasCumprod[tPrev] : 1.0;
        // σ = η √((1−ᾱ_prev)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev)                                (DDIM eq. 16)
        double sigma = Eta * Math.Sqrt((1 - alphaBarPrev) / (1 - alphaBar)) * Math.Sqrt(1 - alphaBar / alphaBarPrev);
        // x_prev = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z                           (DDIM eq. 12)
        var xPrev = Math.Sqrt(alphaBarPrev) * x0 + Math.Sqrt(Math.Max(1 - alphaBarPrev - sigma * sigma, 0)) * eps;
        if (sigma > 0)
            xPrev = xPrev + sigma * Platform.Compute.Randn(xt.shape, generator, xt.device);
        return xPrev.MoveToOuterDisposeScope();
    }

    public SamplingResult Sample(DenoisingModel model, long[] shape, Generator? generator = null, Device? device = null,
        int captureEvery = 0, IProgress<SamplingProgress>? progress = null, CancellationToken cancel = default) =>
        SamplingLoop.Run(shape, generator, device, captureEvery, progress, cancel, Timesteps,
            (x, i) => Step(model, x, Timesteps[i], i + 1 < Timesteps.Length ? Timesteps[i + 1] : -1, generator));
}
