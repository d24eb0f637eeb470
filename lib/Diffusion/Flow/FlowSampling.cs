using Diffusion.Forward;
using Diffusion.Sampling;

namespace Diffusion.Flow;

/// <summary>
/// A solver of the flow ODE dx/dt = v(x, t) from t = 1 (noise) to t = 0 (data), in the diffusers split: it turns the
/// network's velocity at evaluation k into the next x and never calls the network (<see cref="FlowSampling"/> does).
/// Evaluation k calls the network at time <see cref="Time"/>(k); a one-step method has one evaluation per step, Heun two.
/// </summary>
public interface IFlowSampler
{
    /// <summary>A short name for logs and file names, e.g. "euler-10".</summary>
    string Name { get; }
    /// <summary>The times visited.</summary>
    FlowMatchSchedule Schedule { get; }
    /// <summary>Network evaluations per sample.</summary>
    int Evaluations { get; }
    /// <summary>The time t ∈ [0, 1] the network is evaluated at for evaluation <paramref name="k"/>.</summary>
    double Time(int k);
    /// <summary>Clears the state kept between the evaluations of one step; the loop calls it before the first.</summary>
    void Reset();
    /// <summary>x after evaluation <paramref name="k"/>, from the x the network saw there and its velocity.</summary>
    Tensor Step(Tensor velocity, Tensor x, int k);
}

/// <summary>
/// The sampling loop of rectified flow: x ~ N(0, I) at t = 1; for each evaluation k, v̂ = model(x, t_k),
/// x = sampler.Step(v̂, x, k). One dispose scope per evaluation. The model takes t ∈ [0, 1] as a float
/// tensor [B] (wrap a network with <see cref="RectifiedFlow.OnNetworkTime(DenoisingModel)"/>); classifier-free guidance
/// is <see cref="ClassifierFreeGuidance.Guide"/> around the model, as for DDPM — the guided velocity
/// (1 + w) v̂_c − w v̂_∅ is the velocity of the guided ε̃ and x̂₀, since both are affine in v̂ with weights summing to 1.
/// </summary>
public static class FlowSampling
{
    /// <summary>Samples of <paramref name="shape"/> from noise drawn with <paramref name="generator"/>.</summary>
    public static Tensor Sample(this IFlowSampler sampler, DenoisingModel model, long[] shape, Generator? generator = null,
        Device? device = null, IProgress<SamplingProgress>? progress = null, CancellationToken cancel = default)
    {
        using var noise = Platform.Compute.Randn(shape, generator, device);
        return sampler.Integrate(model, noise, progress, cancel);
    }

    /// <summary>
    /// Samples of <paramref name="shape"/> with snapshots of x every <paramref name="captureEvery"/> evaluations (0 = none;
    /// the noise and the result are always kept when &gt; 0), for pictures of the path from noise to data.
    /// </summary>
    public static SamplingResult SampleWithSnapshots(this IFlowSampler sampler, DenoisingModel model, long[] shape, Generator? generator,
        Device? device, int captureEvery, IProgress<SamplingProgress>? progress = null, CancellationToken cancel = default)
    {
        if (captureEvery < 0) throw new ArgumentOutOfRangeException(nameof(captureEvery), "must be ≥ 0");
        var snapshots = new List<Tensor>();
        var snapshotTimes = new List<int>();
        void Keep(Tensor x, double t)
        {
            using var scope = NewDisposeScope();
            snapshots.Add(x.detach().clone().MoveToOuterDisposeScope());
            snapshotTimes.Add((int)Math.Round(t * RectifiedFlow.NetworkTimeScale));
        }
        try
        {
            using var noise = Platform.Compute.Randn(shape, generator, device);
            if (captureEvery > 0) Keep(noise, 1);
            var samples = sampler.Integrate(model, noise, (k, x) =>
            {
                if (captureEvery > 0 && ((k + 1) % captureEvery == 0 || k == sampler.Evaluations - 1))
                    Keep(x, k + 1 < sampler.Evaluations ? sampler.Time(k + 1) : 0);
            }, progress, cancel);
            var result = new SamplingResult { Samples = samples };
            result.Intermediates.AddRange(snapshots);
            result.IntermediateTimesteps.AddRange(snapshotTimes);
            return result;
        }
        catch
        {
            foreach (var x in snapshots) x.Dispose();
            throw;
        }
    }

    /// <summary>Integrates from <paramref name="start"/> (x at t = 1, not disposed) to t = 0; the result is the caller's.</summary>
    public static Tensor Integrate(this IFlowSampler sampler, DenoisingModel model, Tensor start,
        IProgress<SamplingProgress>? progress = null, CancellationToken cancel = default) =>
        sampler.Integrate(model, start, null, progress, cancel);

    /// <summary>
    /// <see cref="Integrate(IFlowSampler, DenoisingModel, Tensor, IProgress{SamplingProgress}?, CancellationToken)"/>,
    /// calling <paramref name="afterEvaluation"/>(k, x) with x after each evaluation k (x stays the loop's: copy what you keep).
    /// </summary>
    static Tensor Integrate(this IFlowSampler sampler, DenoisingModel model, Tensor start, Action<int, Tensor>? afterEvaluation,
        IProgress<SamplingProgress>? progress, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(sampler);
        ArgumentNullException.ThrowIfNull(model);
        sampler.Reset();
        using var noGrad = no_grad();
        var x = start.clone().DetachFromDisposeScope();
        try
        {
            for (int k = 0; k < sampler.Evaluations; k++)
            {
                cancel.ThrowIfCancellationRequested();
                using (var scope = NewDisposeScope())
                {
                    // t in x's precision (float32 for a network, float64 where a test integrates an exact field)
                    var t = full([x.shape[0]], sampler.Time(k), dtype: x.dtype, device: x.device);
                    var velocity = model(x, t);
                    var next = sampler.Step(velocity, x, k).MoveToOuterDisposeScope();
                    x.Dispose();
                    x = next.DetachFromDisposeScope();
                }
                afterEvaluation?.Invoke(k, x);
                progress?.Report(new SamplingProgress(k + 1, sampler.Evaluations, (int)Math.Round(sampler.Time(k) * RectifiedFlow.NetworkTimeScale)));
            }
        }
        catch
        {
            x.Dispose();
            throw;
        }
        return x;
    }
}
