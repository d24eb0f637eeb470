using Diffusion.Data;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace Diffusion.Visuals;

/// <summary>Tensors to pictures: single images, grids of a batch, animated GIFs of the reverse process.</summary>
public static class ImageGrid
{
    /// <summary>
    /// Arranges a batch [B, C, H, W] of images in [−1, 1] (or uint8 pixels) into one image of
    /// <paramref name="columns"/> columns with <paramref name="padding"/> pixels of <paramref name="background"/> between
    /// them, each image enlarged <paramref name="scale"/>× (nearest neighbour, so pixels stay crisp).
    /// </summary>
    public static Image<Rgb24> Grid(Tensor batch, int columns = 8, int padding = 2, int scale = 1, byte background = 255)
    {
        if (batch.dim() == 3) batch = batch.unsqueeze(0);
        if (batch.dim() != 4 || batch.shape[1] is not (1 or 3))
            throw new ArgumentException($"expected images [B, 1 or 3, H, W], got [{string.Join(", ", batch.shape)}]");
        if (columns < 1 || padding < 0 || scale < 1) throw new ArgumentException("columns and scale must be ≥ 1, padding ≥ 0");

        using var scope = NewDisposeScope();
        var pixels = batch.dtype == ScalarType.Byte ? batch.cpu() : Transforms.ToPixels(batch);
        int n = (int)pixels.shape[0], c = (int)pixels.shape[1], h = (int)pixels.shape[2], w = (int)pixels.shape[3];
        var data = pixels.contiguous().data<byte>().ToArray();
        int cols = Math.Min(columns, n), rows = (n + cols - 1) / cols;
        int cellW = w * scale, cellH = h * scale;
        var image = new Image<Rgb24>(cols * cellW + (cols + 1) * padding, rows * cellH + (rows + 1) * padding,
            new Rgb24(background, background, background));
        int plane = h * w;
        image.ProcessPixelRows(access =>
        {
            for (int i = 0; i < n; i++)
            {
                int x0 = padding + (i % cols) * (cellW + padding), y0 = padding + (i / cols) * (cellH + padding);
                int baseIndex = i * c * plane;
                for (int y = 0; y < cellH; y++)
                {
                    var row = access.GetRowSpan(y0 + y);
                    int sy = y / scale;
                    for (int x = 0; x < cellW; x++)
                    {
                        int at = baseIndex + sy * w + x / scale;
                        row[x0 + x] = c == 1
                            ? new Rgb24(data[at], data[at], data[at])
                            : new Rgb24(data[at], data[at + plane], data[at + 2 * plane]);
                    }
                }
            }
        });
        return image;
    }

    /// <summary>PNG bytes of <see cref="Grid"/> (for files and for notebook image/png outputs).</summary>
    public static byte[] GridPng(Tensor batch, int columns = 8, int padding = 2, int scale = 1)
    {
        using var image = Grid(batch, columns, padding, scale);
        using var stream = new MemoryStream();
        image.Save(stream, new PngEncoder());
        return stream.ToArray();
    }

    /// <summary>Writes <see cref="Grid"/> as a PNG file, atomically (temp file + rename).</summary>
    public static void SaveGridPng(Tensor batch, string path, int columns = 8, int padding = 2, int scale = 1) =>
        AtomicFile.WriteAllBytes(path, GridPng(batch, columns, padding, scale));

    /// <summary>
    /// An animated GIF: one frame per batch in <paramref name="frames"/> (each [B, C, H, W] in [−1, 1]), shown as a grid,
    /// <paramref name="frameDelayMs"/> per frame and <paramref name="lastFrameDelayMs"/> on the last; loops forever.
    /// </summary>
    public static byte[] AnimationGif(IReadOnlyList<Tensor> frames, int columns = 8, int scale = 2, int frameDelayMs = 60,
        int lastFrameDelayMs = 2000, int padding = 2)
    {
        if (frames.Count == 0) throw new ArgumentException("no frames to animate");
        using var gif = Grid(frames[0], columns, padding, scale);
        var meta = gif.Metadata.GetGifMetadata();
        meta.RepeatCount = 0;   // loop forever
        meta.ColorTableMode = GifColorTableMode.Local;
        gif.Frames.RootFrame.Metadata.GetGifMetadata().FrameDelay = Delay(frames.Count == 1 ? lastFrameDelayMs : frameDelayMs);
        for (int i = 1; i < frames.Count; i++)
        {
            using var frame = Grid(frames[i], columns, padding, scale);
            if (frame.Width != gif.Width || frame.Height != gif.Height)
                throw new ArgumentException("every frame must hold the same number of images of the same size");
            var added = gif.Frames.AddFrame(frame.Frames.RootFrame);
            added.Metadata.GetGifMetadata().FrameDelay = Delay(i == frames.Count - 1 ? lastFrameDelayMs : frameDelayMs);
        }
        using var stream = new MemoryStream();
        gif.Save(stream, new GifEncoder { ColorTableMode = GifColorTableMode.Local });
        return stream.ToArray();

        static int Delay(int ms) => Math.Max(1, ms / 10);   // GIF delays are in hundredths of a second
    }

    /// <summary>Writes <see cref="AnimationGif"/> to a file, atomically.</summary>
    public static void SaveAnimationGif(IReadOnlyList<Tensor> frames, string path, int columns = 8, int scale = 2,
        int frameDelayMs = 60, int lastFrameDelayMs = 2000) =>
        AtomicFile.WriteAllBytes(path, AnimationGif(frames, columns, scale, frameDelayMs, lastFrameDelayMs));
}
