using F = TorchSharp.torch.nn.functional;

namespace Diffusion.Notebooks.Exercises;

/// <summary>
/// Notebook 05, exercise <c>training-step</c>: the loss of one step of Algorithm 1 for given t and ε,
/// ‖ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖² averaged over the batch and the pixels, checked against
/// <see cref="DenoisingLoss.Compute"/> — its value and its gradient.
/// </summary>
public static class TrainingStepExercise
{
    public const string Id = "training-step";

    /// <summary>One case: a tiny network (a 3×3 convolution that also sees sin(0.9·t)) with its weights, and the data.</summary>
    internal sealed record Input(Func<Tensor, Tensor, Tensor> Model, Tensor[] Weights, NoiseSchedule S, Tensor X0, Tensor T, Tensor Noise);

    /// <summary>
    /// Runs <paramref name="learner"/>(model, s, x0, t, noise) with a small seeded network on several batches (t = 0,
    /// t = T − 1, mixed t, a single image, two schedules), compares the loss and its gradient with the library, shows
    /// the verdict and returns it. Never throws.
    /// </summary>
    public static CheckResult Check(Func<Func<Tensor, Tensor, Tensor>, NoiseSchedule, Tensor, Tensor, Tensor, Tensor> learner, bool show = true)
    {
        using var schedules = new ScheduleCases(ScheduleKind.Linear);
        var (linear, cosine, short10) = (schedules.Linear, schedules.Cosine, schedules.Short);
        Case<Input> C(string description, NoiseSchedule s, ulong seed, params long[] t) => ScheduleCases.Batch(description, s, seed, t, [1, 6, 6], (s, g, shape, times) =>
        {
            // The network's weights come from the case's own generator: the notebook's global random state is not touched.
            var w = (randn([1, 2, 3, 3], generator: g) * 0.3).requires_grad_();
            var b = (randn([1], generator: g) * 0.1).requires_grad_();
            Tensor Model(Tensor xt, Tensor tt)
            {
                // ε_θ(x_t, t): a convolution of x_t and a second channel sin(0.9·t), so that the network tells t from t + 1.
                var tChannel = (tt.to(ScalarType.Float32) * 0.9f).sin().reshape(-1, 1, 1, 1).expand(xt.shape[0], 1, xt.shape[2], xt.shape[3]);
                return F.conv2d(cat([xt, tChannel], 1), w, b, padding: [1, 1]);
            }
            return new Input(Model, [w, b], s, Images(g, shape), times, Noise(g, shape));
        });
        var exercise = Spec([
            C("cosine schedule, T = 500 (the course's); 4 images of shape [1, 6, 6] at t = [0, 100, 250, 499]", cosine, 31, 0, 100, 250, 499),
            C("linear schedule, T = 1000; 3 images at t = [999, 998, 0]", linear, 32, 999, 998, 0),
            C("cosine schedule, T = 500; 2 images, both at t = 0", cosine, 33, 0, 0),
            C("cosine schedule, T = 500; 2 images, both at t = 499 = T − 1", cosine, 34, 499, 499),
            C("linear schedule, T = 10; a single image at t = 5", short10, 35, 5),
        ]);
        return Checker.Run(exercise, learner is null ? null : i => learner(i.Model, i.S, i.X0, i.T, i.Noise), show);
    }

