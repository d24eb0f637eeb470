namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// The set-up the schedule exercises share: the schedules their cases run on (linear T = 1000, cosine T = 500 and a
/// short one with T = 10) and seeded cases of a batch at given time steps.
/// </summary>
internal class ScheduleCases(ScheduleKind shortKind) : IDisposable
{
    public NoiseSchedule Linear { get; } = new(ScheduleKind.Linear, 1000);
    public NoiseSchedule Cosine { get; } = new(ScheduleKind.Cosine, 500);
    public NoiseSchedule Short { get; } = new(shortKind, 10);

    /// <summary>
    /// A case of t.Length images: <paramref name="make"/>(schedule, a generator seeded with <paramref name="seed"/>,
    /// the batch shape [B, ..imageShape], t as a tensor).
    /// </summary>
    public static Case<TIn> Batch<TIn>(string description, NoiseSchedule s, ulong seed, long[] t, long[] imageShape,
        Func<NoiseSchedule, Generator, long[], Tensor, TIn> make) =>
        new(description, () => make(s, new Generator(seed), [t.Length, .. imageShape], Inputs.Times(t)));

    public void Dispose()
    {
        Linear.Dispose();
        Cosine.Dispose();
        Short.Dispose();
    }
}

/// <summary>
/// <see cref="ScheduleCases"/> whose cases all build their input with one <c>make</c>(schedule, generator, batch shape, t).
/// </summary>
internal class ScheduleCases<TIn>(ScheduleKind shortKind, Func<NoiseSchedule, Generator, long[], Tensor, TIn> make)
    : ScheduleCases(shortKind)
{
    /// <summary>A case of t.Length images of shape <paramref name="imageShape"/> on schedule <paramref name="s"/>.</summary>
    public Case<TIn> Case(string description, NoiseSchedule s, ulong seed, long[] t, params long[] imageShape) =>
        Batch(description, s, seed, t, imageShape, make);
}

/// <summary>The input of the forward-process exercises: a schedule, seeded images x (x_{t−1} for q-step, x_0 for q-sample), t and seeded noise ε.</summary>
internal sealed record NoisedImages(NoiseSchedule S, Tensor X, Tensor T, Tensor Noise);

/// <summary>
/// The cases of the exercises whose learner maps (s, x, t, ε) to x_t (q-step, q-sample): the three on the linear schedule
/// they share (a mixed batch, t = 0 and t = T − 1 for every image), then each exercise's own.
/// </summary>
internal sealed class NoisedImageCases(ScheduleKind shortKind)
    : ScheduleCases<NoisedImages>(shortKind, (s, g, shape, tt) => new NoisedImages(s, Images(g, shape), tt, Noise(g, shape)))
{
    /// <summary>Runs <paramref name="learner"/>(s, x, t, ε) on the cases <paramref name="cases"/> picks, checked by <paramref name="spec"/>.</summary>
    public static CheckResult Check(ScheduleKind shortKind, Func<NoisedImageCases, IReadOnlyList<Case<NoisedImages>>> cases,
        Func<IReadOnlyList<Case<NoisedImages>>, Exercise<NoisedImages>> spec, Func<NoiseSchedule, Tensor, Tensor, Tensor, Tensor>? learner, bool show)
    {
        using var set = new NoisedImageCases(shortKind);
        return Checker.Run(spec(cases(set)), learner is null ? null : i => learner(i.S, i.X, i.T, i.Noise), show);
    }

    /// <summary>
    /// Linear schedule, T = 1000: three images at t = [0, 499, 999], then t = 0 and t = 999 for both of two images
    /// (seeds <paramref name="seed"/> to <paramref name="seed"/> + 2), each end with the exercise's remark.
    /// </summary>
    public IEnumerable<Case<NoisedImages>> LinearEnds(ulong seed, string first, string last) =>
    [
        Case("linear schedule, T = 1000; 3 images of shape [1, 4, 4] at t = [0, 499, 999]", Linear, seed, [0, 499, 999], 1, 4, 4),
        Case($"linear schedule, T = 1000; t = 0 for both images ({first})", Linear, seed + 1, [0, 0], 1, 4, 4),
        Case($"linear schedule, T = 1000; t = 999 = T − 1 for both images ({last})", Linear, seed + 2, [999, 999], 1, 4, 4),
    ];
}
