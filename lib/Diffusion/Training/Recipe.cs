using Diffusion.Forward;

namespace Diffusion.Training;

/// <summary>
/// A named way to train a model: the model to build and how to train it. The course's recipes are the static members:
/// <c>train</c> with no options runs <see cref="Default"/>, <c>bench</c> times <see cref="CourseUnet"/> and the default
/// network, and the notebooks build the shipped models' networks from here. The shipped checkpoints and the commands
/// that trained them are listed in data/README.md; the measurements that chose the default are in docs/results.md.
/// (A record, not a static class named Recipes: the notebook kernel has a namespace of that name.)
/// </summary>
public sealed record Recipe(string Name, DiffusionModelConfig Model, TrainingOptions Training)
{
    /// <summary>
    /// The course's U-Net: the annotated notebook's (<see cref="UnetConfig"/>'s defaults, dim 28) without linear attention at
    /// full resolution, where it costs the most time for the least gain (notebook 04). The shipped checkpoints use it, and
    /// <c>bench</c> times it against PyTorch (docs/pytorch/bench_peer.py's "default").
    /// </summary>
    public static readonly UnetConfig CourseUnet = new() { Dim = 28, DimMults = [1, 2, 4], LinearAttentionLevels = [1, 2] };

    /// <summary>
    /// What <c>train</c> trains with no options (the default model): the course's U-Net at dim 16, cosine schedule with
    /// T = 500 (Nichol &amp; Dhariwal 2021), v-prediction (Salimans &amp; Ho 2022) with min-SNR-5 loss weighting (Hang et al.
    /// 2023), 2 560 steps. It won the comparison at a fixed cost on a 2-core CPU: at dim 16 the U-Net takes 2 560 steps in the
    /// time dim 28 takes 1 000, and its samples score better (README, "More quality per CPU-minute"; docs/results.md).
    /// </summary>
    public static readonly Recipe Default = new("default",
        new DiffusionModelConfig
        {
            Unet = CourseUnet with { Dim = 16 },
            Schedule = ScheduleKind.Cosine,
            Timesteps = 500,
            Prediction = Prediction.Velocity,
        },
        new TrainingOptions { MinSnrGamma = 5, Steps = 2560 });

    /// <summary>
    /// The showcase model: the default recipe on the course's U-Net at dim 28, 8 581 steps in all. It was trained in three
    /// runs, the second and third starting from the previous run's EMA weights with a lower learning rate (data/README.md
    /// gives each command); this record is the recipe's model and its total, not a replay of those runs.
    /// </summary>
    public static readonly Recipe Showcase = new("showcase",
        Default.Model with { Unet = CourseUnet },
        Default.Training with { Steps = 8581 });

    /// <summary>
    /// The ε-model: DDPM's original objective (ε-prediction, unweighted L_simple; Ho et al. 2020) on the course's U-Net,
    /// cosine schedule with T = 500, 1 000 steps (<c>train --dim 28 --steps 1000 --prediction eps --min-snr 0</c>).
    /// </summary>
    public static readonly Recipe Epsilon = new("eps",
        Default.Model with { Unet = CourseUnet, Prediction = Prediction.Epsilon },
        Default.Training with { MinSnrGamma = 0, Steps = 1000 });

    /// <summary>
    /// The learned-variance model: the ε-model with Improved DDPM's learned Σ (Nichol &amp; Dhariwal 2021): the U-Net
    /// outputs [ε, u] and trains with L_simple + κ L_vlb (<c>train … --learn-variance</c>).
    /// </summary>
    public static readonly Recipe LearnedVariance = new("learned-variance",
        Epsilon.Model with { Unet = CourseUnet with { OutDim = 2 * CourseUnet.Channels }, Variance = VarianceType.Learned },
        Epsilon.Training);
}
