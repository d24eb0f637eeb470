namespace Diffusion.Training;

/// <summary>
/// The gradient step every trainer of the course takes after its loss: AdamW over the trainable parameters (learning rate
/// and weight decay of <see cref="TrainingOptions"/>); each step stops on a NaN or infinite loss, clears the gradients,
/// back-propagates, clips the gradient norm to <see cref="TrainingOptions.GradientClipNorm"/> (when &gt; 0), sets the
/// learning rate of the warm-up/cosine plan and steps.
/// </summary>
public sealed class AdamWStep : IDisposable
{
    readonly Parameter[] parameters;
    readonly double clipNorm;

    /// <summary>The optimiser itself (its moments are saved with a resumable checkpoint).</summary>
    public AdamW Optimizer { get; }

    public AdamWStep(IEnumerable<Parameter> parameters, TrainingOptions options)
    {
        this.parameters = parameters.ToArray();
        clipNorm = options.GradientClipNorm;
        Optimizer = optim.AdamW(this.parameters, lr: options.LearningRate, weight_decay: options.WeightDecay);
    }

    /// <summary>
    /// One step on <paramref name="loss"/> at <paramref name="learningRate"/>; returns the loss. A loss that is not finite
    /// throws <see cref="TrainingDivergedException"/> with <paramref name="diverged"/>'s message (of the loss) before
    /// anything changes.
    /// </summary>
    public double Take(Tensor loss, double learningRate, Func<double, string> diverged)
    {
        double value = loss.item<float>();
        if (!double.IsFinite(value)) throw new TrainingDivergedException(diverged(value));
        Optimizer.zero_grad();
        loss.backward();
        if (clipNorm > 0) nn.utils.clip_grad_norm_(parameters, clipNorm);
        foreach (var group in Optimizer.ParamGroups) group.LearningRate = learningRate;
        Optimizer.step();
        return value;
    }

    public void Dispose() => Optimizer.Dispose();
}
