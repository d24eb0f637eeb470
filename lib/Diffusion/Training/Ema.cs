namespace Diffusion.Training;

/// <summary>
/// Exponential moving average of a model's weights: θ_ema ← d·θ_ema + (1 − d)·θ after every optimiser step, with
/// d = min(decay, (1 + n)/(10 + n)) so that the average does not drag the random initial weights along early on.
/// Sampling from the EMA weights gives smoother, better images than the last raw weights.
/// </summary>
public sealed class Ema
{
    public double Decay { get; }
    readonly nn.Module averaged;
    readonly Tensor[] averageParameters;
    readonly Tensor[] modelParameters;

    /// <param name="model">The model being trained.</param>
    /// <param name="averaged">A model of the same architecture that holds the average (its weights are overwritten).</param>
    public Ema(nn.Module model, nn.Module averaged, double decay)
    {
        if (decay is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(decay), decay, "EMA decay must be in [0, 1)");
        Decay = decay;
        this.averaged = averaged;
        modelParameters = model.parameters().ToArray();
        averageParameters = averaged.parameters().ToArray();
        if (modelParameters.Length != averageParameters.Length)
            throw new ArgumentException("the EMA model does not have the same architecture as the model");
        averaged.eval();
        foreach (var p in averageParameters) p.requires_grad_(false);
    }

    /// <summary>Copies the model's weights into the average (at the start of training).</summary>
    public void CopyFromModel()
    {
        using var _ = no_grad();
        for (int i = 0; i < averageParameters.Length; i++) averageParameters[i].copy_(modelParameters[i]);
    }

    /// <summary>The decay used after optimiser step number <paramref name="updates"/> (0-based).</summary>
    public double DecayAt(int updates) => Math.Min(Decay, (1.0 + updates) / (10.0 + updates));

    /// <summary>θ_ema ← d·θ_ema + (1 − d)·θ.</summary>
    public void Update(int updates)
    {
        double d = DecayAt(updates);
        using var _ = no_grad();
        for (int i = 0; i < averageParameters.Length; i++)
            averageParameters[i].mul_(d).add_(modelParameters[i], alpha: 1 - d);
    }

    public nn.Module Averaged => averaged;
}
