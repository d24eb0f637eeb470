using System.Diagnostics;
using Diffusion.Flow;
using Xunit.Abstractions;

namespace Diffusion.Tests;

/// <summary>
/// Rectified flow against closed forms. For data x₀ ~ N(μ, s²) per coordinate and ε ~ N(0, 1), x_t = (1 − t)x₀ + tε is
/// Gaussian with mean (1 − t)μ and variance V_t = (1 − t)²s² + t², jointly Gaussian with u = ε − x₀ (mean −μ,
/// Cov(u, x_t) = t − (1 − t)s²), so the exact velocity field is E[u | x_t = x] = −μ + (t − (1 − t)s²)/V_t · (x − (1 − t)μ).
/// The ODE dx/dt = that field is linear; its solution from x₁ at t = 1 is x_t = (1 − t)μ + √V_t · x₁ (differentiate:
/// −μ + (t − (1 − t)s²)/√V_t · x₁, the field at that x), so x₀ = μ + s·x₁.
/// </summary>
public class FlowTests(ITestOutputHelper output)
{
    const double Mu = 0.8, S = 0.5;

    static double V(double t) => (1 - t) * (1 - t) * S * S + t * t;

    /// <summary>The exact velocity field of the Gaussian data, for any tensor precision.</summary>
    static DenoisingModel ExactField => (x, t) =>
    {
        var tt = t.to(x.dtype).reshape(-1, 1);
        var variance = (1 - tt).square() * (S * S) + tt.square();
        return -Mu + (tt - (1 - tt) * (S * S)) / variance * (x - (1 - tt) * Mu);
    };

    static double MaxError(IFlowSampler sampler, double[] starts)
    {
        using var scope = NewDisposeScope();
        var x1 = tensor(starts, dtype: ScalarType.Float64).reshape(-1, 1);
        var x0 = sampler.Integrate(ExactField, x1);
        var exact = Mu + S * x1;
        return (x0 - exact).abs().max().item<double>();
    }

    static readonly double[] Starts = [-2.5, -1, -0.3, 0, 0.7, 1.4, 2.2];

    /// <summary>
    /// σ_i = shift(1 − i/n): every step shrinks as n grows. (diffusers' spacing is not such a grid: its last time before 0,
    /// shift(shift(1/1000)), is the same for every n, so its last step does not shrink and the error stops falling at the
    /// order's rate; <see cref="SchedulesMatchDiffusersFormulasInFloat64"/> checks that spacing itself.)
    /// </summary>
    static FlowMatchSchedule Refining(int n, double shift) =>
        new(Enumerable.Range(0, n).Select(i => FlowMatchSchedule.ShiftSigma(1 - i / (double)n, shift)).ToArray());

