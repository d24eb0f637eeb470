using Diffusion.Notebooks.Exercises;

namespace Diffusion.Cli;

/// <summary>
/// <c>solutions</c>: the teacher's copies of the course notebooks, every exercise cell replaced by its solution
/// (<see cref="Solutions.WriteSolvedNotebooks"/>; the file is linked from lib/Diffusion.Notebooks/Exercises).
/// </summary>
static class SolutionsCommand
{
    public static Command Create()
    {
        var output = OptionalOpt<string>("--out",
            $"Folder for the solved notebooks, inside the repository (default: {Solutions.DefaultOutputFolder} under the repository root)");
        var cmd = new Command("solutions",
            "Write the teacher's copies of the course notebooks, with every exercise solved (they run where they are written).")
        {
            output,
        };
        var outputs = new OutputOptions(cmd);
        cmd.SetAction(p =>
        {
            var root = FindRepositoryRoot()
                       ?? throw new CliException("cannot find the course repository (a folder with notebooks/course.csx and lib/): " +
                                                 "run this from inside the repository.");
            var target = p.GetValue(output) is { Length: > 0 } o ? Path.GetFullPath(o) : Path.Combine(root, Solutions.DefaultOutputFolder);
            IReadOnlyList<Solutions.SolvedNotebook> solved;
            try
            {
                solved = Solutions.WriteSolvedNotebooks(Path.Combine(root, "notebooks"), target, overwrite: outputs.Overwrite(p));
            }
            catch (ArgumentException e)
            {
                // One line without the "(Parameter 'outDir')" that ArgumentException appends.
                throw new CliException(e.ParamName is { } name ? e.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : e.Message);
            }
            catch (InvalidOperationException e)
            {
                throw new CliException(e.Message);
            }
            foreach (var notebook in solved)
                Console.WriteLine(Path.GetRelativePath(root, notebook.Path) +
                                  (notebook.Exercises.Count > 0 ? $"   solved: {string.Join(", ", notebook.Exercises)}" : ""));
            Console.WriteLine($"{solved.Sum(n => n.Exercises.Count)} exercises solved in {solved.Count(n => n.Exercises.Count > 0)} notebooks; " +
                              $"open them from {Path.GetRelativePath(root, target)}/ (they run where they are). " +
                              "They are the teacher's copies: do not hand them out.");
            return 0;
        });
        return cmd;
    }

    /// <summary>The repository root: the first folder holding notebooks/course.csx and lib/, walking up from the current
    /// folder, then from the program's folder.</summary>
    static string? FindRepositoryRoot()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "notebooks", "course.csx")) && Directory.Exists(Path.Combine(dir.FullName, "lib")))
                    return dir.FullName;
        return null;
    }
}
