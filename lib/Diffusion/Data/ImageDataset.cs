using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace Diffusion.Data;

/// <summary>
/// An in-memory image dataset: <see cref="Images"/> is a uint8 tensor [N, C, H, W] on the CPU (pixel values 0..255),
/// <see cref="Labels"/> an int64 tensor [N] (or null), <see cref="ClassNames"/> one name per label.
/// </summary>
public sealed class ImageDataset : IDisposable
{
    public Tensor Images { get; }
    public Tensor? Labels { get; }
    public IReadOnlyList<string> ClassNames { get; }
    /// <summary>Where the data came from, for logs and checkpoints.</summary>
    public string Description { get; }

    public long Count => Images.shape[0];

    /// <summary>The largest picture an image folder may hold (64 megapixels, 8192×8192): a header claiming more is refused before decoding.</summary>
    public const long MaxPicturePixels = 8192L * 8192;
    public int Channels => (int)Images.shape[1];
    public int Height => (int)Images.shape[2];
    public int Width => (int)Images.shape[3];

    /// <summary>
    /// True for float32 data that is already in the model's space (e.g. the scaled latents of an autoencoder, see
    /// Diffusion.Latent): it is used as x_0 as it is, instead of being mapped from pixels 0..255 to [−1, 1].
    /// </summary>
    public bool IsModelSpace => Images.dtype == ScalarType.Float32;

    /// <summary>The rows <paramref name="indices"/> as x_0 in the model's space: pixels mapped to [−1, 1], float data as it is.</summary>
    public Tensor ModelInputs(Tensor indices)
    {
        var rows = Images.index_select(0, indices);
        if (IsModelSpace) return rows;
        using (rows) return Transforms.ToSignedUnit(rows);
    }

    public ImageDataset(Tensor images, Tensor? labels, IReadOnlyList<string> classNames, string description)
    {
        if (images.dim() != 4 || images.dtype is not (ScalarType.Byte or ScalarType.Float32))
            throw new ArgumentException($"images must be a uint8 tensor [N, C, H, W] (or float32 data already in the model's space), got {images.dtype} [{string.Join(", ", images.shape)}]");
        if (images.dtype == ScalarType.Float32)
        {
            bool finite;
            using (var ok = images.isfinite().all()) finite = ok.item<bool>();
            if (!finite)
                throw new ArgumentException("images must be a uint8 tensor [N, C, H, W] or finite float32 data in the model's space; " +
                                            "these float32 images hold NaN or ∞ values. Fix the data (or the encoder that produced it).");
        }
        if (labels is not null && (labels.dim() != 1 || labels.shape[0] != images.shape[0]))
            throw new ArgumentException($"labels must be a 1-D tensor with one label per image ({images.shape[0]})");
        Images = images.DetachFromDisposeScope();
        Labels = labels?.to(ScalarType.Int64).DetachFromDisposeScope();
        ClassNames = classNames;
        Description = description;
    }

    /// <summary>Fashion-MNIST's ten classes (label order of the dataset).</summary>
    /// <summary>The largest image side the course trains on (resizing and image folders are refused beyond it).</summary>
    public const int MaxImageSize = 256;

    public static readonly string[] FashionMnistClasses =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>
    /// Loads Fashion-MNIST from a folder holding the four IDX files (data/fashion-mnist in this repository).
    /// </summary>
    public static ImageDataset FashionMnist(string folder, bool train = true)
    {
        var prefix = train ? "train" : "t10k";
        string Find(string stem)
        {
            foreach (var candidate in new[] { $"{stem}.gz", stem })
                if (File.Exists(Path.Combine(folder, candidate))) return Path.Combine(folder, candidate);
            throw new DataFormatException(
                $"{Path.Combine(folder, stem)}(.gz) not found. Fashion-MNIST ships in the repository's data/fashion-mnist; " +
                "pass --data-dir if you moved it.");
        }
        var ds = FromIdx(Find($"{prefix}-images-idx3-ubyte"), Find($"{prefix}-labels-idx1-ubyte"), FashionMnistClasses,
            $"Fashion-MNIST {(train ? "train" : "test")}");
        return ds;
    }

