namespace Diffusion.Notebooks.Exercises;

/// <summary>How an exercise check ended.</summary>
public enum CheckOutcome
{
    /// <summary>The learner's function agrees with the library on every case.</summary>
    Passed,
    /// <summary>The function still throws <see cref="NotImplementedException"/> (the stub as committed).</summary>
    NotAttempted,
    /// <summary>The function runs but gives a wrong answer, the wrong shape, or throws.</summary>
    Failed,
}

/// <summary>
/// The verdict of an exercise check. The checker shows it in the notebook and also returns it, so that tests (and
/// curious learners) can look at it. A check never throws: every problem ends up in here.
/// </summary>
/// <param name="Exercise">The exercise id, e.g. "q-sample".</param>
/// <param name="Outcome">Passed, not attempted, or failed.</param>
/// <param name="MistakeId">For a failure: the known mistake it matches (e.g. "missing-sqrt"), one of the
/// <see cref="FailureIds"/> for a failure of another kind (an exception, a wrong shape, …), or null when the values
/// are wrong in a way the checker does not recognise.</param>
/// <param name="Message">The verdict as plain text (the notebook shows it as HTML).</param>
public sealed record CheckResult(string Exercise, CheckOutcome Outcome, string? MistakeId, string Message)
{
    /// <summary>True when the learner's function agrees with the library on every case.</summary>
    public bool Passed => Outcome == CheckOutcome.Passed;

    /// <summary>The hint given with a failure (null when passed or not attempted).</summary>
    public string? Hint { get; init; }

    /// <summary>The case the verdict talks about, e.g. "linear schedule, T = 1000, t = 999 for every image".</summary>
    public string? FailingCase { get; init; }

    public override string ToString() => Message;
}

/// <summary>The <see cref="CheckResult.MistakeId"/> of failures that are not a known mistake of one exercise.</summary>
public static class FailureIds
{
    /// <summary>The learner's function threw an exception (other than NotImplementedException on the first case).</summary>
    public const string Threw = "threw";
    /// <summary>It returned null.</summary>
    public const string ReturnedNull = "returned-null";
    /// <summary>Its result has the wrong shape (and matches no known mistake).</summary>
    public const string WrongShape = "wrong-shape";
    /// <summary>Its result contains NaN or ±∞.</summary>
    public const string NotFinite = "not-finite";
    /// <summary>It gives different results for the same input (it draws its own random numbers).</summary>
    public const string NotDeterministic = "not-deterministic";
    /// <summary>The checker itself failed: a bug in the course, not in the learner's code.</summary>
    public const string CheckerError = "checker-error";
}
