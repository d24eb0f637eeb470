
namespace Diffusion.Cli;

/// <summary>The one place of the --guidance checks (sample, eval).</summary>
static class Guidance
{
    /// <summary>One weight: finite and ≥ −1; w ≠ 0 needs a conditional model.</summary>
    public static void Check(double w, int numClasses)
    {
        if (!double.IsFinite(w) || w < ClassifierFreeGuidance.MinWeight)
            throw new CliException($"--guidance: '{w.ToString(CultureInfo.InvariantCulture)}' is not a guidance weight w ≥ −1 " +
                                   "(w must be ≥ −1: 0 = plain conditional, −1 = unconditional, larger = stronger class identity; " +
                                   "diffusers' guidance_scale s is w = s − 1)");
        if (numClasses == 0 && w != 0)
            throw new CliException("--guidance needs a class-conditional model, but this checkpoint is unconditional (trained without --conditional); " +
                                   "drop --guidance, or train with --conditional");
    }

    /// <summary>"0,0.5,1" → guidance weights (empty: 0), each checked.</summary>
    public static double[] ParseList(string text, int numClasses)
    {
        var weights = new List<double>();
        foreach (var raw in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var w))
                throw new CliException($"--guidance: '{raw}' is not a guidance weight w ≥ −1; give a comma-separated list such as 0,0.5,1,2,4");
            weights.Add(w);
        }
        if (weights.Count == 0) weights.Add(0);
        foreach (var w in weights) Check(w, numClasses);
        return weights.ToArray();
    }
}
