
namespace Diffusion.Cli;

/// <summary>Finds and loads the training data named by --data.</summary>
static class DataLocator
{
    public const string FashionMnist = "fashion-mnist";

    /// <summary>
    /// The repository's data/fashion-mnist folder: $DIFFUSION_DATA_DIR/fashion-mnist if set, else the first
    /// data/fashion-mnist found walking up from the current folder or from the program's folder.
    /// </summary>
    public static string FashionMnistFolder()
    {
        var env = Environment.GetEnvironmentVariable("DIFFUSION_DATA_DIR");
        if (!string.IsNullOrEmpty(env)) return Path.Combine(env, "fashion-mnist");
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "data", "fashion-mnist");
                if (Directory.Exists(candidate)) return candidate;
            }
        throw new CliException(
            "cannot find data/fashion-mnist: run from inside the repository, or set DIFFUSION_DATA_DIR to the repository's data folder, " +
            "or pass --data PATH.");
    }

    /// <summary>
    /// Loads --data: "fashion-mnist"; a folder with MNIST-format files (train-images-idx3-ubyte[.gz], train-labels-…);
    /// an IDX image file (with optional --labels); or a folder of PNG/JPEG pictures (subfolders = classes).
    /// </summary>
    public static ImageDataset Load(string data, string? labels, int? imageSize, int channels)
    {
        ImageDataset ds;
        if (string.Equals(data, FashionMnist, StringComparison.OrdinalIgnoreCase))
            ds = ImageDataset.FashionMnist(FashionMnistFolder());
        else if (File.Exists(data))
            ds = ImageDataset.FromIdx(data, labels);
        else if (Directory.Exists(data))
        {
            bool idxFolder = File.Exists(Path.Combine(data, "train-images-idx3-ubyte.gz")) ||
                             File.Exists(Path.Combine(data, "train-images-idx3-ubyte"));
            if (idxFolder)
                ds = data.Contains("fashion", StringComparison.OrdinalIgnoreCase)
                    ? ImageDataset.FashionMnist(data)
                    : LoadIdxFolder(data);
            else
                return ImageDataset.FromImageFolder(data, imageSize, channels);
        }
        else
            throw new CliException($"--data {data}: no such file or folder. Use fashion-mnist, an IDX file, or a folder of images.");

        if (imageSize is { } size && size != ds.Height)
        {
            var resized = ds.Resized(size);
            ds.Dispose();
            return resized;
        }
        return ds;
    }

    static ImageDataset LoadIdxFolder(string folder)
    {
        string Pick(string stem) => File.Exists(Path.Combine(folder, stem + ".gz")) ? Path.Combine(folder, stem + ".gz") : Path.Combine(folder, stem);
        var labels = Pick("train-labels-idx1-ubyte");
        return ImageDataset.FromIdx(Pick("train-images-idx3-ubyte"), File.Exists(labels) ? labels : null, null, $"MNIST-format data in {folder}");
    }
}
