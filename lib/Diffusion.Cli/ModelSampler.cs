using Diffusion.Flow;
using Diffusion.Model;

namespace Diffusion.Cli;

/// <summary>
/// The sampler a command names (<c>ddpm</c>, <c>ddim:50</c>, <c>dpm++:20</c>, <c>euler:10</c>, <c>heun:5</c>), built for the
/// model it samples: DDPM's samplers on the schedule of a DDPM model, the flow samplers for a model trained with
/// rectified flow (called at 1000·t, its samples clipped to [−1, 1] as the DDPM samplers clip x̂₀). Naming one family's
/// sampler for the other's model is one clear error.
/// </summary>
sealed class ModelSampler : IDisposable
{
    readonly NoiseSchedule? schedule;
    readonly ISampler? ddpm;
    readonly IFlowSampler? flow;
    readonly bool clip;

    ModelSampler(NoiseSchedule? schedule, ISampler? ddpm, IFlowSampler? flow, bool clip) =>
        (this.schedule, this.ddpm, this.flow, this.clip) = (schedule, ddpm, flow, clip);

    /// <summary>"ddim-50", "euler-10".</summary>
    public string Name => ddpm?.Name ?? flow!.Name;
    /// <summary>Network evaluations per image.</summary>
    public int Steps => ddpm?.Steps ?? flow!.Evaluations;

    /// <summary>Every sampler name of both families, for --sampler's choices (dpm++ is in both).</summary>
    public static IEnumerable<string> Names => SamplerSpec.Names.Concat(FlowSamplerSpec.Names).Distinct();

    /// <summary>Whether <paramref name="text"/> ("ddim:50") names one of DDPM's samplers.</summary>
    public static bool IsDdpmSampler(string text) =>
        SamplerSpec.Names.Contains((text ?? "").Trim().Split(':')[0], StringComparer.OrdinalIgnoreCase);
    /// <summary>"ddpm | … | euler:N | heun:N", for help texts.</summary>
    public static string Usages => $"{SamplerSpec.Usages}; for rectified-flow models {FlowSamplerSpec.Usages}";

    /// <summary>
    /// The sampler <paramref name="text"/> names, for <paramref name="config"/>'s model (<paramref name="source"/> names it in
    /// errors). <paramref name="options"/> sets η, σ²_t and clipping on a DDPM spec; more steps than T are announced.
    /// <paramref name="clip"/> = false clips nothing in either family (x̂₀ of a DDPM sampler, a flow sampler's result).
    /// </summary>
    public static ModelSampler Create(DiffusionModelConfig config, string text, string source, Func<SamplerSpec, SamplerSpec>? options = null, bool clip = true)
    {
        bool flowName = FlowSamplerSpec.IsFlowSampler(text), ddpmName = IsDdpmSampler(text);
        if (config.IsRectifiedFlow)
        {
            if (!flowName)
                throw new CliException($"{source} was trained with rectified flow: it predicts a velocity, which {text} cannot sample. " +
                                       $"Use a flow sampler: {FlowSamplerSpec.Usages}, e.g. euler:10.");
            try { return new ModelSampler(null, null, FlowSamplerSpec.Parse(text).Create(), clip); }
            catch (Exception e) when (e is FormatException or ArgumentException) { throw new CliException(e.Message); }
        }
        if (flowName && !ddpmName)
            throw new CliException($"{source} was trained with DDPM ({config.Prediction} prediction): {text} integrates rectified flow's velocity. " +
                                   $"Use one of {SamplerSpec.Usages}.");
        SamplerSpec spec;
        try
        {
            spec = SamplerSpec.Parse(text);
            var chosen = options?.Invoke(spec) ?? spec;
            spec = (chosen with { Clip = chosen.Clip && clip }).Validate(config.Timesteps, config.Variance == VarianceType.Learned, Console.WriteLine);
        }
        catch (Exception e) when (e is FormatException or ArgumentException) { throw new CliException(e.Message); }
        var schedule = config.CreateSchedule();
        try { return new ModelSampler(schedule, spec.Create(schedule, config.Prediction), null, clip); }
        catch
        {
            schedule.Dispose();
            throw;
        }
    }

    /// <summary>One batch of <paramref name="shape"/> from <paramref name="network"/>, keeping a snapshot every <paramref name="captureEvery"/> steps (0 = none).</summary>
    public SamplingResult Sample(DenoisingModel network, long[] shape, Generator generator, Device device, int captureEvery,
        IProgress<SamplingProgress>? progress = null)
    {
        if (ddpm is not null) return ddpm.Sample(network, shape, generator, device, captureEvery, progress);
        var result = flow!.SampleWithSnapshots(RectifiedFlow.OnNetworkTime(network), shape, generator, device, captureEvery, progress);
        if (clip)
            using (NewDisposeScope()) result.Samples.clamp_(-1, 1);
        return result;
    }

    /// <summary><paramref name="count"/> images in batches with one seeded generator (<see cref="BatchedSampling"/>), on the CPU.</summary>
    public Tensor SampleMany(Func<int, int, DenoisingModel> modelForBatch, long[] imageShape, int count, int batchSize, int seed, Device device,
        IProgress<BatchedSamplingProgress>? progress = null)
    {
        if (ddpm is not null) return BatchedSampling.Sample(ddpm, modelForBatch, imageShape, count, batchSize, seed, device, progress);
        return BatchedSampling.Sample((model, shape, generator, inner) =>
        {
            var x = flow!.Sample(RectifiedFlow.OnNetworkTime(model), shape, generator, device, inner);
            if (clip)
                using (NewDisposeScope()) x.clamp_(-1, 1);
            return x;
        }, flow!.Evaluations, modelForBatch, imageShape, count, batchSize, seed, progress);
    }

    public void Dispose()
    {
        ddpm?.Dispose();
        flow?.Reset();
        schedule?.Dispose();
    }
}
