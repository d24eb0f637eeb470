using Diffusion.Evaluation;

namespace Diffusion.Tests;

/// <summary>
/// The sample-quality metric: the Fréchet distance against analytic cases, the feature statistics against a hand loop,
/// the nearest-neighbour search against brute force, and the shipped classifier against the t10k labels.
/// </summary>
public class EvaluationTests
{
    static Tensor RandomSpd(int d, Generator g)
    {
        var a = randn([d, d], dtype: ScalarType.Float64, generator: g);
        return a.matmul(a.t()) / d + 0.1 * eye(d, dtype: ScalarType.Float64);
    }

    [Fact]
    public void FrechetDistanceOfDiagonalGaussiansIsTheSumOfMeanAndStdDifferences()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(3);
        int d = 12;
        var mu1 = randn([d], dtype: ScalarType.Float64, generator: g);
        var mu2 = randn([d], dtype: ScalarType.Float64, generator: g);
        var v1 = rand([d], dtype: ScalarType.Float64, generator: g) + 0.1;
        var v2 = rand([d], dtype: ScalarType.Float64, generator: g) + 0.1;
        // Commuting (diagonal) covariances: (Σ₁Σ₂)^{1/2} = diag(√(a_i b_i)), so d² = Σ(μ₁−μ₂)² + Σ(√a_i − √b_i)².
        double expected = 0;
        var m1 = mu1.data<double>().ToArray(); var m2 = mu2.data<double>().ToArray();
        var a = v1.data<double>().ToArray(); var b = v2.data<double>().ToArray();
        for (int i = 0; i < d; i++) expected += Math.Pow(m1[i] - m2[i], 2) + Math.Pow(Math.Sqrt(a[i]) - Math.Sqrt(b[i]), 2);
        double got = FrechetDistance.Compute(mu1, diag(v1), mu2, diag(v2));
        Assert.Equal(expected, got, 1e-9);

