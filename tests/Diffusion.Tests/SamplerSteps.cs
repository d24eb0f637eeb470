
namespace Diffusion.Tests;

/// <summary>One sampler step at time step t, with the network called as <see cref="SamplingLoop"/> calls it.</summary>
static class SamplerSteps
{
    public static Tensor StepAt(this ISampler sampler, DenoisingModel model, Tensor xt, int t, Generator? generator = null)
    {
        int i = sampler.Plan.IndexOf(t);
        using var output = model(xt, full([xt.shape[0]], sampler.Plan.Timesteps[i], dtype: ScalarType.Int64));
        return sampler.Step(output, xt, i, generator);
    }
}
