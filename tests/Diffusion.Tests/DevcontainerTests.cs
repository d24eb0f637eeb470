using System.Text.Json;
using System.Text.Json.Nodes;

namespace Diffusion.Tests;

/// <summary>
/// Docker cannot run on this project's machines, so the dev containers are validated statically: they parse (JSON
/// with comments), name what Codespaces needs, and every file and switch they refer to exists.
/// </summary>
public class DevcontainerTests
{
    static JsonNode Load(string relative)
    {
        var path = Path.Combine(TestSetup.RepoRoot, relative);
        Assert.True(File.Exists(path), $"{relative} is missing");
        return JsonNode.Parse(File.ReadAllText(path), documentOptions: new JsonDocumentOptions
        {
            CommentHandling = JsonCommentHandling.Skip,
            AllowTrailingCommas = true,
        })!;
    }

    [Theory]
    [InlineData(".devcontainer/devcontainer.json", false)]
    [InlineData(".devcontainer/gpu/devcontainer.json", true)]
    public void DevcontainerIsCompleteAndConsistent(string file, bool gpu)
    {
        var dc = Load(file);
        Assert.False(string.IsNullOrWhiteSpace((string?)dc["name"]));
        Assert.True(dc["image"] is not null || dc["build"] is not null, "needs an image or a build");
        var features = dc["features"]!.AsObject();
        var dotnet = features.Single(f => f.Key.StartsWith("ghcr.io/devcontainers/features/dotnet")).Value!;
        Assert.Equal("10.0", (string?)dotnet["version"]);

        var extensions = dc["customizations"]!["vscode"]!["extensions"]!.AsArray().Select(e => (string?)e).ToList();
        // The maintained route: VS Code's Jupyter extension; Polyglot Notebooks was deprecated in 2026.
        Assert.Contains("ms-toolsai.jupyter", extensions);
        Assert.DoesNotContain("ms-dotnettools.dotnet-interactive-vscode", extensions);
        Assert.DoesNotContain("dotnet-interactive", dc["customizations"]!["vscode"]!["settings"]?.ToJsonString() ?? "");

        // The post-create step restores and builds; the script it names exists, is executable, and builds the solution.
        var post = (string)dc["postCreateCommand"]!;
        var script = post.Split(' ').Last();
        var scriptPath = Path.Combine(TestSetup.RepoRoot, script);
        Assert.True(File.Exists(scriptPath), $"{file}: {script} does not exist");
        if (!OperatingSystem.IsWindows())
            Assert.True((File.GetUnixFileMode(scriptPath) & UnixFileMode.UserExecute) != 0, $"{script} is not executable");
        var body = File.ReadAllText(scriptPath);
        Assert.Contains("dotnet build Notebooks.sln", body);
        Assert.Contains("TorchBackend", body);
        // Jupyter from Debian's packages, then README's set-up steps, in README's order, registering the kernel.
        foreach (var package in new[] { "jupyter-notebook", "jupyter-client", "python3-ipykernel", "jupyter-nbconvert" })
            Assert.Contains(package, body);
        var steps = ReadmeSetupSteps();
        Assert.Equal(["dotnet tool restore", "dotnet tool run dotnet-interactive jupyter install"], steps);
        var at = steps.Select(step => body.IndexOf("\n" + step + "\n", StringComparison.Ordinal)).ToList();
        Assert.All(at, i => Assert.True(i > 0, $"{script} does not run README's set-up steps:\n{string.Join("\n", steps)}"));
        Assert.True(at.SequenceEqual(at.Order()), $"{script} runs README's set-up steps out of order");
        Assert.True(body.IndexOf("apt-get install", StringComparison.Ordinal) < at[0], "Jupyter must be installed before the kernel is registered");

        var backend = (string?)dc["containerEnv"]?["TorchBackend"];
        if (gpu)
        {
            Assert.Equal(true, (bool?)dc["hostRequirements"]!["gpu"]);
            Assert.Equal("cuda", backend);
            Assert.Contains(features, f => f.Key.Contains("nvidia-cuda"));
            Assert.Contains("--gpus", dc["runArgs"]!.AsArray().Select(a => (string?)a));
        }
        else Assert.True(backend is null or "cpu");

        // The switch they use is the one the build knows.
        var props = File.ReadAllText(Path.Combine(TestSetup.RepoRoot, "lib", "TorchBackend.props"));
        Assert.Contains("'$(TorchBackend)' == 'cuda'", props);
        Assert.Contains("'$(TorchBackend)' == 'cpu'", props);
    }

    /// <summary>The command lines of README's set-up block (the one after "How to run it"), comments stripped.</summary>
    static List<string> ReadmeSetupSteps()
    {
        var readme = File.ReadAllText(Path.Combine(TestSetup.RepoRoot, "README.md"));
        var section = readme[readme.IndexOf("## How to run it", StringComparison.Ordinal)..];
        var block = section[(section.IndexOf("```bash\n", StringComparison.Ordinal) + 8)..];
        block = block[..block.IndexOf("```", StringComparison.Ordinal)];
        return block.Split('\n').Select(l => l.Split('#')[0].Trim()).Where(l => l.Length > 0).ToList();
    }

    [Fact]
    public void ToolManifestPinsTheNotebookKernel()
    {
        var manifest = Load("dotnet-tools.json");
        Assert.Equal("1.0.712001", (string?)manifest["tools"]!["microsoft.dotnet-interactive"]!["version"]);
    }
}
