using System.Globalization;
using Diffusion.Flow;
using Diffusion.Sampling;

namespace Diffusion.TextToImage;

/// <summary>
/// How a text-to-image model draws: for the mini SD1 a sampler of the DDPM family (<see cref="Diffusion"/>), for the
/// mini SD3 a solver of the flow ODE, Euler or Heun with <see cref="FlowSteps"/> steps and the timestep shift
/// <see cref="Shift"/> (<see cref="FlowMatchSchedule"/>). A <see cref="SamplerSpec"/> converts to one.
/// </summary>
public sealed record TextToImageSampler
{
    /// <summary>The flow ODE solvers by name.</summary>
    public static IReadOnlyList<string> FlowKinds { get; } = ["euler", "heun"];

    /// <summary>The mini SD1's sampler (null for a flow solver).</summary>
    public SamplerSpec? Diffusion { get; init; }
    /// <summary>"euler" or "heun" (null for a sampler of the DDPM family).</summary>
    public string? FlowKind { get; init; }
    /// <summary>Steps of the flow solver (Heun: two evaluations per step but the last).</summary>
    public int FlowSteps { get; init; }
    /// <summary>The timestep shift of the flow schedule (1 = evenly spaced t).</summary>
    public double Shift { get; init; } = 1;

    public bool IsFlow => FlowKind is not null;

    public static implicit operator TextToImageSampler(SamplerSpec spec) => new() { Diffusion = spec ?? throw new ArgumentNullException(nameof(spec)) };

    /// <summary>Euler or Heun with <paramref name="steps"/> steps; throws for another kind or fewer than one step.</summary>
    public static TextToImageSampler Flow(string kind, int steps, double shift = 1)
    {
        var name = FlowKinds.FirstOrDefault(k => string.Equals(k, kind.Trim(), StringComparison.OrdinalIgnoreCase))
                   ?? throw new ArgumentException($"'{kind}' is not a flow solver: use {string.Join(" or ", FlowKinds)}");
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), steps, "a flow solver needs at least one step");
        if (!(shift > 0) || double.IsInfinity(shift)) throw new ArgumentOutOfRangeException(nameof(shift), shift, "the shift must be a positive number");
        return new TextToImageSampler { FlowKind = name, FlowSteps = steps, Shift = shift };
    }

    /// <summary>A fresh solver of the flow ODE (it keeps state between evaluations: one per sampling run).</summary>
    public IFlowSampler CreateFlowSampler() => FlowKind switch
    {
        "euler" => new EulerFlowSampler(FlowSteps, Shift),
        "heun" => new HeunFlowSampler(FlowSteps, Shift),
        _ => throw new InvalidOperationException($"{this} is not a flow solver"),
    };

    /// <summary>Network evaluations per picture (for progress bars).</summary>
    public int Evaluations(int timesteps) => IsFlow ? (FlowKind == "heun" ? 2 * FlowSteps - 1 : FlowSteps) : Diffusion!.Steps ?? timesteps;

    /// <summary>"dpm++:20", "euler:20" or "euler:20, shift 3".</summary>
    public override string ToString() => IsFlow
        ? $"{FlowKind}:{FlowSteps}" + (Shift == 1 ? "" : string.Create(CultureInfo.InvariantCulture, $", shift {Shift:0.###}"))
        : Diffusion!.ToString();
}