        // The distance does not depend on the basis: rotate both Gaussians by the same orthogonal Q.
        var (q, _) = linalg.qr(randn([d, d], dtype: ScalarType.Float64, generator: g));
        double rotated = FrechetDistance.Compute(q.matmul(mu1), q.matmul(diag(v1)).matmul(q.t()), q.matmul(mu2), q.matmul(diag(v2)).matmul(q.t()));
        Assert.Equal(expected, rotated, 1e-8);
    }

    [Fact]
    public void FrechetDistanceOfAScaledCovarianceAndOfItselfAreKnown()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(5);
        int d = 9;
        var sigma = RandomSpd(d, g);
        var mu = randn([d], dtype: ScalarType.Float64, generator: g);
        // Same Gaussian: 0.
        Assert.Equal(0, FrechetDistance.Compute(mu, sigma, mu, sigma), 1e-8);
        // Σ₂ = c²Σ₁ (non-diagonal, commuting): tr(Σ + c²Σ − 2cΣ) = (1 − c)² tr Σ; plus a mean shift δ: ‖δ‖².
        double c = 1.7;
        var shift = full([d], 0.5, dtype: ScalarType.Float64);
        double expected = Math.Pow(1 - c, 2) * sigma.trace().item<double>() + 0.25 * d;
        Assert.Equal(expected, FrechetDistance.Compute(mu, sigma, mu + shift, c * c * sigma), 1e-8);
        // Symmetric, and non-commuting covariances agree with the scalar formula in one dimension embedded twice.
        var s2 = RandomSpd(d, g);
        Assert.Equal(FrechetDistance.Compute(mu, sigma, mu, s2), FrechetDistance.Compute(mu, s2, mu, sigma), 1e-7);
        Assert.Equal(Math.Pow(2.0 - 5.0, 2) + Math.Pow(Math.Sqrt(4.0) - Math.Sqrt(9.0), 2),
            FrechetDistance.Compute(tensor(new[] { 2.0 }), tensor(new[,] { { 4.0 } }), tensor(new[] { 5.0 }), tensor(new[,] { { 9.0 } })), 1e-12);
    }

    [Fact]
    public void FeatureStatisticsAreTheMeanAndUnbiasedCovarianceOfTheRows()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(7);
        int n = 50, d = 4;
        var f = randn([n, d], dtype: ScalarType.Float64, generator: g) * 3 + 1;
        using var stats = FeatureStatistics.Of(f);
        var x = f.data<double>().ToArray();
        for (int i = 0; i < d; i++)
        {
            double mi = 0;
            for (int r = 0; r < n; r++) mi += x[r * d + i];
            mi /= n;
            Assert.Equal(mi, stats.Mean[i].item<double>(), 1e-12);
            for (int j = 0; j < d; j++)
            {
                double mj = 0;
                for (int r = 0; r < n; r++) mj += x[r * d + j];
                mj /= n;
                double c = 0;
                for (int r = 0; r < n; r++) c += (x[r * d + i] - mi) * (x[r * d + j] - mj);
                Assert.Equal(c / (n - 1), stats.Covariance[i, j].item<double>(), 1e-10);
            }
        }
    }

    static readonly Lazy<(ImageDataset Train, ImageDataset Test)> Data = new(() =>
        (ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train: true), ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train: false)));

    /// <summary>The shipped classifier and its quality measures on Fashion-MNIST; disposes both.</summary>
    sealed class ShippedQuality : IDisposable
    {
        readonly FashionClassifier model = FashionClassifier.Load(ShippedClassifier);
        public SampleQuality Quality { get; }
        public ShippedQuality() => Quality = new SampleQuality(model, Data.Value.Train, Data.Value.Test);
        public void Deconstruct(out SampleQuality quality, out ImageDataset train, out ImageDataset test) =>
            (quality, train, test) = (Quality, Data.Value.Train, Data.Value.Test);
        public void Dispose()
        {
            Quality.Dispose();
            model.Dispose();
        }
    }

    static string ShippedClassifier => Path.Combine(TestSetup.RepoRoot, "data", "classifier", FashionClassifier.ShippedFileName);

    [Fact]
    public void ShippedClassifierIsAtLeast90PercentRightOnT10kAsItsFileSays()
    {
        using var model = FashionClassifier.Load(ShippedClassifier);
        double accuracy = ClassifierTraining.Accuracy(model, Data.Value.Test);
        Assert.True(accuracy >= 0.90, $"t10k accuracy {accuracy:P2} < 90 %");
        Assert.Equal(model.Info.TestAccuracy, accuracy, 1e-9);           // the number in the file (and data/README.md) is true
        Assert.Equal(FashionClassifier.DefaultFeatureDim, model.FeatureDim);
    }

    [Fact]
    public void NearestTrainingImageAgreesWithBruteForceAndFindsCopies()
    {
        using var shipped = new ShippedQuality();
        var (quality, train, test) = shipped;
        using var scope = NewDisposeScope();
        // Three exact copies of training images, two held-out test images, one slightly perturbed copy.
        var trainImages = Transforms.ToSignedUnit(train.Images);
        var copies = trainImages.index_select(0, tensor(new long[] { 17, 31337, 59999 }));
        var fresh = Transforms.ToSignedUnit(test.Images.narrow(0, 9000, 2));
        using var g = new Generator(1);
        var perturbed = (trainImages[123] + 0.05 * randn([1, 28, 28], generator: g)).unsqueeze(0);
        var images = cat([copies, fresh, perturbed], 0);
        var nearest = quality.Nearest(images);

        Assert.Equal([17L, 31337L, 59999L], nearest.Index.Take(3));
        Assert.All(nearest.Distance.Take(3), v => Assert.Equal(0, v));
        var flatTrain = trainImages.flatten(1);
        for (int i = 0; i < images.shape[0]; i++)
        {
            using var inner = NewDisposeScope();
            var d2 = (flatTrain - images[i].flatten()).pow(2).sum(1);          // direct differences, not the ‖a‖²+‖b‖²−2ab expansion
            var (value, index) = d2.min(0);
            double rms = Math.Sqrt(value.item<float>()) / (2 * 28);
            Assert.Equal(rms, nearest.Distance[i], 1e-4);
            if (i >= 3) Assert.Equal(index.item<long>(), nearest.Index[i]);
        }
        Assert.True(nearest.Distance[3] > 0.02 && nearest.Distance[4] > 0.02, "held-out test images should not sit on training images");
    }

    [Fact]
    public void FcdOrdersRealBlurredAndNoiseImagesAndIsZeroForTheReferenceItself()
    {
        using var shipped = new ShippedQuality();
        var (quality, train, test) = shipped;
        using var scope = NewDisposeScope();
        int n = 500;
        var reference = Transforms.ToSignedUnit(test.Images.narrow(0, 0, SampleQuality.ReferenceCount));
        Assert.Equal(0, quality.Fcd(reference), 1e-6);

        double floor = quality.RealFloor(n);
        var real = Transforms.ToSignedUnit(test.Images.narrow(0, SampleQuality.ReferenceCount, n));
        Assert.Equal(floor, quality.Fcd(real), 1e-9);
        using var g = new Generator(2);
        var slightlyNoisy = (real + 0.2 * randn(real.shape, generator: g)).clamp(-1, 1);
        var veryNoisy = (real + 0.8 * randn(real.shape, generator: g)).clamp(-1, 1);
        double ceiling = quality.NoiseCeiling(n);
        double slight = quality.Fcd(slightlyNoisy), heavy = quality.Fcd(veryNoisy);
        Assert.True(floor < slight && slight < heavy && heavy < ceiling,
            $"expected floor < slightly noisy < very noisy < noise: {floor:F3}, {slight:F3}, {heavy:F3}, {ceiling:F3}");
        // A model that only ever draws one class is far from the reference even though its images are real.
        var onlyTrousers = Transforms.ToSignedUnit(test.Images.index_select(0, nonzero(test.Labels!.eq(1)).flatten().narrow(0, 0, n)));
        Assert.True(quality.Fcd(onlyTrousers) > 10 * floor, "a single class should score much worse than the floor");
    }

    [Fact]
    public void DamagedClassifierFileGivesOneClearError()
    {
        using var dir = TestSetup.Temp();
        var bytes = File.ReadAllBytes(ShippedClassifier);
        bytes[bytes.Length / 2] ^= 0xFF;
        File.WriteAllBytes(dir["bad.bin"], bytes);
        var e = Assert.Throws<InvalidDataException>(() => FashionClassifier.Load(dir["bad.bin"]));
        Assert.Contains("damaged or truncated", e.Message);
        File.WriteAllBytes(dir["other.bin"], new byte[100]);
        Assert.Contains("not a Fashion-MNIST classifier", Assert.Throws<InvalidDataException>(() => FashionClassifier.Load(dir["other.bin"])).Message);
        Assert.Contains("train-classifier", Assert.Throws<FileNotFoundException>(() => FashionClassifier.Load(dir["missing.bin"])).Message);
    }

    [Fact]
    public void EvalCommandMeasuresACheckpointAndRejectsBadInput()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        var train = Cli.TrainTiny(dir.Path, run, "--samples", "0");
        var eval = Cli.Run(dir.Path, "eval", "--checkpoint", run, "--samplers", "ddim:3,ddim:2", "--count", "40", "--batch-size", "20",
            "--threads", "1", "--json", dir["eval.json"], "--grids", dir["grids"]);
        Assert.True(eval.ExitCode == 0, eval.All);
        Assert.Contains("FCD floor (40 held-out real images", eval.Stdout);
        Assert.Contains("| ddim-3 | 3 |", eval.Stdout);
        Assert.Contains("| ddim-2 | 2 |", eval.Stdout);
        Assert.True(File.Exists(Path.Combine(dir["grids"], "ddim-3.png")));
        var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir["eval.json"])).RootElement;
        double floor = json.GetProperty("floor").GetDouble(), ceiling = json.GetProperty("noiseCeiling").GetDouble();
        var results = json.GetProperty("results");
        Assert.Equal(2, results.GetArrayLength());
        foreach (var r in results.EnumerateArray())
        {
            // Four training steps of a tiny model: its samples are noise-like, far above the real floor.
            double fcd = r.GetProperty("Fcd").GetDouble();
            Assert.True(fcd > 5 * floor, $"an untrained model scored FCD {fcd} near the real floor {floor}");
            Assert.Equal(1.0, r.GetProperty("ClassShares").EnumerateArray().Sum(x => x.GetDouble()), 1e-9);
        }
        Assert.True(ceiling > floor);

        var bad = Cli.Run(dir.Path, "eval", "--checkpoint", run, "--samplers", "ddim:x");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("error: --samplers: 'ddim:x' is not a sampler", bad.Stderr);
        File.WriteAllBytes(dir["bad.bin"], new byte[100]);
        var badClassifier = Cli.Run(dir.Path, "eval", "--checkpoint", run, "--classifier", dir["bad.bin"]);
        Assert.Equal(2, badClassifier.ExitCode);
        Assert.Contains("not a Fashion-MNIST classifier", badClassifier.Stderr);
        Assert.Single(badClassifier.Stderr.Trim().Split('\n'));
    }
    [Fact]
    public void BatchedSamplingIsSeededAndItsFirstBatchIsAPlainSamplerRun()
    {
        using var scope = NewDisposeScope();
        using var schedule = new Diffusion.Schedules.NoiseSchedule(Diffusion.Schedules.ScheduleKind.Cosine, 50);
        var sampler = new Diffusion.Sampling.DdpmSampler(schedule);
        // A stand-in ε-model with some structure: a fixed fraction of x_t, different per time step.
        DenoisingModel eps = (x, t) => x * (0.3 + 0.001 * t.to(ScalarType.Float32)).reshape(-1, 1, 1, 1);
        Tensor Run(int seed) => Diffusion.Sampling.BatchedSampling.Sample(sampler, (_, _) => eps, [1, 4, 4], 5, 2, seed);
        var a = Run(11);
        Assert.Equal(new long[] { 5, 1, 4, 4 }, a.shape);
        Assert.True(a.allclose(Run(11), 0, 0), "same seed, different images");
        Assert.False(a.allclose(Run(12), 0, 0), "another seed gave the same images");
        using var g = new Generator(11);
        using var direct = sampler.Sample(eps, [2, 1, 4, 4], g);
        Assert.True(direct.Samples.allclose(a.narrow(0, 0, 2), 0, 0), "the first batch differs from a direct sampler run with the same generator");
        var steps = new List<int>();
        Diffusion.Sampling.BatchedSampling.Sample(sampler, (_, _) => eps, [1, 4, 4], 5, 2, 11,
            progress: new Progress(p => steps.Add(p.StepsDone)));
        Assert.Equal(3 * 50, steps.Max());                                    // three batches of 50 steps
        Assert.True(steps.SequenceEqual(steps.Order()), "progress went backwards");
    }

    [Fact]
    public void EvalGuidanceSweepReportsLabelAccuracyPerWeight()
    {
        using var dir = TestSetup.Temp();
        var run = dir["run"];
        var train = Cli.TrainTiny(dir.Path, run, "--conditional", "--samples", "0");
        var eval = Cli.Run(dir.Path, "eval", "--checkpoint", run, "--samplers", "ddim:2", "--guidance", "0,1", "--count", "20",
            "--batch-size", "10", "--threads", "1", "--json", dir["eval.json"]);
        Assert.True(eval.ExitCode == 0, eval.All);
        Assert.Contains("| ddim-2 w=0 | 2 |", eval.Stdout);
        Assert.Contains("| ddim-2 w=1 | 4 |", eval.Stdout);                  // a guided step is one pass over a doubled batch
        var results = System.Text.Json.JsonDocument.Parse(File.ReadAllText(dir["eval.json"])).RootElement.GetProperty("results");
        Assert.Equal(2, results.GetArrayLength());
        foreach (var r in results.EnumerateArray())
        {
            // Labels cycle 0..9 (2 images per class), so the classifier can agree with at most min(share_c, 1/10) per class.
            double accuracy = r.GetProperty("LabelAccuracy").GetDouble();
            double bound = r.GetProperty("ClassShares").EnumerateArray().Sum(x => Math.Min(x.GetDouble(), 0.1));
            Assert.InRange(accuracy, 0, bound + 1e-12);
            Assert.Equal(0, accuracy * 20 % 1, 1e-9);                         // a count of images out of 20
        }

        var unconditional = dir["plain"];
        Assert.Equal(0, Cli.Run(dir.Path, ["train", "--out", unconditional, .. Cli.Tiny, "--samples", "0"]).ExitCode);
        var refused = Cli.Run(dir.Path, "eval", "--checkpoint", unconditional, "--guidance", "1", "--count", "4");
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("needs a class-conditional model", refused.Stderr);
        var negative = Cli.Run(dir.Path, "eval", "--checkpoint", run, "--guidance", "-2", "--count", "4");
        Assert.Equal(2, negative.ExitCode);
        Assert.Contains("is not a guidance weight w ≥ −1", negative.Stderr);
    }

    sealed class Progress(Action<Diffusion.Sampling.BatchedSamplingProgress> report) : IProgress<Diffusion.Sampling.BatchedSamplingProgress>
    {
        public void Report(Diffusion.Sampling.BatchedSamplingProgress value) => report(value);
    }
}
