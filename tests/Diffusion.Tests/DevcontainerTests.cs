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
        Assert.Contains("ms-dotnettools.dotnet-interactive-vscode", extensions);   // Polyglot Notebooks
        Assert.Contains("ms-toolsai.jupyter", extensions);

        // The post-create step restores and builds; the script it names exists, is executable, and builds the solution.
        var post = (string)dc["postCreateCommand"]!;
        var script = post.Split(' ').Last();
        var scriptPath = Path.Combine(TestSetup.RepoRoot, script);
        Assert.True(File.Exists(scriptPath), $"{file}: {script} does not exist");
        if (!OperatingSystem.IsWindows())
            Assert.True((File.GetUnixFileMode(scriptPath) & UnixFileMode.UserExecute) != 0, $"{script} is not executable");
        var body = File.ReadAllText(scriptPath);
        Assert.Contains("dotnet tool restore", body);
        Assert.Contains("dotnet build Notebooks.sln", body);
        Assert.Contains("TorchBackend", body);

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

    [Fact]
    public void ToolManifestPinsTheNotebookKernel()
    {
        var manifest = Load("dotnet-tools.json");
        Assert.Equal("1.0.712001", (string?)manifest["tools"]!["microsoft.dotnet-interactive"]!["version"]);
    }
}
