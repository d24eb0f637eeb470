// Exercise q-sample: the closed form,   x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε
//   x0: [B, C, H, W];  t: [B] time indices 0…T−1, one per image;  noise: ε, the shape of x0.  Return x_t.
Tensor MyQSample(NoiseSchedule s, Tensor x0, Tensor t, Tensor noise)
{
    var sqrtAlphaBar = s.Extract(s.SqrtAlphasCumprod, t, x0.shape);                  // √ᾱ_t, [B, 1, 1, 1]
    var sqrtOneMinusAlphaBar = s.Extract(s.SqrtOneMinusAlphasCumprod, t, x0.shape);   // √(1 − ᾱ_t)
    return sqrtAlphaBar * x0 + sqrtOneMinusAlphaBar * noise;
}
