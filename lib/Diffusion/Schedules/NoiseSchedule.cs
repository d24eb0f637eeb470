namespace Diffusion.Schedules;

/// <summary>
/// Every term of the diffusion process that depends on t only, precomputed in float64 (exact arrays, for plots and
/// checks) and stored as float32 tensors (for the math on batches). Names follow the formulas, as in diffusers and
/// lucidrains' denoising-diffusion-pytorch. Indices run over t = 0..T−1 (the paper's t = 1..T).
/// </summary>
public sealed class NoiseSchedule : IDisposable
{
    public ScheduleKind? Kind { get; }
    /// <summary>T, the number of diffusion steps.</summary>
    public int Timesteps { get; }

    // ---- float64 arrays (the source of truth) ----
    /// <summary>β_t</summary>
    public double[] Betas { get; }
    /// <summary>α_t = 1 − β_t</summary>
    public double[] Alphas { get; }
    /// <summary>ᾱ_t = ∏_{s≤t} α_s</summary>
    public double[] AlphasCumprod { get; }
    /// <summary>ᾱ_{t−1}, with ᾱ_{−1} = 1 (nothing has been noised before the first step)</summary>
    public double[] AlphasCumprodPrev { get; }
    /// <summary>√ᾱ_t: how much of x_0 is left in x_t</summary>
    public double[] SqrtAlphasCumprod { get; }
    /// <summary>√(1 − ᾱ_t): the standard deviation of the noise in x_t</summary>
    public double[] SqrtOneMinusAlphasCumprod { get; }
    /// <summary>log(1 − ᾱ_t)</summary>
    public double[] LogOneMinusAlphasCumprod { get; }
    /// <summary>1/√α_t</summary>
    public double[] SqrtRecipAlphas { get; }
    /// <summary>1/√ᾱ_t</summary>
    public double[] SqrtRecipAlphasCumprod { get; }
    /// <summary>√(1/ᾱ_t − 1)</summary>
    public double[] SqrtRecipm1AlphasCumprod { get; }
    /// <summary>β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t): the variance of the posterior q(x_{t−1} | x_t, x_0)</summary>
    public double[] PosteriorVariance { get; }
    /// <summary>log β̃_t, with β̃_0 = 0 replaced by β̃_1 so the log stays finite</summary>
    public double[] PosteriorLogVarianceClipped { get; }
    /// <summary>β_t √ᾱ_{t−1} / (1 − ᾱ_t): the weight of x_0 in the posterior mean μ̃_t</summary>
    public double[] PosteriorMeanCoef1 { get; }
    /// <summary>(1 − ᾱ_{t−1}) √α_t / (1 − ᾱ_t): the weight of x_t in the posterior mean μ̃_t</summary>
    public double[] PosteriorMeanCoef2 { get; }
    /// <summary>Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t)</summary>
    public double[] SignalToNoise { get; }

    readonly Dictionary<string, Tensor> tensors = new();
    readonly Dictionary<(string, Device), Tensor> onDevice = new();
    // Each term's array → its name, so that Extract(s.Betas, …) finds the cached tensor (compile-time checked, no string keys).
    readonly Dictionary<double[], string> names = new(ReferenceEqualityComparer.Instance);

    public NoiseSchedule(ScheduleKind kind, int timesteps) : this(BetaSchedules.Create(kind, timesteps)) => Kind = kind;

    /// <summary>Builds the terms from any β_1..β_T (each in (0, 1)).</summary>
    public NoiseSchedule(double[] betas)
    {
        ArgumentNullException.ThrowIfNull(betas);
        BetaSchedules.CheckTimesteps(betas.Length);
        for (int i = 0; i < betas.Length; i++)
            if (!(betas[i] > 0 && betas[i] < 1))
                throw new ArgumentOutOfRangeException(nameof(betas),
                    $"β at t={i} is {betas[i]}; every β_t must lie strictly between 0 and 1");

        int T = Timesteps = betas.Length;
        Betas = (double[])betas.Clone();
        Alphas = Map(b => 1 - b, Betas);
        AlphasCumprod = new double[T];
        double prod = 1;
        for (int t = 0; t < T; t++) AlphasCumprod[t] = prod *= Alphas[t];
        AlphasCumprodPrev = new double[T];
        for (int t = 0; t < T; t++) AlphasCumprodPrev[t] = t == 0 ? 1.0 : AlphasCumprod[t - 1];

        SqrtAlphasCumprod = Map(Math.Sqrt, AlphasCumprod);
        SqrtOneMinusAlphasCumprod = Map(a => Math.Sqrt(1 - a), AlphasCumprod);
        LogOneMinusAlphasCumprod = Map(a => Math.Log(1 - a), AlphasCumprod);
        SqrtRecipAlphas = Map(a => 1 / Math.Sqrt(a), Alphas);
        SqrtRecipAlphasCumprod = Map(a => 1 / Math.Sqrt(a), AlphasCumprod);
        SqrtRecipm1AlphasCumprod = Map(a => Math.Sqrt(1 / a - 1), AlphasCumprod);

        PosteriorVariance = new double[T];
        PosteriorMeanCoef1 = new double[T];
        PosteriorMeanCoef2 = new double[T];
        for (int t = 0; t < T; t++)
        {
            // β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t)          (DDPM eq. 7)
            PosteriorVariance[t] = Betas[t] * (1 - AlphasCumprodPrev[t]) / (1 - AlphasCumprod[t]);
            // μ̃_t = β_t √ᾱ_{t−1}/(1 − ᾱ_t) · x_0 + (1 − ᾱ_{t−1}) √α_t/(1 − ᾱ_t) · x_t   (DDPM eq. 7)
            PosteriorMeanCoef1[t] = Betas[t] * Math.Sqrt(AlphasCumprodPrev[t]) / (1 - AlphasCumprod[t]);
            PosteriorMeanCoef2[t] = (1 - AlphasCumprodPrev[t]) * Math.Sqrt(Alphas[t]) / (1 - AlphasCumprod[t]);
        }
        // β̃_0 = 0; log(0) = −∞, so the first entry borrows β̃_1 (as in the DDPM reference code).
        PosteriorLogVarianceClipped = new double[T];
        for (int t = 0; t < T; t++)
            PosteriorLogVarianceClipped[t] = Math.Log(t == 0 && T > 1 ? PosteriorVariance[1] : Math.Max(PosteriorVariance[t], 1e-20));
        SignalToNoise = Map(a => a / (1 - a), AlphasCumprod);

        foreach (var (name, values) in Terms())
        {
            using var f64 = torch.tensor(values, dtype: ScalarType.Float64);
            tensors[name] = f64.to(ScalarType.Float32).DetachFromDisposeScope();
            names[values] = name;
        }
    }

