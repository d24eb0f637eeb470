using Diffusion.Data;

namespace Diffusion.Evaluation;

/// <summary>
/// How close each image of a set is to its nearest training image, as a per-pixel RMS difference in [0, 1] intensity
/// units (0 = an exact copy, ≈ 0.1 is typical for a new garment). Samples that sit much closer to a training image than
/// held-out real images do are memorised copies.
/// </summary>
public sealed record NearestTrainingImages(double[] Distance, long[] Index)
{
    public double Min => Distance.Min();
    public double Median => Quantile(0.5);
    public double Quantile(double q)
    {
        var sorted = Distance.Order().ToArray();
        return sorted[(int)Math.Clamp(Math.Round(q * (sorted.Length - 1)), 0, sorted.Length - 1)];
    }
}

/// <summary>The numbers <c>eval</c> prints for one set of generated images.</summary>
public sealed record SampleQualityReport
{
    public int Count { get; init; }
    /// <summary>FCD of the generated images against the reference half of t10k.</summary>
    public double Fcd { get; init; }
    /// <summary>FCD of as many held-out real images (the other half of t10k): the best a perfect model could score at this count.</summary>
    public double RealFloor { get; init; }
    /// <summary>FCD of as many images of clipped Gaussian noise: what "nothing learned" scores.</summary>
    public double NoiseCeiling { get; init; }
    /// <summary>Share of the generated images per predicted class (10 values summing to 1).</summary>
    public double[] ClassShares { get; init; } = [];
    /// <summary>Nearest-training-image distances of the generated images.</summary>
    public required NearestTrainingImages Generated { get; init; }
    /// <summary>The same for as many held-out real images: the yardstick for "new" images.</summary>
    public required NearestTrainingImages HeldOut { get; init; }
    /// <summary>Generated images closer to a training image than the closest held-out real image is.</summary>
    public int CloserThanAnyHeldOut { get; init; }
}

/// <summary>
/// Sample quality against Fashion-MNIST: the Fréchet distance between classifier features of generated and real
/// images ("FCD", the course's FID), with its real-vs-real floor and noise ceiling at the same sample count, the
/// predicted class mix, and a memorisation check against the 60 000 training images.
/// Reference set: t10k images 0–4999; held-out real set for the floor: t10k images 5000–9999 (disjoint halves).
/// </summary>
public sealed class SampleQuality : IDisposable
{
    public const int ReferenceCount = 5000;
    readonly FashionClassifier classifier;
    readonly Tensor trainFlat;     // [60000, 784] in [−1, 1]
    readonly Tensor heldOut;       // [5000, 1, 28, 28] in [−1, 1]
    readonly Tensor trainSquaredNorms;
    public FeatureStatistics Reference { get; }
    // The yardsticks depend only on the count (and the noise seed); a comparison of several samplers asks for them once each.
    readonly Dictionary<int, double> floors = new();
    readonly Dictionary<(int, int), double> ceilings = new();
    readonly Dictionary<int, NearestTrainingImages> heldOutNearest = new();

    public SampleQuality(FashionClassifier classifier, ImageDataset train, ImageDataset test)
    {
        if (test.Count < 2 * ReferenceCount)
            throw new ArgumentException($"the test set needs {2 * ReferenceCount} images for two disjoint halves, has {test.Count}");
        this.classifier = classifier;
        using var scope = NewDisposeScope();
        var testImages = Transforms.ToSignedUnit(test.Images);
        using (var features = classifier.FeaturesOf(testImages.narrow(0, 0, ReferenceCount)))
            Reference = FeatureStatistics.Of(features);
        heldOut = testImages.narrow(0, ReferenceCount, ReferenceCount).clone().DetachFromDisposeScope();
        trainFlat = Transforms.ToSignedUnit(train.Images).flatten(1).DetachFromDisposeScope();
        trainSquaredNorms = trainFlat.pow(2).sum(1).DetachFromDisposeScope();
    }

    /// <summary>FCD of images [N, 1, 28, 28] in [−1, 1] against the reference half of t10k.</summary>
    public double Fcd(Tensor images) => Fcd(classifier, images, Reference);

    /// <summary>μ and Σ of <paramref name="classifier"/>'s features φ(x) of images [N ≥ 2, 1, 28, 28] in [−1, 1]. Dispose them.</summary>
    public static FeatureStatistics Statistics(FashionClassifier classifier, Tensor images)
    {
        using var features = classifier.FeaturesOf(images);
        return FeatureStatistics.Of(features);
    }