    static Exercise<Input> Spec(IReadOnlyList<Case<Input>> cases)
    {
        static Tensor Xt(Input i, double[] sqrtSignal, double[] sqrtNoise) =>
            At(sqrtSignal, i.T, i.X0.shape) * i.X0 + At(sqrtNoise, i.T, i.X0.shape) * i.Noise;
        static Tensor RightXt(Input i) => Xt(i, i.S.SqrtAlphasCumprod, i.S.SqrtOneMinusAlphasCumprod);
        static Tensor Error(Input i) => i.Noise - i.Model(RightXt(i), i.T);
        return new Exercise<Input>(Id, "Exercise training-step (the loss of Algorithm 1)", "MyLoss", "DenoisingLoss.Compute")
        {
            Reference = i => DenoisingLoss.Compute(i.Model, i.S, i.X0, i.T, i.Noise),
            Cases = cases,
            Mistakes =
            [
                new("target-x0", "With ε-prediction the target is the noise ε that was added, not x_0: compare the network's " +
                    "output with ε.",
                    i => F.mse_loss(i.Model(RightXt(i), i.T), i.X0)),
                new("model-on-x0", "The network must see the noised image x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε, not the clean x_0: make " +
                    "x_t first, then call model(xt, t).",
                    i => F.mse_loss(i.Model(i.X0, i.T), i.Noise)),
                new("xt-missing-sqrt", "x_t uses square roots: √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε (the closed form of notebook 02).",
                    i => F.mse_loss(i.Model(Xt(i, i.S.AlphasCumprod, i.S.AlphasCumprod.Select(a => 1 - a).ToArray()), i.T), i.Noise)),
                new("xt-off-by-one", "x_t at index t uses ᾱ_t = AlphasCumprod[t], not ᾱ_{t−1} (AlphasCumprodPrev): the code's t is " +
                    "already the step whose noise level you want.",
                    i => F.mse_loss(i.Model(Xt(i, i.S.AlphasCumprodPrev.Select(Math.Sqrt).ToArray(),
                        i.S.AlphasCumprodPrev.Select(a => Math.Sqrt(1 - a)).ToArray()), i.T), i.Noise)),
                new("time-plus-one", "Give the network the same 0-based t you used to make x_t. The library counts t = 0…T − 1 " +
                    "everywhere; do not convert to the paper's 1…T.",
                    i => F.mse_loss(i.Model(RightXt(i), i.T + 1), i.Noise)),
                new("sum-not-mean", "Average the squared error over the batch and all pixels (mse_loss, or .pow(2).mean()), as " +
                    "DenoisingLoss does. A sum multiplies the loss — and every gradient — by the number of pixels.",
                    i => Error(i).pow(2).sum()),
                new("mean-per-image-sum", "Average over everything, batch and pixels alike (mse_loss, or .pow(2).mean()). You " +
                    "summed over each image's pixels and averaged over the batch, which multiplies the loss by the pixels per image.",
                    i => Error(i).pow(2).sum([1, 2, 3]).mean()),
                new("l1", "L_simple squares the error: (ε − ε_θ)², not |ε − ε_θ|.",
                    i => Error(i).abs().mean()),
                new("no-square", "Square the error before averaging: otherwise positive and negative errors cancel, and the loss " +
                    "can even be negative.",
                    i => Error(i).mean()),
                new("rmse", "Do not take the square root: the loss is the mean squared error itself.",
                    i => Error(i).pow(2).mean().sqrt()),
            ],
            GenericHint = "Three lines: xt = √ᾱ_t·x0 + √(1 − ᾱ_t)·noise (s.Extract(s.SqrtAlphasCumprod, t, x0.shape) and " +
                          "\"SqrtOneMinusAlphasCumprod\"); the prediction model(xt, t); the loss " +
                          "nn.functional.mse_loss(prediction, noise), the mean of the squared differences.",
            ShapeHint = "The loss is a single number: a tensor with one element (mse_loss, or .mean(), gives one).",
            AfterMatch = (i, loss) =>
            {
                if (!loss.requires_grad)
                    return new Problem("no-gradient", "Your loss does not require a gradient, so loss.backward() could not train anything.",
                        "Return the loss as computed from the model's output: no .item(), no .detach(), no new tensor built from a number.");
                // The gradient with respect to the network's weights must be the library's.
                Tensor[] mine;
                try { mine = Grad(loss, i.Weights); }
                catch (Exception e)
                {
                    return new Problem(FailureIds.Threw, $"Taking the gradient of your loss failed: {Checker.CleanMessage(e.Message)}",
                        "Return the loss without calling backward() yourself: the training loop (and this check) call it.");
                }
                var reference = Grad(DenoisingLoss.Compute(i.Model, i.S, i.X0, i.T, i.Noise), i.Weights);
                for (int k = 0; k < mine.Length; k++)
                {
                    double scale = reference[k].abs().max().item<float>();
                    if ((mine[k] - reference[k]).abs().max().item<float>() > 1e-4 * Math.Max(1, scale))
                        return new Problem("wrong-gradient", "The loss has the right value but not the right gradient.",
                            "Compute everything from the model's output with tensor operations (no numbers taken out with .item() " +
                            "and put back).");
                }
                return null;
            },
        };
    }

    static Tensor[] Grad(Tensor loss, Tensor[] weights)
    {
        foreach (var w in weights) w.grad?.fill_(0);
        loss.backward();
        return weights.Select(w => w.grad is null ? zeros_like(w) : w.grad.clone()).ToArray();
    }
}