    [Theory]
    [InlineData(1.0)]
    [InlineData(3.0)]
    public void EulerConvergesAtFirstOrderAndHeunAtSecondOnTheExactGaussianField(double shift)
    {
        int[] steps = [8, 16, 32, 64, 128, 256, 512];
        var euler = steps.Select(n => MaxError(new EulerFlowSampler(Refining(n, shift)), Starts)).ToArray();
        var heun = steps.Select(n => MaxError(new HeunFlowSampler(Refining(n, shift)), Starts)).ToArray();
        var heunFull = steps.Select(n => MaxError(new HeunFlowSampler(Refining(n, shift), correctLastStep: true), Starts)).ToArray();
        for (int i = 0; i < steps.Length; i++)
            output.WriteLine($"shift {shift}, {steps[i],3} steps: Euler {euler[i]:E3}  Heun {heun[i]:E3}  Heun (last step corrected) {heunFull[i]:E3}");
        // error ratio when the steps double, at the finest pair: 2 for first order, 4 for second
        double eulerRatio = euler[^2] / euler[^1], heunRatio = heun[^2] / heun[^1], heunFullRatio = heunFull[^2] / heunFull[^1];
        output.WriteLine($"ratios: Euler {eulerRatio:F3}, Heun {heunRatio:F3}, Heun corrected {heunFullRatio:F3}");
        Assert.InRange(eulerRatio, 1.8, 2.2);
        Assert.InRange(heunRatio, 3.5, 4.5);
        Assert.InRange(heunFullRatio, 3.5, 4.5);
        Assert.True(heun[^1] < euler[^1] / 10, "Heun must be far more accurate than Euler at equal steps");
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(3.0)]
    public void DpmSolverThroughTheVariancePreservingMapBeatsFirstOrderWithOneEvaluationPerStep(double shift)
    {
        int[] steps = [8, 16, 32, 64, 128, 256, 512];
        var dpm = steps.Select(n => MaxError(new DpmSolverFlowSampler(Refining(n, shift)), Starts)).ToArray();
        var euler = steps.Select(n => MaxError(new EulerFlowSampler(Refining(n, shift)), Starts)).ToArray();
        for (int i = 0; i < steps.Length; i++)
            output.WriteLine($"shift {shift}, {steps[i],3} steps: DPM-Solver++ {dpm[i]:E3}  Euler {euler[i]:E3}");
        // Second order in λ = log(√ᾱ/√(1 − ᾱ)) steps; on a grid uniform in t the steps near t = 0 do not shrink in λ
        // (λ(2/n) − λ(1/n) → log 2), so the ratio of errors when the steps double climbs towards 4 instead of sitting
        // there: above first order's 2 and rising over the finest doublings.
        var ratios = Enumerable.Range(steps.Length - 3, 3).Select(i => dpm[i - 1] / dpm[i]).ToArray();
        output.WriteLine($"ratios of the finest doublings: {string.Join(", ", ratios.Select(r => r.ToString("F3")))}");
        Assert.True(ratios[0] < ratios[1] && ratios[1] < ratios[2] && ratios[2] > 3, $"ratios {string.Join(", ", ratios)}");
        Assert.True(dpm[^1] < euler[^1] / 10, "DPM-Solver++ must be far more accurate than Euler at equal evaluations");

        // A first-order step of DPM-Solver++ (DDIM) on the straight path is Euler's step. The first step, from t = 1, is
        // first order, and so is the second: the x̂₀ kept from t = 1 (λ = −∞) is infinitely far back in λ, so r = ∞ and
        // the correction 1/(2r) vanishes. The third step is the first with a second-order correction.
        using var scope = NewDisposeScope();
        var schedule = Refining(4, shift);
        var (dpmSampler, eulerSampler) = (new DpmSolverFlowSampler(schedule), new EulerFlowSampler(schedule));
        var x = tensor(Starts, dtype: ScalarType.Float64).reshape(-1, 1);
        for (int k = 0; k < 3; k++)
        {
            var v = ExactField(x, full([Starts.Length], schedule.Sigmas[k], dtype: ScalarType.Float64));
            var (dpmNext, eulerNext) = (dpmSampler.Step(v, x, k), eulerSampler.Step(v, x, k));
            double difference = (dpmNext - eulerNext).abs().max().item<double>();
            output.WriteLine($"step {k}: |DPM-Solver++ − Euler| = {difference:E2}");
            Assert.True(k < 2 ? difference < 1e-12 : difference > 1e-4, $"step {k}: difference {difference}");
            x = dpmNext;
        }
        dpmSampler.Reset();
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(3.0)]
    public void WithDiffusersSpacingTheSamplersReachTheExactSolution(double shift)
    {
        // the spacing users get: errors fall as n grows, and Heun at n steps (2n − 1 evaluations) beats Euler at 2n
        double previousEuler = double.PositiveInfinity, previousHeun = double.PositiveInfinity;
        foreach (int n in new[] { 5, 10, 20, 50 })
        {
            double euler = MaxError(new EulerFlowSampler(n, shift), Starts), heun = MaxError(new HeunFlowSampler(n, shift), Starts);
            double eulerTwice = MaxError(new EulerFlowSampler(2 * n, shift), Starts);
            output.WriteLine($"shift {shift}, {n} steps: Euler {euler:E3}, Heun {heun:E3}, Euler at {2 * n} steps {eulerTwice:E3}");
            Assert.True(euler < previousEuler && heun < previousHeun, $"{n} steps: the error must fall as the steps grow");
            Assert.True(heun < eulerTwice, $"{n} steps: Heun {heun} must beat Euler at equal evaluations {eulerTwice}");
            (previousEuler, previousHeun) = (euler, heun);
        }
    }

