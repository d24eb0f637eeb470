// Exercise respaced-betas:   β′_i = 1 − ᾱ_{τ_i} / ᾱ_{τ_{i−1}}   for every kept step i = 0…K−1, with ᾱ_{τ_{−1}} = 1
//   alphasCumprod[t] = ᾱ_t of the full schedule (length T);  kept = τ, ascending 0-based time steps (length K).
//   Return β′ as an array of length K.
double[] MyRespacedBetas(double[] alphasCumprod, int[] kept)
{
    var result = new double[kept.Length];
    double previous = 1;                                                         // ᾱ before the first kept step
    for (int i = 0; i < kept.Length; i++)
    {
        result[i] = 1 - alphasCumprod[kept[i]] / previous;
        previous = alphasCumprod[kept[i]];
    }
    return result;
}
