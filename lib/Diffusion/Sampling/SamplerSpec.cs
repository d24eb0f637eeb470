using System.Globalization;
using Diffusion.Forward;

namespace Diffusion.Sampling;

/// <summary>
/// One entry of <see cref="SamplerSpec"/>'s table: a sampler's name, how its steps are written, and how to build it.
/// A new sampler declares one of these next to its class and adds one line to <see cref="SamplerSpec.Kinds"/>.
/// </summary>
/// <param name="DefaultSteps">Steps when none are given (null: all T).</param>
/// <param name="UsesVariance">Whether <see cref="SamplerSpec.Variance"/> (σ²_t) applies.</param>
/// <param name="UsesEta">Whether <see cref="SamplerSpec.Eta"/> (η) applies.</param>
/// <param name="Create">Builds the sampler from the spec, the schedule, the prediction type and the number of steps
/// (the spec's, else <paramref name="DefaultSteps"/>, else T; checked to lie in 1..T).</param>
public sealed record SamplerKind(string Name, string Usage, int? DefaultSteps, bool UsesVariance, bool UsesEta,
    Func<SamplerSpec, NoiseSchedule, Prediction, int, ISampler> Create);

/// <summary>
/// What to sample with, as one value: kind, steps, η, σ²_t and clipping. Written "ddpm", "ddpm:25" or "ddim:50"
/// (<see cref="Parse"/>); checked against a model (<see cref="Validate"/>); built on its schedule (<see cref="Create"/>).
/// The home of sampler names and of the errors a user sees for a request (too many steps, σ² = learned on a
/// fixed-variance model); the samplers' constructors guard their own arguments with <see cref="TimestepPlan.CheckStepCount"/>.
/// </summary>
/// <param name="Steps">Network evaluations (null: the kind's default; for DDPM all T).</param>
public sealed record SamplerSpec(string Kind, int? Steps = null, double Eta = 0,
    ReverseVariance Variance = ReverseVariance.BetaTilde, bool Clip = true)
{
    /// <summary>Every sampler kind by name. A new sampler is one line here.</summary>
    public static IReadOnlyList<SamplerKind> Kinds { get; } =
    [
        DdpmSampler.Kind,
        DdimSampler.Kind,
        DpmSolverPlusPlus.Kind,
    ];

    /// <summary>The kind's table entry.</summary>
    public SamplerKind Info => Find(Kind) ?? throw new ArgumentException($"sampler '{Kind}' is unknown: use {Usages}");

    /// <summary>"ddpm | ddpm:N | ddim:N …", for help texts and errors.</summary>
    public static string Usages => string.Join(", ", Kinds.Select(k => k.Usage));

    /// <summary>The kind names, e.g. for a choice option.</summary>
    public static IEnumerable<string> Names => Kinds.Select(k => k.Name);

    static SamplerKind? Find(string name) => Kinds.FirstOrDefault(k => string.Equals(k.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>"ddim:50" → (ddim, 50); "ddpm" → (ddpm, all T); "ddim" → (ddim, its default steps).</summary>
    public static SamplerSpec Parse(string text)
    {
        var (kind, steps) = ParseKindAndSteps(text, Find) ?? throw new FormatException($"'{text}' is not a sampler. Use {Usages} (N ≥ 1 steps)");
        return new SamplerSpec(kind.Name, steps ?? kind.DefaultSteps);
    }

    /// <summary>
    /// "name" or "name:N" (N ≥ 1) with the name looked up by <paramref name="find"/> → (its entry, N or null); null when the
    /// text is not of that form — the one spelling of every sampler table (this one and the flow samplers').
    /// </summary>
    public static (T Kind, int? Steps)? ParseKindAndSteps<T>(string text, Func<string, T?> find) where T : class
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Trim().Split(':');
        if (parts.Length > 2 || find(parts[0]) is not { } kind) return null;
        if (parts.Length == 1) return (kind, null);
        return int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int steps) && steps >= 1 ? (kind, steps) : null;
    }

    /// <summary>"ddpm,ddim:50,ddim:10" → one spec each (at least one).</summary>
    public static List<SamplerSpec> ParseList(string text)
    {
        var specs = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Parse).ToList();
        if (specs.Count == 0) throw new FormatException($"no sampler given: name at least one, e.g. ddim:50 ({Usages})");
        return specs;
    }

    /// <summary>
    /// This spec made fit for a model with <paramref name="timesteps"/> = T time steps whose network does or does not
    /// predict its variance (<paramref name="learnedVariance"/>): errors for what cannot work (σ² = learned without a
    /// learned-variance network, steps &lt; 1, a negative η); more steps than T become T, said through
    /// <paramref name="announce"/> (without one, that is an error too: never a silent clamp).
    /// </summary>
    public SamplerSpec Validate(int timesteps, bool learnedVariance, Action<string>? announce = null)
    {
        var info = Info;
        if (Steps is < 1) throw new ArgumentException($"{Kind}: {Steps} steps; give at least 1");
        if (!(Eta >= 0) || double.IsInfinity(Eta)) throw new ArgumentException($"{Kind}: η = {Eta}; η must be ≥ 0 (0 = deterministic, 1 = DDPM-like)");
        if (info.UsesVariance && Variance == ReverseVariance.Learned && !learnedVariance)
            throw new ArgumentException(LearnedVarianceError);
        if (Steps is { } k && k > timesteps)
        {
            var note = $"{Kind}: {k} steps asked, but the model has T = {timesteps} time steps: sampling with {timesteps}";
            if (announce is null) throw new ArgumentException($"{Kind}: {k} steps asked, but the model has T = {timesteps}; give at most {timesteps}");
            announce(note);
            return this with { Steps = timesteps };
        }
        return this;
    }

    /// <summary>The error for σ² = learned on a fixed-variance model.</summary>
    public const string LearnedVarianceError =
        "--variance learned needs a model trained with --learn-variance; this one has a fixed variance. Use beta or beta-tilde.";

    /// <summary>The sampler on <paramref name="schedule"/> (not owned by the sampler; dispose the sampler).</summary>
    public ISampler Create(NoiseSchedule schedule, Prediction prediction = Prediction.Epsilon)
    {
        var info = Info;
        int steps = Steps ?? info.DefaultSteps ?? schedule.Timesteps;
        if (steps < 1 || steps > schedule.Timesteps)
            throw new ArgumentException($"{Kind}: {steps} steps; they must be between 1 and T = {schedule.Timesteps}");
        return info.Create(this, schedule, prediction, steps);
    }

    /// <summary>The σ²_t names of the command line: beta, beta-tilde, learned.</summary>
    public static readonly NameTable<ReverseVariance> VarianceNames =
        new(("beta-tilde", ReverseVariance.BetaTilde), ("beta", ReverseVariance.Beta), ("learned", ReverseVariance.Learned));

    /// <summary>"beta" → β, "beta-tilde" → β̃, "learned" → learned (surrounding spaces ignored).</summary>
    public static ReverseVariance ParseVariance(string text) =>
        VarianceNames.TryParse(text.Trim(), out var v) ? v : throw new FormatException($"'{text}' is not one of {string.Join(", ", VarianceNames.Names)}");

    /// <summary>The command-line name of a σ²_t.</summary>
    public static string VarianceName(ReverseVariance v) => VarianceNames.Name(v);

    public override string ToString() => Steps is { } k ? $"{Kind}:{k}" : Kind;
}
