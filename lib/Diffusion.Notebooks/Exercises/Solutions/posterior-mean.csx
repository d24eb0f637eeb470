// Exercise posterior-mean:   μ̃_t = β_t·√ᾱ_{t−1}/(1 − ᾱ_t)·x_0 + (1 − ᾱ_{t−1})·√α_t/(1 − ᾱ_t)·x_t
//   x0, xt: [B, C, H, W];  t: [B] time indices 0…T−1, one per image.  Return μ̃_t, the shape of xt.
//   Build it from the terms s.Betas, s.Alphas, s.AlphasCumprod and s.AlphasCumprodPrev (ᾱ_{t−1}; 1 at t = 0),
//   not from the ready-made PosteriorMeanCoef1 and PosteriorMeanCoef2.
Tensor MyPosteriorMean(NoiseSchedule s, Tensor x0, Tensor xt, Tensor t)
{
    var beta = s.Extract(s.Betas, t, xt.shape);
    var alpha = s.Extract(s.Alphas, t, xt.shape);
    var alphaBar = s.Extract(s.AlphasCumprod, t, xt.shape);
    var alphaBarPrev = s.Extract(s.AlphasCumprodPrev, t, xt.shape);
    return beta * alphaBarPrev.sqrt() / (1 - alphaBar) * x0 + (1 - alphaBarPrev) * alpha.sqrt() / (1 - alphaBar) * xt;
}