    /// <summary>Every term by name, for tables and plots.</summary>
    public IEnumerable<(string Name, double[] Values)> Terms() =>
    [
        (nameof(Betas), Betas), (nameof(Alphas), Alphas), (nameof(AlphasCumprod), AlphasCumprod),
        (nameof(AlphasCumprodPrev), AlphasCumprodPrev), (nameof(SqrtAlphasCumprod), SqrtAlphasCumprod),
        (nameof(SqrtOneMinusAlphasCumprod), SqrtOneMinusAlphasCumprod),
        (nameof(LogOneMinusAlphasCumprod), LogOneMinusAlphasCumprod), (nameof(SqrtRecipAlphas), SqrtRecipAlphas),
        (nameof(SqrtRecipAlphasCumprod), SqrtRecipAlphasCumprod), (nameof(SqrtRecipm1AlphasCumprod), SqrtRecipm1AlphasCumprod),
        (nameof(PosteriorVariance), PosteriorVariance), (nameof(PosteriorLogVarianceClipped), PosteriorLogVarianceClipped),
        (nameof(PosteriorMeanCoef1), PosteriorMeanCoef1), (nameof(PosteriorMeanCoef2), PosteriorMeanCoef2),
        (nameof(SignalToNoise), SignalToNoise),
    ];

    /// <summary>The float32 tensor [T] of a term, on <paramref name="device"/> (cached per device).</summary>
    public Tensor Term(string name, Device? device = null)
    {
        if (!tensors.TryGetValue(name, out var cpu))
            throw new ArgumentException($"no schedule term named '{name}'", nameof(name));
        if (device is null || device.type == DeviceType.CPU) return cpu;
        lock (onDevice)
        {
            if (!onDevice.TryGetValue((name, device), out var moved))
                onDevice[(name, device)] = moved = cpu.to(device).DetachFromDisposeScope();
            return moved;
        }
    }

    /// <summary>
    /// The lucidrains/annotated-notebook <c>extract</c>: picks a[t_i] for each t_i in the batch <paramref name="t"/>
    /// and reshapes to [B, 1, 1, ...] so it broadcasts over an x of shape <paramref name="xShape"/>.
    /// </summary>
    public static Tensor Extract(Tensor a, Tensor t, long[] xShape)
    {
        var b = t.shape[0];
        var outShape = new long[xShape.Length];
        outShape[0] = b;
        for (int i = 1; i < outShape.Length; i++) outShape[i] = 1;
        return a.to(t.device).gather(-1, t.to(ScalarType.Int64)).reshape(outShape);
    }

    /// <summary>
    /// lucidrains' <c>extract(self.sqrt_alphas_cumprod, t, x.shape)</c>: a term of this schedule, given as its array
    /// (<c>s.Extract(s.SqrtAlphasCumprod, t, x.shape)</c>), picked per image and shaped [B, 1, 1, ...] as a float32 tensor.
    /// </summary>
    public Tensor Extract(double[] term, Tensor t, long[] xShape) => Extract(Term(term, t.device), t, xShape);

    /// <summary>The float32 tensor [T] of a term given as its array (e.g. <c>s.Term(s.Betas)</c>), on <paramref name="device"/>.</summary>
    public Tensor Term(double[] term, Device? device = null) =>
        names.TryGetValue(term, out var name) ? Term(name, device)
            : throw new ArgumentException("not a term of this schedule: pass one of its arrays, e.g. s.Extract(s.Betas, t, x.shape)", nameof(term));

    static double[] Map(Func<double, double> f, double[] xs) => xs.Select(f).ToArray();

    public void Dispose()
    {
        foreach (var t in tensors.Values) t.Dispose();
        foreach (var t in onDevice.Values) t.Dispose();
        tensors.Clear();
        onDevice.Clear();
    }
}
