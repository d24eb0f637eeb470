// Exercise latent-scale:   s = 1 / std(z)   over every element of a batch of latents z
//   latents: [N, C, h, w] (any shape).  Return s as a double, so that s·z has standard deviation 1.
double MyScalingFactor(Tensor latents)
{
    return 1.0 / latents.to(ScalarType.Float64).std().item<double>();
}
