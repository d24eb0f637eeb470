// Exercise latent-scale:   c = 1 / std(z)   over every element of a batch of latents z
//   latents: [N, C, h, w] (any shape).  Return c as a double, so that c·z has standard deviation 1.
double MyScalingFactor(Tensor latents)
{
    return 1.0 / latents.to(ScalarType.Float64).std().item<double>();
}
