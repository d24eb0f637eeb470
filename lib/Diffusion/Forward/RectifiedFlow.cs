
using System.Text.Json.Serialization;

namespace Diffusion.Forward;

/// <summary>How training draws the time t ∈ (0, 1) of rectified flow.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<FlowTimeSampling>))]
public enum FlowTimeSampling
{
    /// <summary>t ~ U(0, 1) (Liu et al. 2022; Lipman et al. 2023).</summary>
    Uniform,
    /// <summary>
    /// t = sigmoid(m + s·n), n ~ N(0, 1): Stable Diffusion 3's logit-normal sampling (Esser et al. 2024, §3.1, eq. 19),
    /// which puts more training on the middle times, where the velocity is hardest to predict. SD3 uses m = 0, s = 1.
    /// </summary>
    LogitNormal,
}

/// <summary>The distribution of t for training: <paramref name="Kind"/>, and for the logit-normal one its m and s.</summary>
public sealed record FlowTimeDistribution(FlowTimeSampling Kind = FlowTimeSampling.LogitNormal, double Mean = 0, double Std = 1)
{
    /// <summary>t ~ U(0, 1).</summary>
    public static FlowTimeDistribution Uniform { get; } = new(FlowTimeSampling.Uniform);
    /// <summary>SD3's default, logit-normal with m = 0, s = 1.</summary>
    public static FlowTimeDistribution LogitNormal { get; } = new(FlowTimeSampling.LogitNormal);

    /// <summary>The command-line names of the kinds (<c>train --flow-times</c>).</summary>
    public static readonly NameTable<FlowTimeSampling> Names =
        new(("logit-normal", FlowTimeSampling.LogitNormal), ("uniform", FlowTimeSampling.Uniform));

    /// <summary>Throws one clear error unless t can be drawn (a known kind; for the logit-normal one a finite m and s &gt; 0).</summary>
    public FlowTimeDistribution Validate()
    {
        if (!Enum.IsDefined(Kind)) throw new ArgumentException($"unknown time sampling {(int)Kind}: use {string.Join(" or ", Names.Names)}");
        if (Kind == FlowTimeSampling.LogitNormal && !(double.IsFinite(Mean) && Std > 0 && double.IsFinite(Std)))
            throw new ArgumentException($"the logit-normal time distribution needs a finite mean m and a standard deviation s > 0, got m = {Mean}, s = {Std}");
        return this;
    }
}

/// <summary>
/// Rectified flow (Liu, Gong &amp; Liu 2022, "Flow Straight and Fast"; Lipman et al. 2023, "Flow Matching for Generative
/// Modeling"; Esser et al. 2024, "Scaling Rectified Flow Transformers", §2–3). The path from data to noise is a straight
/// line,
/// <code>x_t = (1 − t) x₀ + t ε,   t ∈ [0, 1],</code>
/// its velocity dx_t/dt = ε − x₀ is the network's target, and the loss is ‖(ε − x₀) − v̂_θ(x_t, t)‖². Sampling integrates
/// the ODE dx/dt = v̂_θ(x, t) from pure noise at t = 1 down to t = 0 (<c>Flow.EulerFlowSampler</c>,
/// <c>Flow.HeunFlowSampler</c>). Here t = 1 is noise and t = 0 is data, as in SD3 and diffusers (whose σ is this t).
/// <para>
/// The same family as DDPM: x_t divided by r_t = √((1 − t)² + t²) is a variance-preserving sample
/// √ᾱ x₀ + √(1 − ᾱ) ε with √ᾱ = (1 − t)/r_t, √(1 − ᾱ) = t/r_t (<see cref="AlphaBar"/>, <see cref="VpScale"/>), and the
/// rectified velocity u = ε − x₀ and the v-prediction target v = √ᾱ ε − √(1 − ᾱ) x₀ determine each other given x_t
/// (<see cref="VPredictionFromVelocity"/>). Both are time derivatives of their paths: u = dx_t/dt, and v = dz/dφ for
/// z = cos φ x₀ + sin φ ε (Salimans &amp; Ho 2022, §4), φ = atan(t/(1 − t)).
/// </para>
/// Time convention: the functions here and the flow samplers speak t ∈ [0, 1]. Networks whose time embedding expects
/// the scale of DDPM's steps (the U-Net's and DiT's sinusoids) are called with <see cref="NetworkTimeScale"/>·t, as
/// diffusers' SD3 pipeline passes timestep = σ·1000; <see cref="OnNetworkTime(DenoisingModel)"/> is the one place that scales.
/// </summary>
public static class RectifiedFlow
{
    /// <summary>The network sees t·1000 (diffusers' num_train_timesteps = 1000 and timestep = σ·1000).</summary>
    public const double NetworkTimeScale = 1000;

