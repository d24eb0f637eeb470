using Diffusion.Forward;

namespace Diffusion.Sampling;

/// <summary>
/// Classifier-free guidance (Ho &amp; Salimans 2022, "Classifier-Free Diffusion Guidance", eq. 6):
/// <code>ε̃_θ(x_t, c) = (1 + w) ε_θ(x_t, c) − w ε_θ(x_t, ∅)</code>
/// One network trained with label dropout (the label replaced by ∅ with probability p_uncond, see
/// <c>TrainingOptions.ClassDropout</c>) is both the conditional model ε_θ(x_t, c) and the unconditional ε_θ(x_t, ∅);
/// guidance extrapolates from the second towards, and past, the first.
/// <list type="bullet">
/// <item>w = 0: the plain conditional model. w &gt; 0: stronger class identity, less diversity (Ho &amp; Salimans: best FID
/// near w ≈ 0.1–0.3, best IS for large w). −1 ≤ w &lt; 0 interpolates towards the unconditional model; w = −1 is exactly
/// ε_θ(x_t, ∅). w &lt; −1 would push away from the class and is refused.</item>
/// <item>diffusers and Stable Diffusion write the same formula as ε_u + s (ε_c − ε_u) with guidance_scale s = 1 + w:
/// their s = 1 is our w = 0 (no guidance), their s = 7.5 is our w = 6.5. <see cref="FromGuidanceScale"/> converts.</item>
/// <item>Parameterisation: the combination is applied to the network's raw output, whatever it predicts. For a fixed x_t
/// and t, x̂_0 and v̂ are affine functions of ε̂ (x̂_0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t, v̂ = (ε̂ − √(1−ᾱ_t) x_t)/√ᾱ_t) and the
/// weights (1 + w) and −w sum to 1, so guiding x̂_0 or v̂ gives exactly the x̂_0 or v̂ of the guided ε̃ (up to float
/// rounding): the same sampler step as converting to ε first. The sampler's clipping of x̂_0 happens after guidance.</item>
/// <item>Cost: both predictions come from ONE forward pass over the batch [x_t; x_t] with labels [c; ∅], so a guided step
/// costs one network call on twice the batch. Labels are per image: one batch can hold one row per class.</item>
/// </list>
/// </summary>
public static class ClassifierFreeGuidance
{
    /// <summary>The smallest guidance weight accepted: w = −1 is the unconditional model.</summary>
    public const double MinWeight = -1;

    /// <summary>ε̃ = (1 + w) ε_c − w ε_u (Ho &amp; Salimans eq. 6), on any parameterisation (see the class summary).</summary>
    public static Tensor Combine(Tensor conditional, Tensor unconditional, double w)
    {
        CheckWeight(w);
        using var scope = NewDisposeScope();
        return ((1 + w) * conditional - w * unconditional).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The guided prediction at (x_t, t) for labels <paramref name="classes"/> [B], from one batched forward pass of
    /// <paramref name="model"/> on [x_t; x_t], [t; t], [classes; ∅] (∅ = <paramref name="nullClass"/>, the U-Net's
    /// NumClasses). Always makes the batched call, also for w = 0 (see <see cref="Guide"/> for the shortcut).
    /// </summary>
    public static Tensor Predict(ConditionalDenoisingModel model, Tensor xt, Tensor t, Tensor classes, int nullClass, double w)
    {
        CheckWeight(w);
        CheckClasses(classes, xt, nullClass);
        using var scope = NewDisposeScope();
        var y = classes.to(ScalarType.Int64).to(xt.device);
        var uncond = full_like(y, nullClass);
        var both = model(cat([xt, xt], 0), cat([t, t], 0), cat([y, uncond], 0));
        var parts = both.chunk(2, 0);
        // ε̃ = (1 + w) ε_θ(x_t, c) − w ε_θ(x_t, ∅)                                 (Ho & Salimans 2022, eq. 6)
        return Combine(parts[0], parts[1], w).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// A sampler's <see cref="DenoisingModel"/> that guides <paramref name="model"/> towards <paramref name="classes"/>
    /// (one label per image of the batch the sampler draws) with weight <paramref name="w"/>. Works with DDPM and DDIM and
    /// every prediction type. For w = 0 it is the conditional model alone (one pass on the plain batch: same result,
    /// half the work).
    /// </summary>
    public static DenoisingModel Guide(ConditionalDenoisingModel model, Tensor classes, int nullClass, double w)
    {
        CheckWeight(w);
        if (nullClass < 1) throw new ArgumentOutOfRangeException(nameof(nullClass), nullClass, "guidance needs a class-conditional model (NumClasses ≥ 1)");
        if (classes.dim() != 1) throw new ArgumentException($"classes must be a 1-D tensor of labels, got [{string.Join(", ", classes.shape)}]");
        if (classes.numel() > 0)
        {
            long min, max;
            using (NewDisposeScope()) (min, max) = (classes.min().item<long>(), classes.max().item<long>());
            if (min < 0 || max > nullClass)
                throw new ArgumentOutOfRangeException(nameof(classes), $"labels must be 0..{nullClass - 1} (or {nullClass} = no label), got {min}..{max}");
        }
        if (w == 0)
            return (xt, t) =>
            {
                CheckClasses(classes, xt, nullClass);
                return model(xt, t, classes.to(xt.device));
            };
        return (xt, t) => Predict(model, xt, t, classes, nullClass, w);
    }

    /// <summary>
    /// Labels for a grid with one row per class: [0 × perClass, 1 × perClass, …, (K−1) × perClass]
    /// (draw it with <c>columns: perClass</c>).
    /// </summary>
    public static Tensor OneRowPerClass(int numClasses, int perClass)
    {
        if (numClasses < 1 || perClass < 1) throw new ArgumentOutOfRangeException(nameof(perClass), "need at least one class and one image per class");
        using var classes = arange(numClasses, dtype: ScalarType.Int64);
        return classes.repeat_interleave(perClass);
    }

    /// <summary>Ho &amp; Salimans' w from diffusers' guidance_scale s: w = s − 1.</summary>
    public static double FromGuidanceScale(double guidanceScale) => guidanceScale - 1;

    /// <summary>diffusers' guidance_scale s from Ho &amp; Salimans' w: s = 1 + w.</summary>
    public static double ToGuidanceScale(double w) => 1 + w;

    /// <summary>Throws the one error for a guidance weight outside [−1, ∞).</summary>
    public static void CheckWeight(double w)
    {
        if (!(w >= MinWeight) || double.IsInfinity(w))
            throw new ArgumentOutOfRangeException(nameof(w), w,
                "guidance weight w must be a finite number ≥ −1 (0 = conditional, −1 = unconditional; diffusers' guidance_scale is 1 + w)");
    }

    static void CheckClasses(Tensor classes, Tensor xt, int nullClass)
    {
        if (classes.dim() != 1 || classes.shape[0] != xt.shape[0])
            throw new ArgumentException($"guidance needs one label per image: classes must be [{xt.shape[0]}], got [{string.Join(", ", classes.shape)}]");
    }
}
