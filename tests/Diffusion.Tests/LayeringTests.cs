using System.Text.RegularExpressions;

namespace Diffusion.Tests;

/// <summary>
/// Data flows one way through the library (docs/library.md): Data → Schedules → Forward → Model → Training → Sampling →
/// the later stages built on them, with IO and Platform as utilities below all. A folder of lib/Diffusion may use the
/// namespaces of the folders before it, never one after it. The test reads the source as text: every <c>using</c>, every
/// fully qualified <c>Diffusion.X.</c> name in code, and, for the namespaces every file imports through the library's
/// global usings, every type of theirs a file names.
/// </summary>
public class LayeringTests
{
    /// <summary>The library's folders in the order data flows through them; folders of one rank may use each other.</summary>
    public static readonly (string Folder, int Rank)[] Order =
    [
        ("Platform", 0), ("IO", 0),
        ("Data", 1),
        ("Schedules", 2),
        ("Forward", 3),
        ("Model", 4),
        ("Training", 5),
        ("Sampling", 6),
        ("Flow", 7),
        ("Evaluation", 8),
        ("Benchmarks", 9),                                              // timing of the pixel stages, which Latent compares itself with
        ("Latent", 10),
        ("TextToImage", 11),
        ("Visuals", 12),
        ("Interop", 13),
    ];

    static string Library => Path.Combine(TestSetup.RepoRoot, "lib", "Diffusion");

    /// <summary>The first segment after "Diffusion." of a namespace, as a folder name (Diffusion.Model.Transformer → Model).</summary>
    static string? Area(string ns) => ns.StartsWith("Diffusion.", StringComparison.Ordinal) ? ns["Diffusion.".Length..].Split('.')[0] : null;

    /// <summary>Code without comments and string literals (a name in prose is no reference).</summary>
    static string Code(string source)
    {
        var noBlock = Regex.Replace(source, @"/\*.*?\*/", " ", RegexOptions.Singleline);
        var noStrings = Regex.Replace(noBlock, @"@""(?:[^""]|"""")*""|""(?:[^""\\\n]|\\.)*""", "\"\"");
        return Regex.Replace(noStrings, @"//[^\n]*", " ");
    }

    /// <summary>Every (file, referenced area) pair that breaks the order, as readable lines.</summary>
    public static List<string> Violations(string library)
    {
        var rank = Order.ToDictionary(o => o.Folder, o => o.Rank);
        var files = Directory.GetFiles(library, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") &&
                        !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
            .Select(f => (Path: f, Folder: Path.GetRelativePath(library, f).Split(Path.DirectorySeparatorChar) is { Length: > 1 } parts ? parts[0] : null,
                          Code: Code(File.ReadAllText(f))))
            .ToList();

        // Public and internal type names declared per area, for the areas every file imports through a global using.
        var globalAreas = files.Where(f => f.Folder is null)
            .SelectMany(f => Regex.Matches(f.Code, @"global\s+using\s+(Diffusion\.[\w.]+)\s*;").Select(m => Area(m.Groups[1].Value)))
            .OfType<string>().ToHashSet();
        var typesOf = globalAreas.ToDictionary(a => a, a => files.Where(f => f.Folder == a)
            .SelectMany(f => Regex.Matches(f.Code, @"\b(?:class|record|struct|interface|enum|delegate\s+[\w<>\[\],.?\s]+?)\s+([A-Z]\w*)").Select(m => m.Groups[1].Value))
            .ToHashSet());

        var allTypes = files.Where(f => f.Folder is not null).GroupBy(f => f.Folder!).ToDictionary(g => g.Key, g => g
            .SelectMany(f => Regex.Matches(f.Code, @"\b(?:class|record|struct|interface|enum|delegate\s+[\w<>\[\],.?\s]+?)\s+([A-Z]\w*)").Select(m => m.Groups[1].Value))
            .ToHashSet());
        var found = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var (path, folder, code) in files)
        {
            var where = Path.GetRelativePath(library, path);
            if (folder is null) continue;                                  // the global usings themselves
            if (!rank.TryGetValue(folder, out int own))
            {
                found.Add($"{where}: folder {folder} has no place in the order");
                continue;
            }
            foreach (Match m in Regex.Matches(code, @"^\s*namespace\s+([\w.]+)", RegexOptions.Multiline))
                if (Area(m.Groups[1].Value) != folder)
                    found.Add($"{where}: declares namespace {m.Groups[1].Value} in folder {folder}");
            // Diffusion.Training.X anywhere, and Training.X where X is a type of Training (a name relative to Diffusion).
            var referenced = Regex.Matches(code, @"(?<![.\w])Diffusion\.([A-Z]\w*)\b").Select(m => m.Groups[1].Value)
                .Where(a => rank.ContainsKey(a) || allTypes.ContainsKey(a))  // a namespace, not a property named Diffusion
                .Concat(Regex.Matches(code, @"(?<![.\w])([A-Z]\w*)\.([A-Z]\w*)").Where(m => allTypes.TryGetValue(m.Groups[1].Value, out var t) && t.Contains(m.Groups[2].Value))
                    .Select(m => m.Groups[1].Value));
            foreach (var area in referenced.Distinct())
            {
                if (area == folder || area is "Cli" or "Tests" or "Notebooks") continue;
                if (!rank.TryGetValue(area, out int theirs))
                    found.Add($"{where}: uses Diffusion.{area}, which has no place in the order");
                else if (theirs > own)
                    found.Add($"{where}: {folder} uses Diffusion.{area}, which comes after it");
            }
            foreach (var area in globalAreas)
            {
                if (area == folder || !rank.TryGetValue(area, out int theirs) || theirs <= own) continue;
                var names = Regex.Matches(code, @"\b[A-Z]\w*\b").Select(m => m.Value).Where(typesOf[area].Contains).Distinct().ToList();
                if (names.Count > 0)
                    found.Add($"{where}: {folder} names {string.Join(", ", names)} of Diffusion.{area}, which comes after it");
            }
        }
        return [.. found];
    }

