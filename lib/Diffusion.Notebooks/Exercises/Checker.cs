using System.Globalization;
using System.Net;
using System.Reflection;
using System.Text;

namespace Diffusion.Notebooks.Exercises;

/// <summary>One input of a check: a description for the learner and a factory that builds fresh, seeded tensors
/// (every call gives the same values, so the learner, the library and each known mistake get their own copies).</summary>
internal sealed record Case<TIn>(string Description, Func<TIn> Make);

/// <summary>A typical wrong answer, computed by the checker: if the learner's output equals it, the hint says what went wrong.</summary>
/// <param name="Id">Short id, e.g. "missing-sqrt" (tests assert on it).</param>
/// <param name="Hint">What the learner probably did and how to fix it.</param>
/// <param name="Compute">The wrong implementation. It may throw where it is not defined (e.g. t + 1 at t = T − 1).</param>
internal sealed record Mistake<TIn>(string Id, string Hint, Func<TIn, Tensor> Compute);

/// <summary>A problem found by an extra check on a result whose values are right (e.g. a loss without gradient).</summary>
internal sealed record Problem(string Id, string What, string Hint);

/// <summary>Everything the shared checker needs to know about one exercise.</summary>
/// <param name="Id">The id used in the notebooks' cell metadata and the solution file name, e.g. "q-sample".</param>
/// <param name="Title">What the learner writes, for the verdict's first line, e.g. "The closed form q(x_t | x_0)".</param>
/// <param name="LearnerName">The learner's function as named in the stub, e.g. "MyQSample".</param>
/// <param name="LibraryName">The library member the notebook uses instead, e.g. "ForwardProcess.QSample".</param>
internal sealed class Exercise<TIn>(string Id, string Title, string LearnerName, string LibraryName)
{
    public string Id { get; } = Id;
    public string Title { get; } = Title;
    public string LearnerName { get; } = LearnerName;
    public string LibraryName { get; } = LibraryName;
    /// <summary>The library's own implementation: the right answer.</summary>
    public required Func<TIn, Tensor> Reference { get; init; }
    public required IReadOnlyList<Case<TIn>> Cases { get; init; }
    /// <summary>Known mistakes, most specific first (the first one that explains every output wins).</summary>
    public IReadOnlyList<Mistake<TIn>> Mistakes { get; init; } = [];
    /// <summary>The hint when the values are wrong and no known mistake matches.</summary>
    public required string GenericHint { get; init; }
    /// <summary>The hint when the result has the wrong shape.</summary>
    public string ShapeHint { get; init; } = "";
    /// <summary>Element-wise tolerance: |got − expected| ≤ Atol + Rtol · max|expected| (float32 arithmetic).</summary>
    public double Atol { get; init; } = 1e-5;
    public double Rtol { get; init; } = 1e-4;
    /// <summary>How many times looser than Atol/Rtol a known mistake is matched (the learner may compute it in another
    /// precision or order). Lower it for an exercise whose Atol/Rtol are already loose, so that mistakes stay apart.</summary>
    public double MistakeTolerance { get; init; } = 10;
    /// <summary>Describes an element of the output with the inputs that produced it (for the learner to redo by hand).</summary>
    public Func<TIn, long[], string>? DescribeIndex { get; init; }
    /// <summary>An extra check on a result whose values are right (null: fine).</summary>
    public Func<TIn, Tensor, Problem?>? AfterMatch { get; init; }
}

