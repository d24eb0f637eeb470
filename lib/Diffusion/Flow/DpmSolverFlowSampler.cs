using Diffusion.Forward;
using Diffusion.Sampling;

namespace Diffusion.Flow;

/// <summary>
/// DPM-Solver++ (2M) on a rectified-flow model, through the map of rectified flow onto the variance-preserving family:
/// z = x_t / r_t is a VP sample at ᾱ(t) = (1 − t)²/((1 − t)² + t²) (<see cref="RectifiedFlow.AlphaBar"/>), and the
/// network's velocity gives the same data estimate x̂₀ = x_t − t f̂ in both coordinates. Each step converts x to z,
/// takes <see cref="DpmSolverPlusPlus"/>'s update from ᾱ(σ_i) to ᾱ(σ_{i+1}) with x̂₀ (and the previous step's x̂₀ for
/// the second order), and converts back. One network evaluation per step, second order — the sampler the course's
/// DDPM models use, so the two objectives can be compared with the same solver (diffusers does the same with
/// <c>DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True)</c>).
/// <para>
/// Its first step, from t = 1 (ᾱ = 0, λ = −∞), is first order and equals Euler's (x_{t'} = t' x + (1 − t') x̂₀ is the
/// straight line towards x̂₀); so is the last one, into t = 0, which returns x̂₀ — as DPM-Solver++ ends at ᾱ = 1.
/// </para>
/// </summary>
public sealed class DpmSolverFlowSampler : IFlowSampler
{
    Tensor? previousStart;
    double previousTime;

    public FlowMatchSchedule Schedule { get; }
    public int Evaluations => Schedule.Steps;
    public string Name => Schedule.Shift == 1 ? $"dpm++-{Schedule.Steps}" : $"dpm++-{Schedule.Steps}-shift{Schedule.Shift:0.##}";

    public DpmSolverFlowSampler(FlowMatchSchedule schedule) => Schedule = schedule ?? throw new ArgumentNullException(nameof(schedule));

    /// <summary>DPM-Solver++ 2M with <paramref name="steps"/> steps and shift <paramref name="shift"/>.</summary>
    public DpmSolverFlowSampler(int steps, double shift = 1.0) : this(new FlowMatchSchedule(steps, shift)) { }

    public double Time(int k) => Schedule.Sigmas[k];

    public void Reset()
    {
        previousStart?.Dispose();
        previousStart = null;
    }

    public Tensor Step(Tensor velocity, Tensor x, int k)
    {
        double t = Schedule.Sigmas[k], next = Schedule.Sigmas[k + 1];
        using var scope = NewDisposeScope();
        // x̂₀ = x_t − t f̂ (where the straight line through x_t with velocity f̂ reaches t = 0)
        var start = RectifiedFlow.Start(velocity, x, full([x.shape[0]], t, dtype: x.dtype, device: x.device));
        // z = x_t / r_t, a variance-preserving sample at ᾱ(t); DPM-Solver++'s step in z; back with r_{t'}
        var z = x / RectifiedFlow.Radius(t);
        var zNext = previousStart is null
            ? DpmSolverPlusPlus.FirstOrderUpdate(z, start, RectifiedFlow.AlphaBar(t), RectifiedFlow.AlphaBar(next))
            : DpmSolverPlusPlus.SecondOrderUpdate(z, start, previousStart, RectifiedFlow.AlphaBar(previousTime),
                RectifiedFlow.AlphaBar(t), RectifiedFlow.AlphaBar(next));
        var result = (zNext * RectifiedFlow.Radius(next)).MoveToOuterDisposeScope();
        previousStart?.Dispose();
        previousStart = start.detach().clone().DetachFromDisposeScope();
        previousTime = t;
        return result;
    }
}