    /// <summary>A network called with t·<see cref="NetworkTimeScale"/> as the model of t ∈ [0, 1] that training and sampling call.</summary>
    public static DenoisingModel OnNetworkTime(DenoisingModel network) => (x, t) =>
    {
        using var scaled = t.to(ScalarType.Float32) * NetworkTimeScale;
        return network(x, scaled);
    };

    /// <summary>The class-conditional form of <see cref="OnNetworkTime(DenoisingModel)"/> (for <c>Sampling.ClassifierFreeGuidance</c>).</summary>
    public static ConditionalDenoisingModel OnNetworkTime(ConditionalDenoisingModel network) => (x, t, y) =>
    {
        using var scaled = t.to(ScalarType.Float32) * NetworkTimeScale;
        return network(x, scaled, y);
    };

    /// <summary>x_t = (1 − t) x₀ + t ε for a time per image, <paramref name="t"/> [B].</summary>
    public static Tensor Interpolate(Tensor x0, Tensor noise, Tensor t)
    {
        using var scope = NewDisposeScope();
        var tt = PerImage(t, x0);
        return ((1 - tt) * x0 + tt * noise).MoveToOuterDisposeScope();
    }

    /// <summary>The velocity target u = dx_t/dt = ε − x₀ (the same for every t: the path is straight).</summary>
    public static Tensor Velocity(Tensor x0, Tensor noise) => noise - x0;

    /// <summary>The network's input and target for data x₀, noise ε and times t [B]: (x_t, ε − x₀).</summary>
    public static (Tensor Xt, Tensor Target) TrainingPair(Tensor x0, Tensor noise, Tensor t) =>
        (Interpolate(x0, noise, t), Velocity(x0, noise));