    [Fact]
    public void NoFolderOfTheLibraryUsesANamespaceAfterIt()
    {
        var violations = Violations(Library).Select(v => v.Replace('\\', '/')).ToList();
        Assert.True(violations.Count == 0, "references against the flow of data:\n" + string.Join("\n", violations));
    }

    [Fact]
    public void EveryFolderOfTheLibraryHasAPlaceInTheOrder()
    {
        var folders = Directory.GetDirectories(Library).Select(d => Path.GetFileName(d)!).Where(d => d is not ("bin" or "obj")).Order().ToList();
        Assert.Equal(folders, Order.Select(o => o.Folder).Order().ToList());
    }

    /// <summary>The checker finds each kind of reference it looks for, in a small library written wrong on purpose.</summary>
    [Fact]
    public void TheCheckerFindsEachKindOfUpstreamReference()
    {
        var dir = Directory.CreateTempSubdirectory("layering").FullName;
        try
        {
            void Write(string rel, string text)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(dir, rel))!);
                File.WriteAllText(Path.Combine(dir, rel), text);
            }
            Write("GlobalUsings.cs", "global using Diffusion.Model;\n");
            Write("Model/Unet.cs", "namespace Diffusion.Model;\npublic sealed class Unet { }\n");
            Write("Training/Trainer.cs", "using Diffusion.Sampling;\nnamespace Diffusion.Training;\npublic class Trainer { }\n");
            Write("Forward/Loss.cs", "namespace Diffusion.Forward;\n// Diffusion.Training.Trainer in a comment is no reference\n" +
                                     "public class Loss { Unet? net; object o = \"Diffusion.Visuals.X\"; }\n");
            Write("IO/File.cs", "namespace Diffusion.IO;\npublic class F { void M() => throw new Diffusion.Training.CheckpointException(); }\n");
            Write("Data/D.cs", "namespace Diffusion;\npublic class D { }\n");
            Write("Sampling/S.cs", "using Diffusion.Training;\nnamespace Diffusion.Sampling;\npublic class S { }\n");
            Write("Data/E.cs", "namespace Diffusion.Data;\npublic class E { void M() => Training.Budget.Check(); int Training => 1; int N => this.Training; }\n");
            Write("Training/Budget.cs", "namespace Diffusion.Training;\npublic static class Budget { public static void Check() { } }\n");
            var v = Violations(dir);
            Assert.Equal(
            [
                "Data/D.cs: declares namespace Diffusion in folder Data",
                "Data/E.cs: Data uses Diffusion.Training, which comes after it",
                "Forward/Loss.cs: Forward names Unet of Diffusion.Model, which comes after it",
                "IO/File.cs: IO uses Diffusion.Training, which comes after it",
                "Training/Trainer.cs: Training uses Diffusion.Sampling, which comes after it",
            ], v.Select(s => s.Replace('\\', '/')));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
