namespace Diffusion.Flow;

/// <summary>
/// Heun's method (the explicit trapezoidal rule) on the flow ODE, as diffusers' <c>FlowMatchHeunDiscreteScheduler</c> and
/// Karras et al. 2022 (Algorithm 1) take it: per step σ_i → σ_{i+1},
/// <code>x̃ = x + Δ v̂(x, σ_i);   x_{σ_{i+1}} = x + Δ (v̂(x, σ_i) + v̂(x̃, σ_{i+1}))/2,   Δ = σ_{i+1} − σ_i,</code>
/// second order (the error falls 4× when the steps double). The evaluations alternate: k even is the Euler
/// predictor at σ_i, k odd the corrector at σ_{i+1}. As in diffusers and Karras, the last step into σ = 0 is Euler
/// alone unless <see cref="CorrectLastStep"/> (a velocity network is defined at t = 0, unlike an ε-network), so n
/// steps cost 2n − 1 evaluations (2n with the last correction).
/// </summary>
public sealed class HeunFlowSampler : IFlowSampler
{
    Tensor? firstVelocity, firstX;

    public FlowMatchSchedule Schedule { get; }
    /// <summary>Also correct the last step (evaluating the network at t = 0).</summary>
    public bool CorrectLastStep { get; }
    public int Evaluations => 2 * Schedule.Steps - (CorrectLastStep ? 0 : 1);
    public string Name => $"heun-{Schedule.Steps}" + (Schedule.Shift == 1 ? "" : $"-shift{Schedule.Shift:0.##}");

    public HeunFlowSampler(FlowMatchSchedule schedule, bool correctLastStep = false)
    {
        Schedule = schedule ?? throw new ArgumentNullException(nameof(schedule));
        CorrectLastStep = correctLastStep;
    }

    /// <summary>Heun with <paramref name="steps"/> steps and shift <paramref name="shift"/>.</summary>
    public HeunFlowSampler(int steps, double shift = 1.0, bool correctLastStep = false)
        : this(new FlowMatchSchedule(steps, shift), correctLastStep) { }

    /// <summary>Predictor at σ_i (k = 2i), corrector at σ_{i+1} (k = 2i + 1).</summary>
    public double Time(int k) => k % 2 == 0 ? Schedule.Sigmas[k / 2] : Schedule.Sigmas[k / 2 + 1];

    public void Reset()
    {
        firstVelocity?.Dispose();
        firstX?.Dispose();
        firstVelocity = firstX = null;
    }

    public Tensor Step(Tensor velocity, Tensor x, int k)
    {
        int i = k / 2;
        double delta = Schedule.Delta(i);
        if (k % 2 == 0)
        {
            // predictor: x̃ = x + Δ v̂(x, σ_i); kept for the corrector unless this is the uncorrected last step
            bool corrected = i < Schedule.Steps - 1 || CorrectLastStep;
            Reset();
            if (corrected)
            {
                firstVelocity = velocity.detach().clone().DetachFromDisposeScope();
                firstX = x.detach().clone().DetachFromDisposeScope();
            }
            using var scope = NewDisposeScope();
            return (x + delta * velocity).MoveToOuterDisposeScope();
        }
        if (firstVelocity is null || firstX is null)
            throw new InvalidOperationException($"Heun's corrector (evaluation {k}) needs the predictor's evaluation {k - 1} first");
        using (var scope = NewDisposeScope())
        {
            // corrector: x_{σ_{i+1}} = x + Δ (v̂(x, σ_i) + v̂(x̃, σ_{i+1}))/2
            var next = (firstX + delta * 0.5 * (firstVelocity + velocity)).MoveToOuterDisposeScope();
            Reset();
            return next;
        }
    }
}
