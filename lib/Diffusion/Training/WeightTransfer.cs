namespace Diffusion.Training;

/// <summary>Copies trained weights into another network of the same family (fine-tuning a fixed-variance model into a learned-variance one).</summary>
public static class WeightTransfer
{
    /// <summary>
    /// Copies every parameter and buffer of <paramref name="source"/> into the one of the same name in
    /// <paramref name="target"/>. Shapes must match, except the final 1×1 convolution when the target outputs twice the
    /// channels ([ε, v] for a learned variance): its first half gets the source's weights, the second half zeros, so the
    /// new network predicts the same ε and v = 0. Anything else that does not fit is an error.
    /// </summary>
    public static void Copy(IDenoisingNetwork source, IDenoisingNetwork target)
    {
        static List<(string Name, Tensor Value)> All(IDenoisingNetwork m) =>
            m.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).Concat(m.named_buffers().Select(b => (b.name, b.buffer))).ToList();
        var from = All(source).ToDictionary(p => p.Name, p => p.Value);
        var to = All(target);
        var missing = to.Select(p => p.Name).Where(n => !from.ContainsKey(n)).ToList();
        if (missing.Count > 0 || from.Count != to.Count)
            throw new ArgumentException($"the networks differ in structure (parameters missing in the source: {string.Join(", ", missing.Take(5))}); only the output channels may differ");
        using var noGrad = no_grad();
        foreach (var (name, dst) in to)
        {
            var src = from[name];
            if (src.shape.SequenceEqual(dst.shape))
            {
                dst.copy_(src);
                continue;
            }
            bool widenedOutput = name.StartsWith("final_conv.") && dst.shape.Length == src.shape.Length &&
                                 dst.shape[0] == 2 * src.shape[0] && dst.shape.Skip(1).SequenceEqual(src.shape.Skip(1));
            if (!widenedOutput)
                throw new ArgumentException(
                    $"{name}: shape [{string.Join(", ", src.shape)}] cannot go into [{string.Join(", ", dst.shape)}]; only the final convolution may double its output channels");
            dst.fill_(0);
            dst[..(int)src.shape[0]].copy_(src);
        }
    }
}