    [Fact]
    public void OneEulerStepIsExactOnAStraightPath()
    {
        // With one data point x₀ = μ (s = 0) every path is a straight line and its velocity is x₁ − μ: one step suffices.
        using var scope = NewDisposeScope();
        var x1 = tensor(Starts, dtype: ScalarType.Float64).reshape(-1, 1);
        DenoisingModel field = (x, t) => (x - Mu) / t.to(x.dtype).reshape(-1, 1);       // u = (x_t − μ)/t on the line
        var x0 = new EulerFlowSampler(1).Integrate(field, x1);
        Assert.True(x0.allclose(full_like(x1, Mu), rtol: 0, atol: 1e-12));
    }

    [Fact]
    public void HeunEvaluatesAtBothEndsOfEachStepAsDiffusersDoes()
    {
        var schedule = new FlowMatchSchedule(4, shift: 3);
        var heun = new HeunFlowSampler(schedule);
        // diffusers' FlowMatchHeunDiscreteScheduler: timesteps = [σ_0, σ_1, σ_1, σ_2, σ_2, σ_3, σ_3] · N
        var expected = new[] { 0, 1, 1, 2, 2, 3, 3 }.Select(i => schedule.Sigmas[i]).ToArray();
        Assert.Equal(7, heun.Evaluations);
        Assert.Equal(expected, Enumerable.Range(0, heun.Evaluations).Select(heun.Time).ToArray());
        Assert.Equal(8, new HeunFlowSampler(schedule, correctLastStep: true).Evaluations);
    }

    [Fact]
    public void ATinyModelTrainedWithTheLossRecoversTheExactField()
    {
        // v̂(x, t) = Σ_j (a_j x + b_j) P_j(2t − 1), P_j the Legendre polynomials: linear in its 14 parameters, so Adam on
        // the flow loss converges to the least-squares fit of E[u | x_t], which is the exact field (a(t) x + b(t) with
        // a, b smooth rational functions of t) up to how well degree-6 polynomials fit it. Legendre, not powers of t,
        // so the parameters are well conditioned.
        const int degree = 6;
        using var g = new Generator(7);
        var a = new TorchSharp.Modules.Parameter(zeros(degree + 1));
        var b = new TorchSharp.Modules.Parameter(zeros(degree + 1));
        Tensor Basis(Tensor t)
        {
            var z = 2 * t.reshape(-1, 1) - 1;
            var p = new List<Tensor> { ones_like(z), z };
            for (int j = 1; j < degree; j++)                 // (j + 1) P_{j+1} = (2j + 1) z P_j − j P_{j−1}
                p.Add(((2 * j + 1) * z * p[j] - j * p[j - 1]) / (j + 1));
            return cat(p.ToArray(), 1);                        // [B, degree + 1]
        }
        DenoisingModel model = (x, t) =>
        {
            var basis = Basis(t);
            var slope = matmul(basis, a).reshape(-1, 1, 1, 1);
            var offset = matmul(basis, b).reshape(-1, 1, 1, 1);
            return slope * x + offset;
        };
        var optimizer = optim.Adam([a, b], lr: 0.05);
        var clock = Stopwatch.StartNew();
        const int stepsCount = 600;
        for (int step = 0; step < stepsCount; step++)
        {
            using var scope = NewDisposeScope();
            foreach (var group in optimizer.ParamGroups) group.LearningRate = 0.05 * (1 - step / (double)stepsCount) + 1e-4;
            var x0 = Mu + S * randn([4096, 1, 2, 2], generator: g);
            optimizer.zero_grad();
            var loss = RectifiedFlow.Loss(model, x0, FlowTimeDistribution.Uniform, g);
            loss.backward();
            optimizer.step();
        }
        output.WriteLine($"{stepsCount} steps in {clock.Elapsed.TotalSeconds:F1} s");
        using (no_grad())
        {
            double worst = 0;
            foreach (double t in new[] { 0.1, 0.3, 0.5, 0.7, 0.9 })
                foreach (double z in new[] { -1.5, 0.0, 1.5 })
                {
                    double x = (1 - t) * Mu + z * Math.Sqrt(V(t));      // where x_t has its mass (±1.5 standard deviations)
                    using var scope = NewDisposeScope();
                    double predicted = model(full([1, 1, 1, 1], x), full([1], t)).item<float>();
                    double exact = -Mu + (t - (1 - t) * S * S) / V(t) * (x - (1 - t) * Mu);
                    output.WriteLine($"t {t:F1} x {x,4:F1}: learnt {predicted,8:F4}  exact {exact,8:F4}");
                    worst = Math.Max(worst, Math.Abs(predicted - exact));
                }
            Assert.True(worst < 0.04, $"the learnt field is off the exact one by up to {worst:F4}");
        }
    }