/// <summary>
/// The machinery shared by every exercise: runs the learner's function on every case (catching whatever it throws),
/// compares with the library, recognises known mistakes, and shows a friendly verdict. Never throws.
/// </summary>
internal static class Checker
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    enum Status { Ok, Threw, Null, Shape, NotFinite, Values }

    public static CheckResult Run<TIn>(Exercise<TIn> ex, Func<TIn, Tensor>? learner, bool show)
    {
        Verdict verdict;
        try
        {
            verdict = Evaluate(ex, learner);
        }
        catch (Exception e)
        {
            e = Unwrap(e);
            verdict = new Verdict(ex.Id, CheckOutcome.Failed, FailureIds.CheckerError,
                $"✘ {ex.Title}: the checker itself failed — this is a bug in the course, not in your code.")
            {
                Details = { $"{e.GetType().Name}: {CleanMessage(e.Message)}" },
                Hint = "Please report it. The rest of the notebook uses the library's " + ex.LibraryName + ", so it runs either way.",
            };
        }
        if (show)
        {
            try { Show.Html(verdict.ToHtml()); }
            catch (Exception) { Console.WriteLine(verdict.ToText()); }
        }
        return verdict.ToResult();
    }

    static Verdict NotAttempted<TIn>(Exercise<TIn> ex) =>
        new(ex.Id, CheckOutcome.NotAttempted, null,
            $"… {ex.Title}: not attempted yet.")
        {
            Details =
            {
                $"Fill in {ex.LearnerName} in the cell above (replace the line throw new NotImplementedException();), " +
                "then run that cell and this one again.",
                $"Until then the rest of the notebook uses the library's {ex.LibraryName}, so it runs either way.",
            },
        };

    static Verdict Evaluate<TIn>(Exercise<TIn> ex, Func<TIn, Tensor>? learner)
    {
        if (learner is null) return NotAttempted(ex);
        using var scope = NewDisposeScope();
        int n = ex.Cases.Count;
        var inputs = new TIn[n];
        var got = new Tensor?[n];
        var thrown = new Exception?[n];
        var expected = new Tensor[n];
        var status = new Status[n];

        for (int i = 0; i < n; i++)
        {
            inputs[i] = ex.Cases[i].Make();
            try
            {
                got[i] = learner(inputs[i]);
                if (got[i] is null) status[i] = Status.Null;
            }
            catch (Exception e)
            {
                e = Unwrap(e);
                if (e is NotImplementedException && i == 0) return NotAttempted(ex);
                thrown[i] = e;
                status[i] = Status.Threw;
            }
            expected[i] = ex.Reference(ex.Cases[i].Make()).detach().to(ScalarType.Float64);
            if (got[i] is { } g) status[i] = Compare(expected[i], g, ex.Atol, ex.Rtol);
        }

        if (status.All(s => s == Status.Ok))
        {
            for (int i = 0; i < n && ex.AfterMatch is not null; i++)
            {
                Problem? p;
                try { p = ex.AfterMatch(inputs[i], got[i]!); }
                catch (Exception e) { e = Unwrap(e); p = new Problem(FailureIds.Threw, $"{e.GetType().Name}: {CleanMessage(e.Message)}", ex.GenericHint); }
                if (p is null) continue;
                return new Verdict(ex.Id, CheckOutcome.Failed, p.Id, $"✘ {ex.Title}: almost — the values are right, but…")
                {
                    FailingCase = Label(ex, i),
                    Details = { p.What },
                    Hint = p.Hint,
                };
            }
            return new Verdict(ex.Id, CheckOutcome.Passed, null,
                $"✔ {ex.Title}: passed. {ex.LearnerName} agrees with the library's {ex.LibraryName} on all {n} cases.")
            {
                Details = { "Cases checked: " + string.Join("; ", ex.Cases.Select((c, i) => $"({i + 1}) {c.Description}")) + "." },
            };
        }

        // Which known mistake explains every output the learner produced (and at least one wrong one)?
        var withOutput = Enumerable.Range(0, n).Where(i => got[i] is not null).ToList();
        var wrongOutputs = withOutput.Where(i => status[i] != Status.Ok).ToList();
        Mistake<TIn>? match = null;
        if (wrongOutputs.Count > 0)
        {
            var cache = new Dictionary<(int, int), Tensor?>();
            Tensor? MistakeValue(int m, int i)
            {
                if (cache.TryGetValue((m, i), out var v)) return v;
                try { v = ex.Mistakes[m].Compute(ex.Cases[i].Make()).detach().to(ScalarType.Float64); }
                catch (Exception) { v = null; }
                return cache[(m, i)] = v;
            }
            // A mistake is matched with a looser tolerance (10× by default): the learner may compute it in another precision or order.
            bool Explains(int m, IEnumerable<int> cases) => cases.All(i =>
                MistakeValue(m, i) is { } v && Compare(v, got[i]!, ex.MistakeTolerance * ex.Atol, ex.MistakeTolerance * ex.Rtol, nonFiniteEqual: true) == Status.Ok);
            for (int m = 0; m < ex.Mistakes.Count && match is null; m++)
                if (Explains(m, withOutput)) match = ex.Mistakes[m];
            // Weaker evidence: the mistake matches the first wrong output (another mistake may hide it elsewhere).
            for (int m = 0; m < ex.Mistakes.Count && match is null; m++)
                if (Explains(m, [wrongOutputs[0]])) match = ex.Mistakes[m];
        }

        if (match is not null)
        {
            int f = wrongOutputs[0];
            var v = new Verdict(ex.Id, CheckOutcome.Failed, match.Id, $"✘ {ex.Title}: not right yet — this looks like a known mistake.")
            {
                FailingCase = Label(ex, f),
                Hint = match.Hint,
            };
            Describe(ex, inputs[f], expected[f], got[f]!, v);
            int threwAt = Array.FindIndex(status, s => s == Status.Threw);
            if (threwAt >= 0)
                v.Details.Add($"(On case {threwAt + 1} it threw {thrown[threwAt]!.GetType().Name}: {CleanMessage(thrown[threwAt]!.Message)})");
            return v;
        }

        int first = Array.FindIndex(status, s => s != Status.Ok);
        var verdict = new Verdict(ex.Id, CheckOutcome.Failed, null, $"✘ {ex.Title}: not right yet.")
        {
            FailingCase = Label(ex, first),
        };
        switch (status[first])
        {
            case Status.Threw:
            {
                var e = thrown[first]!;
                verdict.MistakeId = FailureIds.Threw;
                verdict.Details.Add($"{ex.LearnerName} threw {e.GetType().Name}: {CleanMessage(e.Message)}");
                if (e is NotImplementedException)
                    verdict.Details.Add("It works for the earlier cases: is one branch of your function still a TODO?");
                var specific = ExceptionHint(e);
                verdict.Hint = specific is null ? ex.GenericHint : specific + " " + ex.GenericHint;
                break;
            }
            case Status.Null:
                verdict.MistakeId = FailureIds.ReturnedNull;
                verdict.Details.Add($"{ex.LearnerName} returned null.");
                verdict.Hint = "Return the result (a tensor) instead of null. " + ex.GenericHint;
                break;
            case Status.Shape:
                verdict.MistakeId = FailureIds.WrongShape;
                Describe(ex, inputs[first], expected[first], got[first]!, verdict);
                verdict.Hint = (ex.ShapeHint.Length > 0 ? ex.ShapeHint + " " : "") + ex.GenericHint;
                break;
            case Status.NotFinite:
                verdict.MistakeId = FailureIds.NotFinite;
                Describe(ex, inputs[first], expected[first], got[first]!, verdict);
                verdict.Hint = "A NaN or ∞ comes from a division by zero, the square root or log of a negative number, or an overflow. " + ex.GenericHint;
                break;
            default:
            {
                Describe(ex, inputs[first], expected[first], got[first]!, verdict);
                // Same input again: a different answer means the function draws its own random numbers.
                Tensor? again = null;
                try { again = learner(ex.Cases[first].Make()); } catch (Exception) { }
                if (again is not null && Compare(got[first]!.detach().to(ScalarType.Float64), again, ex.Atol, ex.Rtol) != Status.Ok)
                {
                    verdict.MistakeId = FailureIds.NotDeterministic;
                    verdict.Hint = "Called twice with the same input, your function gave two different answers: it draws its own " +
                                   "random numbers (randn, rand, randint …). Use the noise (and t) it receives as arguments instead.";
                }
                else verdict.Hint = ex.GenericHint;
                break;
            }
        }
        return verdict;
    }

    static string Label<TIn>(Exercise<TIn> ex, int i) => $"case {i + 1} of {ex.Cases.Count}: {ex.Cases[i].Description}";

    /// <summary>Compares a result with the expected values: shape, finiteness, then |got − expected| ≤ atol + rtol·max|expected|.</summary>
    static Status Compare(Tensor expected, Tensor got, double atol, double rtol, bool nonFiniteEqual = false)
    {
        var g = got.detach();
        if (!g.shape.SequenceEqual(expected.shape))
        {
            if (g.numel() == 1 && expected.numel() == 1) g = g.reshape(expected.shape);
            else return Status.Shape;
        }
        g = g.to(ScalarType.Float64).cpu();
        var e = expected.cpu();
        var gFinite = g.isfinite();
        if (!gFinite.all().item<bool>())
        {
            if (!nonFiniteEqual) return Status.NotFinite;
            // Both non-finite in the same places with the same values (e.g. +∞ where the mistake divides by zero).
            var eFinite = e.isfinite();
            if (!gFinite.eq(eFinite).all().item<bool>()) return Status.Values;
            var nonFinite = gFinite.logical_not();
            var gBad = g.masked_select(nonFinite); var eBad = e.masked_select(nonFinite);
            if (!(gBad.isnan().eq(eBad.isnan()).all().item<bool>() && gBad.nan_to_num().eq(eBad.nan_to_num()).all().item<bool>()))
                return Status.Values;
            g = g.masked_fill(nonFinite, 0); e = e.masked_fill(nonFinite, 0);
        }
        if (g.numel() == 0) return Status.Ok;
        double scale = e.isfinite().all().item<bool>() ? e.abs().max().item<double>() : 1;
        double tol = atol + rtol * scale;
        return (g - e).abs().max().item<double>() <= tol ? Status.Ok : Status.Values;
    }

    /// <summary>Adds the numbers (or the shapes) of a wrong result to the verdict.</summary>
    static void Describe<TIn>(Exercise<TIn> ex, TIn input, Tensor expected, Tensor got, Verdict v)
    {
        var g = got.detach();
        if (!g.shape.SequenceEqual(expected.shape))
        {
            if (g.numel() == 1 && expected.numel() == 1) g = g.reshape(expected.shape);
            else
            {
                v.Details.Add($"Expected a result of shape {ShapeText(expected.shape)}, got {ShapeText(g.shape)}.");
                return;
            }
        }
        g = g.to(ScalarType.Float64).cpu();
        var e = expected.cpu();
        if (e.numel() == 1)
        {
            v.Rows.Add(("result", Fmt(e.item<double>()), Fmt(g.reshape(1)[0].item<double>())));
            return;
        }
        double scale = e.abs().max().item<double>();
        double tol = ex.Atol + ex.Rtol * scale;
        var bad = (g - e).abs().gt(tol).logical_or(g.isfinite().logical_not()).flatten();
        long flat = bad.any().item<bool>() ? bad.nonzero()[0, 0].item<long>() : 0;
        var index = Unravel(flat, e.shape);
        string where = ex.DescribeIndex is null ? $"element {ShapeText(index)}" : SafeDescribe(ex, input, index);
        v.Details.Add($"The first wrong number is at {where}.");
        v.Rows.Add(($"at {ShapeText(index)}", Fmt(At(e, index)), Fmt(At(g, index))));
        // A few neighbours in reading order, for a feel of the whole.
        var ef = e.flatten(); var gf = g.flatten();
        long from = Math.Max(0, Math.Min(flat, ef.numel() - 4)), to = Math.Min(ef.numel(), from + 4);
        if (to - from > 1)
            v.Rows.Add(($"elements {from}…{to - 1} in reading order",
                string.Join(", ", Enumerable.Range((int)from, (int)(to - from)).Select(k => Fmt(ef[k].item<double>()))),
                string.Join(", ", Enumerable.Range((int)from, (int)(to - from)).Select(k => Fmt(gf[k].item<double>())))));
        if (g.isfinite().all().item<bool>())
            v.Details.Add($"Largest difference: {Fmt((g - e).abs().max().item<double>())} (allowed: {Fmt(tol)}).");
        else
            v.Details.Add($"Your result contains {(g.isnan().any().item<bool>() ? "NaN" : "∞")}.");
    }

    static string SafeDescribe<TIn>(Exercise<TIn> ex, TIn input, long[] index)
    {
        try { return ex.DescribeIndex!(input, index); }
        catch (Exception) { return $"element {ShapeText(index)}"; }
    }

    static double At(Tensor t, long[] index) => index.Length == 0 ? t.item<double>() : t[index].item<double>();

    static long[] Unravel(long flat, long[] shape)
    {
        var index = new long[shape.Length];
        for (int d = shape.Length - 1; d >= 0; d--)
        {
            index[d] = flat % shape[d];
            flat /= shape[d];
        }
        return index;
    }

    internal static string ShapeText(long[] shape) => "[" + string.Join(", ", shape) + "]";

    internal static string Fmt(double x) =>
        double.IsNaN(x) ? "NaN" : double.IsPositiveInfinity(x) ? "∞" : double.IsNegativeInfinity(x) ? "−∞" : x.ToString("G6", Inv);

    internal static string Fmt(float x) => Fmt((double)x);

    static Exception Unwrap(Exception e)
    {
        while (true)
        {
            if (e is TargetInvocationException { InnerException: { } inner }) e = inner;
            else if (e is AggregateException { InnerExceptions.Count: 1 } agg) e = agg.InnerExceptions[0];
            else return e;
        }
    }

    /// <summary>The first lines of an exception message, without libtorch's C++ backtrace.</summary>
    internal static string CleanMessage(string message)
    {
        var m = message ?? "";
        foreach (var marker in new[] { "Exception raised from", "\nframe #", "   at " })
        {
            int cut = m.IndexOf(marker, StringComparison.Ordinal);
            if (cut >= 0) m = m[..cut];
        }
        var lines = m.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).Take(3);
        m = string.Join(" ", lines);
        return m.Length > 300 ? m[..300] + "…" : m;
    }

    /// <summary>A hint for the usual exceptions of tensor code, or null.</summary>
    static string? ExceptionHint(Exception e)
    {
        var m = e.Message ?? "";
        if (e is IndexOutOfRangeException or ArgumentOutOfRangeException || m.Contains("out of bounds") || m.Contains("out of range"))
            return "An index went past the end of an array or tensor. Check for an off-by-one: in code t runs from 0 to T − 1, " +
                   "and the schedule arrays are indexed with t itself (index 0 is the paper's t = 1).";
        if (m.Contains("must match the size") || m.Contains("size mismatch") || m.Contains("shape") || m.Contains("broadcast"))
            return "Two tensors of incompatible shapes met. A schedule term picked per image must be reshaped to " +
                   "[B, 1, 1, 1] to broadcast over channels and pixels: s.Extract(s.SqrtAlphasCumprod, t, x.shape) does both (pass the schedule's array of the term you need).";
        if (m.Contains("scalar type") || m.Contains("dtype") || m.Contains("Long") || m.Contains("Float"))
            return "A tensor has the wrong element type: t holds Int64 indices, images and noise are Float32. " +
                   "Use t for indexing, and .to(ScalarType.Float32) where you compute with t itself.";
        if (e is InvalidCastException)
            return "item<T>() must match the tensor's type: item<float>() for Float32, item<long>() for Int64, item<double>() for Float64.";
        if (e is NullReferenceException)
            return "Something was null: a variable used before it got a value?";
        return null;
    }

    /// <summary>The verdict being built: a headline, details, an expected-vs-got table, a hint.</summary>
    sealed class Verdict(string exercise, CheckOutcome outcome, string? mistakeId, string headline)
    {
        public string Exercise { get; } = exercise;
        public CheckOutcome Outcome { get; } = outcome;
        public string? MistakeId { get; set; } = mistakeId;
        public string Headline { get; } = headline;
        public string? FailingCase { get; init; }
        public List<string> Details { get; init; } = [];
        public List<(string What, string Expected, string Got)> Rows { get; } = [];
        public string? Hint { get; set; }

        public string OutcomeName => Outcome switch
        {
            CheckOutcome.Passed => "passed",
            CheckOutcome.NotAttempted => "not-attempted",
            _ => "failed",
        };

        public string ToText()
        {
            var sb = new StringBuilder(Headline);
            if (FailingCase is not null) sb.Append('\n').Append("Input: ").Append(FailingCase);
            foreach (var d in Details) sb.Append('\n').Append(d);
            foreach (var r in Rows) sb.Append('\n').Append($"{r.What}: expected {r.Expected}, got {r.Got}");
            if (Hint is not null) sb.Append('\n').Append("Hint: ").Append(Hint);
            return sb.ToString();
        }

        public string ToHtml()
        {
            static string E(string s) => WebUtility.HtmlEncode(s);
            var (border, background) = Outcome switch
            {
                CheckOutcome.Passed => ("#2e7d32", "#edf7ed"),
                CheckOutcome.NotAttempted => ("#607d8b", "#f1f4f6"),
                _ => ("#e65100", "#fff4e5"),
            };
            var sb = new StringBuilder();
            sb.Append($"<div class=\"exercise-check\" data-exercise=\"{E(Exercise)}\" data-outcome=\"{OutcomeName}\"");
            if (MistakeId is not null) sb.Append($" data-mistake=\"{E(MistakeId)}\"");
            sb.Append($" style=\"border-left:6px solid {border};background:{background};color:#1d1d1d;padding:8px 12px;margin:4px 0;" +
                      "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:14px;line-height:1.45\">");
            sb.Append($"<div style=\"font-weight:600\">{E(Headline)}</div>");
            if (FailingCase is not null) sb.Append($"<div><b>Input:</b> {E(FailingCase)}</div>");
            foreach (var d in Details) sb.Append($"<div>{E(d)}</div>");
            if (Rows.Count > 0)
            {
                sb.Append("<table style=\"border-collapse:collapse;margin:4px 0;color:#1d1d1d\"><tr><th></th>" +
                          "<th style=\"text-align:left;padding:0 12px\">expected</th><th style=\"text-align:left;padding:0 12px\">yours</th></tr>");
                foreach (var r in Rows)
                    sb.Append($"<tr><td>{E(r.What)}</td><td style=\"padding:0 12px;font-family:monospace\">{E(r.Expected)}</td>" +
                              $"<td style=\"padding:0 12px;font-family:monospace\">{E(r.Got)}</td></tr>");
                sb.Append("</table>");
            }
            if (Hint is not null) sb.Append($"<div><b>Hint:</b> {E(Hint)}</div>");
            sb.Append("</div>");
            return sb.ToString();
        }

        public CheckResult ToResult() => new(Exercise, Outcome, MistakeId, ToText()) { Hint = Hint, FailingCase = FailingCase };
    }
}

