using Diffusion.Visuals;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace Diffusion.Tests;

public class VisualsTests
{
    [Fact]
    public void GridPlacesEachImageInItsCell()
    {
        // 5 images of 2×3, 3 columns, padding 1, scale 2: 3·6 + 4 = 22 wide, 2·4 + 3 = 11 high.
        var batch = stack(Enumerable.Range(0, 5).Select(i => full([1, 2, 3], -1 + 0.5 * i)).ToArray());
        using var image = ImageGrid.Grid(batch, columns: 3, padding: 1, scale: 2);
        Assert.Equal(22, image.Width);
        Assert.Equal(11, image.Height);
        for (int i = 0; i < 5; i++)
        {
            int x = 1 + (i % 3) * 7, y = 1 + (i / 3) * 5;
            byte expected = (byte)Math.Round((0.5 * i) * 127.5);
            Assert.Equal(new Rgb24(expected, expected, expected), image[x + 5, y + 3]);   // bottom-right pixel of the cell
        }
        Assert.Equal(new Rgb24(255, 255, 255), image[0, 0]);                                // padding
        Assert.Equal(new Rgb24(255, 255, 255), image[21, 10]);                              // empty 6th cell
        var png = ImageGrid.GridPng(batch, 3);
        using var decoded = Image.Load<Rgb24>(png);
        Assert.Equal(3 * 3 + 4 * 2, decoded.Width);
    }

    [Fact]
    public void RgbChannelsKeepTheirColours()
    {
        var red = stack([full([2, 2], 1.0), full([2, 2], -1.0), full([2, 2], -1.0)]).unsqueeze(0);
        using var image = ImageGrid.Grid(red, padding: 0);
        Assert.Equal(new Rgb24(255, 0, 0), image[1, 1]);
    }

    [Fact]
    public void AnimationHasOneFramePerSnapshotAndLoops()
    {
        var frames = Enumerable.Range(0, 4).Select(i => full([2, 1, 4, 4], -1 + 0.6 * i)).ToList();
        var gif = ImageGrid.AnimationGif(frames, columns: 2, scale: 1, frameDelayMs: 50, lastFrameDelayMs: 1000);
        using var decoded = Image.Load<Rgb24>(gif);
        Assert.Equal(4, decoded.Frames.Count);
        Assert.Equal(0, decoded.Metadata.GetGifMetadata().RepeatCount);
        Assert.Equal(5, decoded.Frames[0].Metadata.GetGifMetadata().FrameDelay);
        Assert.Equal(100, decoded.Frames[3].Metadata.GetGifMetadata().FrameDelay);
        Assert.Throws<ArgumentException>(() => ImageGrid.AnimationGif([]));
    }
}
