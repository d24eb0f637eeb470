using System.Globalization;
using Diffusion.Flow;
using Diffusion.Sampling;

namespace Diffusion.TextToImage;

/// <summary>
/// How a text-to-image model draws: for the mini SD1 a sampler of the DDPM family (<see cref="Diffusion"/>), for the
/// mini SD3 a solver of the flow ODE, Euler or Heun (<see cref="FlowSolver"/>: steps and timestep shift, as the pixel
/// models' flow samplers are named). A <see cref="SamplerSpec"/> converts to one.
/// </summary>
public sealed record TextToImageSampler
{
    /// <summary>
    /// The flow ODE solvers the text commands offer: Euler and Heun of <see cref="FlowSamplerSpec"/> (its dpm++ is left
    /// out, since the text commands' "dpm++" names the mini SD1's DPM-Solver++).
    /// </summary>
    public static IReadOnlyList<string> FlowKinds { get; } = [FlowSamplerSpec.Euler.Name, FlowSamplerSpec.Heun.Name];

    /// <summary>The mini SD1's sampler (null for a flow solver).</summary>
    public SamplerSpec? Diffusion { get; init; }
    /// <summary>The mini SD3's solver of the flow ODE: Euler or Heun, its steps and shift (null for a sampler of the DDPM family).</summary>
    public FlowSamplerSpec? FlowSolver { get; init; }

    public bool IsFlow => FlowSolver is not null;

    public static implicit operator TextToImageSampler(SamplerSpec spec) => new() { Diffusion = spec ?? throw new ArgumentNullException(nameof(spec)) };

    /// <summary>Euler or Heun with <paramref name="steps"/> steps; throws for another kind or fewer than one step.</summary>
    public static TextToImageSampler Flow(string kind, int steps, double shift = 1)
    {
        var name = FlowKinds.FirstOrDefault(k => string.Equals(k, kind.Trim(), StringComparison.OrdinalIgnoreCase))
                   ?? throw new ArgumentException($"'{kind}' is not a flow solver: use {string.Join(" or ", FlowKinds)}");
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "a flow solver needs at least one step");
        if (!(shift > 0) || double.IsInfinity(shift)) throw new ArgumentOutOfRangeException(nameof(shift), shift, "the shift must be a positive number");
        return new TextToImageSampler { FlowSolver = new FlowSamplerSpec(name, steps, shift) };
    }

    /// <summary>A fresh solver of the flow ODE (it keeps state between evaluations: one per sampling run).</summary>
    public IFlowSampler CreateFlowSampler() => (FlowSolver ?? throw new InvalidOperationException($"{this} is not a flow solver")).Create();

    /// <summary>Network evaluations per picture (for progress bars).</summary>
    public int Evaluations(int timesteps) => FlowSolver is not null ? CreateFlowSampler().Evaluations : Diffusion!.Steps ?? timesteps;

    /// <summary>"dpm++:20", "euler:20" or "euler:20, shift 3".</summary>
    public override string ToString() => FlowSolver is { } f
        ? f.ToString() + (f.Shift == 1 ? "" : string.Create(CultureInfo.InvariantCulture, $", shift {f.Shift:0.###}"))
        : Diffusion!.ToString();
}
