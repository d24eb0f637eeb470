namespace Diffusion.Evaluation;

/// <summary>Mean μ [F] and covariance Σ [F, F] (float64, CPU) of a set of feature vectors — a Gaussian fitted to them.</summary>
public sealed class FeatureStatistics : IDisposable
{
    public Tensor Mean { get; }
    public Tensor Covariance { get; }
    public long Count { get; }

    /// <summary>Takes ownership of the tensors (they leave any dispose scope): dispose the statistics.</summary>
    public FeatureStatistics(Tensor mean, Tensor covariance, long count)
    {
        Mean = mean.DetachFromDisposeScope();
        Covariance = covariance.DetachFromDisposeScope();
        Count = count;
    }

    /// <summary>μ = mean of the rows, Σ = their unbiased covariance (divide by N − 1), as numpy.cov(rowvar=False).</summary>
    public static FeatureStatistics Of(Tensor features)
    {
        if (features.dim() != 2 || features.shape[0] < 2)
            throw new ArgumentException($"feature statistics need [N ≥ 2, F] features, got [{string.Join(", ", features.shape)}]");
        using var scope = NewDisposeScope();
        var f = features.to(ScalarType.Float64).cpu();
        var mu = f.mean([0]);
        var centred = f - mu;
        var sigma = centred.t().matmul(centred) / (f.shape[0] - 1);
        return new FeatureStatistics(mu.MoveToOuterDisposeScope(), sigma.MoveToOuterDisposeScope(), f.shape[0]);
    }

    public void Dispose()
    {
        Mean.Dispose();
        Covariance.Dispose();
    }
}

/// <summary>
/// The Fréchet (2-Wasserstein) distance between two Gaussians, as in FID (Heusel et al. 2017, eq. 6; Dowson &amp; Landau 1982):
/// d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^{1/2}).
/// The trace of the matrix square root is computed as Σᵢ √λᵢ of the symmetric PSD matrix Σ₁^{1/2} Σ₂ Σ₁^{1/2}, which has
/// the same eigenvalues as Σ₁Σ₂ — no non-symmetric square root (scipy.linalg.sqrtm) is needed.
/// </summary>
public static class FrechetDistance
{
    public static double Compute(FeatureStatistics a, FeatureStatistics b) => Compute(a.Mean, a.Covariance, b.Mean, b.Covariance);

    public static double Compute(Tensor mu1, Tensor sigma1, Tensor mu2, Tensor sigma2)
    {
        if (mu1.shape[0] != mu2.shape[0] || sigma1.shape[0] != mu1.shape[0] || sigma2.shape[0] != mu2.shape[0])
            throw new ArgumentException($"Fréchet distance between Gaussians of different dimensions ({mu1.shape[0]} vs {mu2.shape[0]})");
        using var scope = NewDisposeScope();
        var m1 = mu1.to(ScalarType.Float64).cpu();
        var m2 = mu2.to(ScalarType.Float64).cpu();
        var s1 = sigma1.to(ScalarType.Float64).cpu();
        var s2 = sigma2.to(ScalarType.Float64).cpu();
        var diff = m1 - m2;
        double meanTerm = diff.dot(diff).item<double>();
        var root1 = SymmetricSqrt(s1);
        var inner = root1.matmul(s2).matmul(root1);
        inner = (inner + inner.t()) / 2;
        double traceSqrt = linalg.eigvalsh(inner).clamp_min(0).sqrt().sum().item<double>();
        double d2 = meanTerm + s1.trace().item<double>() + s2.trace().item<double>() - 2 * traceSqrt;
        return Math.Max(0, d2);
    }

    /// <summary>S^{1/2} of a symmetric positive semi-definite matrix: V diag(√max(λ, 0)) Vᵀ.</summary>
    public static Tensor SymmetricSqrt(Tensor s)
    {
        using var scope = NewDisposeScope();
        var sym = (s + s.t()) / 2;
        var (lambda, v) = linalg.eigh(sym);
        return v.matmul(diag(lambda.clamp_min(0).sqrt())).matmul(v.t()).MoveToOuterDisposeScope();
    }
}
