using System.Diagnostics;
using System.Text.Json;
using Diffusion.Interop;
using Diffusion.Model;
using Diffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Diffusion.Tests;

/// <summary>
/// The Python side of the interop, run for real: weights the course exports load into docs/pytorch/course_unet.py with
/// <c>load_state_dict(strict=True)</c>, and PyTorch's forward pass on the same input gives the C# output. Needs Debian's
/// python3-torch (<c>apt-get install python3-torch</c>; .ci/run installs it); skipped with that message without it.
/// </summary>
public sealed class PyTorchPeerTests : IDisposable
{
    const string Python = "/usr/bin/python3";
    readonly int threadsBefore = torch.get_num_threads();
    public PyTorchPeerTests() => torch.set_num_threads(1);
    public void Dispose() => torch.set_num_threads(threadsBefore);

    static readonly Lazy<string?> Missing = new(() =>
    {
        if (!File.Exists(Python)) return $"{Python} not found: install Debian's python3-torch (apt-get install python3-torch) to run the PyTorch peer tests";
        var r = RunPython("-c", "import torch, numpy");
        return r.Code == 0 ? null
            : $"{Python} cannot import torch and numpy ({r.Err.Trim().Split('\n').LastOrDefault()}): apt-get install python3-torch";
    });

    static (int Code, string Out, string Err) RunPython(params string[] args)
    {
        var psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["OMP_NUM_THREADS"] = "1";
        using var p = Process.Start(psi)!;
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5))) { p.Kill(true); throw new TimeoutException("python did not finish in 5 minutes"); }
        return (p.ExitCode, o.Result, e.Result);
    }

    static void WriteFloats(string path, Tensor t)
    {
        var data = t.contiguous().to(ScalarType.Float32).cpu().data<float>().ToArray();
        var bytes = new byte[data.Length * 4];
        Buffer.BlockCopy(data, 0, bytes, 0, bytes.Length);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>Exports <paramref name="model"/> as .pt, runs PyTorch on (x, t, classes), returns PyTorch's output and its report.</summary>
    /// <summary>
    /// Exports <paramref name="model"/> as .pt and runs docs/pytorch/compare_forward.py on (x, t, classes) with the PyTorch
    /// module built from <paramref name="config"/>; PyTorch's output goes to out.f32 in <paramref name="dir"/>.
    /// </summary>
    static (int Code, string Out, string Err) RunCompareForward(Unet model, UnetConfig config, Tensor x, long[] t, long[]? classes, TempDir dir)
    {
        PyTorchWeights.Export(model, dir["model.pt"], WeightsFormat.PyTorch);
        WriteFloats(dir["x.f32"], x);
        var job = new Dictionary<string, object?>
        {
            ["weights"] = dir["model.pt"], ["unet"] = JsonSerializer.SerializeToElement(config, Checkpoint.JsonOptions),
            ["x"] = dir["x.f32"], ["shape"] = x.shape, ["t"] = t, ["classes"] = classes, ["out"] = dir["out.f32"],
        };
        File.WriteAllText(dir["job.json"], JsonSerializer.Serialize(job));
        return RunPython(Path.Combine(TestSetup.RepoRoot, "docs", "pytorch", "compare_forward.py"), dir["job.json"]);
    }

    static (float[] Output, string Report) PyTorchForward(Unet model, UnetConfig config, Tensor x, long[] t, long[]? classes, TempDir dir)
    {
        var r = RunCompareForward(model, config, x, t, classes, dir);
        Assert.True(r.Code == 0, $"PyTorch failed (strict load or forward):\n{r.Out}\n{r.Err}");
        var bytes = File.ReadAllBytes(dir["out.f32"]);
        var output = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, output, 0, bytes.Length);
        return (output, r.Out.Trim());
    }

    static void AssertClose(float[] expected, float[] actual, double atol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double worst = 0, scale = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }
        Assert.True(scale > 0.1, $"{what}: the output is nearly zero (max |out| {scale}), so the comparison would prove nothing");
        Assert.True(worst <= atol, $"{what}: PyTorch and C# differ by up to {worst:E2} (max |out| {scale:F3}, allowed {atol:E1})");
    }

    [SkippableFact]
    public void ShippedCheckpointLoadsStrictlyIntoPyTorchAndGivesTheSameForwardPass()
    {
        Skip.If(Missing.Value is not null, Missing.Value);
        using var dir = TestSetup.Temp();
        var (model, info) = Checkpoint.LoadModel(Path.Combine(TestSetup.RepoRoot, "data", "checkpoints", "fashion-mnist-ddpm.ckpt"));
        using (model)
        {
            using var gen = new Generator(7);
            var x = randn([3, 1, 28, 28], generator: gen);
            long[] t = [0, 137, info.Model.Timesteps - 1];
            float[] expected;
            using (no_grad())
                expected = model.forward(x, tensor(t)).contiguous().data<float>().ToArray();
            var (actual, report) = PyTorchForward(model, info.Model.Unet, x, t, null, dir);
            Assert.Contains($"\"parameters\": {model.parameters().Sum(p => p.numel())}", report);
            AssertClose(expected, actual, 1e-4, "shipped DDPM");
        }
    }

    [SkippableFact]
    public void EveryModuleKindMatchesPyTorch()
    {
        Skip.If(Missing.Value is not null, Missing.Value);
        // ConvNeXt blocks, RGB, linear attention at every level, full attention in the middle, 10 classes: every module
        // course_unet.py has. Random weights everywhere (GroupNorm γ, β too), so no default value hides a mismatch.
        var config = new UnetConfig { Dim = 16, DimMults = [1, 2], Channels = 3, Block = BlockType.ConvNext, ConvNextMult = 2, LinearAttentionLevels = null, NumClasses = 10 };
        using var dir = TestSetup.Temp();
        manual_seed(11);
        using var model = new Unet(config);
        using (no_grad())
            foreach (var p in model.parameters()) p.copy_(randn_like(p) * 0.2);
        model.eval();
        using var gen = new Generator(3);
        var x = randn([2, 3, 16, 16], generator: gen);
        long[] t = [5, 250];
        long[] classes = [3, 10];                     // a label and the "no label" index
        float[] expected;
        using (no_grad())
            expected = model.forward(x, tensor(t), tensor(classes)).contiguous().data<float>().ToArray();
        var (actual, _) = PyTorchForward(model, config, x, t, classes, dir);
        AssertClose(expected, actual, 2e-4 * Math.Max(1, expected.Max(Math.Abs)), "ConvNeXt/RGB/conditional U-Net");
    }

    [SkippableFact]
    public void AWrongShapeIsRefusedByPyTorchStrictLoading()
    {
        Skip.If(Missing.Value is not null, Missing.Value);
        // The peer must be able to fail: weights of a dim-16 network do not load into a dim-8 PyTorch module.
        var config = new UnetConfig { Dim = 16, DimMults = [1, 2], Channels = 1, LinearAttentionLevels = [1] };
        using var dir = TestSetup.Temp();
        using var model = new Unet(config);
        using var x = zeros(1, 1, 16, 16);
        var r = RunCompareForward(model, config with { Dim = 8 }, x, [1], null, dir);
        Assert.NotEqual(0, r.Code);
        Assert.Contains("size mismatch", r.Err);
    }
}
