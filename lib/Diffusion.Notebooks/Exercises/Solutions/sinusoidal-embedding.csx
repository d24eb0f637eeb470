// Exercise sinusoidal-embedding:   emb(t) = [sin(t·ω_0) … sin(t·ω_{d/2−1}), cos(t·ω_0) … cos(t·ω_{d/2−1})]
//   with ω_i = 10000^(−i/(d/2−1)) = exp(−i·ln(10000)/(d/2 − 1)),  i = 0 … d/2 − 1.
//   time: [B] Int64 time steps;  dim: d (even, at least 4).  Return [B, d]: each row d/2 sines, then d/2 cosines.
Tensor MyEmbedding(Tensor time, int dim)
{
    int half = dim / 2;
    double step = Math.Log(10000) / (half - 1);
    var freqs = exp(arange(half, dtype: ScalarType.Float32) * -step);               // ω_i, [d/2]
    var args = time.to(ScalarType.Float32).unsqueeze(1) * freqs.unsqueeze(0);      // t·ω_i, [B, d/2]
    return cat(new[] { args.sin(), args.cos() }, -1);                               // [B, d]
}
