using Diffusion.Flow;

namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 12, exercise <c>flow-euler-step</c>: one Euler step of the flow ODE dx/dt = f(x, t) from t down to t′,
/// x_{t′} = x_t + (t′ − t)·f̂, checked against <see cref="EulerFlowSampler.Step"/> fed with the same velocity.
/// </summary>
public static class FlowEulerStepExercise
{
    public const string Id = "flow-euler-step";

    internal sealed record Input(FlowMatchSchedule Schedule, int Step, Tensor X, Tensor Velocity)
    {
        public double T => Schedule.Sigmas[Step];
        public double TNext => Schedule.Sigmas[Step + 1];
    }

    /// <summary>
    /// Runs <paramref name="learner"/>(x, velocity, t, t′) on a middle, the first and the last step of a shifted 10-step
    /// schedule and on a one-step schedule, compares with the library, shows the verdict and returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<Tensor, Tensor, double, double, Tensor> learner, bool show = true)
    {
        var shifted = new FlowMatchSchedule(10, shift: 3);
        var single = new FlowMatchSchedule(1);
        Case<Input> C(string description, FlowMatchSchedule s, int step, ulong seed, params long[] shape) => new(description, () =>
        {
            var g = new Generator(seed);
            return new Input(s, step, Inputs.Noise(g, shape), Inputs.Noise(g, shape) * 0.8f);
        });
        var exercise = Spec([
            C("10 steps, shift 3: a middle step, t = 0.707 → 0.602; x of shape [2, 1, 4, 4]", shifted, 5, 82, 2, 1, 4, 4),
            C("10 steps, shift 3: the first step, t = 1 → 0.960", shifted, 0, 81, 2, 1, 4, 4),
            C("10 steps, shift 3: the last step, t = 0.003 → 0 (x̂₀ itself)", shifted, 9, 83, 2, 1, 4, 4),
            C("one step: t = 1 → 0 (the whole path at once); 2 RGB images of shape [3, 2, 2]", single, 0, 84, 2, 3, 2, 2),
        ]);
        return Checker.Run(exercise, learner is null ? null : i => learner(i.X, i.Velocity, i.T, i.TNext), show);
    }

    static Exercise<Input> Spec(IReadOnlyList<Case<Input>> cases) =>
        new(Id, "Exercise flow-euler-step (one Euler step of the flow)", "MyFlowEulerStep", "EulerFlowSampler.Step")
        {
            Reference = i => new EulerFlowSampler(i.Schedule).Step(i.Velocity, i.X, i.Step),
            Cases = cases,
            Mistakes =
            [
                new("wrong-direction", "The step goes backwards in time, from t to the smaller t′: multiply the velocity by " +
                    "t′ − t, which is negative. (t − t′ walks towards the noise.)",
                    i => i.X + (i.T - i.TNext) * i.Velocity),
                new("no-step-size", "The velocity is a rate per unit of t: scale it by the length of the step, t′ − t, " +
                    "before adding it to x.",
                    i => i.X - i.Velocity),
                new("returned-start", "That is x̂₀ = x − t·f̂, the end of the straight line at t = 0: multiply the velocity by " +
                    "the step t′ − t, not by the time t, and the step stops at t′.",
                    i => i.X - i.T * i.Velocity),
                new("returned-noise", "That is ε̂ = x + (1 − t)·f̂, the noise end of the straight line (t = 1). Sampling runs " +
                    "towards the data: walk from t to the smaller t′, x + (t′ − t)·f̂.",
                    i => i.X + (1 - i.T) * i.Velocity),
                new("returned-velocity-only", "Return the new x, not the change: x_{t′} = x_t + (t′ − t)·f̂.",
                    i => (i.TNext - i.T) * i.Velocity),
            ],
            GenericHint = "One line: x + (tNext − t)·velocity (a double times a tensor, plus a tensor).",
            ShapeHint = "x at t′ has the shape of x.",
            DescribeIndex = (i, ix) => $"position {Checker.ShapeText(ix)} with t = {Checker.Fmt(i.T)} and t′ = {Checker.Fmt(i.TNext)}, " +
                                       $"where x = {Inputs.Value(i.X, ix)} and f̂ = {Inputs.Value(i.Velocity, ix)}",
        };
}
