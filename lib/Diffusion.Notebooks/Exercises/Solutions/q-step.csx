// Exercise q-step: one step of the forward process,   x_t = √(1 − β_t)·x_{t−1} + √β_t·ε
//   s: the schedule (β_t is s.Betas[t]);  xPrev: x_{t−1}, [B, C, H, W];  t: [B] time indices 0…T−1, one per image;
//   noise: ε, the shape of xPrev.  Return x_t, the shape of xPrev.
Tensor MyQStep(NoiseSchedule s, Tensor xPrev, Tensor t, Tensor noise)
{
    var beta = s.Extract(s.Betas, t, xPrev.shape);              // β_t for each image, [B, 1, 1, 1]
    return (1 - beta).sqrt() * xPrev + beta.sqrt() * noise;     // √(1 − β_t)·x_{t−1} + √β_t·ε
}