/// <summary>Helpers the exercises use to build inputs and wrong answers.</summary>
internal static class Inputs
{
    /// <summary>Image-like values, uniform in [−1, 1).</summary>
    public static Tensor Images(Generator g, params long[] shape) => rand(shape, generator: g) * 2 - 1;

    /// <summary>Standard normal noise.</summary>
    public static Tensor Noise(Generator g, params long[] shape) => randn(shape, generator: g);

    /// <summary>A batch of time steps (Int64).</summary>
    public static Tensor Times(params long[] t) => tensor(t, dtype: ScalarType.Int64);

    /// <summary>values[t + shift] per image, shaped [B, 1, 1, …] for broadcasting; throws when t + shift leaves the array.</summary>
    public static Tensor At(double[] values, Tensor t, long[] shape, int shift = 0)
    {
        var index = t + shift;
        if (index.min().item<long>() < 0 || index.max().item<long>() >= values.Length)
            throw new IndexOutOfRangeException("t + shift outside the schedule");
        return NoiseSchedule.Extract(tensor(values, dtype: ScalarType.Float64).to(ScalarType.Float32), index, shape);
    }

    /// <summary>values[t[0]] for every image (the "one t for the whole batch" mistake).</summary>
    public static Tensor AtFirst(double[] values, Tensor t, long[] shape) =>
        At(values, t[0].expand(t.shape[0]).clone(), shape);

