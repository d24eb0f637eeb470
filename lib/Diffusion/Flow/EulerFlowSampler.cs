namespace Diffusion.Flow;

/// <summary>
/// Euler's method on the flow ODE, diffusers' <c>FlowMatchEulerDiscreteScheduler.step</c>:
/// x_{σ_{i+1}} = x_{σ_i} + (σ_{i+1} − σ_i) v̂(x_{σ_i}, σ_i). One network evaluation per step; first order (the error
/// halves when the steps double). On a straight path with the exact velocity one step is exact, which is why rectified
/// flow needs few steps once its paths are nearly straight.
/// </summary>
public sealed class EulerFlowSampler : IFlowSampler
{
    public FlowMatchSchedule Schedule { get; }
    public int Evaluations => Schedule.Steps;
    public string Name => Schedule.Shift == 1 ? $"euler-{Schedule.Steps}" : $"euler-{Schedule.Steps}-shift{Schedule.Shift:0.##}";

    public EulerFlowSampler(FlowMatchSchedule schedule) => Schedule = schedule ?? throw new ArgumentNullException(nameof(schedule));

    /// <summary>Euler with <paramref name="steps"/> steps and shift <paramref name="shift"/>.</summary>
    public EulerFlowSampler(int steps, double shift = 1.0) : this(new FlowMatchSchedule(steps, shift)) { }

    public double Time(int k) => Schedule.Sigmas[k];

    public void Reset() { }

    public Tensor Step(Tensor velocity, Tensor x, int k)
    {
        // x ← x + (σ_{k+1} − σ_k) v̂                                         (diffusers: prev_sample = sample + dt · model_output)
        using var scope = NewDisposeScope();
        return (x + Schedule.Delta(k) * velocity).MoveToOuterDisposeScope();
    }
}