    /// <summary>FCD of images [N, 1, 28, 28] in [−1, 1] against any reference statistics of the same classifier's features.</summary>
    public static double Fcd(FashionClassifier classifier, Tensor images, FeatureStatistics reference)
    {
        using var stats = Statistics(classifier, images);
        return FrechetDistance.Compute(stats, reference);
    }

    /// <summary>FCD of the first <paramref name="count"/> held-out real images: the floor at that sample count.</summary>
    public double RealFloor(int count)
    {
        if (floors.TryGetValue(count, out var known)) return known;
        using var scope = NewDisposeScope();
        return floors[count] = Fcd(heldOut.narrow(0, 0, Math.Min(count, heldOut.shape[0])));
    }

    /// <summary>FCD of <paramref name="count"/> images of N(0, I) noise clipped to [−1, 1]: the ceiling.</summary>
    public double NoiseCeiling(int count, int seed = 0)
    {
        if (ceilings.TryGetValue((count, seed), out var known)) return known;
        using var scope = NewDisposeScope();
        using var g = new Generator((ulong)seed);
        return ceilings[(count, seed)] = Fcd(randn([count, 1, 28, 28], generator: g).clamp(-1, 1));
    }

    /// <summary>Nearest training images of the first <paramref name="count"/> held-out real images: the yardstick for "new".</summary>
    public NearestTrainingImages HeldOutNearest(int count)
    {
        if (heldOutNearest.TryGetValue(count, out var known)) return known;
        using var held = heldOut.narrow(0, 0, Math.Min(count, heldOut.shape[0]));
        return heldOutNearest[count] = Nearest(held);
    }

    /// <summary>The nearest training image of each image (Euclidean distance over all pixels), as per-pixel RMS in [0, 1] units.</summary>
    public NearestTrainingImages Nearest(Tensor images)
    {
        using var scope = NewDisposeScope();
        var x = images.to(ScalarType.Float32).cpu().flatten(1);
        long n = x.shape[0], d = x.shape[1];
        var best = full([n], double.PositiveInfinity, dtype: ScalarType.Float32);
        var bestIndex = zeros([n], dtype: ScalarType.Int64);
        var xNorms = x.pow(2).sum(1, keepdim: true);
        const long chunk = 10000;
        for (long start = 0; start < trainFlat.shape[0]; start += chunk)
        {
            using var inner = NewDisposeScope();
            long len = Math.Min(chunk, trainFlat.shape[0] - start);
            var block = trainFlat.narrow(0, start, len);
            // ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b, one matrix product per block.
            var d2 = (xNorms + trainSquaredNorms.narrow(0, start, len).unsqueeze(0) - 2 * x.matmul(block.t())).clamp_min(0);
            var (value, index) = d2.min(1);
            var better = value < best;
            best.copy_(where(better, value, best));
            bestIndex.copy_(where(better, index + start, bestIndex));
        }
        // The expansion loses digits to cancellation (an exact copy may come out at 1e-4 instead of 0): recompute the
        // winner's distance from the pixel differences themselves.
        var exact = (x - trainFlat.index_select(0, bestIndex)).pow(2).sum(1);
        // Images live in [−1, 1]: a difference of 2 there is 1 in [0, 1] intensity; RMS over the d pixels.
        var rms = exact.sqrt() / (2 * Math.Sqrt(d));
        return new NearestTrainingImages(rms.to(ScalarType.Float64).data<double>().ToArray(), bestIndex.data<long>().ToArray());
    }

    /// <summary>Everything for one set of generated images [N, 1, 28, 28] in [−1, 1].</summary>
    public SampleQualityReport Evaluate(Tensor images, int noiseSeed = 0)
    {
        int n = (int)images.shape[0];
        var generated = Nearest(images);
        var real = HeldOutNearest(n);
        double[] shares;
        using (NewDisposeScope())
            shares = classifier.Predict(images).bincount(null, 10).to(ScalarType.Float64).data<double>().Select(c => c / n).ToArray();
        return new SampleQualityReport
        {
            Count = n,
            Fcd = Fcd(images),
            RealFloor = RealFloor(n),
            NoiseCeiling = NoiseCeiling(n, noiseSeed),
            ClassShares = shares,
            Generated = generated,
            HeldOut = real,
            CloserThanAnyHeldOut = generated.Distance.Count(v => v < real.Min),
        };
    }

    public void Dispose()
    {
        trainFlat.Dispose();
        trainSquaredNorms.Dispose();
        heldOut.Dispose();
        Reference.Dispose();
    }
}
