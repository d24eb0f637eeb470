
namespace Diffusion.Cli;

/// <summary>
/// <c>bpd</c>: the variational bound L_vlb (DDPM eq. 5) of a checkpoint on Fashion-MNIST test images, in bits/dim,
/// for DDPM with all T or fewer (respaced) steps and each reverse variance (β, β̃, learned).
/// </summary>
static class BpdCommand
{
    public static Command Create()
    {
        var count = Opt("--count", "Number of test images (the first N of the Fashion-MNIST test set)", 64).Range(1, 10000);
        var steps = IntList("--steps", "Sampling-step counts to evaluate (each respaced from T, Improved DDPM §4)", [500, 100, 50, 25, 10]);
        var variances = Opt("--variance", "Comma-separated: beta, beta-tilde, learned (default: beta,beta-tilde, plus learned for a learned-variance model)", "");
        var seed = SeedOption.Create("the noise of each x_t");

        var cmd = new Command("bpd", "Bits/dim (the variational bound, DDPM eq. 5) of a checkpoint on Fashion-MNIST test images, for several step counts and variances.")
        {
            count, steps, variances, seed,
        };
        var checkpoint = new CheckpointOptions(cmd, rawWeights: false);
        var machine = new MachineOptions(cmd);
        cmd.SetAction(p =>
        {
            var dev = machine.Apply(p).Device;
            var (model, info, path) = checkpoint.Load(p, dev);
            using (model)
            {
                var config = info.Model;
                if (config.IsRectifiedFlow)
                    throw new CliException($"{path} was trained with rectified flow: bpd measures DDPM's variational bound L_vlb, which a velocity model does not define. Use eval for its sample quality.");
                var kinds = ParseVariances(p.GetValue(variances)!, config);
                if (config.ImageSize != 28 || config.Channels != 1)
                    throw new CliException($"bpd evaluates on Fashion-MNIST (28×28, 1 channel); this model is {config.ImageSize}×{config.ImageSize}×{config.Channels}");
                var stepCounts = p.GetValue(steps)!;
                // Each step count is a respaced DDPM (ddpm:k), checked where every sampler's steps are: SamplerSpec.
                foreach (var k in stepCounts)
                    try { new SamplerSpec(DdpmSampler.Kind.Name, k).Validate(config.Timesteps, config.Variance == VarianceType.Learned); }
                    catch (ArgumentException e) { throw new CliException($"--steps {k}: {e.Message}"); }
                Evaluate(model, info, path, stepCounts, kinds, p.GetValue(count), p.GetValue(seed), dev);
            }
            return 0;
        });
        return cmd;
    }

    /// <summary>Prints one row per step count and variance: L_vlb in bits/dim with its parts.</summary>
    static void Evaluate(Model.IDenoisingNetwork model, CheckpointInfo info, string path, int[] stepCounts, List<ReverseVariance> kinds, int count,
        int seed, Device dev)
    {
        var config = info.Model;
        using var test = ImageDataset.FashionMnist(DataLocator.FashionMnistFolder(), train: false);
        using var schedule = config.CreateSchedule();
        Tensor x0;
        using (NewDisposeScope()) x0 = Transforms.ToSignedUnit(test.Images[..count]).to(dev).MoveToOuterDisposeScope();
        using var _ = x0;
        Console.WriteLine($"checkpoint {path}: step {info.Step}, {config.Schedule} T={config.Timesteps}, {config.Variance} variance; " +
                          $"{x0.shape[0]} test images");
        Console.WriteLine("steps | variance | bits/dim | ± s.e. | prior L_T | decoder L_0 | seconds");
        foreach (var k in stepCounts)
        {
            // One respaced schedule shared by the samplers of every variance (the network runs once per step for all).
            var (spaced, kept) = Respacing.Respace(schedule, k);
            using (spaced)
            {
                var samplers = kinds.Select(v => new DdpmSampler(spaced, config.Prediction, v, clipDenoised: true, kept)).ToList();
                try
                {
                    var sw = Stopwatch.StartNew();
                    using var g = new Generator((ulong)seed);
                    var results = Likelihood.Evaluate((x, t) => model.forward(x, t, null), samplers, x0, g);
                    for (int i = 0; i < results.Length; i++)
                        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"{k} | {SamplerSpec.VarianceName(kinds[i])} | {results[i].Total:F4} | {results[i].StandardError:F4} | {results[i].Prior:F5} | {results[i].Terms[0]:F4} | {sw.Elapsed.TotalSeconds:F0}"));
                }
                finally
                {
                    foreach (var sampler in samplers) sampler.Dispose();
                }
            }
        }
    }

    static List<ReverseVariance> ParseVariances(string text, DiffusionModelConfig config)
    {
        if (string.IsNullOrWhiteSpace(text))
            return config.Variance == VarianceType.Learned
                ? [ReverseVariance.Learned, ReverseVariance.Beta, ReverseVariance.BetaTilde]
                : [ReverseVariance.Beta, ReverseVariance.BetaTilde];
        var list = new List<ReverseVariance>();
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            ReverseVariance v;
            try { v = SamplerSpec.ParseVariance(part); }
            catch (FormatException e) { throw new CliException($"--variance: {e.Message}"); }
            new SamplerSpec(DdpmSampler.Kind.Name, Variance: v).Validate(config.Timesteps, config.Variance == VarianceType.Learned);
            list.Add(v);
        }
        return list;
    }
}
