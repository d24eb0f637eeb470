using Diffusion.Forward;
using Diffusion.Sampling;
using Diffusion.Schedules;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Diffusion.Tests;

/// <summary>
/// DPM-Solver++(2M) against closed forms. For data x_0 ~ N(μ, s²I), x_t ~ N(α μ, α² s² + σ²) (α = √ᾱ, σ = √(1−ᾱ)) and
/// the optimal predictors are E[ε | x_t] = σ (x_t − α μ)/(α² s² + σ²), E[x_0 | x_t] = μ + α s² (x_t − α μ)/(α² s² + σ²).
/// The probability-flow ODE, written as dx̄/dσ̄ = ε̂(x) in x̄ = x/α, σ̄ = σ/α (DDIM eq. 14), has the solution
/// x̄(σ̄) = μ + √(s² + σ̄²) z with z constant: its derivative σ̄ z/√(s² + σ̄²) is ε* at that point. From x_T, z =
/// (x_T − α_T μ)/√(α_T² s² + σ_T²), and at ᾱ = 1 (σ̄ = 0) the ODE ends at x_0 = μ + s z.
/// </summary>
public class DpmSolverTests(ITestOutputHelper output)
{
    const double Mu = 0.4, Sd = 0.25;

    /// <summary>E[ε | x_t] at time step t in float64 (the schedule's double ᾱ; t read from the batch).</summary>
    static DenoisingModel OptimalEpsilon(NoiseSchedule s, double mu, double sd) => (xt, t) =>
    {
        double ab = s.AlphasCumprod[t[0].item<long>()];
        return Math.Sqrt(1 - ab) * (xt - Math.Sqrt(ab) * mu) / (ab * sd * sd + 1 - ab);
    };

    /// <summary>The ODE's exact solution at ᾱ from x_T at ᾱ_T (class summary): α μ + √(α² s² + σ²) z.</summary>
    static Tensor Exact(Tensor xT, double alphaBarT, double alphaBar, double mu, double sd)
    {
        var z = (xT - Math.Sqrt(alphaBarT) * mu) / Math.Sqrt(alphaBarT * sd * sd + 1 - alphaBarT);
        return Math.Sqrt(alphaBar) * mu + Math.Sqrt(alphaBar * sd * sd + 1 - alphaBar) * z;
    }

    /// <summary>E[x_0 | x_t] = μ + α s² (x_t − α μ)/(α² s² + σ²).</summary>
    static Tensor OptimalStart(Tensor xt, double ab, double mu, double sd) =>
        mu + Math.Sqrt(ab) * sd * sd * (xt - Math.Sqrt(ab) * mu) / (ab * sd * sd + 1 - ab);

    /// <summary>Runs a plan's steps by hand: output = model(x, t_i); x = step(output, x, i).</summary>
    static Tensor Solve(DenoisingModel model, int[] timesteps, Func<Tensor, Tensor, int, Tensor> step, Tensor xT)
    {
        var x = xT;
        for (int i = 0; i < timesteps.Length; i++)
            x = step(model(x, full([x.shape[0]], timesteps[i], dtype: ScalarType.Int64)), x, i);
        return x;
    }

    static Tensor SolveDpm(NoiseSchedule s, int steps, DenoisingModel model, Tensor xT, TimestepSpacing spacing)
    {
        using var dpm = new DpmSolverPlusPlus(s, steps, clipDenoised: false, spacing: spacing);
        return Solve(model, dpm.Plan.Timesteps, (o, x, i) => dpm.Step(o, x, i), xT);
    }

    static Tensor SolveDdim(NoiseSchedule s, int steps, DenoisingModel model, Tensor xT)
    {
        using var ddim = new DdimSampler(s, steps, clipDenoised: false);
        return Solve(model, ddim.Plan.Timesteps, (o, x, i) => ddim.Step(o, x, i), xT);
    }

