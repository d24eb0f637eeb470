// Exercise posterior-variance:   β̃_t = β_t·(1 − ᾱ_{t−1}) / (1 − ᾱ_t)   for every t = 0…T−1
//   betas[t] = β_t,  alphasCumprod[t] = ᾱ_t  (both of length T).  Return β̃ as an array of length T.
//   At t = 0 nothing has been noised yet: ᾱ_{−1} = 1.
double[] MyPosteriorVariance(double[] betas, double[] alphasCumprod)
{
    var result = new double[betas.Length];
    for (int t = 0; t < betas.Length; t++)
    {
        double alphaBarPrev = t == 0 ? 1 : alphasCumprod[t - 1];                      // ᾱ_{t−1}, 1 before the first step
        result[t] = betas[t] * (1 - alphaBarPrev) / (1 - alphasCumprod[t]);
    }
    return result;
}
