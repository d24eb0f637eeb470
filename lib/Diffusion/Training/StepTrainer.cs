using System.Diagnostics;
using Diffusion.Data;
using Diffusion.Platform;

namespace Diffusion.Training;

/// <summary>
/// What the course's smaller trainers (autoencoder, mini-CLIP, text-to-image U-Net) share around their own loss: the
/// options, the <see cref="AdamWStep"/>, the run's seeded generator and batch order, the step count, the clock, the step
/// reports and the loop. A trainer builds its network, calls <see cref="Begin"/> with what it trains, and each
/// <see cref="TrainStep"/> starts the clock, computes its loss in its own dispose scope, hands it to
/// <see cref="Optimize"/> and ends with <see cref="Record"/>.
/// </summary>
public abstract class StepTrainer<TProgress> : IDisposable
{
    AdamWStep? optimizer;
    Generator? generator;
    BatchSampler? sampler;
    readonly Stopwatch clock = new();
    readonly bool followThreads;

    /// <param name="followThreads">Whether <see cref="Train"/> lets an automatic thread count follow the machine's load
    /// after every step (<see cref="Compute.RecheckThreads"/>).</param>
    /// <param name="device">Where the trainer's networks and batches live (null: <see cref="Compute.Device"/>).</param>
    protected StepTrainer(TrainingOptions options, Device? device, bool followThreads = true)
    {
        Options = options;
        Device = device ?? Compute.Device;
        this.followThreads = followThreads;
    }

    public TrainingOptions Options { get; }
    /// <summary>Where the networks and each step's batch live.</summary>
    public Device Device { get; }
    /// <summary>Optimiser steps done.</summary>
    public int Step { get; private set; }
    public List<TProgress> History { get; } = new();
    public event Action<TProgress>? Progress;
    /// <summary>Time spent in the training steps so far.</summary>
    public TimeSpan Elapsed => clock.Elapsed;

    /// <summary>The run's random numbers (flips, dropouts, t, ε), seeded by <see cref="TrainingOptions.Seed"/>.</summary>
    protected Generator Generator => generator ?? throw NotBegun();
    /// <summary>The run's batch order, seeded by <see cref="TrainingOptions.Seed"/>.</summary>
    protected BatchSampler Sampler => sampler ?? throw NotBegun();

    /// <summary>Starts AdamW on <paramref name="parameters"/>, the generator, and the batch order over <paramref name="rows"/> rows.</summary>
    protected void Begin(IEnumerable<Parameter> parameters, int rows)
    {
        optimizer = new AdamWStep(parameters, Options);
        generator = new Generator((ulong)Options.Seed);
        sampler = new BatchSampler(rows, Options.BatchSize, Options.Seed);
    }

    /// <summary>One optimiser step; returns the loss.</summary>
    public abstract double TrainStep();

    /// <summary>Starts the clock of a step.</summary>
    protected void StartClock() => clock.Start();

    /// <summary>The gradient step on <paramref name="loss"/> (see <see cref="AdamWStep.Take"/>); returns the loss.</summary>
    protected double Optimize(Tensor loss, double learningRate, Func<double, string> diverged) =>
        (optimizer ?? throw NotBegun()).Take(loss, learningRate, diverged);

    /// <summary>Counts the step, stops the clock, records and announces its report (made of the new step and time); returns <paramref name="loss"/>.</summary>
    protected double Record(double loss, Func<int, TimeSpan, TProgress> report)
    {
        Step++;
        clock.Stop();
        var r = report(Step, clock.Elapsed);
        History.Add(r);
        Progress?.Invoke(r);
        return loss;
    }

    /// <summary>Trains until <see cref="TrainingOptions.Steps"/>, then calls <see cref="Trained"/>.</summary>
    public void Train(CancellationToken cancel = default)
    {
        while (Step < Options.Steps)
        {
            cancel.ThrowIfCancellationRequested();
            TrainStep();
            if (followThreads) Compute.RecheckThreads();
        }
        Trained();
    }

    /// <summary>What a trainer does once training is done (e.g. put its model in eval mode).</summary>
    protected virtual void Trained() { }

    /// <summary>Disposes the optimiser and the generator; a trainer disposes its own networks after.</summary>
    public virtual void Dispose()
    {
        optimizer?.Dispose();
        generator?.Dispose();
        GC.SuppressFinalize(this);
    }

    static InvalidOperationException NotBegun() => new("the trainer has not begun (call Begin in its constructor)");
}
