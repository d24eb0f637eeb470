using Diffusion.Forward;

namespace Diffusion.Sampling;

/// <summary>
/// The variational bound of a sampler's reverse process on given images, in bits/dim: a negative log-likelihood bound,
/// −log p_θ(x_0) ≤ L_vlb = L_T + Σ_{t&gt;0} L_{t−1} + L_0 (DDPM eq. 5). Lower is better.
/// </summary>
public sealed record BitsPerDim(string Name, double Total, double Prior, double[] Terms, double[] PerImage)
{
    /// <summary>Standard error of <see cref="Total"/> over the images.</summary>
    public double StandardError => PerImage.Length < 2 ? double.NaN
        : Math.Sqrt(PerImage.Select(x => (x - Total) * (x - Total)).Sum() / (PerImage.Length - 1) / PerImage.Length);
}

/// <summary>Computes <see cref="BitsPerDim"/>: one network evaluation per image and step of the sampler's schedule.</summary>
public static class Likelihood
{
    /// <summary>
    /// L_vlb per image for each sampler (all sharing one schedule and model time steps, e.g. σ² = β and β̃ of one
    /// network, so the network runs once per step for all of them). <paramref name="x0"/>: images on the 256 levels of
    /// [−1, 1] ([B, C, H, W]); each step draws x_t ~ q(x_t | x_0) with fresh noise from <paramref name="generator"/>.
    /// </summary>
    public static BitsPerDim[] Evaluate(DenoisingModel model, IReadOnlyList<DdpmSampler> samplers, Tensor x0,
        Generator? generator = null, int batchSize = 64, IProgress<SamplingProgress>? progress = null)
    {
        if (samplers.Count == 0) throw new ArgumentException("give at least one sampler", nameof(samplers));
        var s = samplers[0].Schedule;
        foreach (var other in samplers)
        {
            if (other.Plan.Count != other.Schedule.Timesteps)
                throw new ArgumentException(
                    $"{other.Name} skips steps of its schedule; evaluate a respaced chain on its own schedule: new DdpmSampler(Respacing.Respace(schedule, kept), …, modelTimesteps: kept)",
                    nameof(samplers));
            if (other.Schedule.Timesteps != s.Timesteps || !other.Schedule.AlphasCumprod.SequenceEqual(s.AlphasCumprod) ||
                !(other.ModelTimesteps ?? []).SequenceEqual(samplers[0].ModelTimesteps ?? []))
                throw new ArgumentException("all samplers must share one schedule and model time steps", nameof(samplers));
        }
        int T = s.Timesteps, n = (int)x0.shape[0];
        var terms = new double[samplers.Count][];
        var perImage = new double[samplers.Count][];
        for (int k = 0; k < samplers.Count; k++) { terms[k] = new double[T]; perImage[k] = new double[n]; }
        var prior = new double[n];

        using (no_grad())
        {
            for (int start = 0; start < n; start += batchSize)
            {
                int b = Math.Min(batchSize, n - start);
                using (var scope = NewDisposeScope())
                {
                    var x = x0[start..(start + b)];
                    var p = VariationalBound.PriorBitsPerDim(s, x).to(ScalarType.Float64).cpu().data<double>().ToArray();
                    for (int i = 0; i < b; i++) prior[start + i] = p[i];
                }
                for (int t = T - 1; t >= 0; t--)
                {
                    using var scope = NewDisposeScope();
                    var x = x0[start..(start + b)];
                    var tBatch = full([b], t, dtype: ScalarType.Int64, device: x.device);
                    var noise = Platform.Compute.Randn(x.shape, generator, x.device);
                    var xt = ForwardProcess.QSample(s, x, tBatch, noise);
                    var output = model(xt, full([b], samplers[0].ModelTimestep(t), dtype: ScalarType.Int64, device: x.device));
                    for (int k = 0; k < samplers.Count; k++)
                    {
                        var (mean, logVariance) = samplers[k].Distribution(output, xt, tBatch);
                        var term = VariationalBound.TermBitsPerDim(s, x, xt, tBatch, mean, logVariance)
                            .to(ScalarType.Float64).cpu().data<double>().ToArray();
                        for (int i = 0; i < b; i++)
                        {
                            perImage[k][start + i] += term[i];
                            terms[k][t] += term[i] / n;
                        }
                    }
                    progress?.Report(new SamplingProgress(T - t + (start / batchSize) * T, T * ((n + batchSize - 1) / batchSize), t));
                }
            }
        }
        var results = new BitsPerDim[samplers.Count];
        for (int k = 0; k < samplers.Count; k++)
        {
            for (int i = 0; i < n; i++) perImage[k][i] += prior[i];
            results[k] = new BitsPerDim($"{samplers[k].Name}-{samplers[k].Variance}", perImage[k].Average(), prior.Average(), terms[k], perImage[k]);
        }
        return results;
    }

    /// <summary>L_vlb of one sampler's reverse process on <paramref name="x0"/>.</summary>
    public static BitsPerDim Evaluate(DenoisingModel model, DdpmSampler sampler, Tensor x0, Generator? generator = null,
        int batchSize = 64, IProgress<SamplingProgress>? progress = null) =>
        Evaluate(model, [sampler], x0, generator, batchSize, progress)[0];
}
