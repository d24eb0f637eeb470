
namespace Diffusion.Cli;

/// <summary>The sampler options of sample, train and eval, with names and limits from <see cref="SamplerSpec"/>.</summary>
static class SamplerOptions
{
    /// <summary>--sampler: one of <see cref="ModelSampler.Names"/> (DDPM's and the flow samplers), default ddpm (or <paramref name="defaultKind"/>).</summary>
    public static Option<string> Kind(string description, string defaultKind = "ddpm") =>
        Choice("--sampler", description, defaultKind, ModelSampler.Names.Select(n => (n, n)).ToArray());

    public static Option<double> Eta() => Opt("--eta", "DDIM η (0 = deterministic, 1 = DDPM-like)", 0.0).Range(0, 10);

    public static Option<ReverseVariance> Variance() =>
        Choice("--variance", "DDPM σ²_t", ReverseVariance.BetaTilde, SamplerSpec.VarianceNames);
}
