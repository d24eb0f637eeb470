namespace Diffusion.Forward;

/// <summary>The names of the prediction types (<c>train --prediction</c>); the enum is in DenoisingLoss.cs.</summary>
public static class Predictions
{
    public static readonly NameTable<Prediction> Names = new(("eps", Prediction.Epsilon), ("x0", Prediction.Start), ("v", Prediction.Velocity));
}

/// <summary>The names of the loss types (<c>train --loss</c>); the enum is in DenoisingLoss.cs.</summary>
public static class LossTypes
{
    public static readonly NameTable<LossType> Names = new(("l1", LossType.L1), ("l2", LossType.L2), ("huber", LossType.Huber));
}
