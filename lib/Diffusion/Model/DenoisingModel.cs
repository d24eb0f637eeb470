namespace Diffusion.Model;

// A network as the trainer, the samplers and guidance call it. They live with the networks, upstream of training and
// sampling, so that both of those stages can name them without one reaching into the other.

/// <summary>The network as a sampler sees it: model(x_t, t) → its prediction (ε, x_0 or v).</summary>
public delegate Tensor DenoisingModel(Tensor xt, Tensor t);

/// <summary>A class-conditional network as guidance sees it: model(x_t, t, y) → its prediction (ε, x_0 or v).</summary>
/// <param name="classes">LongTensor [B] of labels 0..K−1, or K (the "no label" index ∅) per image.</param>
public delegate Tensor ConditionalDenoisingModel(Tensor xt, Tensor t, Tensor classes);
