namespace Diffusion.Tests;

/// <summary>
/// The library's recipes against the shipped checkpoints they describe (data/checkpoints, trained by the commands in
/// data/README.md), and the name tables of the option values against their enums.
/// </summary>
public class RecipeTests
{
    static string Shipped(string name) => Path.Combine(TestSetup.RepoRoot, "data", "checkpoints", name);

    [Theory]
    [InlineData("default", "fashion-mnist-default.ckpt")]
    [InlineData("showcase", "fashion-mnist-showcase.ckpt")]
    [InlineData("eps", "fashion-mnist-ddpm.ckpt")]
    [InlineData("learned-variance", "fashion-mnist-ddpm-learned-variance.ckpt")]
    public void EachRecipeBuildsTheModelOfItsShippedCheckpoint(string recipe, string file)
    {
        var r = new[] { Recipe.Default, Recipe.Showcase, Recipe.Epsilon, Recipe.LearnedVariance }.Single(x => x.Name == recipe);
        r.Model.Validate();
        r.Training.Validate();
        var info = Checkpoint.ReadInfo(Shipped(file));
        Assert.Empty(r.Model.DifferencesFrom(info.Model));
        Assert.Equal(info.Training.MinSnrGamma, r.Training.MinSnrGamma);
    }

    [Fact]
    public void TheOneRunCheckpointsRanTheirRecipesStepCounts()
    {
        // The showcase model was trained in three runs (data/README.md): its checkpoint counts the last run's steps only.
        Assert.Equal(Recipe.Default.Training.Steps, Checkpoint.ReadInfo(Shipped("fashion-mnist-default.ckpt")).Training.Steps);
        Assert.Equal(Recipe.Epsilon.Training.Steps, Checkpoint.ReadInfo(Shipped("fashion-mnist-ddpm.ckpt")).Training.Steps);
    }

    [Fact]
    public void TheCourseUnetAndTheDefaultNetworkHaveTheirDocumentedSizes()
    {
        // 1 991 305 (data/README.md, notebook 04) and 698 209 parameters (docs/results.md).
        using var course = new Unet(Recipe.CourseUnet);
        using var small = new Unet(Recipe.Default.Model.Unet);
        Assert.Equal(1_991_305, course.ParameterCount());
        Assert.Equal(698_209, small.ParameterCount());
    }

    static void EveryValueOnce<T>(NameTable<T> table) where T : struct, Enum
    {
        Assert.Equal(Enum.GetValues<T>().Order(), table.Entries.Select(e => e.Value).Order());
        Assert.Equal(table.Entries.Count, table.Names.Select(n => n.ToLowerInvariant()).Distinct().Count());
        foreach (var v in Enum.GetValues<T>())
        {
            Assert.Equal(v, table.Parse(table.Name(v)));
            Assert.Equal(v, table.Parse(table.Name(v).ToUpperInvariant()));
        }
        var error = Assert.Throws<FormatException>(() => table.Parse("no-such-name"));
        Assert.Equal($"'no-such-name' is not one of {string.Join(", ", table.Names)}", error.Message);
        Assert.False(table.TryParse("", out _));
    }

    [Fact]
    public void EveryOptionValueHasExactlyOneName()
    {
        EveryValueOnce(ScheduleKinds.Names);
        EveryValueOnce(Predictions.Names);
        EveryValueOnce(LossTypes.Names);
        EveryValueOnce(BlockTypes.Names);
        EveryValueOnce(LearningRateSchedules.Names);
        EveryValueOnce(SamplerSpec.VarianceNames);
    }

    [Fact]
    public void ANameTableRefusesAValueItDoesNotName()
    {
        var partial = new NameTable<Prediction>(("eps", Prediction.Epsilon));
        Assert.Throws<ArgumentOutOfRangeException>(() => partial.Name(Prediction.Velocity));
    }
}
