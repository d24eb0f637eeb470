namespace Diffusion.Data;

/// <summary>Pixel transforms between stored images (uint8 0..255) and the model's data space [−1, 1].</summary>
public static class Transforms
{
    /// <summary>x ↦ x/127.5 − 1: uint8 pixels to floats in [−1, 1] (so that x_T ~ N(0, I) matches the data scale).</summary>
    public static Tensor ToSignedUnit(Tensor pixels)
    {
        using var scope = NewDisposeScope();
        return (pixels.to(ScalarType.Float32) / 127.5 - 1).MoveToOuterDisposeScope();
    }

    /// <summary>x ↦ round((x + 1)·127.5), clamped: floats in [−1, 1] back to uint8 pixels.</summary>
    public static Tensor ToPixels(Tensor signedUnit)
    {
        using var scope = NewDisposeScope();
        return ((signedUnit.detach().to(ScalarType.Float32).cpu() + 1) * 127.5).round().clamp(0, 255)
            .to(ScalarType.Byte).MoveToOuterDisposeScope();
    }

    /// <summary>Flips each image of a batch [B, C, H, W] left–right with probability 1/2.</summary>
    public static Tensor RandomHorizontalFlip(Tensor batch, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var flip = rand([batch.shape[0]], generator: generator, device: batch.device) < 0.5;
        return where(flip.reshape(-1, 1, 1, 1), batch.flip(3), batch).MoveToOuterDisposeScope();
    }
}
