using Diffusion.Latent;
using Diffusion.Notebooks;
using Diffusion.Notebooks.Exercises;
using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Tests;

/// <summary>
/// The exercise checkers of notebooks 00b–10: the library's own implementation passes every checker; typical wrong
/// answers — written here, independently of the checkers' own list — are rejected with the right mistake id and hint;
/// an unattempted stub, a throwing function, a wrong shape, null, NaN and home-made noise all get a friendly verdict,
/// and no check ever throws.
/// </summary>
public class ExerciseTests
{
    // Learner signatures, as in the notebooks' stubs.
    delegate Tensor QFn(NoiseSchedule s, Tensor x, Tensor t, Tensor noise);

    static CheckResult QStep(QFn f) => QStepExercise.Check((s, x, t, n) => f(s, x, t, n), show: false);
    static CheckResult QSample(QFn f) => QSampleExercise.Check((s, x, t, n) => f(s, x, t, n), show: false);
    static CheckResult PosteriorVariance(Func<double[], double[], double[]> f) => PosteriorVarianceExercise.Check(f, show: false);
    static CheckResult PosteriorMean(Func<NoiseSchedule, Tensor, Tensor, Tensor, Tensor> f) => PosteriorMeanExercise.Check(f, show: false);
    static CheckResult Embedding(Func<Tensor, int, Tensor> f) => SinusoidalEmbeddingExercise.Check(f, show: false);
    static CheckResult Loss(Func<Func<Tensor, Tensor, Tensor>, NoiseSchedule, Tensor, Tensor, Tensor, Tensor> f) => TrainingStepExercise.Check(f, show: false);
    static CheckResult Reverse(Func<NoiseSchedule, Tensor, int, Tensor, Tensor, Tensor> f) => ReverseStepExercise.Check(f, show: false);
    static CheckResult Nll(Func<Tensor, Tensor, Tensor, Tensor> f) => GaussianNllExercise.Check(f, show: false);
    static CheckResult Ddim(Func<Tensor, Tensor, double, double, Tensor> f) => DdimStepExercise.Check(f, show: false);
    static CheckResult FlowEuler(Func<Tensor, Tensor, double, double, Tensor> f) => FlowEulerStepExercise.Check(f, show: false);
    static CheckResult Guided(Func<Tensor, Tensor, double, Tensor> f) => GuidedNoiseExercise.Check(f, show: false);
    static CheckResult Respaced(Func<double[], int[], double[]> f) => RespacedBetasExercise.Check(f, show: false);
    static CheckResult Scale(Func<Tensor, double> f) => LatentScaleExercise.Check(f, show: false);
    static CheckResult CrossAttn(Func<Tensor, Tensor, Tensor, Tensor, Tensor> f) => CrossAttentionExercise.Check(f, show: false);

    static Tensor X(NoiseSchedule s, string term, Tensor t, Tensor like) => NoiseSchedule.Extract(s.Term(term), t, like.shape);


    // ---------------------------------------------------------------- right answers pass