    /// <summary>
    /// <paramref name="count"/> training times from <paramref name="distribution"/>, drawn with
    /// <paramref name="generator"/> (seeded runs repeat): U(0, 1), or sigmoid(m + s·n) with n ~ N(0, 1).
    /// </summary>
    public static Tensor SampleTimes(long count, FlowTimeDistribution distribution, Generator? generator = null, Device? device = null)
    {
        ArgumentNullException.ThrowIfNull(distribution);
        using var scope = NewDisposeScope();
        Tensor t = distribution.Kind switch
        {
            FlowTimeSampling.Uniform => rand([count], generator: generator),
            FlowTimeSampling.LogitNormal => (distribution.Mean + distribution.Std * randn([count], generator: generator)).sigmoid(),
            _ => throw new ArgumentOutOfRangeException(nameof(distribution), distribution.Kind, "unknown time sampling"),
        };
        if (device is not null && device.type != DeviceType.CPU) t = t.to(device);
        return t.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The density of the logit-normal time distribution (SD3 eq. 19):
    /// π(t) = 1/(s√(2π)) · 1/(t(1 − t)) · exp(−(logit t − m)²/(2s²)).
    /// </summary>
    public static double LogitNormalDensity(double t, double m = 0, double s = 1)
    {
        if (!(t > 0 && t < 1)) return 0;
        double logit = Math.Log(t / (1 - t));
        return Math.Exp(-(logit - m) * (logit - m) / (2 * s * s)) / (s * Math.Sqrt(2 * Math.PI) * t * (1 - t));
    }

    /// <summary>
    /// One training loss (the flow-matching objective, SD3 eq. 1 with the velocity target): draws t from
    /// <paramref name="distribution"/>, then ε ~ N(0, I), both with <paramref name="generator"/>, and returns
    /// mean ‖(ε − x₀) − v̂(x_t, t)‖² over all elements. <paramref name="model"/> takes t ∈ [0, 1] (wrap a network with
    /// <see cref="OnNetworkTime(DenoisingModel)"/>).
    /// </summary>
    public static Tensor Loss(DenoisingModel model, Tensor x0, FlowTimeDistribution distribution, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var t = SampleTimes(x0.shape[0], distribution, generator, x0.device);
        var noise = Platform.Compute.Randn(x0.shape, generator, x0.device);
        var (xt, target) = TrainingPair(x0, noise, t);
        var predicted = model(xt, t);
        return nn.functional.mse_loss(predicted, target).MoveToOuterDisposeScope();
    }

    /// <summary>x̂₀ = x_t − t v̂ (the point the straight line through x_t with velocity v̂ reaches at t = 0).</summary>
    public static Tensor Start(Tensor velocity, Tensor xt, Tensor t)
    {
        using var scope = NewDisposeScope();
        return (xt - PerImage(t, xt) * velocity).MoveToOuterDisposeScope();
    }

    /// <summary>ε̂ = x_t + (1 − t) v̂ (where that line is at t = 1).</summary>
    public static Tensor Noise(Tensor velocity, Tensor xt, Tensor t)
    {
        using var scope = NewDisposeScope();
        return (xt + (1 - PerImage(t, xt)) * velocity).MoveToOuterDisposeScope();
    }

    /// <summary>r_t = √((1 − t)² + t²), the standard deviation of x_t for unit-variance data and noise at a right angle.</summary>
    public static double Radius(double t) => Math.Sqrt((1 - t) * (1 - t) + t * t);

    /// <summary>ᾱ(t) = (1 − t)²/((1 − t)² + t²): the variance-preserving ᾱ whose sample is x_t / r_t.</summary>
    public static double AlphaBar(double t) => (1 - t) * (1 - t) / ((1 - t) * (1 - t) + t * t);

    /// <summary>The inverse of <see cref="AlphaBar"/>: t = 1/(1 + √(ᾱ/(1 − ᾱ))), i.e. (1 − t)/t = √ᾱ/√(1 − ᾱ).</summary>
    public static double TimeOfAlphaBar(double alphaBar)
    {
        if (!(alphaBar >= 0 && alphaBar <= 1)) throw new ArgumentOutOfRangeException(nameof(alphaBar), alphaBar, "ᾱ must be in [0, 1]");
        if (alphaBar == 1) return 0;
        return 1 / (1 + Math.Sqrt(alphaBar / (1 - alphaBar)));
    }

    /// <summary>1/r_t: x_t · VpScale(t) = √ᾱ x₀ + √(1 − ᾱ) ε with ᾱ = <see cref="AlphaBar"/>(t).</summary>
    public static double VpScale(double t) => 1 / Radius(t);

    /// <summary>
    /// The v-prediction target v = √ᾱ ε − √(1 − ᾱ) x₀ at ᾱ = <see cref="AlphaBar"/>(t) from the rectified velocity
    /// u = ε − x₀ and x_t: v = r_t u + ((1 − 2t)/r_t) x_t. (Write (1 − t)ε − t x₀ = a u + b x_t and match the
    /// coefficients of ε and x₀: b = 1 − 2t, a = (1 − t)² + t² = r_t²; then divide by r_t.)
    /// </summary>
    public static Tensor VPredictionFromVelocity(Tensor velocity, Tensor xt, double t)
    {
        double r = Radius(t);
        using var scope = NewDisposeScope();
        return (r * velocity + (1 - 2 * t) / r * xt).MoveToOuterDisposeScope();
    }

    /// <summary>The inverse of <see cref="VPredictionFromVelocity"/>: u = (v − ((1 − 2t)/r_t) x_t)/r_t.</summary>
    public static Tensor VelocityFromVPrediction(Tensor v, Tensor xt, double t)
    {
        double r = Radius(t);
        using var scope = NewDisposeScope();
        return ((v - (1 - 2 * t) / r * xt) / r).MoveToOuterDisposeScope();
    }

    /// <summary>t [B] shaped to broadcast against x [B, …], in x's dtype.</summary>
    static Tensor PerImage(Tensor t, Tensor x)
    {
        if (t.dim() != 1 || t.shape[0] != x.shape[0])
            throw new ArgumentException($"one time per image: t must be [{x.shape[0]}], got [{string.Join(", ", t.shape)}]");
        var shape = new long[x.dim()];
        Array.Fill(shape, 1L);
        shape[0] = x.shape[0];
        return t.to(x.dtype).reshape(shape);
    }
}

/// <summary>
/// Rectified flow's objective as a <see cref="TrainingObjective"/> (what a trainer consults in place of DDPM's
/// Algorithm 1): t from <see cref="Times"/>, then ε ~ N(0, I), x_t = (1 − t) x₀ + t ε, and ‖(ε − x₀) − v̂‖² with the
/// network called at <see cref="RectifiedFlow.NetworkTimeScale"/>·t (<see cref="RectifiedFlow.Loss"/>).
/// </summary>
public sealed class RectifiedFlowObjective(FlowTimeDistribution? times = null) : TrainingObjective
{
    /// <summary>How t is drawn (SD3's logit-normal unless given).</summary>
    public FlowTimeDistribution Times { get; } = times ?? FlowTimeDistribution.LogitNormal;

    public override Tensor Loss(Func<Tensor, Tensor, Tensor> model, Tensor x0, Generator? generator) =>
        RectifiedFlow.Loss(RectifiedFlow.OnNetworkTime((x, t) => model(x, t)), x0, Times, generator);
}