    /// <summary>"t = [0, 499, 999]"</summary>
    public static string TimesText(Tensor t) => "[" + string.Join(", ", t.data<long>().ToArray()) + "]";

    /// <summary>A value of a tensor at an index, formatted.</summary>
    public static string Value(Tensor x, params long[] index) => Checker.Fmt(x[index].to(ScalarType.Float64).item<double>());

    /// <summary>A float64 tensor of an array the learner returned (null stays null: the checker reports it).</summary>
    public static Tensor Float64(double[]? values) => values is null ? null! : tensor(values, dtype: ScalarType.Float64);

    /// <summary>ᾱ_t = Π_{s ≤ t} (1 − β_s), computed in float64 the plain way (the array the learner is given).</summary>
    public static double[] CumulativeProduct(double[] betas)
    {
        var alphasCumprod = new double[betas.Length];
        double p = 1;
        for (int i = 0; i < betas.Length; i++) alphasCumprod[i] = p *= 1 - betas[i];
        return alphasCumprod;
    }

    /// <summary>The library's answer from a schedule built on <paramref name="betas"/>, as a float64 tensor.</summary>
    public static Tensor FromSchedule(double[] betas, Func<NoiseSchedule, double[]> answer)
    {
        using var s = new NoiseSchedule(betas);
        return Float64(answer(s));
    }

