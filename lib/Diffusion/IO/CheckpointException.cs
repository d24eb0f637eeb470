namespace Diffusion.IO;

/// <summary>
/// Thrown for a checkpoint or another model file that cannot be used (missing, a folder, a device, too large, damaged,
/// of another kind or version); the message says why and what to do.
/// </summary>
public sealed class CheckpointException(string message, Exception? inner = null) : Exception(message, inner);