    /// <summary>
    /// Loads any MNIST-format dataset: an image file [N, H, W] (grayscale) or [N, H, W, C], and optionally a label file [N].
    /// </summary>
    public static ImageDataset FromIdx(string imagesPath, string? labelsPath = null, IReadOnlyList<string>? classNames = null,
        string? description = null)
    {
        var images = IdxFile.Read(imagesPath);
        if (images.Dimensions.Length is not (3 or 4))
            throw new DataFormatException(
                $"{imagesPath}: an image file must have 3 dimensions (count, rows, columns) or 4 (… , channels), " +
                $"but this one has {images.Dimensions.Length} ({string.Join("×", images.Dimensions)}). Is it a label file?");
        int n = images.Dimensions[0], h = images.Dimensions[1], w = images.Dimensions[2];
        int c = images.Dimensions.Length == 4 ? images.Dimensions[3] : 1;
        if (c is not (1 or 3))
            throw new DataFormatException($"{imagesPath}: {c} channels per pixel; only 1 (grayscale) or 3 (RGB) are supported.");

        using var scope = NewDisposeScope();
        var tensor = torch.tensor(images.Data, [n, h, w, c], dtype: ScalarType.Byte).permute(0, 3, 1, 2).contiguous();

        Tensor? labels = null;
        IReadOnlyList<string> names = classNames ?? [];
        if (labelsPath is not null)
        {
            var labelArray = IdxFile.Read(labelsPath);
            if (labelArray.Dimensions.Length != 1)
                throw new DataFormatException(
                    $"{labelsPath}: a label file must have 1 dimension, but this one has {labelArray.Dimensions.Length} " +
                    $"({string.Join("×", labelArray.Dimensions)}). Did you swap the image and label files?");
            if (labelArray.Count != n)
                throw new DataFormatException(
                    $"{labelsPath} holds {labelArray.Count} labels but {imagesPath} holds {n} images: they do not belong together " +
                    "(train vs t10k mixed up?).");
            int maxLabel = labelArray.Data.Max();
            if (classNames is not null && maxLabel >= classNames.Count)
                throw new DataFormatException($"{labelsPath}: label {maxLabel} is out of range; expected 0..{classNames.Count - 1}.");
            if (classNames is null)
                names = Enumerable.Range(0, maxLabel + 1).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
            labels = torch.tensor(labelArray.Data, dtype: ScalarType.Byte).to(ScalarType.Int64);
        }
        var ds = new ImageDataset(tensor, labels, names, description ?? Path.GetFileName(imagesPath));
        return ds;
    }

    /// <summary>Image file extensions the folder reader accepts.</summary>
    public static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tga", ".tif", ".tiff"];

