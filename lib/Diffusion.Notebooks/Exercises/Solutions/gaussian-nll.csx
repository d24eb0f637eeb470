// Exercise gaussian-nll:   −log N(x; μ, σ²) = ½·log(2π) + log σ + (x − μ)²/(2σ²)   for every pixel
//   x, mean: [B, C, H, W];  std: [B], one σ per image.  Return a tensor of the shape of x.
//   Reshape std to [B, 1, 1, 1] so that it broadcasts over channels and pixels.
Tensor MyGaussianNll(Tensor x, Tensor mean, Tensor std)
{
    var s = std.reshape(-1, 1, 1, 1);                                            // [B] → [B, 1, 1, 1]
    return 0.5 * Math.Log(2 * Math.PI) + s.log() + (x - mean).pow(2) / (2 * s.pow(2));
}
