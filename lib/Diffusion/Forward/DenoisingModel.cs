namespace Diffusion.Forward;

// A network as the objectives, the trainers, the samplers and guidance call it: a function of (x_t, t). It lives with the
// forward process, upstream of the networks, training and sampling, so that every one of those stages can name it.

/// <summary>The network as a sampler sees it: model(x_t, t) → its prediction (ε, x_0 or v).</summary>
public delegate Tensor DenoisingModel(Tensor xt, Tensor t);

/// <summary>A class-conditional network as guidance sees it: model(x_t, t, y) → its prediction (ε, x_0 or v).</summary>
/// <param name="classes">LongTensor [B] of labels 0..K−1, or K (the "no label" index ∅) per image.</param>
public delegate Tensor ConditionalDenoisingModel(Tensor xt, Tensor t, Tensor classes);
