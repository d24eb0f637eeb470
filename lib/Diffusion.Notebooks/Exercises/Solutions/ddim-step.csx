// Exercise ddim-step:   x̂_0 = (x_t − √(1 − ᾱ_t)·ε) / √ᾱ_t,   x_prev = √ᾱ_prev·x̂_0 + √(1 − ᾱ_prev)·ε   (DDIM, η = 0)
//   xt, eps: [B, C, H, W];  alphaBar = ᾱ_t, alphaBarPrev = ᾱ of the step the jump lands on (1 at the end).
//   Return x_prev, the shape of xt. No clipping of x̂_0.
Tensor MyDdimStep(Tensor xt, Tensor eps, double alphaBar, double alphaBarPrev)
{
    var x0 = (xt - Math.Sqrt(1 - alphaBar) * eps) / Math.Sqrt(alphaBar);          // the predicted clean image
    return Math.Sqrt(alphaBarPrev) * x0 + Math.Sqrt(1 - alphaBarPrev) * eps;     // re-noised to the earlier level
}
