using System.Diagnostics;
using Diffusion.Data;
using Diffusion.Platform;

namespace Diffusion.Training;

/// <summary>
/// What every trainer of the course (the DDPM <see cref="Trainer"/>, the autoencoder, the mini-CLIP, the text-to-image
/// U-Net) shares around its own loss: the options, the <see cref="AdamWStep"/>, the run's seeded generator and batch
/// order, the step count, the clock, the loss window, the step reports and the loop. A trainer builds its network, calls
/// <see cref="Begin"/> with what it trains, and each <see cref="TrainStep"/> starts the clock, computes its loss in its
/// own dispose scope, hands it to <see cref="Optimize"/> and ends with <see cref="Record"/>. A trainer that resumes from a
/// checkpoint puts the saved state back with <see cref="RestoreProgress"/> and <see cref="RestoreOrder"/> (and the
/// generator's and optimiser's own state through <see cref="Generator"/> and <see cref="Optimizer"/>).
/// </summary>
public abstract class StepTrainer<TProgress> : IDisposable
{
    /// <summary><see cref="RecentLoss"/> is the mean loss of this many last steps.</summary>
    public const int RecentLossWindow = 50;

    AdamWStep? optimizer;
    Generator? generator;
    BatchOrder? order;
    int rows;
    readonly Stopwatch clock = new();
    readonly bool followThreads;
    readonly List<double> losses = new();
    double secondsBefore;
    double recentLossBefore = double.NaN;

    /// <param name="followThreads">Whether <see cref="Train"/> lets an automatic thread count follow the machine's load
    /// after every step (<see cref="Compute.RecheckThreads"/>).</param>
    /// <param name="device">Where the trainer's networks and batches live (null: <see cref="Compute.Device"/>).</param>
    protected StepTrainer(TrainingOptions options, Device? device, bool followThreads = true)
    {
        Options = options;
        Device = device ?? Compute.Device;
        this.followThreads = followThreads;
    }

    public TrainingOptions Options { get; protected set; }
    /// <summary>Where the networks and each step's batch live.</summary>
    public Device Device { get; }
    /// <summary>Optimiser steps done (a resumed run counts the checkpoint's too).</summary>
    public int Step { get; private set; }
    /// <summary>The report of every step of this process's training.</summary>
    public List<TProgress> History { get; } = new();
    /// <summary>Raised after every optimiser step.</summary>
    public event Action<TProgress>? Progress;
    /// <summary>Seconds spent in the training steps so far (a resumed run counts the checkpoint's too).</summary>
    public double TrainingSeconds => secondsBefore + clock.Elapsed.TotalSeconds;
    /// <summary>Time spent in the training steps so far (<see cref="TrainingSeconds"/>).</summary>
    public TimeSpan Elapsed => TimeSpan.FromSeconds(TrainingSeconds);
    /// <summary>
    /// The mean loss of the last <see cref="RecentLossWindow"/> steps of this process (a resumed run that has not
    /// stepped yet: the checkpoint's; NaN before the first step).
    /// </summary>
    public double RecentLoss => losses.Count > 0 ? MeanOfLast(losses, RecentLossWindow) : recentLossBefore;
    /// <summary>Parameters of the network this trainer trains (frozen ones included).</summary>
    public abstract long ParameterCount { get; }

    /// <summary>The run's random numbers (flips, dropouts, t, ε), seeded by <see cref="TrainingOptions.Seed"/>.</summary>
    protected Generator Generator => generator ?? throw NotBegun();
    /// <summary>The run's batch order, seeded by <see cref="TrainingOptions.Seed"/>.</summary>
    protected BatchOrder Order => order ?? throw NotBegun();
    /// <summary>The optimiser (its moments are saved with a resumable checkpoint).</summary>
    protected AdamWStep Optimizer => optimizer ?? throw NotBegun();

    /// <summary>Starts AdamW on <paramref name="parameters"/>, the generator, and the batch order over <paramref name="rows"/> rows.</summary>
    protected void Begin(IEnumerable<Parameter> parameters, int rows)
    {
        optimizer = new AdamWStep(parameters, Options);
        generator = new Generator((ulong)Options.Seed);
        this.rows = rows;
        order = new BatchOrder(rows, Options.BatchSize, Options.Seed);
    }

