using System.IO.Compression;
using System.Security.Cryptography;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace Diffusion.Tests;

public class DataTests
{
    [Fact]
    public void ShippedFashionMnistMatchesItsPublishedChecksumsAndLoads()
    {
        // Provenance: the decompressed content must be byte-identical to upstream (data/SHA256SUMS.decompressed).
        var sums = File.ReadAllLines(Path.Combine(TestSetup.RepoRoot, "data", "SHA256SUMS.decompressed"))
            .Select(l => l.Split("  ")).ToDictionary(p => Path.GetFileName(p[1]), p => p[0]);
        foreach (var (name, sha) in sums)
        {
            using var gz = new GZipStream(File.OpenRead(Path.Combine(TestSetup.FashionMnistDir, name + ".gz")), CompressionMode.Decompress);
            Assert.Equal(sha, Convert.ToHexString(SHA256.HashData(gz)).ToLowerInvariant());
        }

        using var train = ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train: true);
        using var test = ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train: false);
        Assert.Equal(new long[] { 60000, 1, 28, 28 }, train.Images.shape);
        Assert.Equal(new long[] { 10000, 1, 28, 28 }, test.Images.shape);
        Assert.Equal(10, train.ClassNames.Count);
        // Every class appears 6000 times in the training set (a published property of Fashion-MNIST).
        var counts = train.Labels!.bincount(null).data<long>().ToArray();
        Assert.All(counts, c => Assert.Equal(6000, c));
        Assert.InRange(train.Images.to(ScalarType.Float32).mean().item<float>(), 70f, 80f);   // mean pixel ≈ 72.9 (0.286·255)
    }

    [Theory]
    [InlineData("a.idx")]
    [InlineData("a.idx.gz")]
    public void IdxWriteThenReadRoundTrips(string name)
    {
        using var dir = TestSetup.Temp();
        var data = Enumerable.Range(0, 3 * 4 * 5).Select(i => (byte)(i * 7)).ToArray();
        IdxFile.Write(dir[name], new IdxArray([3, 4, 5], data));
        var read = IdxFile.Read(dir[name]);
        Assert.Equal(new[] { 3, 4, 5 }, read.Dimensions);
        Assert.Equal(data, read.Data);
    }

    static byte[] Header(byte type, params int[] dims)
    {
        var h = new List<byte> { 0, 0, type, (byte)dims.Length };
        foreach (var d in dims) h.AddRange(BitConverter.GetBytes(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(d)));
        return h.ToArray();
    }

    static byte[] Noise(int n)
    {
        var b = new byte[n];
        new Random(1).NextBytes(b);
        return b;
    }

    static byte[] Gzip(byte[] raw)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(raw);
        return ms.ToArray();
    }

    public static TheoryData<string, byte[], string> CorruptFiles() => new()
    {
        { "empty", [], "too short" },
        { "bad magic", [1, 2, 8, 1, 0, 0, 0, 1, 5], "magic number" },
        { "float type", [.. Header(0x0D, 2), 0, 0, 0, 0, 0, 0, 0, 0], "type 0x0D" },
        { "zero rank", [0, 0, 8, 0], "dimensions" },
        { "negative dim", Header(8, -5), "must be positive" },
        { "truncated header", Header(8, 10, 28, 28)[..10], "truncated inside its header" },
        { "truncated data", [.. Header(8, 4, 2, 2), .. new byte[10]], "truncated" },
        { "extra data", [.. Header(8, 2, 2), .. new byte[6]], "after the" },
        { "lying huge header", [.. Header(8, 60000, 60000, 60000), .. new byte[100]], "more than" },
        { "large header, little data", [.. Header(8, 100000, 28, 28), .. new byte[100]], "truncated" },
        { "truncated gzip", Gzip([.. Header(8, 4, 28, 28), .. Noise(4 * 784)])[..200], "truncated" },
        { "corrupt gzip", [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, 0x12, 0x34], "gzip" },
    };

    [Theory]
    [MemberData(nameof(CorruptFiles))]
    public void CorruptIdxFilesGiveOneClearError(string what, byte[] content, string expected)
    {
        using var dir = TestSetup.Temp();
        var path = dir["file"];
        File.WriteAllBytes(path, content);
        var e = Assert.Throws<DataFormatException>(() => IdxFile.Read(path));
        Assert.Contains(expected, e.Message);
        Assert.Contains(path, e.Message);
        _ = what;
    }

    [Fact]
    public void MismatchedImageAndLabelFilesAreRejected()
    {
        using var dir = TestSetup.Temp();
        IdxFile.Write(dir["img"], new IdxArray([3, 2, 2], new byte[12]));
        IdxFile.Write(dir["lab"], new IdxArray([4], [0, 1, 2, 3]));
        Assert.Contains("do not belong together", Assert.Throws<DataFormatException>(() => ImageDataset.FromIdx(dir["img"], dir["lab"])).Message);
        Assert.Contains("Is it a label file", Assert.Throws<DataFormatException>(() => ImageDataset.FromIdx(dir["lab"])).Message);
        Assert.Contains("swap", Assert.Throws<DataFormatException>(() => ImageDataset.FromIdx(dir["img"], dir["img"])).Message);
        IdxFile.Write(dir["lab3"], new IdxArray([3], [0, 1, 12]));
        Assert.Contains("out of range",
            Assert.Throws<DataFormatException>(() => ImageDataset.FromIdx(dir["img"], dir["lab3"], ImageDataset.FashionMnistClasses)).Message);
        Assert.Contains("not found", Assert.Throws<DataFormatException>(() => ImageDataset.FashionMnist(dir.Path)).Message);
    }

    [Fact]
    public void ImageFolderReadsClassesResizesAndConvertsToGray()
    {
        using var dir = TestSetup.Temp();
        Directory.CreateDirectory(dir["red"]);
        Directory.CreateDirectory(dir["white"]);
        using (var red = new Image<Rgb24>(40, 20, new Rgb24(255, 0, 0))) { red.SaveAsPng(dir["red/a.png"]); red.SaveAsJpeg(dir["red/b.jpg"]); }
        using (var white = new Image<Rgb24>(16, 16, new Rgb24(255, 255, 255))) white.SaveAsPng(dir["white/c.png"]);
        File.WriteAllText(dir["white/notes.txt"], "ignored");

        using var rgb = ImageDataset.FromImageFolder(dir.Path, 8, channels: 3);
        Assert.Equal(new long[] { 3, 3, 8, 8 }, rgb.Images.shape);
        Assert.Equal(new[] { "red", "white" }, rgb.ClassNames);
        Assert.Equal(new long[] { 0, 0, 1 }, rgb.Labels!.data<long>().ToArray());
        Assert.Equal(255, rgb.Images[0, 0, 4, 4].item<byte>());
        Assert.Equal(0, rgb.Images[0, 1, 4, 4].item<byte>());

        using var gray = ImageDataset.FromImageFolder(dir.Path, 8, channels: 1);
        Assert.Equal(new long[] { 3, 1, 8, 8 }, gray.Images.shape);
        Assert.Equal((byte)Math.Round(0.299 * 255), gray.Images[0, 0, 4, 4].item<byte>());   // BT.601 luma of pure red
        Assert.Equal(255, gray.Images[2, 0, 0, 0].item<byte>());
    }

    [Fact]
    public void EmptyOrBrokenImageFoldersAreRejectedClearly()
    {
        using var dir = TestSetup.Temp();
        Assert.Contains("no images found", Assert.Throws<DataFormatException>(() => ImageDataset.FromImageFolder(dir.Path, 8)).Message);
        File.WriteAllText(dir["fake.png"], "this is not a png");
        var e = Assert.Throws<DataFormatException>(() => ImageDataset.FromImageFolder(dir.Path, 8));
        Assert.Contains("fake.png", e.Message);
        Assert.Contains("not found", Assert.Throws<DataFormatException>(() => ImageDataset.FromImageFolder(dir["nope"], 8)).Message);
    }

    [Fact]
    public void TransformsMapPixelsToSignedUnitAndBack()
    {
        var pixels = tensor(new byte[] { 0, 1, 127, 128, 254, 255 }, dtype: ScalarType.Byte).reshape(1, 1, 2, 3);
        var x = Transforms.ToSignedUnit(pixels);
        Assert.Equal(-1f, x.min().item<float>());
        Assert.Equal(1f, x.max().item<float>());
        Assert.Equal(pixels.data<byte>().ToArray(), Transforms.ToPixels(x).data<byte>().ToArray());
        Assert.Equal(new byte[] { 0, 255 }, Transforms.ToPixels(tensor(new float[] { -3f, 7f })).data<byte>().ToArray());
    }

    [Fact]
    public void RandomFlipMirrorsSomeImagesAndLeavesTheOthers()
    {
        var batch = arange(64 * 2 * 3, dtype: ScalarType.Float32).reshape(64, 1, 2, 3);
        var flipped = Transforms.RandomHorizontalFlip(batch, new Generator(1));
        int mirrored = 0;
        for (int i = 0; i < 64; i++)
        {
            bool same = flipped[i].equal(batch[i]).all().item<bool>();
            bool mirror = flipped[i].equal(batch[i].flip(2)).all().item<bool>();
            Assert.True(same ^ mirror);
            if (mirror) mirrored++;
        }
        Assert.InRange(mirrored, 16, 48);
    }

    [Fact]
    public void BatchOrderCoversEveryIndexOncePerEpochAndResumesExactly()
    {
        var a = new BatchOrder(10, 3, seed: 4);
        var epoch0 = Enumerable.Range(0, 3).SelectMany(_ => a.Next()).ToList();
        Assert.Equal(9, epoch0.Distinct().Count());                       // last incomplete batch dropped
        var next = a.Next();                                               // first batch of epoch 1
        Assert.Equal(1, a.Position.Epoch);
        var saved = a.Position;
        var later = Enumerable.Range(0, 5).Select(_ => a.Next()).ToList();
        var resumed = new BatchOrder(10, 3, seed: 4, saved);
        Assert.Equal(later, Enumerable.Range(0, 5).Select(_ => resumed.Next()).ToList());
        Assert.Equal(BatchOrder.Permutation(10, 4, 0), BatchOrder.Permutation(10, 4, 0));
        Assert.NotEqual(BatchOrder.Permutation(10, 4, 0), BatchOrder.Permutation(10, 4, 1));
        Assert.Equal(Enumerable.Range(0, 10), BatchOrder.Permutation(10, 4, 3).Order());
        Assert.Contains("larger than the dataset", Assert.Throws<ArgumentOutOfRangeException>(() => new BatchOrder(5, 6, 0)).Message);
        _ = next;
    }
}