    [Fact]
    public void TrainingPairIsTheStraightLineAndItsVelocity()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(3);
        var x0 = randn([5, 1, 3, 3], generator: g);
        var eps = randn([5, 1, 3, 3], generator: g);
        var t = tensor(new float[] { 0f, 0.25f, 0.5f, 0.9f, 1f });
        var (xt, target) = RectifiedFlow.TrainingPair(x0, eps, t);
        for (int i = 0; i < 5; i++)
        {
            double ti = t[i].item<float>();
            Assert.True(xt[i].allclose((1 - ti) * x0[i] + ti * eps[i], atol: 1e-6));
        }
        Assert.True(target.allclose(eps - x0));
        // x̂₀ and ε̂ from the exact velocity are the data and the noise
        Assert.True(RectifiedFlow.Start(target, xt, t).allclose(x0, atol: 1e-5));
        Assert.True(RectifiedFlow.Noise(target, xt, t).allclose(eps, atol: 1e-5));
    }

    [Fact]
    public void TimeSamplingIsSeededAndLogitNormalFollowsItsDensity()
    {
        using var scope = NewDisposeScope();
        using (var g1 = new Generator(11))
        using (var g2 = new Generator(11))
            Assert.True(RectifiedFlow.SampleTimes(100, FlowTimeDistribution.LogitNormal, g1)
                .equal(RectifiedFlow.SampleTimes(100, FlowTimeDistribution.LogitNormal, g2)).all().item<bool>());

        using var g = new Generator(5);
        const int n = 200_000;
        var uniform = RectifiedFlow.SampleTimes(n, FlowTimeDistribution.Uniform, g);
        var logit = RectifiedFlow.SampleTimes(n, FlowTimeDistribution.LogitNormal, g);
        var shifted = RectifiedFlow.SampleTimes(n, new FlowTimeDistribution(FlowTimeSampling.LogitNormal, Mean: 0.5, Std: 0.8), g);
        Assert.True(uniform.min().item<float>() >= 0 && uniform.max().item<float>() < 1);
        foreach (var (samples, m, s) in new[] { (logit, 0.0, 1.0), (shifted, 0.5, 0.8) })
            foreach (double edge in new[] { 0.1, 0.3, 0.5, 0.8 })
            {
                // P(t < edge) by Simpson's rule on the density, against the fraction drawn
                double expected = Simpson(u => RectifiedFlow.LogitNormalDensity(u, m, s), 1e-9, edge, 4000);
                double drawn = (samples < edge).to(ScalarType.Float64).mean().item<double>();
                double tol = 5 * Math.Sqrt(expected * (1 - expected) / n) + 1e-4;
                Assert.True(Math.Abs(drawn - expected) < tol, $"m {m}, s {s}: P(t < {edge}) drawn {drawn:F4}, density says {expected:F4}");
            }
        // and P(t < 1/2) = 1/2 for m = 0: the logit of t is a standard normal
        Assert.InRange(Simpson(u => RectifiedFlow.LogitNormalDensity(u), 1e-9, 0.5, 4000), 0.4999, 0.5001);
    }

    static double Simpson(Func<double, double> f, double a, double b, int intervals)
    {
        double h = (b - a) / intervals, sum = f(a) + f(b);
        for (int i = 1; i < intervals; i++) sum += (i % 2 == 1 ? 4 : 2) * f(a + i * h);
        return sum * h / 3;
    }

    [Fact]
    public void ARescaledRectifiedFlowSampleIsTheVariancePreservingSampleOfTheCourse()
    {
        // x_t / √((1 − t)² + t²) = √ᾱ x₀ + √(1 − ᾱ) ε with ᾱ = (1 − t)²/((1 − t)² + t²): checked against the course's
        // forward process q(x_t | x₀) at time steps of its cosine schedule, with t = TimeOfAlphaBar(ᾱ_t).
        using var schedule = new NoiseSchedule(ScheduleKind.Cosine, 500);
        using var scope = NewDisposeScope();
        using var g = new Generator(9);
        foreach (int step in new[] { 0, 60, 250, 420, 499 })
        {
            var x0 = randn([2, 1, 4, 4], generator: g);
            var eps = randn([2, 1, 4, 4], generator: g);
            double alphaBar = schedule.AlphasCumprod[step];
            double t = RectifiedFlow.TimeOfAlphaBar(alphaBar);
            Assert.Equal(alphaBar, RectifiedFlow.AlphaBar(t), 9);
            var steps = full([2], step, dtype: ScalarType.Int64);
            var vp = ForwardProcess.QSample(schedule, x0, steps, eps);
            var rf = RectifiedFlow.Interpolate(x0, eps, full([2], t)) * RectifiedFlow.VpScale(t);
            Assert.True(rf.allclose(vp, rtol: 1e-4, atol: 1e-5), $"step {step} (t = {t:F4}): max |Δ| {(rf - vp).abs().max().item<float>()}");

            // the v-prediction target of that VP sample and rectified flow's velocity determine each other given x_t
            var v = ForwardProcess.Velocity(schedule, x0, steps, eps);
            var xt = RectifiedFlow.Interpolate(x0, eps, full([2], t));
            var fromVelocity = RectifiedFlow.VPredictionFromVelocity(eps - x0, xt, t);
            Assert.True(fromVelocity.allclose(v, rtol: 1e-4, atol: 1e-5), $"step {step}: v from u off by {(fromVelocity - v).abs().max().item<float>()}");
            Assert.True(RectifiedFlow.VelocityFromVPrediction(v, xt, t).allclose(eps - x0, rtol: 1e-4, atol: 2e-4));
        }
    }

    static DenoisingModel TimeField => (x, t) => zeros_like(x) + (t.to(x.dtype).reshape(-1, 1) - Mu).square();

    [Fact]
    public void GuidanceOnTheVelocityRunsThroughTheCourseGuidanceWithContinuousTimes()
    {
        // Two exact fields (two classes' Gaussian data); guided by w, the sampler must see (1 + w) v_c − w v_∅ at every
        // evaluation time. The delegate records the times it was called with.
        using var scope = NewDisposeScope();
        var seen = new List<double>();
        ConditionalDenoisingModel model = (x, t, y) =>
        {
            seen.AddRange(t.to(ScalarType.Float64).data<double>().Distinct());
            // a field of t alone (so the guided and plain paths see the same field), plus k for class k; ∅ = 2
            return TimeField(x, t) + y.to(x.dtype).reshape(-1, 1);
        };
        var classes = tensor(new long[] { 0, 1 });
        var guided = ClassifierFreeGuidance.Guide(model, classes, nullClass: 2, w: 1.5);
        var x1 = zeros([2, 1], dtype: ScalarType.Float64);
        var sampler = new EulerFlowSampler(5);
        var x0 = sampler.Integrate(guided, x1);
        var plain = sampler.Integrate(TimeField, x1);
        // the guided offset per step is (1 + w)·k − w·2 = 2.5k − 3, times Σ Δσ = −1
        var expected = plain - (2.5 * classes.to(ScalarType.Float64).reshape(-1, 1) - 3);
        Assert.True(x0.allclose(expected, atol: 1e-9));
        Assert.Equal(Enumerable.Range(0, 5).Select(sampler.Time), seen.Distinct());
    }

    [Fact]
    public void SchedulesMatchDiffusersFormulasInFloat64()
    {
        // diffusers' FlowMatchEulerDiscreteScheduler, written out again from its code: at construction
        // sigmas = shift(linspace(1, N, N)[::-1] / N), σ_max = sigmas[0], σ_min = sigmas[-1]; set_timesteps(n):
        // timesteps = linspace(σ_max N, σ_min N, n), sigmas = shift(timesteps / N), then a 0 appended.
        foreach (var (steps, shift) in new[] { (1, 1.0), (4, 1.0), (10, 3.0), (28, 3.0), (50, 1.5), (7, 0.5) })
        {
            const int N = 1000;
            double Shifted(double x) => shift * x / (1 + (shift - 1) * x);
            double[] train = Enumerable.Range(1, N).Reverse().Select(k => Shifted(k / (double)N)).ToArray();
            double max = train[0] * N, min = train[^1] * N;
            var expected = new double[steps + 1];
            for (int i = 0; i < steps; i++)
                expected[i] = Shifted((steps == 1 ? max : max + (min - max) * i / (steps - 1)) / N);
            var schedule = new FlowMatchSchedule(steps, shift);
            Assert.Equal(steps + 1, schedule.Sigmas.Count);
            for (int i = 0; i <= steps; i++)
                Assert.True(Math.Abs(schedule.Sigmas[i] - expected[i]) < 1e-12, $"n {steps}, shift {shift}, σ_{i}: {schedule.Sigmas[i]} vs {expected[i]}");
            Assert.Equal(schedule.Sigmas[0] * N, schedule.Timestep(0), 9);
        }
        // the dynamic (exponential) shift with exponent 1 is the static shift with s = e^μ
        foreach (double t in new[] { 0.05, 0.3, 0.77 })
            Assert.Equal(FlowMatchSchedule.ShiftSigma(t, 3.0), FlowMatchSchedule.TimeShiftExponential(Math.Log(3.0), 1.0, t), 12);
    }

    [SkippableFact]
    public void SchedulesMatchTheSameFormulasRunInNumpyAndTorch()
    {
        Skip.IfNot(File.Exists("/usr/bin/python3"), "needs /usr/bin/python3 with numpy and torch (Debian python3-torch)");
        // diffusers' lines of __init__ and set_timesteps, run with numpy and torch in float32 where diffusers uses it
        const string script = """
import numpy as np, torch, sys
N = 1000
for n, shift in [(4, 1.0), (10, 3.0), (28, 3.0), (50, 1.5)]:
    timesteps = np.linspace(1, N, N, dtype=np.float32)[::-1].copy()
    timesteps = torch.from_numpy(timesteps).to(dtype=torch.float32)
    sigmas = timesteps / N
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    sigma_min, sigma_max = sigmas[-1].item(), sigmas[0].item()
    timesteps = np.linspace(sigma_max * N, sigma_min * N, n)
    sigmas = timesteps / N
    sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
    sigmas = torch.from_numpy(sigmas).to(dtype=torch.float32)
    sigmas = torch.cat([sigmas, torch.zeros(1)])
    print(n, shift, " ".join(repr(float(s)) for s in sigmas))
""";
        var psi = new ProcessStartInfo("/usr/bin/python3", ["-c", script]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(psi)!;
        string stdout = process.StandardOutput.ReadToEnd(), stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Skip.If(process.ExitCode != 0 && stderr.Contains("ModuleNotFoundError"), "python3 lacks numpy or torch: " + stderr.Trim());
        Assert.True(process.ExitCode == 0, stderr);
        int lines = 0;
        foreach (var line in stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = line.Split(' ');
            int n = int.Parse(parts[0]);
            double shift = double.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
            var reference = parts.Skip(2).Select(p => double.Parse(p, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            var schedule = new FlowMatchSchedule(n, shift);
            Assert.Equal(reference.Length, schedule.Sigmas.Count);
            for (int i = 0; i < reference.Length; i++)
                Assert.True(Math.Abs(schedule.Sigmas[i] - reference[i]) < 2e-7, $"n {n}, shift {shift}, σ_{i}: {schedule.Sigmas[i]} vs torch {reference[i]}");
            lines++;
        }
        Assert.Equal(4, lines);
    }

    [Fact]
    public void BadScheduleArgumentsAreRefusedWithTheirReason()
    {
        Assert.Contains("at least 1 step", Assert.Throws<ArgumentOutOfRangeException>(() => new FlowMatchSchedule(0)).Message);
        Assert.Contains("shift", Assert.Throws<ArgumentOutOfRangeException>(() => new FlowMatchSchedule(10, shift: 0)).Message);
        Assert.Contains("decreasing", Assert.Throws<ArgumentException>(() => new FlowMatchSchedule([0.5, 0.7])).Message);
    }
}
