using Diffusion.Data;

namespace Diffusion.Training;

/// <summary>The run's persistence: resuming from a checkpoint (a named factory) and writing the two kinds of checkpoint.</summary>
public sealed partial class Trainer
{
    /// <summary>
    /// Continues a run from its checkpoint: same weights, EMA, optimiser moments, data order and random numbers, so the
    /// result equals an uninterrupted run. Only the total number of steps may change.
    /// </summary>
    public static Trainer Resume(string checkpointPath, ImageDataset data, string? runDirectory = null, Device? device = null,
        int? totalSteps = null)
    {
        var parts = Checkpoint.Load(checkpointPath);
        if (!parts.Info.HasOptimizer)
            throw new ArgumentException(
                $"{checkpointPath} holds only the weights for sampling (no optimiser state), so training cannot continue from it; " +
                $"resume from the run's {CheckpointFileName}.");
        var options = totalSteps is null ? parts.Info.Training : parts.Info.Training with { Steps = totalSteps.Value };
        if (parts.Info.Step > options.Steps)
            throw new ArgumentException(
                $"the checkpoint is already at step {parts.Info.Step}, beyond the {options.Steps} steps asked for; ask for more steps.");
        var trainer = new Trainer(parts.Info.Model, options, data, runDirectory, device);
        try { trainer.Restore(parts); }
        catch (Exception e) when (e is not CheckpointException and not OutOfMemoryException)
        {
            // A state that does not fit (a crafted generator state, an optimiser block of another network, a data position
            // beyond this data): one error about the checkpoint instead of a native error.
            trainer.Dispose();
            throw new CheckpointException($"{checkpointPath}: its training state cannot be restored ({e.Message}). Resume from the run's own checkpoint, or start a new run.", e);
        }
        catch
        {
            trainer.Dispose();
            throw;
        }
        return trainer;
    }

    /// <summary>Takes over a checkpoint's weights, EMA, optimiser moments, random state, data position and step.</summary>
    void Restore(Checkpoint.Parts saved)
    {
        var info = saved.Info;
        Checkpoint.LoadModule(Network.AsModule(), saved.Model, "model");
        if (ema is not null)
        {
            if (saved.Ema is not null) Checkpoint.LoadModule(EmaNetwork!.AsModule(), saved.Ema, "EMA");
            else ema.CopyFromModel();
        }
        if (saved.Optimizer is not null)
        {
            using var r = new BinaryReader(new MemoryStream(saved.Optimizer));
            Optimizer.Optimizer.load_state_dict(r);
        }
        var savedState = Convert.FromBase64String(info.GeneratorState);
        using (var own = Generator.get_state())
            if (savedState.LongLength != own.numel())
                throw new InvalidDataException($"its random-generator state has {savedState.Length} bytes, a generator's has {own.numel()}");
        // libtorch aborts the whole process (not an exception) on a state it finds invalid: check the fields it checks first.
        // CPUGeneratorImplState: uint64 seed, int32 left, int32 seeded, uint64 next, then the Mersenne-Twister words.
        if (savedState.Length >= 24)
        {
            int left = BitConverter.ToInt32(savedState, 8), seeded = BitConverter.ToInt32(savedState, 12);
            ulong next = BitConverter.ToUInt64(savedState, 16);
            if (left is < 1 or > 624 || seeded is not (0 or 1) || next > 624)
                throw new InvalidDataException($"its random-generator state is not one a generator writes (left {left}, seeded {seeded}, next {next})");
        }
        using (var state = torch.tensor(savedState, dtype: ScalarType.Byte))
            Generator.set_state(state);
        RestoreOrder(info.DataPosition);
        RestoreProgress(info.Step, info.TrainingSeconds, info.RecentLoss);
    }

    /// <summary>Writes the checkpoint atomically (to <see cref="CheckpointPath"/> unless another path is given).</summary>
    public string SaveCheckpoint(string? path = null)
    {
        path ??= CheckpointPath ?? throw new InvalidOperationException("no run folder: pass a checkpoint path");
        byte[] optimizerBytes;
        using (var ms = new MemoryStream())
        {
            using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true)) Optimizer.Optimizer.save_state_dict(w);
            optimizerBytes = ms.ToArray();
        }
        string generatorState;
        using (var state = Generator.get_state()) generatorState = Convert.ToBase64String(state.data<byte>().ToArray());
        var info = Info() with
        {
            DataPosition = Order.Position, GeneratorState = generatorState, HasEma = EmaNetwork is not null, HasOptimizer = true,
        };
        lossLog?.Flush();
        Checkpoint.Save(path, new Checkpoint.Parts(info, Checkpoint.ModuleBytes(Network.AsModule()),
            EmaNetwork is null ? null : Checkpoint.ModuleBytes(EmaNetwork.AsModule()), optimizerBytes));
        CheckpointSaved?.Invoke(path);
        return path;
    }

    /// <summary>
    /// Writes a small checkpoint for sampling only: the configuration and the EMA weights (or the raw weights when
    /// there is no EMA), without optimiser state — about a quarter of the full checkpoint. It cannot be resumed.
    /// </summary>
    public string SaveModelForSampling(string path)
    {
        var info = Info() with { HasEma = false, HasOptimizer = false };
        Checkpoint.Save(path, new Checkpoint.Parts(info, Checkpoint.ModuleBytes((EmaNetwork ?? Network).AsModule()), null, null));
        return path;
    }

    /// <summary>What every checkpoint of this run says: configuration, step, recent loss (a resumed run without new steps keeps the checkpoint's), seconds.</summary>
    CheckpointInfo Info() => new()
    {
        Model = Config,
        Training = Options,
        Step = Step,
        RecentLoss = RecentLoss,
        TrainingSeconds = TrainingSeconds,
    };
}
