using System.Diagnostics;
using Diffusion.Model;
using TorchSharp.Modules;

namespace Diffusion.Notebooks;

/// <summary>
/// The bookkeeping of notebook 04's forward pass by hand: the notebook writes the order of the stages (the idea), this
/// class looks each module up by name, runs it, times it and records its input shape and output, then checks the walk
/// against <c>Unet.forward</c> and lists the stages.
/// </summary>
public sealed class UnetWalk
{
    /// <summary>One stage of the walk: the module's name, its input shape, its output and how long it took.</summary>
    public sealed record Stage(string Name, string Input, Tensor Output, double Milliseconds);

    readonly Dictionary<string, nn.Module> modules;

    public UnetWalk(Unet unet)
    {
        Unet = unet;
        modules = unet.named_modules().ToDictionary(m => m.name, m => m.module);
    }

    public Unet Unet { get; }

    /// <summary>The stages run so far, in order.</summary>
    public List<Stage> Stages { get; } = [];

    /// <summary>Runs the module <paramref name="name"/> (one input: x) and records it.</summary>
    public Tensor One(string name, Tensor x) => Record(name, x, () => ((nn.Module<Tensor, Tensor>)modules[name]).call(x));

    /// <summary>Runs the module <paramref name="name"/> (two inputs: x and the time embedding) and records it.</summary>
    public Tensor Two(string name, Tensor x, Tensor time) => Record(name, x, () => ((nn.Module<Tensor, Tensor, Tensor>)modules[name]).call(x, time));

    Tensor Record(string name, Tensor x, Func<Tensor> run)
    {
        var clock = Stopwatch.StartNew();
        var y = run();
        Stages.Add(new Stage(name, Shape(x), y, clock.Elapsed.TotalMilliseconds));
        return y;
    }

    /// <summary>"[8, 28, 28, 28]".</summary>
    public static string Shape(Tensor x) => "[" + string.Join(", ", x.shape) + "]";

    /// <summary>What the module of a stage is, in words.</summary>
    public string Describe(string name)
    {
        var m = modules[name];
        if (m is Residual) return $"Residual(PreNorm({modules[name + ".fn.fn"].GetType().Name}))";
        if (name.EndsWith(".3", StringComparison.Ordinal) && m.GetType().Name == "Sequential")
            return name.StartsWith("downs", StringComparison.Ordinal) ? "Downsample: 2×2 pixel-unshuffle + 1×1 conv" : "Upsample: nearest ×2 + 3×3 conv";
        if (name == "time_mlp") return "SinusoidalPositionEmbeddings → Linear → GELU → Linear";
        return m.GetType().Name;
    }

    /// <summary>The parameters of a stage's module.</summary>
    public long Parameters(string name) => modules[name].ParameterCount();

    /// <summary>
    /// Checks the walk: its result equals <paramref name="direct"/> (= <c>unet.call(x, t)</c>) within
    /// <paramref name="tolerance"/>, has the input's shape, and its stages hold every parameter of the network.
    /// Throws if not; returns one line saying what was checked.
    /// </summary>
    public string Verify(Tensor walked, Tensor direct, long[] inputShape, double tolerance = 1e-5)
    {
        double err = (walked - direct).abs().max().item<float>();
        if (err > tolerance) throw new InvalidOperationException($"the forward pass by hand differs from Unet.forward by {err}");
        if (!walked.shape.SequenceEqual(inputShape)) throw new InvalidOperationException("ε̂ must have the shape of x_t");
        long stageParams = Stages.Sum(s => Parameters(s.Name)), total = Unet.ParameterCount();
        if (stageParams != total) throw new InvalidOperationException($"the stages hold {stageParams} parameters, the network {total}");
        return $"max |by hand − Unet.forward| = {err:E1}; the {Stages.Count} stages hold all {total:N0} parameters";
    }

    /// <summary>One row per stage: name, module, input and output shapes, parameters.</summary>
    public IEnumerable<Row> Table() => Stages.Select(s => new Row(s.Name, Describe(s.Name), s.Input, Shape(s.Output), Parameters(s.Name)));

    /// <summary>A row of <see cref="Table"/>.</summary>
    public sealed record Row(string Stage, string Module, string Input, string Output, long Parameters);
}