    [Fact]
    public void TheClosedFormSolvesTheProbabilityFlowOde()
    {
        // Independent float64 check: RK4 on dx̄/dσ̄ = ε*(α x̄) from σ̄_T down to 0, against μ + s (x_T − α_T μ)/√(α_T² s² + σ_T²).
        using var s = new NoiseSchedule(ScheduleKind.Linear, 1000);
        double abT = s.AlphasCumprod[^1], sigmaBarT = Math.Sqrt((1 - abT) / abT);
        double Eps(double xBar, double sigmaBar)
        {
            double ab = 1 / (1 + sigmaBar * sigmaBar), x = Math.Sqrt(ab) * xBar;
            return Math.Sqrt(1 - ab) * (x - Math.Sqrt(ab) * Mu) / (ab * Sd * Sd + 1 - ab);
        }
        foreach (double xT in new[] { -2.0, -0.3, 0.0, 1.3 })
        {
            double xBar = xT / Math.Sqrt(abT), sb = sigmaBarT;
            const int n = 200_000;
            double h = -sigmaBarT / n;
            for (int k = 0; k < n; k++, sb += h)
            {
                double k1 = Eps(xBar, sb), k2 = Eps(xBar + h / 2 * k1, sb + h / 2), k3 = Eps(xBar + h / 2 * k2, sb + h / 2),
                    k4 = Eps(xBar + h * k3, sb + h);
                xBar += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4);
            }
            double closedForm = Mu + Sd * (xT - Math.Sqrt(abT) * Mu) / Math.Sqrt(abT * Sd * Sd + 1 - abT);
            Assert.True(Math.Abs(xBar - closedForm) < 1e-9, $"x_T = {xT}: RK4 {xBar:R}, closed form {closedForm:R}");
        }
    }

    /// <summary>
    /// Convergence order, float64 end to end. The reference is the exact ODE solution at t = 0 followed by the last
    /// step every plan shares (x ↦ x̂_0 at t = 0, exact for this model), so the error is pure discretisation error.
    /// </summary>
    [Fact]
    public void ConvergesAtSecondOrderWhileDdimConvergesAtFirstOrder()
    {
        // Both on the evenly spaced plan, so the difference is the order alone. The shipped model's schedule. s = 0.5 spreads x̂_0's change over λ so that 20 NFE is already in the asymptotic
        // range of the evenly spaced plan (see the log for s = 0.25, where it starts beyond 80).
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 500);
        const double mu = 0.4, sd = 0.5;
        var model = OptimalEpsilon(s, mu, sd);
        var xT = randn([64, 1, 1, 1], dtype: ScalarType.Float64, generator: new Generator(7)) * 1.5;
        double ab0 = s.AlphasCumprod[0], abT = s.AlphasCumprod[^1];
        var reference = OptimalStart(Exact(xT, abT, ab0, mu, sd), ab0, mu, sd);
        int[] nfe = [20, 40, 80];
        double Error(Tensor x) => (x - reference).abs().max().item<double>();
        var dpm = nfe.Select(n => Error(SolveDpm(s, n, model, xT, TimestepSpacing.Even))).ToArray();
        var ddim = nfe.Select(n => Error(SolveDdim(s, n, model, xT))).ToArray();
        for (int k = 0; k < nfe.Length; k++)
            output.WriteLine($"NFE {nfe[k]}: DPM-Solver++ {dpm[k]:e3}, DDIM {ddim[k]:e3}");
        for (int k = 0; k + 1 < nfe.Length; k++)
        {
            double rDpm = dpm[k] / dpm[k + 1], rDdim = ddim[k] / ddim[k + 1];
            output.WriteLine($"NFE {nfe[k]} → {nfe[k + 1]}: error ratio DPM-Solver++ {rDpm:F2}, DDIM {rDdim:F2}");
            // second order: ×2 NFE → error ÷4 (observed order log₂ r within 2 ± 0.25); first order: ÷2 (1 ± 0.15)
            Assert.InRange(Math.Log2(rDpm), 1.75, 2.25);
            Assert.InRange(Math.Log2(rDdim), 0.85, 1.15);
            Assert.True(dpm[k + 1] < ddim[k + 1], $"NFE {nfe[k + 1]}: DPM-Solver++ {dpm[k + 1]:e3} should beat DDIM {ddim[k + 1]:e3}");
        }
        LogNarrowGaussian();
    }

    /// <summary>For the record: SamplerTests' N(0.4, 0.25²) on the linear T = 1000 schedule, even and λ-uniform steps.</summary>
    void LogNarrowGaussian()
    {
        using var s = new NoiseSchedule(ScheduleKind.Linear, 1000);
        var model = OptimalEpsilon(s, Mu, Sd);
        var xT = randn([64, 1, 1, 1], dtype: ScalarType.Float64, generator: new Generator(7)) * 1.5;
        var end = Exact(xT, s.AlphasCumprod[^1], 1.0, Mu, Sd);
        foreach (int n in new[] { 10, 20, 40, 80 })
        {
            double Err(Tensor x) => (x - end).abs().max().item<double>();
            output.WriteLine($"N(0.4, 0.25²), linear T = 1000, NFE {n}, error at ᾱ = 1: DPM-Solver++ even {Err(SolveDpm(s, n, model, xT, TimestepSpacing.Even)):e3}, " +
                $"λ-uniform {Err(SolveDpm(s, n, model, xT, TimestepSpacing.LogSnr)):e3}, DDIM {Err(SolveDdim(s, n, model, xT)):e3}");
        }
    }

    public static TheoryData<string> Samplers() => new() { "dpm++-10", "dpm++-20", "dpm++-even-100" };

    [Theory]
    [MemberData(nameof(Samplers))]
    public void OptimalPredictorOfAGaussianDatasetRecoversItsMeanAndStd(string name)
    {
        using var s = new NoiseSchedule(ScheduleKind.Linear, 1000);
        int steps = int.Parse(name[(name.LastIndexOf('-') + 1)..]);
        using var sampler = new DpmSolverPlusPlus(s, steps, clipDenoised: false,
            spacing: name.Contains("even") ? TimestepSpacing.Even : TimestepSpacing.LogSnr);
        const int N = 4096 * 4;
        using var result = sampler.Sample(OptimalEpsilon(s, Mu, Sd), [4096, 1, 2, 2], new Generator(42));
        double mean = result.Samples.mean().item<float>(), std = result.Samples.std().item<float>();
        // 1) Close to the data distribution N(μ, s²).
        Assert.True(Math.Abs(mean - Mu) < 0.01, $"{name}: mean {mean:F4}, expected {Mu}");
        Assert.True(Math.Abs(std - Sd) < 0.06 * Sd, $"{name}: std {std:F4}, expected {Sd}");
        // 2) The solver is affine in x_T, x_0 = a x_T + b, so for x_T ~ N(0, 1) the exact moments are b and |a|:
        //    read off two float64 trajectories (x_T = 0 and 1) and compare within sampling error.
        double b = SolveDpm(s, steps, OptimalEpsilon(s, Mu, Sd), zeros([1, 1, 1, 1], ScalarType.Float64), sampler.Spacing).item<double>();
        double a = SolveDpm(s, steps, OptimalEpsilon(s, Mu, Sd), ones([1, 1, 1, 1], ScalarType.Float64), sampler.Spacing).item<double>() - b;
        double meanTol = 5 * Math.Abs(a) / Math.Sqrt(N), stdTol = 5 * Math.Abs(a) / Math.Sqrt(2.0 * N);
        Assert.True(Math.Abs(mean - b) < meanTol, $"{name}: mean {mean:F5} vs exact {b:F5} ± {meanTol:F5}");
        Assert.True(Math.Abs(std - Math.Abs(a)) < stdTol, $"{name}: std {std:F5} vs exact {Math.Abs(a):F5} ± {stdTol:F5}");
    }

    [Theory]
    [InlineData(Prediction.Start)]
    [InlineData(Prediction.Velocity)]
    public void EpsilonStartAndVelocityNetworksGiveTheSameTrajectory(Prediction prediction)
    {
        // The same optimal predictor written as ε*, x̂_0* or v* = α ε* − σ x̂_0* (Salimans & Ho), in float64.
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 500);
        var eps = OptimalEpsilon(s, Mu, Sd);
        DenoisingModel other = (xt, t) =>
        {
            double ab = s.AlphasCumprod[t[0].item<long>()];
            var x0 = OptimalStart(xt, ab, Mu, Sd);
            return prediction == Prediction.Start ? x0 : Math.Sqrt(ab) * eps(xt, t) - Math.Sqrt(1 - ab) * x0;
        };
        var xT = randn([32, 1, 2, 2], dtype: ScalarType.Float64, generator: new Generator(3));
        foreach (bool clip in new[] { false, true })
        {
            using var a = new DpmSolverPlusPlus(s, 15, Prediction.Epsilon, clip);
            using var b = new DpmSolverPlusPlus(s, 15, prediction, clip);
            var viaEps = Solve(eps, a.Plan.Timesteps, (o, x, i) => a.Step(o, x, i), xT);
            var viaOther = Solve(other, b.Plan.Timesteps, (o, x, i) => b.Step(o, x, i), xT);
            double diff = (viaEps - viaOther).abs().max().item<double>();
            Assert.True(diff < 1e-9, $"{prediction}, clip {clip}: trajectories differ by {diff:e2}");
        }
        // A learned-variance network's [ε, v] output: the solver uses the first C channels only.
        using var c = new DpmSolverPlusPlus(s, 15, clipDenoised: false);
        using var d = new DpmSolverPlusPlus(s, 15, clipDenoised: false);
        var plain = Solve(eps, c.Plan.Timesteps, (o, x, i) => c.Step(o, x, i), xT);
        var learned = Solve((x, t) => cat([eps(x, t), full_like(x, 0.3)], 1), d.Plan.Timesteps, (o, x, i) => d.Step(o, x, i), xT);
        Assert.True(plain.equal(learned).all().item<bool>());
    }

    [Fact]
    public void FirstStepIsDdimAndTheLastReturnsTheDenoisedEstimate()
    {
        // First order in λ with x̂_0 held constant is DDIM (η = 0); the step to ᾱ = 1 returns x̂_0 (as DDIM's last step).
        using var s = new NoiseSchedule(ScheduleKind.Linear, 300);
        var model = OptimalEpsilon(s, Mu, Sd);
        var x = randn([16, 1, 2, 2], dtype: ScalarType.Float64, generator: new Generator(1));
        using var dpm = new DpmSolverPlusPlus(s, 7, clipDenoised: false, spacing: TimestepSpacing.Even);
        using var ddim = new DdimSampler(s, 7, clipDenoised: false);
        Assert.Equal(ddim.Plan.Timesteps, dpm.Plan.Timesteps);
        var output = model(x, full([16], dpm.Plan.Timesteps[0], ScalarType.Int64));
        var viaDpm = dpm.Step(output, x, 0);
        var viaDdim = ddim.Step(output, x, 0);
        Assert.True(allclose(viaDpm, viaDdim, rtol: 1e-6, atol: 1e-6), $"max diff {(viaDpm - viaDdim).abs().max().item<double>():e2}");
        var last = DpmSolverPlusPlus.FirstOrderUpdate(x, OptimalStart(x, s.AlphasCumprod[0], Mu, Sd), s.AlphasCumprod[0], 1.0);
        Assert.True(last.equal(OptimalStart(x, s.AlphasCumprod[0], Mu, Sd)).all().item<bool>());
    }

    [Fact]
    public void MultistepStateIsResetBetweenRuns()
    {
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 100);
        DenoisingModel model = (xt, t) =>
        {
            var ab = s.Extract(s.AlphasCumprod, t, xt.shape);
            return (1 - ab).sqrt() * (xt - ab.sqrt() * Mu) / (ab * (Sd * Sd) + 1 - ab);
        };
        using var sampler = new DpmSolverPlusPlus(s, 12);
        using var a = sampler.Sample(model, [4, 1, 3, 3], new Generator(5));
        using var other = sampler.Sample(model, [6, 1, 3, 3], new Generator(9));
        using var b = sampler.Sample(model, [4, 1, 3, 3], new Generator(5));
        Assert.True(a.Samples.equal(b.Samples).all().item<bool>(), "the second run with the same seed differs: state leaked between runs");

        // Two batches through BatchedSampling equal two runs on one generator, one after the other.
        using var batched = BatchedSampling.Sample(sampler, (_, _) => model, [1, 3, 3], count: 8, batchSize: 4, seed: 11);
        using var g = new Generator(11);
        using var first = sampler.Sample(model, [4, 1, 3, 3], g);
        using var second = sampler.Sample(model, [4, 1, 3, 3], g);
        Assert.True(batched.equal(cat([first.Samples, second.Samples], 0)).all().item<bool>());
        Assert.False(first.Samples.equal(second.Samples).all().item<bool>());
    }

    [Fact]
    public void LogSnrSpacingIsDistinctDescendingAndEvenInLambda()
    {
        using var s = new NoiseSchedule(ScheduleKind.Cosine, 500);
        foreach (int n in new[] { 1, 2, 10, 20, 500 })
        {
            var ts = DpmSolverPlusPlus.LogSnrSpaced(s, n);
            Assert.Equal(n, ts.Length);
            Assert.Equal(499, ts[0]);
            if (n > 1) Assert.Equal(0, ts[^1]);
            Assert.True(ts.Zip(ts.Skip(1)).All(p => p.First > p.Second), string.Join(",", ts));
        }
        // For 20 steps, the λ gaps after the first step are within one time step's λ change of (λ_0 − λ_min)/19.
        var t20 = DpmSolverPlusPlus.LogSnrSpaced(s, 20);
        var lambdas = t20.Select(t => DpmSolverPlusPlus.Lambda(s.AlphasCumprod[t])).ToArray();
        double gap = (lambdas[^1] - DpmSolverPlusPlus.LambdaMin) / 19;
        for (int i = 2; i < 20; i++)
            Assert.InRange(lambdas[i] - lambdas[i - 1], 0.5 * gap, 1.5 * gap);
        Assert.Throws<ArgumentOutOfRangeException>(() => DpmSolverPlusPlus.LogSnrSpaced(s, 501));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DpmSolverPlusPlus(s, 0));
    }
}

