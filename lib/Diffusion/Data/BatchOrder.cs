namespace Diffusion.Data;

/// <summary>Where a <see cref="BatchOrder"/> is: the epoch and the offset of the next batch in that epoch's order.</summary>
public readonly record struct OrderPosition(int Epoch, int Offset);

/// <summary>
/// Seeded shuffling and batching of indices 0..N−1: every epoch is a fresh permutation that depends only on
/// (seed, epoch), so a run resumed from a <see cref="OrderPosition"/> sees exactly the batches it would have seen.
/// The last incomplete batch of an epoch is dropped, so every batch has the same size.
/// </summary>
public sealed class BatchOrder
{
    public int Count { get; }
    public int BatchSize { get; }
    public int Seed { get; }
    public OrderPosition Position { get; private set; }
    int[] order;

    public BatchOrder(int count, int batchSize, int seed, OrderPosition position = default)
    {
        if (count < 1) throw new ArgumentException("the dataset is empty");
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "batch size must be ≥ 1");
        if (batchSize > count)
            throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize,
                $"batch size {batchSize} is larger than the dataset ({count} images); use a batch size ≤ {count}");
        if (position.Epoch < 0 || position.Offset < 0 || position.Offset > count)
            throw new ArgumentOutOfRangeException(nameof(position), position, "invalid sampler position");
        Count = count;
        BatchSize = batchSize;
        Seed = seed;
        Position = position;
        order = Permutation(count, seed, position.Epoch);
    }

    /// <summary>Batches per epoch (incomplete last batch dropped).</summary>
    public int BatchesPerEpoch => Count / BatchSize;

    /// <summary>The indices of the next batch; moves to the next epoch when the current one is used up.</summary>
    public long[] Next()
    {
        if (Position.Offset + BatchSize > Count)
        {
            Position = new OrderPosition(Position.Epoch + 1, 0);
            order = Permutation(Count, Seed, Position.Epoch);
        }
        var batch = new long[BatchSize];
        for (int i = 0; i < BatchSize; i++) batch[i] = order[Position.Offset + i];
        Position = Position with { Offset = Position.Offset + BatchSize };
        return batch;
    }

    /// <summary>Fisher–Yates shuffle seeded by (seed, epoch). System.Random with a seed is stable across .NET versions.</summary>
    public static int[] Permutation(int count, int seed, int epoch)
    {
        var rng = new Random(unchecked(seed * 1_000_003 + epoch * 7_919 + 17));
        var p = new int[count];
        for (int i = 0; i < count; i++) p[i] = i;
        for (int i = count - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (p[i], p[j]) = (p[j], p[i]);
        }
        return p;
    }
}
