namespace Diffusion.Model;

/// <summary>
/// A network of the diffusion process: given a noisy batch x_t [B, C, H, W], its time per image t [B] and optionally class
/// labels, it returns its prediction, shaped like x_t (2C channels for a learned variance). What the prediction means —
/// ε, x₀, v or rectified flow's velocity — is the objective's business, not the network's. The U-Net (<see cref="Unet"/>)
/// and the diffusion transformer (<see cref="Transformer.Dit"/>) are two families of it: the trainers, the checkpoints
/// and the samplers' model functions (<c>(x, t) =&gt; network.forward(x, t, classes)</c>) speak this interface, so another
/// family plugs in by implementing it and being built by <see cref="Training.DiffusionModelConfig.CreateNetwork"/>.
/// <para>
/// Every implementation is a TorchSharp module: the members below are <see cref="nn.Module"/>'s own (so a module
/// implements them as it is), and <see cref="DenoisingNetworks.AsModule"/> gives the module for what only a module does
/// (moving to a device, saving and loading weights under their state_dict names).
/// </para>
/// </summary>
public interface IDenoisingNetwork : IDisposable
{
    /// <summary>
    /// The prediction for x_t at times <paramref name="t"/> [B]; <paramref name="classes"/>: LongTensor [B] of labels
    /// 0..K−1, or K for "no label"; null means "no label" for every image (and is the only choice for an unconditional network).
    /// </summary>
    Tensor forward(Tensor x, Tensor t, Tensor? classes);

    /// <summary>The trainable tensors (TorchSharp's <see cref="nn.Module.parameters"/>).</summary>
    IEnumerable<Parameter> parameters(bool recurse = true);
    /// <summary>The parameters under their state_dict names.</summary>
    IEnumerable<(string name, Parameter parameter)> named_parameters(bool recurse = true);
    /// <summary>The buffers (fixed tensors such as position embeddings) under their state_dict names.</summary>
    IEnumerable<(string name, Tensor buffer)> named_buffers(bool recurse = true, bool include_nonpersistent = true);
    /// <summary>The top-level modules (for fine-tuning a part of the network).</summary>
    IEnumerable<(string name, nn.Module module)> named_children();
    /// <summary>Training mode (dropout and the like on).</summary>
    void train(bool train = true);
    /// <summary>Evaluation mode.</summary>
    void eval();
}

/// <summary>What every <see cref="IDenoisingNetwork"/> can do as the TorchSharp module it is.</summary>
public static class DenoisingNetworks
{
    /// <summary>The network as its TorchSharp module (weights in bytes, devices, state_dict).</summary>
    public static nn.Module AsModule(this IDenoisingNetwork network) =>
        network as nn.Module ?? throw new ArgumentException($"a denoising network must be a TorchSharp module; {network.GetType().Name} is not");

    /// <summary>Moves the network's weights to <paramref name="device"/>; returns the network.</summary>
    public static T MoveTo<T>(this T network, Device device) where T : IDenoisingNetwork
    {
        network.AsModule().to(device);
        return network;
    }

    /// <summary>Its trainable parameters in all.</summary>
    public static long CountParameters(this IDenoisingNetwork network) => network.AsModule().ParameterCount();
}