    /// <summary>A resumed run: the step count, the seconds and the recent loss its checkpoint saved.</summary>
    protected void RestoreProgress(int step, double trainingSeconds, double recentLoss)
    {
        Step = step;
        secondsBefore = trainingSeconds;
        recentLossBefore = recentLoss;
    }

    /// <summary>A resumed run: the batch order continues from <paramref name="position"/>.</summary>
    protected void RestoreOrder(OrderPosition position)
    {
        if (order is null) throw NotBegun();
        order = new BatchOrder(rows, Options.BatchSize, Options.Seed, position);
    }

    /// <summary>One optimiser step; returns the loss.</summary>
    public abstract double TrainStep();

    /// <summary>Starts the clock of a step.</summary>
    protected void StartClock() => clock.Start();

    /// <summary>The gradient step on <paramref name="loss"/> (see <see cref="AdamWStep.Take"/>); returns the loss.</summary>
    protected double Optimize(Tensor loss, double learningRate, Func<double, string> diverged) =>
        Optimizer.Take(loss, learningRate, diverged);

    /// <summary>
    /// Counts the step, stops the clock, records and announces its report (made of the new step and the time so far);
    /// returns <paramref name="loss"/>.
    /// </summary>
    protected double Record(double loss, Func<int, TimeSpan, TProgress> report)
    {
        Step++;
        clock.Stop();
        losses.Add(loss);
        var r = report(Step, Elapsed);
        History.Add(r);
        Recorded(r);
        Progress?.Invoke(r);
        return loss;
    }

    /// <summary>What a trainer does with a step's report before <see cref="Progress"/> announces it (e.g. log it).</summary>
    protected virtual void Recorded(TProgress report) { }

    /// <summary>
    /// Trains until <see cref="TrainingOptions.Steps"/> (or until step <paramref name="until"/>, if earlier), calling
    /// <see cref="Stepped"/> after every step; when all the steps are done, calls <see cref="Trained"/>.
    /// </summary>
    public void Train(CancellationToken cancel = default, int? until = null)
    {
        Starting();
        try
        {
            while (Step < Math.Min(Options.Steps, until ?? int.MaxValue))
            {
                cancel.ThrowIfCancellationRequested();
                TrainStep();
                // With an automatic thread count: follow the machine's load (raise when the launcher's build work is done
                // or another job ends, lower when one starts); announced through Compute.ThreadsChanged.
                if (followThreads) Compute.RecheckThreads();
                Stepped();
            }
        }
        finally
        {
            Stopping();
        }
        if (Step >= Options.Steps) Trained();
    }

    /// <summary>What a trainer does before <see cref="Train"/>'s first step (e.g. open its loss log).</summary>
    protected virtual void Starting() { }
    /// <summary>What a trainer does after each step of <see cref="Train"/> (e.g. write a checkpoint).</summary>
    protected virtual void Stepped() { }
    /// <summary>What a trainer does when <see cref="Train"/> returns or throws (e.g. flush its loss log).</summary>
    protected virtual void Stopping() { }
    /// <summary>What a trainer does once training is done (e.g. put its model in eval mode).</summary>
    protected virtual void Trained() { }

    /// <summary>The mean of the last <paramref name="count"/> values, summed in order.</summary>
    internal static double MeanOfLast(IReadOnlyList<double> values, int count)
    {
        int from = Math.Max(0, values.Count - count);
        double sum = 0;
        for (int i = from; i < values.Count; i++) sum += values[i];
        return sum / (values.Count - from);
    }

    /// <summary>Disposes the optimiser and the generator; a trainer disposes its own networks after.</summary>
    public virtual void Dispose()
    {
        optimizer?.Dispose();
        generator?.Dispose();
        GC.SuppressFinalize(this);
    }

    static InvalidOperationException NotBegun() => new("the trainer has not begun (call Begin in its constructor)");
}
