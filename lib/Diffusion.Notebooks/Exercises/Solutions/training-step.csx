// Exercise training-step: the loss of one step of Algorithm 1, for given t and ε:
//   x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε,   loss = the mean over batch and pixels of (ε − ε_θ(x_t, t))²
//   model: the network, called as model(xt, t);  x0: [B, C, H, W];  t: [B] time indices 0…T−1;  noise: ε.
//   Return the loss: a one-element tensor that loss.backward() can differentiate.
Tensor MyLoss(Func<Tensor, Tensor, Tensor> model, NoiseSchedule s, Tensor x0, Tensor t, Tensor noise)
{
    var xt = s.Extract(s.SqrtAlphasCumprod, t, x0.shape) * x0
           + s.Extract(s.SqrtOneMinusAlphasCumprod, t, x0.shape) * noise;    // x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε
    var predicted = model(xt, t);                                            // ε_θ(x_t, t)
    return nn.functional.mse_loss(predicted, noise);                         // mean of (ε − ε_θ)²
}