    /// <summary>
    /// Loads every image under <paramref name="folder"/> (PNG, JPEG, …) as grayscale (1 channel) or RGB (3).
    /// With a <paramref name="size"/>, each image is resized to size×size (the shorter side scaled to the size, the
    /// centre cropped). Without one, all images must already be square and of one size, which is then used.
    /// If the folder has subfolders with images, each subfolder is a class and its name the class name.
    /// </summary>
    public static ImageDataset FromImageFolder(string folder, int? size = null, int channels = 3)
    {
        if (!Directory.Exists(folder))
            throw new DataFormatException($"{folder}: folder not found.");
        if (channels is not (1 or 3))
            throw new ArgumentException($"channels must be 1 (grayscale) or 3 (RGB), got {channels}");
        if (size is < 4 or > 1024)
            throw new ArgumentException($"image size must be between 4 and 1024 pixels, got {size}");

        var files = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
            .Order(StringComparer.Ordinal).ToList();
        if (files.Count == 0)
            throw new DataFormatException(
                $"{folder}: no images found (looked for {string.Join(", ", ImageExtensions)} in the folder and its subfolders).");

        if (size is null)
        {
            // Read only the headers to find the sizes; refuse a mix instead of silently distorting images.
            var sizes = new Dictionary<(int W, int H), string>();
            foreach (var f in files)
            {
                IImageInfo? info;
                InputFile.EnsureRegular(f, m => new DataFormatException(m));
                try { info = Image.Identify(f); }
                catch (Exception e) when (e is UnknownImageFormatException or InvalidImageContentException or IOException or NotSupportedException)
                {
                    throw new DataFormatException($"{f}: not a readable image ({e.Message}). Remove or replace it.", e);
                }
                if (info is null) throw new DataFormatException($"{f}: not a readable image. Remove or replace it.");
                sizes.TryAdd((info.Width, info.Height), f);
            }
            if (sizes.Count > 1)
                throw new DataFormatException(
                    $"{folder}: the images have different sizes ({string.Join(", ", sizes.Take(3).Select(kv => $"{Path.GetFileName(kv.Value)} {kv.Key.W}×{kv.Key.H}"))}" +
                    $"{(sizes.Count > 3 ? ", …" : "")}). Pass an image size (train --image-size N) to resize them all.");
            var (w, h) = sizes.Keys.Single();
            if (w != h)
                throw new DataFormatException(
                    $"{folder}: the images are {w}×{h}, not square. Pass an image size (train --image-size N) to crop and resize them.");
            size = w;
            if (size is < 4 or > MaxImageSize)
                throw new DataFormatException($"{folder}: the images are {w}×{h}; pass --image-size between 4 and {MaxImageSize} to resize them.");
        }
        int side = size.Value;

        var classOf = files.Select(f => Path.GetRelativePath(folder, Path.GetDirectoryName(f)!)).ToList();
        bool labelled = classOf.All(c => c != ".") && classOf.Distinct().Count() > 1;
        var classNames = labelled ? classOf.Distinct().Order(StringComparer.Ordinal).ToArray() : [];

        Platform.MemoryLimit.Check(checked(5L * files.Count * channels * side * side), $"{files.Count} images of {side}×{side}×{channels}",
            "pass a smaller --image-size or fewer images", m => new DataFormatException(m));
        var pixels = new byte[(long)files.Count * channels * side * side];
        var resize = new ResizeOptions { Size = new SixLabors.ImageSharp.Size(side, side), Mode = ResizeMode.Crop, Sampler = KnownResamplers.Bicubic };
        for (int i = 0; i < files.Count; i++)
        {
            try
            {
                // A picture's header can claim any size; one is decoded only if it is of a sane size (a "decompression bomb" is refused).
                InputFile.EnsureRegular(files[i], m => new DataFormatException(m));
                var header = Image.Identify(files[i]) ?? throw new DataFormatException($"{files[i]}: not a readable image. Remove or replace it.");
                if ((long)header.Width * header.Height > MaxPicturePixels)
                    throw new DataFormatException($"{files[i]}: the picture claims {header.Width}×{header.Height} pixels, more than the {MaxPicturePixels / 1_000_000} megapixels read. Shrink it or remove it.");
                using var image = Image.Load<Rgb24>(files[i]);
                if (image.Width != side || image.Height != side) image.Mutate(x => x.Resize(resize));
                long plane = (long)side * side, offset = (long)i * channels * plane;
                image.ProcessPixelRows(rows =>
                {
                    for (int y = 0; y < side; y++)
                    {
                        var row = rows.GetRowSpan(y);
                        for (int x = 0; x < side; x++)
                        {
                            var p = row[x];
                            long at = offset + (long)y * side + x;
                            if (channels == 1)
                                pixels[at] = (byte)Math.Round(0.299 * p.R + 0.587 * p.G + 0.114 * p.B);  // ITU-R BT.601 luma
                            else
                            {
                                pixels[at] = p.R;
                                pixels[at + plane] = p.G;
                                pixels[at + 2 * plane] = p.B;
                            }
                        }
                    }
                });
            }
            catch (Exception e) when (e is UnknownImageFormatException or InvalidImageContentException or IOException or NotSupportedException)
            {
                throw new DataFormatException($"{files[i]}: not a readable image ({e.Message}). Remove or replace it.", e);
            }
        }

        using var scope = NewDisposeScope();
        var images = torch.tensor(pixels, [files.Count, channels, side, side], dtype: ScalarType.Byte);
        Tensor? labels = labelled
            ? torch.tensor(classOf.Select(c => (long)Array.IndexOf(classNames, c)).ToArray(), dtype: ScalarType.Int64)
            : null;
        return new ImageDataset(images, labels, classNames, $"image folder {folder} ({files.Count} images, {side}×{side}, {channels} ch)");
    }

    /// <summary>A dataset with the first <paramref name="count"/> images only (shares no memory with this one).</summary>
    public ImageDataset Take(long count)
    {
        count = Math.Min(count, Count);
        using var scope = NewDisposeScope();
        return new ImageDataset(Images[..(int)count].clone(), Labels?[..(int)count].clone(), ClassNames, $"{Description} (first {count})");
    }

    /// <summary>
    /// Images resized to <paramref name="size"/>×<paramref name="size"/> (bilinear, with antialiasing when shrinking);
    /// returns this dataset unchanged if it already has that size.
    /// </summary>
    public ImageDataset Resized(int size)
    {
        if (Height == size && Width == size) return this;
        if (IsModelSpace) throw new InvalidOperationException("float (model-space) data cannot be resized as pixels");
        if (size is < 4 or > MaxImageSize)
            throw new ArgumentException($"image size must be between 4 and {MaxImageSize} pixels, got {size}");
        // The float copy of every image at the new size, and the stored bytes.
        Platform.MemoryLimit.Check(checked(Count * Channels * (5L * size * size + 4L * Height * Width)),
            $"resizing {Count} images to {size}×{size}", "use a smaller --image-size");
        using var scope = NewDisposeScope();
        var resized = nn.functional.interpolate(Images.to(ScalarType.Float32), [size, size],
                mode: InterpolationMode.Bilinear, align_corners: false, antialias: size < Height)
            .round().clamp(0, 255).to(ScalarType.Byte);
        return new ImageDataset(resized, Labels?.clone(), ClassNames, $"{Description}, resized to {size}×{size}");
    }

    public void Dispose()
    {
        Images.Dispose();
        Labels?.Dispose();
    }
}