/// <summary><c>dpm++</c> in sample, eval and train's final grid, as a user types it.</summary>
public class DpmSolverCliTests
{
    [Fact]
    public void DpmSolverInTrainSampleAndEvalAndBadStepCountsAreRefused()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        // train's final grid with DPM-Solver++ (Tiny has T = 20)
        var train = Cli.TrainTiny(dir.Path, run, "--samples", "4", "--sampler", "dpm++", "--sample-steps", "5", "--threads", "1");
        Assert.Contains("dpm++-5", train.Stdout);
        Assert.True(File.Exists(Path.Combine(run, "samples.png")));

        var sample = Cli.Run(dir.Path, "sample", "--checkpoint", run, "--sampler", "dpm++", "--steps", "6", "--count", "4",
            "--out", dir["dpm.png"], "--threads", "1");
        Assert.True(sample.ExitCode == 0, sample.All);
        Assert.Contains("dpm++-6", sample.Stdout);
        Assert.True(File.Exists(dir["dpm.png"]));

        var eval = Cli.Run(dir.Path, "eval", "--checkpoint", run, "--samplers", "dpm++:3,dpm++:30", "--count", "20", "--batch-size", "20",
            "--threads", "1");
        Assert.True(eval.ExitCode == 0, eval.All);
        Assert.Contains("| dpm++-3 | 3 |", eval.Stdout);
        // more steps than T = 20: announced and clamped, never silently
        Assert.Contains("dpm++: 30 steps asked, but the model has T = 20", eval.Stdout);
        Assert.Contains("| dpm++-20 | 20 |", eval.Stdout);

        foreach (var bad in new[] { "dpm++:0", "dpm++:-3", "dpm++:x", "dpm++:2:3" })
        {
            var r = Cli.Run(dir.Path, "eval", "--checkpoint", run, "--samplers", bad);
            Assert.Equal(2, r.ExitCode);
            Assert.Contains($"error: --samplers: '{bad}' is not a sampler", r.Stderr);
            Assert.Contains("dpm++:N", r.Stderr);
            Assert.Single(r.Stderr.Trim().Split('\n'));
        }
        var zero = Cli.Run(dir.Path, "sample", "--checkpoint", run, "--sampler", "dpm++", "--steps", "0");
        Assert.NotEqual(0, zero.ExitCode);
        Assert.Contains("--steps must be between 1 and", zero.Stderr);      // the option parser's range check
        Assert.DoesNotContain("   at ", zero.Stderr);
    }
}
