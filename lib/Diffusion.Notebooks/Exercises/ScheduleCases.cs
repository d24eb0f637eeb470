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
internal sealed class ScheduleCases<TIn>(ScheduleKind shortKind, Func<NoiseSchedule, Generator, long[], Tensor, TIn> make)
    : ScheduleCases(shortKind)
{
    /// <summary>A case of t.Length images of shape <paramref name="imageShape"/> on schedule <paramref name="s"/>.</summary>
    public Case<TIn> Case(string description, NoiseSchedule s, ulong seed, long[] t, params long[] imageShape) =>
        Batch(description, s, seed, t, imageShape, make);
}