    /// <summary>Each checker with the library's own implementation, and with a second, independent right answer.</summary>
    public static readonly Dictionary<string, Func<CheckResult>[]> RightAnswers = new()
    {
        ["q-step"] =
        [
            () => QStep(ForwardProcess.QStep),
            () => QStep((s, x, t, e) =>
            {
                // by hand from the float64 array, per image
                var beta = tensor(t.data<long>().Select(i => s.Betas[i]).ToArray()).reshape(-1, 1, 1, 1);
                return ((1 - beta).sqrt() * x.to(ScalarType.Float64) + beta.sqrt() * e.to(ScalarType.Float64)).to(ScalarType.Float32);
            }),
        ],
        ["q-sample"] =
        [
            () => QSample(ForwardProcess.QSample),
            () => QSample((s, x, t, e) => { var ab = s.Extract(s.AlphasCumprod, t, x.shape); return ab.sqrt() * x + (1 - ab).sqrt() * e; }),
        ],
        ["posterior-variance"] =
        [
            () => PosteriorVariance((b, ab) => new NoiseSchedule(b).PosteriorVariance),
            () => PosteriorVariance((b, ab) => b.Select((beta, t) => t == 0 ? 0 : beta * (1 - ab[t - 1]) / (1 - ab[t])).ToArray()),
        ],
        ["posterior-mean"] =
        [
            () => PosteriorMean((s, x0, xt, t) => ForwardProcess.QPosterior(s, x0, xt, t).Mean),
            () => PosteriorMean((s, x0, xt, t) =>
            {
                // through the noise: μ̃ = 1/√α_t (x_t − β_t/√(1 − ᾱ_t) ε), ε recovered from x_0 and x_t
                var eps = (xt - s.Extract(s.SqrtAlphasCumprod, t, xt.shape) * x0) / s.Extract(s.SqrtOneMinusAlphasCumprod, t, xt.shape);
                return s.Extract(s.SqrtRecipAlphas, t, xt.shape) * (xt - s.Extract(s.Betas, t, xt.shape) / s.Extract(s.SqrtOneMinusAlphasCumprod, t, xt.shape) * eps);
            }),
            // the way the notebook asks for it (the solution file): every weight from float32 terms, where 1 − ᾱ_t at
            // t = 0 keeps only a few digits
            () => PosteriorMean((s, x0, xt, t) =>
            {
                var beta = s.Extract(s.Betas, t, xt.shape); var alpha = s.Extract(s.Alphas, t, xt.shape);
                var ab = s.Extract(s.AlphasCumprod, t, xt.shape); var abPrev = s.Extract(s.AlphasCumprodPrev, t, xt.shape);
                return beta * abPrev.sqrt() / (1 - ab) * x0 + (1 - abPrev) * alpha.sqrt() / (1 - ab) * xt;
            }),
        ],
        ["sinusoidal-embedding"] =
        [
            () => Embedding((time, d) => new SinusoidalPositionEmbeddings(d).call(time)),
            () => Embedding((time, d) =>
            {
                int half = d / 2;
                var rows = time.data<long>().Select(tt => Enumerable.Range(0, d).Select(j =>
                {
                    double w = Math.Pow(10000, -(double)(j % half) / (half - 1));
                    return j < half ? Math.Sin(tt * w) : Math.Cos(tt * w);
                })).SelectMany(v => v).ToArray();
                return tensor(rows).reshape(time.shape[0], d);
            }),
        ],
        ["training-step"] =
        [
            () => Loss((model, s, x0, t, e) => DenoisingLoss.Compute(model, s, x0, t, e)),
            () => Loss((model, s, x0, t, e) =>
            {
                var xt = ForwardProcess.QSample(s, x0, t, e);
                return (e - model(xt, t)).pow(2).mean();
            }),
        ],
        ["reverse-step"] =
        [
            () => Reverse((s, xt, t, eps, z) =>
            {
                var mean = ForwardProcess.QPosterior(s, ForwardProcess.PredictStartFromNoise(s, xt, full([xt.shape[0]], t, ScalarType.Int64), eps),
                    xt, full([xt.shape[0]], t, ScalarType.Int64)).Mean;
                return t == 0 ? mean : mean + Math.Sqrt(s.Betas[t]) * z;
            }),
            () => Reverse((s, xt, t, eps, z) =>
                s.SqrtRecipAlphas[t] * (xt - s.Betas[t] / s.SqrtOneMinusAlphasCumprod[t] * eps) + (t > 0 ? Math.Sqrt(s.Betas[t]) : 0) * z),
        ],
        ["gaussian-nll"] =
        [
            () => Nll((x, m, sd) => -distributions.Normal(m, sd.reshape(-1, 1, 1, 1).expand_as(m)).log_prob(x)),
            // by hand in float64, per element: the log of the density itself
            () => Nll((x, m, sd) =>
            {
                var v = sd.to(ScalarType.Float64).reshape(-1, 1, 1, 1).pow(2);
                var density = (-(x.to(ScalarType.Float64) - m.to(ScalarType.Float64)).pow(2) / (2 * v)).exp() / (2 * Math.PI * v).sqrt();
                return -density.log();
            }),
        ],
        ["ddim-step"] =
        [
            // the library's step on a made-up schedule whose ᾱ are exactly ᾱ_prev and ᾱ_t
            () => Ddim((xt, e, ab, abPrev) => abPrev == 1
                ? new DdimSampler(new NoiseSchedule([1 - ab]), 1, clipDenoised: false).Step(e, xt, 0)
                : new DdimSampler(new NoiseSchedule([1 - abPrev, 1 - ab / abPrev]), 2, clipDenoised: false).Step(e, xt, 0)),
            // through the schedule's own recovery of x_0 and the posterior of a two-step schedule: DDIM with η = 0 is
            // x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev)·ε, written as x_t rescaled plus a noise correction
            () => Ddim((xt, e, ab, abPrev) =>
                Math.Sqrt(abPrev / ab) * xt + (Math.Sqrt(1 - abPrev) - Math.Sqrt(abPrev * (1 - ab) / ab)) * e),
        ],
        ["flow-euler-step"] =
        [
            // the library's Euler sampler on a one-step schedule from t that ends at 0, scaled: a step to t′ is the
            // fraction (t − t′)/t of the whole step to 0
            () => FlowEuler((x, f, t, tNext) =>
            {
                var toZero = new Diffusion.Flow.EulerFlowSampler(new Diffusion.Flow.FlowMatchSchedule([t])).Step(f, x, 0);
                return x + (toZero - x) * ((t - tNext) / t);
            }),
            // by hand in float64: the straight walk along the velocity
            () => FlowEuler((x, f, t, tNext) => (x.to(ScalarType.Float64) - (t - tNext) * f.to(ScalarType.Float64)).to(ScalarType.Float32)),
        ],
        ["guided-noise"] =
        [
            () => Guided(ClassifierFreeGuidance.Combine),
            () => Guided((c, u, w) => u + ClassifierFreeGuidance.ToGuidanceScale(w) * (c - u)),     // ε_∅ + s·(ε_c − ε_∅), s = 1 + w
        ],
        ["respaced-betas"] =
        [
            () => Respaced((ab, kept) => Respacing.Respace(new NoiseSchedule(AlphasCumprodToBetas(ab)), kept).Betas),
            // α′_i = ᾱ_{τ_i}/ᾱ_{τ_{i−1}} through logarithms: log ᾱ is a running sum
            () => Respaced((ab, kept) => kept.Select((k, i) => 1 - Math.Exp(Math.Log(ab[k]) - (i == 0 ? 0 : Math.Log(ab[kept[i - 1]])))).ToArray()),
        ],
        ["latent-scale"] =
        [
            () => Scale(LatentSpace.ScalingFactor),
            // by hand: the population standard deviation (divides by n, as numpy's default does) — within tolerance for
            // the checker's 16 000+ elements
            () => Scale(z =>
            {
                var v = z.to(ScalarType.Float64).data<double>().ToArray();
                double mean = v.Average();
                return 1 / Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / v.Length);
            }),
        ],
        ["cross-attention"] =
        [
            () => CrossAttn(Diffusion.TextToImage.CrossAttention.Attend),
            // by hand in float64, one prompt and one query at a time, the padding left out of the sums altogether
            () => CrossAttn((q, k, v, mask) =>
            {
                long b = q.shape[0], n = q.shape[1], d = q.shape[2], dv = v.shape[2];
                var result = zeros(b, n, dv, dtype: ScalarType.Float64);
                for (long p = 0; p < b; p++)
                {
                    var keep = mask[p].nonzero().flatten();
                    var kp = k[p].index_select(0, keep).to(ScalarType.Float64);
                    var vp = v[p].index_select(0, keep).to(ScalarType.Float64);
                    for (long i = 0; i < n; i++)
                    {
                        var s = kp.matmul(q[p, i].to(ScalarType.Float64)) / Math.Sqrt(d);   // q_i · k_j / √d
                        var e = (s - s.max()).exp();
                        result[p, i] = (e / e.sum()).matmul(vp);                             // Σ_j softmax_j v_j
                    }
                }
                return result;
            }),
        ],
    };

    /// <summary>β_t = 1 − ᾱ_t/ᾱ_{t−1}: the betas back from a cumulative product.</summary>
    static double[] AlphasCumprodToBetas(double[] ab) => ab.Select((a, t) => 1 - a / (t == 0 ? 1 : ab[t - 1])).ToArray();

    public static TheoryData<string> Exercises() => new(RightAnswers.Keys);

    [Theory]
    [MemberData(nameof(Exercises))]
    public void RightAnswersPass(string exercise)
    {
        foreach (var check in RightAnswers[exercise])
        {
            var r = check();
            Assert.True(r.Passed, r.Message);
            Assert.Equal(exercise, r.Exercise);
            Assert.Null(r.MistakeId);
            Assert.Contains("passed", r.Message);
        }
    }

    // ---------------------------------------------------------------- not attempted, exceptions, shapes

    /// <summary>Each checker called with a learner function built by <c>make</c> from a behaviour (s, x, t, …) ↦ result.</summary>
    static readonly Dictionary<string, Func<Func<Tensor, Tensor>, CheckResult>> WithBehaviour = new()
    {
        // The behaviour gets the main input tensor (x_{t−1}, x_0, x_t, time, …) and returns the result.
        ["q-step"] = b => QStep((s, x, t, e) => b(x)),
        ["q-sample"] = b => QSample((s, x, t, e) => b(x)),
        ["posterior-variance"] = b => PosteriorVariance((beta, ab) => b(tensor(beta))?.to(ScalarType.Float64).data<double>().ToArray()!),
        ["posterior-mean"] = b => PosteriorMean((s, x0, xt, t) => b(xt)),
        ["sinusoidal-embedding"] = b => Embedding((time, d) => b(time)),
        ["training-step"] = b => Loss((m, s, x0, t, e) => b(x0)),
        ["reverse-step"] = b => Reverse((s, xt, t, eps, z) => b(xt)),
        ["gaussian-nll"] = b => Nll((x, m, sd) => b(x)),
        ["ddim-step"] = b => Ddim((xt, e, ab, abPrev) => b(xt)),
        ["flow-euler-step"] = b => FlowEuler((x, f, t, tNext) => b(x)),
        ["guided-noise"] = b => Guided((c, u, w) => b(c)),
        // the main input is τ (as doubles), the length of the answer
        ["respaced-betas"] = b => Respaced((ab, kept) => b(tensor(kept.Select(k => (double)k).ToArray()))?.to(ScalarType.Float64).data<double>().ToArray()!),
        // the answer is a double: no wrong shape and no null possible (see TensorExercises)
        ["latent-scale"] = b => Scale(z => b(z).to(ScalarType.Float64).mean().item<double>()),
        ["cross-attention"] = b => CrossAttn((q, k, v, mask) => b(q)),
    };

    /// <summary>The exercises whose answer is a tensor or an array (it can have a wrong shape or be null).</summary>
    public static TheoryData<string> TensorExercises() => new(RightAnswers.Keys.Where(e => e != "latent-scale"));

    [Theory]
    [MemberData(nameof(Exercises))]
    public void UnattemptedStubSaysNotAttempted(string exercise)
    {
        var r = WithBehaviour[exercise](_ => throw new NotImplementedException());
        Assert.Equal(CheckOutcome.NotAttempted, r.Outcome);
        Assert.False(r.Passed);
        Assert.Contains("not attempted", r.Message);
        Assert.Contains("rest of the notebook uses the library", r.Message);
    }

    [Theory]
    [MemberData(nameof(Exercises))]
    public void ThrowingFunctionGetsTheExceptionWithoutStackTrace(string exercise)
    {
        var r = WithBehaviour[exercise](_ => throw new InvalidOperationException("my own mistake"));
        Assert.Equal(CheckOutcome.Failed, r.Outcome);
        Assert.Equal(FailureIds.Threw, r.MistakeId);
        Assert.Contains("InvalidOperationException: my own mistake", r.Message);
        Assert.Contains("case 1 of", r.FailingCase);
        AssertFriendly(r);
    }

    [Theory]
    [MemberData(nameof(TensorExercises))]
    public void WrongShapeIsNamed(string exercise)
    {
        // A result with an extra dimension of 2: no exercise expects that.
        var r = WithBehaviour[exercise](x => stack([x.to(ScalarType.Float32), x.to(ScalarType.Float32)]));
        Assert.Equal(CheckOutcome.Failed, r.Outcome);
        Assert.Equal(FailureIds.WrongShape, r.MistakeId);
        Assert.Contains("Expected a result of shape [", r.Message);
        Assert.Contains(", got [", r.Message);
        AssertFriendly(r);
    }

    [Theory]
    [MemberData(nameof(TensorExercises))]
    public void NullAndNaNAreNamed(string exercise)
    {
        var r = WithBehaviour[exercise](_ => null!);
        Assert.Equal(FailureIds.ReturnedNull, r.MistakeId);
        AssertFriendly(r);
        // NaN in the right shape (the shape of the library's answer, taken from a run of the library itself)
        var nan = WithBehaviour[exercise](x => full_like(RightShape(exercise, x), double.NaN, ScalarType.Float32));
        Assert.Equal(FailureIds.NotFinite, nan.MistakeId);
        Assert.Contains("NaN", nan.Message);
        AssertFriendly(nan);
    }

    /// <summary>A tensor of the result's shape for the given main input (what each exercise returns).</summary>
    static Tensor RightShape(string exercise, Tensor x) => exercise switch
    {
        "posterior-variance" => x,
        "sinusoidal-embedding" => zeros(x.shape[0], 28),       // wrong for d ≠ 28, but the first case has d = 28
        "training-step" => zeros([]),
        "cross-attention" => zeros(x.shape[0], x.shape[1], 6),  // [B, N, d_v]: the first case has d_v = 6
        _ => x,
    };

    [Fact]
    public void TorchErrorsLoseTheirCppBacktraceAndGetAShapeHint()
    {
        // √ᾱ_t as a [B] vector times [B, 1, 4, 4] images: libtorch refuses to broadcast [3] against the last dimension 4.
        var r = QSample((s, x0, t, e) => tensor(s.SqrtAlphasCumprod).to(ScalarType.Float32).index_select(0, t) * x0 + e);
        Assert.Equal(FailureIds.Threw, r.MistakeId);
        Assert.Contains("must match the size", r.Message);
        Assert.Contains("s.Extract(s.SqrtAlphasCumprod, t, x.shape)", r.Hint);
        AssertFriendly(r);
    }

    /// <summary>
    /// Every <c>s.Extract(…)</c> a hint, an exercise or a notebook quotes must compile: its first argument is one of the
    /// schedule's double[] arrays (Extract takes the array or a tensor, never a name).
    /// </summary>
    [Fact]
    public void EveryQuotedExtractCallNamesAScheduleArray()
    {
        var arrays = typeof(NoiseSchedule).GetProperties().Where(p => p.PropertyType == typeof(double[])).Select(p => p.Name).ToHashSet();
        var sources = Directory.GetFiles(Path.Combine(TestSetup.RepoRoot, "lib", "Diffusion.Notebooks"), "*.cs*", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}"))
            .Concat(Directory.GetFiles(Path.Combine(TestSetup.RepoRoot, "notebooks"), "*.ipynb"))
            .Append(Path.Combine(TestSetup.RepoRoot, "notebooks", "TEACHERS.md"));
        int seen = 0;
        foreach (var file in sources)
            foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(File.ReadAllText(file), @"\bs\.Extract\(([^,()]+),"))
            {
                seen++;
                var arg = m.Groups[1].Value.Trim();
                Assert.True(arg.StartsWith("s.", StringComparison.Ordinal) && arrays.Contains(arg[2..]),
                    $"{Path.GetFileName(file)} quotes s.Extract({arg}, …): pass one of the schedule's arrays, e.g. s.Extract(s.Betas, t, x.shape)");
            }
        Assert.True(seen >= 5, $"only {seen} quoted Extract calls found: is the pattern still right?");
    }

    [Fact]
    public void IndexPastTheEndGetsAnOffByOneHint()
    {
        // s.Betas[t + 1] with plain arrays: IndexOutOfRangeException at t = T − 1 (the third case), fine before.
        var r = Reverse((s, xt, t, eps, z) =>
        {
            double a = s.Alphas[t + 1], ab = s.AlphasCumprod[t + 1], b = s.Betas[t + 1];
            return (xt - b / Math.Sqrt(1 - ab) * eps) / Math.Sqrt(a) + (t > 0 ? Math.Sqrt(b) : 0) * z;
        });
        // It matches the known mistake on every case where it ran, and mentions where it threw.
        Assert.Equal("off-by-one-next", r.MistakeId);
        Assert.Contains("IndexOutOfRangeException", r.Message);
        AssertFriendly(r);
        var threw = QStep((s, x, t, e) => throw new IndexOutOfRangeException("Index was outside the bounds of the array."));
        Assert.Contains("off-by-one", threw.Hint);
    }

    [Fact]
    public void HomeMadeNoiseIsCaught()
    {
        var r = QSample((s, x0, t, e) => s.Extract(s.SqrtAlphasCumprod, t, x0.shape) * x0 + s.Extract(s.SqrtOneMinusAlphasCumprod, t, x0.shape) * randn_like(x0));
        Assert.Equal(FailureIds.NotDeterministic, r.MistakeId);
        Assert.Contains("random numbers", r.Hint);
    }

    [Fact]
    public void UnknownWrongAnswerGetsTheNumbersAndTheGenericHint()
    {
        var r = QStep((s, x, t, e) => 0.5f * x + 0.25f * e);
        Assert.Equal(CheckOutcome.Failed, r.Outcome);
        Assert.Null(r.MistakeId);
        Assert.Contains("The first wrong number is at image 0 (t = 0", r.Message);
        Assert.Contains("expected", r.Message);
        Assert.Contains("Largest difference", r.Message);
        Assert.Contains("√(1 − β_t)·x_{t−1} + √β_t·ε", r.Hint);
        AssertFriendly(r);
    }

    [Fact]
    public void AnUnfinishedBranchIsAFailureNotANonAttempt()
    {
        // Works for the grey images, not yet for the RGB batch of the last case.
        var r = QStep((s, x, t, e) => x.shape[1] == 3 ? throw new NotImplementedException() : ForwardProcess.QStep(s, x, t, e));
        Assert.Equal(CheckOutcome.Failed, r.Outcome);
        Assert.Equal(FailureIds.Threw, r.MistakeId);
        Assert.Contains("still a TODO", r.Message);
    }

    [Fact]
    public void MutatingTheInputsDoesNotFoolTheCheck()
    {
        // Right answer, then the learner scribbles over its inputs: the library's answer is computed on fresh copies.
        var r = QSample((s, x0, t, e) => { var y = ForwardProcess.QSample(s, x0, t, e); x0.zero_(); e.zero_(); return y; });
        Assert.True(r.Passed, r.Message);
    }

    [Fact]
    public void ChecksLeaveTheGlobalRandomStateAlone()
    {
        manual_seed(5);
        var before = randn(4);
        manual_seed(5);
        Assert.True(Loss((m, s, x0, t, e) => DenoisingLoss.Compute(m, s, x0, t, e)).Passed);
        Assert.True(Reverse((s, xt, t, eps, z) => s.SqrtRecipAlphas[t] * (xt - s.Betas[t] / s.SqrtOneMinusAlphasCumprod[t] * eps) + (t > 0 ? Math.Sqrt(s.Betas[t]) : 0) * z).Passed);
        var after = randn(4);
        Assert.True(before.eq(after).all().item<bool>(), "a check consumed numbers from the global generator");
    }

    [Fact]
    public void VerdictIsShownAsHtmlWithMarkers()
    {
        var shown = new List<(string Mime, string Value)>();
        var saved = Show.Fallback;
        Show.Fallback = (mime, value) => shown.Add((mime, value));
        try
        {
            QStepExercise.Check(ForwardProcess.QStep);
            QStepExercise.Check((s, x, t, e) => throw new NotImplementedException());
            QStepExercise.Check((s, x, t, e) => x + s.Extract(s.Betas, t, x.shape).sqrt() * e);
        }
        finally { Show.Fallback = saved; }
        Assert.Equal(3, shown.Count);
        Assert.All(shown, s => Assert.Equal("text/html", s.Mime));
        Assert.Contains("data-exercise=\"q-step\" data-outcome=\"passed\"", shown[0].Value);
        Assert.Contains("data-outcome=\"not-attempted\"", shown[1].Value);
        Assert.Contains("data-outcome=\"failed\" data-mistake=\"no-shrink\"", shown[2].Value);
        Assert.Contains("<b>Hint:</b>", shown[2].Value);
        Assert.DoesNotContain("<script", shown[2].Value);
    }

    // ---------------------------------------------------------------- known mistakes, written independently here

    static Tensor Beta(NoiseSchedule s, Tensor t, Tensor x) => s.Extract(s.Betas, t, x.shape);

    static readonly Dictionary<string, QFn> QStepMistakes = new()
    {
        ["alpha-bar"] = (s, x, t, e) => s.Extract(s.SqrtAlphasCumprod, t, x.shape) * x + s.Extract(s.SqrtOneMinusAlphasCumprod, t, x.shape) * e,
        ["variance-not-std"] = (s, x, t, e) => (1 - Beta(s, t, x)) * x + Beta(s, t, x) * e,
        ["missing-sqrt-noise"] = (s, x, t, e) => (1 - Beta(s, t, x)).sqrt() * x + Beta(s, t, x) * e,
        ["missing-sqrt-signal"] = (s, x, t, e) => (1 - Beta(s, t, x)) * x + Beta(s, t, x).sqrt() * e,
        ["no-shrink"] = (s, x, t, e) => x + Beta(s, t, x).sqrt() * e,
        ["swapped"] = (s, x, t, e) => Beta(s, t, x).sqrt() * x + (1 - Beta(s, t, x)).sqrt() * e,
        ["wrong-sign"] = (s, x, t, e) => s.Extract(s.Alphas, t, x.shape).sqrt() * x - Beta(s, t, x).sqrt() * e,
        // t − 1 with a tensor index: libtorch refuses index −1 at t = 0, the other cases give β_{t−1}
        ["off-by-one-prev"] = (s, x, t, e) => (1 - Beta(s, t - 1, x)).sqrt() * x + Beta(s, t - 1, x).sqrt() * e,
        ["off-by-one-next"] = (s, x, t, e) => (1 - Beta(s, t + 1, x)).sqrt() * x + Beta(s, t + 1, x).sqrt() * e,
        ["same-t"] = (s, x, t, e) => { double b = s.Betas[t[0].item<long>()]; return Math.Sqrt(1 - b) * x + Math.Sqrt(b) * e; },
    };

    static readonly Dictionary<string, QFn> QSampleMistakes = new()
    {
        ["missing-sqrt"] = (s, x, t, e) => s.Extract(s.AlphasCumprod, t, x.shape) * x + (1 - s.Extract(s.AlphasCumprod, t, x.shape)) * e,
        ["missing-sqrt-noise"] = (s, x, t, e) => s.Extract(s.SqrtAlphasCumprod, t, x.shape) * x + (1 - s.Extract(s.AlphasCumprod, t, x.shape)) * e,
        ["missing-sqrt-signal"] = (s, x, t, e) => s.Extract(s.AlphasCumprod, t, x.shape) * x + s.Extract(s.SqrtOneMinusAlphasCumprod, t, x.shape) * e,
        ["one-minus-sqrt"] = (s, x, t, e) => s.Extract(s.SqrtAlphasCumprod, t, x.shape) * x + (1 - s.Extract(s.SqrtAlphasCumprod, t, x.shape)) * e,
        ["one-step"] = (s, x, t, e) => s.Extract(s.Alphas, t, x.shape).sqrt() * x + (1 - s.Extract(s.Alphas, t, x.shape)).sqrt() * e,
        ["off-by-one-prev"] = (s, x, t, e) => s.Extract(s.AlphasCumprodPrev, t, x.shape).sqrt() * x + (1 - s.Extract(s.AlphasCumprodPrev, t, x.shape)).sqrt() * e,
        ["off-by-one-next"] = (s, x, t, e) => X(s, "SqrtAlphasCumprod", t + 1, x) * x + X(s, "SqrtOneMinusAlphasCumprod", t + 1, x) * e,
        ["swapped"] = (s, x, t, e) => s.Extract(s.SqrtOneMinusAlphasCumprod, t, x.shape) * x + s.Extract(s.SqrtAlphasCumprod, t, x.shape) * e,
        ["wrong-sign"] = (s, x, t, e) => s.Extract(s.SqrtAlphasCumprod, t, x.shape) * x - s.Extract(s.SqrtOneMinusAlphasCumprod, t, x.shape) * e,
        ["same-t"] = (s, x, t, e) =>
        {
            double ab = s.AlphasCumprod[t[0].item<long>()];
            return Math.Sqrt(ab) * x + Math.Sqrt(1 - ab) * e;
        },
    };

    static double[] EachT(double[] b, Func<int, double> f) => Enumerable.Range(0, b.Length).Select(f).ToArray();

    static readonly Dictionary<string, Func<double[], double[], double[]>[]> PosteriorVarianceMistakes = new()
    {
        // β instead of β̃ — returned directly, or by using ᾱ_t where ᾱ_{t−1} belongs (it cancels)
        ["beta"] = [(b, ab) => b, (b, ab) => EachT(b, t => b[t] * (1 - ab[t]) / (1 - ab[t]))],
        ["first-step"] = [(b, ab) => EachT(b, t => b[t] * (1 - ab[Math.Max(t - 1, 0)]) / (1 - ab[t]))],
        ["first-step-zero"] = [(b, ab) => EachT(b, t => b[t] * (1 - (t == 0 ? 0 : ab[t - 1])) / (1 - ab[t]))],
        ["inverted"] = [(b, ab) => EachT(b, t => b[t] * (1 - ab[t]) / (1 - (t == 0 ? 1 : ab[t - 1])))],
        ["alpha-not-alpha-bar"] = [(b, ab) => EachT(b, t => b[t] * (1 - (t == 0 ? 1 : 1 - b[t - 1])) / (1 - (1 - b[t])))],
        ["missing-beta"] = [(b, ab) => EachT(b, t => (1 - (t == 0 ? 1 : ab[t - 1])) / (1 - ab[t]))],
        ["skipped-first"] = [(b, ab) => Enumerable.Range(1, b.Length - 1).Select(t => b[t] * (1 - ab[t - 1]) / (1 - ab[t])).ToArray()],
    };

    static readonly Dictionary<string, Func<NoiseSchedule, Tensor, Tensor, Tensor, Tensor>> PosteriorMeanMistakes = new()
    {
        ["swapped"] = (s, x0, xt, t) => s.Extract(s.PosteriorMeanCoef1, t, xt.shape) * xt + s.Extract(s.PosteriorMeanCoef2, t, xt.shape) * x0,
        ["alpha-bar-t"] = (s, x0, xt, t) => Mean(s, x0, xt, t, alphaBarPrev: "AlphasCumprod"),
        ["missing-sqrt-alpha-bar-prev"] = (s, x0, xt, t) => Mean(s, x0, xt, t, sqrtAbPrev: false),
        ["missing-sqrt-alpha"] = (s, x0, xt, t) => Mean(s, x0, xt, t, sqrtAlpha: false),
        ["alpha-bar-for-alpha"] = (s, x0, xt, t) => Mean(s, x0, xt, t, alpha: "AlphasCumprod"),
        ["beta-tilde-for-beta"] = (s, x0, xt, t) => Mean(s, x0, xt, t, beta: "PosteriorVariance"),
        ["off-by-one-prev"] = (s, x0, xt, t) => Mean(s, x0, xt, t - 1),
        ["off-by-one-next"] = (s, x0, xt, t) => Mean(s, x0, xt, t + 1),
        ["same-t"] = (s, x0, xt, t) => Mean(s, x0, xt, t[0].expand(t.shape[0]).clone()),
    };

    static Tensor Mean(NoiseSchedule s, Tensor x0, Tensor xt, Tensor t, string beta = "Betas", string alpha = "Alphas",
        string alphaBarPrev = "AlphasCumprodPrev", bool sqrtAbPrev = true, bool sqrtAlpha = true)
    {
        var b = X(s, beta, t, xt); var a = X(s, alpha, t, xt); var ab = s.Extract(s.AlphasCumprod, t, xt.shape); var abp = X(s, alphaBarPrev, t, xt);
        return b * (sqrtAbPrev ? abp.sqrt() : abp) / (1 - ab) * x0 + (1 - abp) * (sqrtAlpha ? a.sqrt() : a) / (1 - ab) * xt;
    }

    static readonly Dictionary<string, Func<Tensor, int, Tensor>> EmbeddingMistakes = new()
    {
        ["sin-cos-swapped"] = (time, d) => { var a = Args(time, d); return cat([a.cos(), a.sin()], -1); },
        ["interleaved"] = (time, d) => { var a = Args(time, d); return stack([a.sin(), a.cos()], 2).flatten(1); },
        ["divide-by-half"] = (time, d) => { var a = Args(time, d, Math.Log(10000) / (d / 2)); return cat([a.sin(), a.cos()], -1); },
        ["positive-exponent"] = (time, d) => { var a = Args(time, d, -Math.Log(10000) / (d / 2 - 1)); return cat([a.sin(), a.cos()], -1); },
        ["log10"] = (time, d) => { var a = Args(time, d, Math.Log10(10000) / (d / 2 - 1)); return cat([a.sin(), a.cos()], -1); },
        ["full-dim-frequencies"] = (time, d) => { var a = Args(time, 2 * d, Math.Log(10000) / (d - 1)); return cat([a.sin(), a.cos()], -1); },
        ["cat-dim0"] = (time, d) => { var a = Args(time, d); return cat([a.sin(), a.cos()], 0); },
    };

    /// <summary>t·ω_i for i = 0 … d/2 − 1 with ω_i = exp(−i·step), as [B, d/2].</summary>
    static Tensor Args(Tensor time, int d, double? step = null)
    {
        int half = d / 2;
        var w = exp(arange(half, dtype: ScalarType.Float32) * -(step ?? Math.Log(10000) / (half - 1)));
        return time.to(ScalarType.Float32).unsqueeze(1) * w.unsqueeze(0);
    }

    static Tensor XtOf(NoiseSchedule s, Tensor x0, Tensor t, Tensor e) =>
        s.Extract(s.SqrtAlphasCumprod, t, x0.shape) * x0 + s.Extract(s.SqrtOneMinusAlphasCumprod, t, x0.shape) * e;

    static readonly Dictionary<string, Func<Func<Tensor, Tensor, Tensor>, NoiseSchedule, Tensor, Tensor, Tensor, Tensor>> LossMistakes = new()
    {
        ["target-x0"] = (m, s, x0, t, e) => F.mse_loss(m(XtOf(s, x0, t, e), t), x0),
        ["model-on-x0"] = (m, s, x0, t, e) => F.mse_loss(m(x0, t), e),
        ["xt-missing-sqrt"] = (m, s, x0, t, e) =>
            F.mse_loss(m(s.Extract(s.AlphasCumprod, t, x0.shape) * x0 + (1 - s.Extract(s.AlphasCumprod, t, x0.shape)) * e, t), e),
        ["xt-off-by-one"] = (m, s, x0, t, e) =>
            F.mse_loss(m(s.Extract(s.AlphasCumprodPrev, t, x0.shape).sqrt() * x0 + (1 - s.Extract(s.AlphasCumprodPrev, t, x0.shape)).sqrt() * e, t), e),
        ["time-plus-one"] = (m, s, x0, t, e) => F.mse_loss(m(XtOf(s, x0, t, e), t + 1), e),
        ["sum-not-mean"] = (m, s, x0, t, e) => (e - m(XtOf(s, x0, t, e), t)).pow(2).sum(),
        ["mean-per-image-sum"] = (m, s, x0, t, e) => (e - m(XtOf(s, x0, t, e), t)).pow(2).flatten(1).sum(1).mean(),
        ["l1"] = (m, s, x0, t, e) => F.l1_loss(m(XtOf(s, x0, t, e), t), e),
        ["no-square"] = (m, s, x0, t, e) => (e - m(XtOf(s, x0, t, e), t)).mean(),
        ["rmse"] = (m, s, x0, t, e) => F.mse_loss(m(XtOf(s, x0, t, e), t), e).sqrt(),
        ["no-gradient"] = (m, s, x0, t, e) => tensor(F.mse_loss(m(XtOf(s, x0, t, e), t), e).item<float>()),
    };

    delegate Tensor ReverseFn(NoiseSchedule s, Tensor xt, int t, Tensor eps, Tensor z);

    static Tensor Rev(NoiseSchedule s, Tensor xt, int t, Tensor eps, Tensor z, double? sigma = null, bool noiseAtZero = false,
        int lastNoisy = 1, double? front = null, double? epsWeight = null, int epsSign = -1, int zSign = 1, bool onlyX = false, int k = -1)
    {
        k = k < 0 ? t : k;                                    // the index the coefficients come from
        double a = s.Alphas[k], ab = s.AlphasCumprod[k], b = s.Betas[k];
        double f = front ?? 1 / Math.Sqrt(a), w = epsWeight ?? b / Math.Sqrt(1 - ab);
        var mean = onlyX ? f * xt + epsSign * w * eps : f * (xt + epsSign * w * eps);
        bool noisy = noiseAtZero || t >= lastNoisy;
        return noisy ? mean + zSign * (sigma ?? Math.Sqrt(b)) * z : mean;
    }

    static readonly Dictionary<string, ReverseFn> ReverseMistakes = new()
    {
        ["beta-tilde"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, sigma: Math.Sqrt(s.PosteriorVariance[t])),
        ["noise-at-last-step"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, noiseAtZero: true),
        ["paper-condition"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, lastNoisy: 2),
        ["variance-not-std"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, sigma: s.Betas[t]),
        ["missing-sqrt-alpha"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, front: 1 / s.Alphas[t]),
        ["alpha-bar-for-alpha"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, front: 1 / Math.Sqrt(s.AlphasCumprod[t])),
        ["eps-coef-missing-sqrt"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, epsWeight: s.Betas[t] / (1 - s.AlphasCumprod[t])),
        ["eps-coef-alpha-bar"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, epsWeight: (1 - s.AlphasCumprod[t]) / Math.Sqrt(1 - s.AlphasCumprod[t])),
        ["wrong-sign-eps"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, epsSign: 1),
        ["wrong-sign-noise"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, zSign: -1),
        ["bracket"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, onlyX: true),
        ["no-recip"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, front: 1),
        // s.Alphas[t − 1]: IndexOutOfRangeException at t = 0, β_{t−1} etc. elsewhere
        ["off-by-one-prev"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, k: t - 1 < 0 ? throw new IndexOutOfRangeException() : t - 1),
        ["off-by-one-next"] = (s, xt, t, eps, z) => Rev(s, xt, t, eps, z, k: t + 1 >= s.Timesteps ? throw new IndexOutOfRangeException() : t + 1),
    };

    static Tensor Sd(Tensor sd) => sd.reshape(-1, 1, 1, 1);

    static readonly Dictionary<string, Func<Tensor, Tensor, Tensor, Tensor>> NllMistakes = new()
    {
        ["log-likelihood"] = (x, m, sd) => distributions.Normal(m, Sd(sd).expand_as(m)).log_prob(x),
        ["no-reshape"] = (x, m, sd) => 0.5 * Math.Log(2 * Math.PI) + sd.log() + (x - m).pow(2) / (2 * sd * sd),
        ["missing-constant"] = (x, m, sd) => -distributions.Normal(m, Sd(sd).expand_as(m)).log_prob(x) - 0.5 * Math.Log(2 * Math.PI),
        ["missing-log-sigma"] = (x, m, sd) => -distributions.Normal(m, Sd(sd).expand_as(m)).log_prob(x) - Sd(sd).log(),
        ["missing-half"] = (x, m, sd) => 0.5 * Math.Log(2 * Math.PI) + Sd(sd).log() + ((x - m) / Sd(sd)).pow(2),
        // σ passed where the variance belongs: N(μ, σ) instead of N(μ, σ²)
        ["std-for-variance"] = (x, m, sd) => -distributions.Normal(m, Sd(sd).sqrt().expand_as(m)).log_prob(x),
    };

    static readonly Dictionary<string, Func<Tensor, Tensor, double, double, Tensor>> DdimMistakes = new()
    {
        ["returned-x0"] = (xt, e, ab, abPrev) => ForwardProcessStart(xt, e, ab),
        ["missing-sqrt"] = (xt, e, ab, abPrev) => abPrev * ((xt - (1 - ab) * e) / ab) + (1 - abPrev) * e,
        ["swapped-alphas"] = (xt, e, ab, abPrev) => Math.Sqrt(ab) * ForwardProcessStart(xt, e, abPrev) + Math.Sqrt(1 - ab) * e,
        ["no-noise-term"] = (xt, e, ab, abPrev) => Math.Sqrt(abPrev) * ForwardProcessStart(xt, e, ab),
        ["x0-without-noise"] = (xt, e, ab, abPrev) => Math.Sqrt(abPrev / ab) * xt + Math.Sqrt(1 - abPrev) * e,
    };

    static readonly Dictionary<string, Func<Tensor, Tensor, double, double, Tensor>> FlowEulerMistakes = new()
    {
        ["wrong-direction"] = (x, f, t, tNext) => x + (t - tNext) * f,
        ["no-step-size"] = (x, f, t, tNext) => x - f,
        ["returned-start"] = (x, f, t, tNext) => x - t * f,
        ["returned-velocity-only"] = (x, f, t, tNext) => (tNext - t) * f,
        ["returned-noise"] = (x, f, t, tNext) => x + (1 - t) * f,
    };

    /// <summary>x̂_0 = (x_t − √(1 − ᾱ)·ε)/√ᾱ.</summary>
    static Tensor ForwardProcessStart(Tensor xt, Tensor e, double ab) => (xt - Math.Sqrt(1 - ab) * e) / Math.Sqrt(ab);

    static readonly Dictionary<string, Func<Tensor, Tensor, double, Tensor>> GuidedMistakes = new()
    {
        ["scale-convention"] = (c, u, w) => (1 - w) * u + w * c,
        ["swapped"] = (c, u, w) => ClassifierFreeGuidance.Combine(u, c, w),
        ["plus"] = (c, u, w) => (1 + w) * c + w * u,
        ["missing-one"] = (c, u, w) => w * (c - u),
        ["difference-only"] = (c, u, w) => c - u,
    };

    static readonly Dictionary<string, Func<double[], int[], double[]>> RespacedMistakes = new()
    {
        // 1 − ᾱ_τ/ᾱ_{τ−1}: the old schedule's own β at each kept step
        ["original-betas"] = (ab, kept) => kept.Select(k => AlphasCumprodToBetas(ab)[k]).ToArray(),
        ["ratio"] = (ab, kept) => kept.Select((k, i) => ab[k] / (i == 0 ? 1 : ab[kept[i - 1]])).ToArray(),
        ["inverted"] = (ab, kept) => kept.Select((k, i) => 1 - (i == 0 ? 1 : ab[kept[i - 1]]) / ab[k]).ToArray(),
        ["difference"] = (ab, kept) => kept.Select((k, i) => (i == 0 ? 1 : ab[kept[i - 1]]) - ab[k]).ToArray(),
        ["first-from-zero"] = (ab, kept) => kept.Select((k, i) => i == 0 ? AlphasCumprodToBetas(ab)[k] : 1 - ab[k] / ab[kept[i - 1]]).ToArray(),
    };

    /// <summary>Wrong cross-attentions, written independently of the checker's list ([B, N, M] scores).</summary>
    static readonly Dictionary<string, Func<Tensor, Tensor, Tensor, Tensor, Tensor>> CrossAttentionMistakes = new()
    {
        ["missing-scale"] = (q, k, v, m) => q.bmm(k.transpose(1, 2)).masked_fill(~m.unsqueeze(1), float.NegativeInfinity).softmax(2).bmm(v),
        ["scale-by-d"] = (q, k, v, m) => (q.bmm(k.transpose(1, 2)) / q.shape[2]).masked_fill(~m.unsqueeze(1), float.NegativeInfinity).softmax(2).bmm(v),
        ["mask-ignored"] = (q, k, v, m) => (q.bmm(k.transpose(1, 2)) / Math.Sqrt(q.shape[2])).softmax(2).bmm(v),
        ["mask-inverted"] = (q, k, v, m) => (q.bmm(k.transpose(1, 2)) / Math.Sqrt(q.shape[2])).masked_fill(m.unsqueeze(1), -1e9).softmax(2).bmm(v),
        ["mask-after-softmax"] = (q, k, v, m) => ((q.bmm(k.transpose(1, 2)) / Math.Sqrt(q.shape[2])).softmax(2) * m.unsqueeze(1)).bmm(v),
        // the softmax over the queries, padding filled with a large finite number (no NaN)
        ["softmax-wrong-axis"] = (q, k, v, m) => (q.bmm(k.transpose(1, 2)) / Math.Sqrt(q.shape[2]) - 1e9 * (~m).unsqueeze(1).to(ScalarType.Float32)).softmax(1).bmm(v),
        ["weights-not-values"] = (q, k, v, m) => (q.bmm(k.transpose(1, 2)) / Math.Sqrt(q.shape[2])).masked_fill(~m.unsqueeze(1), float.NegativeInfinity).softmax(2),
    };

    static readonly Dictionary<string, Func<Tensor, double>> ScaleMistakes = new()
    {
        ["std-not-inverse"] = z => z.to(ScalarType.Float64).std().item<double>(),
        ["variance"] = z => 1 / z.to(ScalarType.Float64).var().item<double>(),
        ["not-centred"] = z => 1 / Math.Sqrt(z.to(ScalarType.Float64).pow(2).mean().item<double>()),
        ["mean-abs"] = z => 1 / z.to(ScalarType.Float64).abs().mean().item<double>(),
        ["max-abs"] = z => 1 / z.abs().max().item<float>(),
    };

    /// <summary>Every known mistake of every exercise, with a piece of the hint it must get.</summary>
    public static TheoryData<string, string, string> Mistakes() => new()
    {
        { "q-step", "alpha-bar", "notebook 02" },
        { "q-step", "variance-not-std", "square roots" },
        { "q-step", "missing-sqrt-noise", "√β_t" },
        { "q-step", "missing-sqrt-signal", "√(1 − β_t)" },
        { "q-step", "no-shrink", "variance grows" },
        { "q-step", "swapped", "swapped" },
        { "q-step", "wrong-sign", "Add the noise" },
        { "q-step", "off-by-one-prev", "index t − 1" },
        { "q-step", "off-by-one-next", "index t + 1" },
        { "q-step", "same-t", "its own t" },
        { "q-sample", "missing-sqrt", "standard deviations" },
        { "q-sample", "missing-sqrt-noise", "√(1 − ᾱ_t), its standard deviation" },
        { "q-sample", "missing-sqrt-signal", "x_0 is scaled by √ᾱ_t" },
        { "q-sample", "one-minus-sqrt", "is not 1 − √ᾱ_t" },
        { "q-sample", "one-step", "single step" },
        { "q-sample", "off-by-one-prev", "ᾱ_{t−1}" },
        { "q-sample", "off-by-one-next", "index t + 1" },
        { "q-sample", "swapped", "swapped" },
        { "q-sample", "wrong-sign", "Add the noise" },
        { "q-sample", "same-t", "its own t" },
        { "posterior-variance", "beta", "β_t itself" },
        { "posterior-variance", "first-step", "β̃_0" },
        { "posterior-variance", "first-step-zero", "not 0" },
        { "posterior-variance", "inverted", "upside down" },
        { "posterior-variance", "alpha-not-alpha-bar", "cumulative products" },
        { "posterior-variance", "missing-beta", "Multiply by β_t" },
        { "posterior-variance", "skipped-first", "T values" },
        { "posterior-mean", "swapped", "swapped" },
        { "posterior-mean", "alpha-bar-t", "one step earlier" },
        { "posterior-mean", "missing-sqrt-alpha-bar-prev", "√ᾱ_{t−1}" },
        { "posterior-mean", "missing-sqrt-alpha", "√α_t" },
        { "posterior-mean", "alpha-bar-for-alpha", "not √ᾱ_t" },
        { "posterior-mean", "beta-tilde-for-beta", "not β̃_t" },
        { "posterior-mean", "off-by-one-prev", "index t − 1" },
        { "posterior-mean", "off-by-one-next", "index t + 1" },
        { "posterior-mean", "same-t", "its own t" },
        { "sinusoidal-embedding", "sin-cos-swapped", "cosines first" },
        { "sinusoidal-embedding", "interleaved", "not interleaved" },
        { "sinusoidal-embedding", "divide-by-half", "d/2 − 1" },
        { "sinusoidal-embedding", "positive-exponent", "negative" },
        { "sinusoidal-embedding", "log10", "natural logarithm" },
        { "sinusoidal-embedding", "full-dim-frequencies", "d/2 frequencies" },
        { "sinusoidal-embedding", "cat-dim0", "last dimension" },
        { "training-step", "target-x0", "the noise ε" },
        { "training-step", "model-on-x0", "noised image" },
        { "training-step", "xt-missing-sqrt", "square roots" },
        { "training-step", "xt-off-by-one", "AlphasCumprodPrev" },
        { "training-step", "time-plus-one", "same 0-based t" },
        { "training-step", "sum-not-mean", "Average" },
        { "training-step", "mean-per-image-sum", "pixels per image" },
        { "training-step", "l1", "squares the error" },
        { "training-step", "no-square", "cancel" },
        { "training-step", "rmse", "square root" },
        { "training-step", "no-gradient", ".item()" },
        { "reverse-step", "beta-tilde", "σ_t² = β_t" },
        { "reverse-step", "noise-at-last-step", "last step" },
        { "reverse-step", "paper-condition", "t > 0" },
        { "reverse-step", "variance-not-std", "standard deviation" },
        { "reverse-step", "missing-sqrt-alpha", "not by α_t" },
        { "reverse-step", "alpha-bar-for-alpha", "not 1/√ᾱ_t" },
        { "reverse-step", "eps-coef-missing-sqrt", "square root in the denominator" },
        { "reverse-step", "eps-coef-alpha-bar", "not 1 − ᾱ_t" },
        { "reverse-step", "wrong-sign-eps", "Subtract" },
        { "reverse-step", "wrong-sign-noise", "Add σ_t·z" },
        { "reverse-step", "bracket", "whole bracket" },
        { "reverse-step", "no-recip", "1/√α_t" },
        { "reverse-step", "off-by-one-prev", "index t − 1" },
        { "reverse-step", "off-by-one-next", "index t + 1" },
        { "gaussian-nll", "log-likelihood", "NEGATIVE" },
        { "gaussian-nll", "no-reshape", "[B, 1, 1, 1]" },
        { "gaussian-nll", "missing-constant", "½·log(2π)" },
        { "gaussian-nll", "missing-log-sigma", "log σ" },
        { "gaussian-nll", "missing-half", "2σ²" },
        { "gaussian-nll", "std-for-variance", "standard deviation" },
        { "ddim-step", "returned-x0", "x̂_0" },
        { "ddim-step", "missing-sqrt", "square roots" },
        { "ddim-step", "swapped-alphas", "swapped" },
        { "ddim-step", "no-noise-term", "noiseless" },
        { "ddim-step", "x0-without-noise", "subtract the noise" },
        { "flow-euler-step", "wrong-direction", "negative" },
        { "flow-euler-step", "no-step-size", "length of the step" },
        { "flow-euler-step", "returned-start", "not by the time t" },
        { "flow-euler-step", "returned-velocity-only", "not the change" },
        { "flow-euler-step", "returned-noise", "noise end" },
        { "guided-noise", "scale-convention", "s = 1 + w" },
        { "guided-noise", "swapped", "swapped" },
        { "guided-noise", "plus", "Subtract" },
        { "guided-noise", "missing-one", "1 + w, not w" },
        { "guided-noise", "difference-only", "not returned alone" },
        { "respaced-betas", "original-betas", "KEPT" },
        { "respaced-betas", "ratio", "α′_i" },
        { "respaced-betas", "inverted", "upside down" },
        { "respaced-betas", "difference", "multiply" },
        { "respaced-betas", "first-from-zero", "τ_0 is not 0" },
        { "latent-scale", "std-not-inverse", "1 / std(z)" },
        { "latent-scale", "variance", "square root" },
        { "latent-scale", "not-centred", "mean" },
        { "latent-scale", "mean-abs", "mean|z|" },
        { "latent-scale", "max-abs", "[−1, 1]" },
        { "cross-attention", "missing-scale", "1/√d" },
        { "cross-attention", "scale-by-d", "divided the scores by d" },
        { "cross-attention", "mask-ignored", "apply the mask before the softmax" },
        { "cross-attention", "mask-inverted", "FALSE" },
        { "cross-attention", "mask-after-softmax", "sum to 1" },
        { "cross-attention", "softmax-wrong-axis", "softmax(-1)" },
        { "cross-attention", "weights-not-values", "matmul(v)" },
    };

    [Theory]
    [MemberData(nameof(Mistakes))]
    public void KnownMistakeIsRejectedWithItsHint(string exercise, string mistake, string hintFragment)
    {
        var results = exercise switch
        {
            "q-step" => [QStep(QStepMistakes[mistake])],
            "q-sample" => [QSample(QSampleMistakes[mistake])],
            "posterior-variance" => PosteriorVarianceMistakes[mistake].Select(PosteriorVariance).ToArray(),
            "posterior-mean" => [PosteriorMean(PosteriorMeanMistakes[mistake])],
            "sinusoidal-embedding" => [Embedding(EmbeddingMistakes[mistake])],
            "training-step" => [Loss(LossMistakes[mistake])],
            "reverse-step" => [Reverse((s, xt, t, eps, z) => ReverseMistakes[mistake](s, xt, t, eps, z))],
            "gaussian-nll" => [Nll(NllMistakes[mistake])],
            "ddim-step" => [Ddim(DdimMistakes[mistake])],
            "flow-euler-step" => [FlowEuler(FlowEulerMistakes[mistake])],
            "guided-noise" => [Guided(GuidedMistakes[mistake])],
            "respaced-betas" => [Respaced(RespacedMistakes[mistake])],
            "latent-scale" => [Scale(ScaleMistakes[mistake])],
            "cross-attention" => [CrossAttn(CrossAttentionMistakes[mistake])],
            _ => throw new ArgumentException(exercise),
        };
        foreach (var r in results)
        {
            Assert.Equal(CheckOutcome.Failed, r.Outcome);
            Assert.True(mistake == r.MistakeId, $"expected mistake {mistake}, got {r.MistakeId ?? "none"}:\n{r.Message}");
            Assert.Contains(hintFragment, r.Hint);
            Assert.Contains(r.Hint!, r.Message);
            AssertFriendly(r);
        }
    }

    [Fact]
    public void EveryTestedMistakeExistsAndEveryExerciseHasSome()
    {
        var tested = Mistakes().Select(row => ((string)row[0], (string)row[1])).ToHashSet();
        Assert.Equal(tested.Count, Mistakes().Count());                     // no duplicates
        foreach (var exercise in RightAnswers.Keys)
            Assert.True(tested.Count(m => m.Item1 == exercise) >= 5, $"{exercise}: fewer than 5 known mistakes tested");
    }

    /// <summary>A verdict a learner can read: a message, a hint, no stack trace, no libtorch backtrace.</summary>
    static void AssertFriendly(CheckResult r)
    {
        Assert.False(string.IsNullOrWhiteSpace(r.Message));
        Assert.False(string.IsNullOrWhiteSpace(r.Hint), "no hint:\n" + r.Message);
        Assert.DoesNotContain("   at ", r.Message);
        Assert.DoesNotContain("Exception raised from", r.Message);
        Assert.DoesNotContain("frame #", r.Message);
        Assert.DoesNotContain(FailureIds.CheckerError, r.MistakeId ?? "");
        Assert.True(r.Message.Length < 2500, $"verdict too long ({r.Message.Length} characters)");
    }
}
