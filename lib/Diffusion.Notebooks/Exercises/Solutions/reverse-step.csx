// Exercise reverse-step: one step of Algorithm 2 with σ_t² = β_t:
//   x_{t−1} = 1/√α_t·(x_t − β_t/√(1 − ᾱ_t)·ε_θ) + σ_t·z,   with z = 0 at the last step (t = 0 in code)
//   xt: [B, C, H, W];  t: the time index 0…T−1, the same for the whole batch;  epsTheta: the network's ε_θ(x_t, t);
//   z: fresh noise, the shape of xt.  Return x_{t−1}.
Tensor MyReverseStep(NoiseSchedule s, Tensor xt, int t, Tensor epsTheta, Tensor z)
{
    double alpha = s.Alphas[t], alphaBar = s.AlphasCumprod[t], beta = s.Betas[t];
    var mean = (xt - beta / Math.Sqrt(1 - alphaBar) * epsTheta) / Math.Sqrt(alpha);  // μ_θ(x_t, t)
    return t > 0 ? mean + Math.Sqrt(beta) * z : mean;                              // + σ_t·z, except at the last step
}
