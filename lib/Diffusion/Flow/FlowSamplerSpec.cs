namespace Diffusion.Flow;

/// <summary>One entry of <see cref="FlowSamplerSpec"/>'s table: a flow sampler's name, how its steps are written, and how to build it.</summary>
/// <param name="DefaultSteps">Steps when none are given.</param>
/// <param name="Create">Builds the sampler from the number of steps and the shift.</param>
public sealed record FlowSamplerKind(string Name, string Usage, int DefaultSteps, Func<int, double, IFlowSampler> Create);

/// <summary>
/// What to sample a rectified-flow model with, as one value: "euler", "euler:10", "heun:5" (<see cref="Parse"/>) and
/// the timestep shift (1 = none). The flow family's counterpart of <see cref="Sampling.SamplerSpec"/>: the home of the
/// flow samplers' names and of the errors a user sees for a request.
/// </summary>
/// <param name="Steps">Steps of the step rule (null: the kind's default). Euler evaluates the network once per step, Heun
/// twice but for the last step (2n − 1).</param>
public sealed record FlowSamplerSpec(string Kind, int? Steps = null, double Shift = 1.0)
{
    /// <summary>Euler (first order, one evaluation per step).</summary>
    public static readonly FlowSamplerKind Euler = new("euler", "euler:N (N steps, N network evaluations)", 20, (n, s) => new EulerFlowSampler(n, s));
    /// <summary>Heun (second order, 2N − 1 network evaluations).</summary>
    public static readonly FlowSamplerKind Heun = new("heun", "heun:N (N steps, 2N − 1 network evaluations)", 10, (n, s) => new HeunFlowSampler(n, s));

    /// <summary>DPM-Solver++ 2M through the map to the variance-preserving family (second order, one evaluation per step).</summary>
    public static readonly FlowSamplerKind DpmSolver = new("dpm++", "dpm++:N (N steps, DPM-Solver++ 2M through ᾱ(t))", 20, (n, s) => new DpmSolverFlowSampler(n, s));

    /// <summary>Every flow sampler by name. A new one is one line here.</summary>
    public static IReadOnlyList<FlowSamplerKind> Kinds { get; } = [Euler, Heun, DpmSolver];

    /// <summary>"euler:N, heun:N", for help texts and errors.</summary>
    public static string Usages => string.Join(", ", Kinds.Select(k => k.Usage));

    /// <summary>The kind names, e.g. for a choice option.</summary>
    public static IEnumerable<string> Names => Kinds.Select(k => k.Name);

    /// <summary>The kind's table entry.</summary>
    public FlowSamplerKind Info => Find(Kind) ?? throw new ArgumentException($"flow sampler '{Kind}' is unknown: use {Usages}");

    static FlowSamplerKind? Find(string name) => Kinds.FirstOrDefault(k => string.Equals(k.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>Whether <paramref name="text"/> ("euler", "heun:5") names a flow sampler (its steps are checked by <see cref="Parse"/>).</summary>
    public static bool IsFlowSampler(string text) => Find((text ?? "").Trim().Split(':')[0]) is not null;

    /// <summary>"euler:10" → (euler, 10); "heun" → (heun, its default steps).</summary>
    public static FlowSamplerSpec Parse(string text)
    {
        var (kind, steps) = Sampling.SamplerSpec.ParseKindAndSteps(text, Find) ?? throw new FormatException($"'{text}' is not a flow sampler. Use {Usages} (N ≥ 1 steps)");
        return new FlowSamplerSpec(kind.Name, steps ?? kind.DefaultSteps);
    }

    /// <summary>The sampler (<see cref="Steps"/> or the kind's default, with <see cref="Shift"/>).</summary>
    public IFlowSampler Create()
    {
        int steps = Steps ?? Info.DefaultSteps;
        if (steps < 1) throw new ArgumentException($"{Kind}: {steps} steps; give at least 1");
        if (!(Shift > 0) || double.IsInfinity(Shift)) throw new ArgumentException($"{Kind}: shift {Shift}; the shift must be a finite number > 0 (1 = none)");
        return Info.Create(steps, Shift);
    }

    public override string ToString() => Steps is { } k ? $"{Kind}:{k}" : Kind;
}