    /// <summary>
    /// The "same-t" mistake: one t (the first image's) used for the whole batch, where every image has its own.
    /// <paramref name="terms"/> names what to pick ("ᾱ_t"), <paramref name="extract"/> the call that picks it per image.
    /// </summary>
    public static Mistake<TIn> SameT<TIn>(string terms, string extract, bool plural, Func<TIn, Tensor> compute) =>
        new("same-t", $"Every image of the batch has its own t: pick {terms} per image. {extract} does that and reshapes " +
            (plural ? "them to [B, 1, 1, 1] so that they broadcast" : "it to [B, 1, 1, 1] so that it broadcasts") + " over the pixels.",
            compute);

    /// <summary>The shape hint of an exercise whose schedule terms are picked per image with Extract.</summary>
    public static string PerImageShapeHint(string result, string extract, string term = "a term") =>
        $"The result must have the shape of {result}. {extract} gives {term} as [B, 1, 1, 1], which " +
        "broadcasts over channels and pixels.";

    /// <summary>"image 2 (t = 499, ᾱ_t = …), position [0, 1, 1], where x_0 = … and ε = …" for a per-image-t exercise.</summary>
    public static string DescribeImage(Tensor t, long[] index, Func<long, string> terms, string where)
    {
        long ti = t[index[0]].item<long>();
        return $"image {index[0]} (t = {ti}, {terms(ti)}), position {Checker.ShapeText(index[1..])}, where {where}";
    }
}
