// Exercise guided-noise:   ε̃ = (1 + w)·ε_c − w·ε_∅   (classifier-free guidance, Ho & Salimans eq. 6)
//   epsCond = ε_c, epsUncond = ε_∅: [B, C, H, W];  w ≥ −1 (w = 0: plain conditional, w = −1: unconditional).
//   Return ε̃, the shape of epsCond.
Tensor MyGuidedNoise(Tensor epsCond, Tensor epsUncond, double w)
{
    return (1 + w) * epsCond - w * epsUncond;
}
