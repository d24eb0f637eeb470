namespace Diffusion.TextToImage;

/// <summary>
/// What a caption can say about a Fashion-MNIST picture beyond its class, each measured from the pixels by a formula a
/// learner can read. An image is a square of intensities in [0, 1] (pixel / 255), row by row; the garment is the set of
/// pixels brighter than <see cref="GarmentThreshold"/>.
/// </summary>
public static class GarmentAttributes
{
    /// <summary>Pixels above this intensity belong to the garment (the background of Fashion-MNIST is 0).</summary>
    public const double GarmentThreshold = 0.1;

    /// <summary>The classes whose pictures have a direction (side views of shoes): Sandal, Sneaker, Ankle boot.</summary>
    public static readonly int[] ShoeClasses = [5, 7, 9];

    /// <summary>
    /// Brightness: the mean intensity of the garment pixels, (1/|G|) Σ_{p∈G} x_p. Dark garments score low, light ones high.
    /// 0 for an empty picture.
    /// </summary>
    public static double Brightness(ReadOnlySpan<float> image)
    {
        double sum = 0;
        int n = 0;
        foreach (var x in image)
            if (x > GarmentThreshold) { sum += x; n++; }
        return n == 0 ? 0 : sum / n;
    }

    /// <summary>
    /// Width: the mean horizontal extent of the garment over the rows it occupies, as a fraction of the picture's width —
    /// for each row with garment pixels, (rightmost − leftmost + 1)/size, averaged over those rows. Slim trousers score
    /// low, wide coats high. 0 for an empty picture.
    /// </summary>
    public static double Width(ReadOnlySpan<float> image, int size)
    {
        CheckSquare(image, size);
        double sum = 0;
        int rows = 0;
        for (int r = 0; r < size; r++)
        {
            int left = -1, right = -1;
            for (int c = 0; c < size; c++)
                if (image[r * size + c] > GarmentThreshold)
                {
                    if (left < 0) left = c;
                    right = c;
                }
            if (left < 0) continue;
            sum += (right - left + 1) / (double)size;
            rows++;
        }
        return rows == 0 ? 0 : sum / rows;
    }

    /// <summary>
    /// Texture: the high-frequency energy inside the garment — the mean of |x_p − (x_up + x_down + x_left + x_right)/4|
    /// (the 4-neighbour Laplacian) over the interior pixels p, those that are garment pixels together with their four
    /// neighbours, so that the outline does not count. Plain fabric scores near 0, stripes, prints and folds high.
    /// </summary>
    public static double Texture(ReadOnlySpan<float> image, int size)
    {
        CheckSquare(image, size);
        double sum = 0;
        int n = 0;
        for (int r = 1; r < size - 1; r++)
            for (int c = 1; c < size - 1; c++)
            {
                int i = r * size + c;
                float x = image[i], up = image[i - size], down = image[i + size], left = image[i - 1], right = image[i + 1];
                if (x <= GarmentThreshold || up <= GarmentThreshold || down <= GarmentThreshold || left <= GarmentThreshold || right <= GarmentThreshold)
                    continue;
                sum += Math.Abs(x - (up + down + left + right) / 4.0);
                n++;
            }
        return n == 0 ? 0 : sum / n;
    }

    /// <summary>
    /// Direction of a shoe seen from the side: the heel and the shaft are tall, the toe is low, so the mass of the upper
    /// half of the picture sits over the heel. Returns (m_right − m_left)/(m_right + m_left) over the upper half's
    /// intensities, in [−1, 1]: positive = heel on the right = the shoe <b>faces left</b>, negative = it faces right.
    /// </summary>
    public static double UpperMassAsymmetry(ReadOnlySpan<float> image, int size)
    {
        CheckSquare(image, size);
        double left = 0, right = 0;
        for (int r = 0; r < size / 2; r++)
            for (int c = 0; c < size; c++)
            {
                double x = image[r * size + c];
                if (c < size / 2) left += x;
                else if (c >= size - size / 2) right += x;   // an odd size leaves the middle column out
            }
        return left + right == 0 ? 0 : (right - left) / (right + left);
    }

    /// <summary>The four measurements of one picture.</summary>
    public static Measurements Measure(ReadOnlySpan<float> image, int size) =>
        new(Brightness(image), Width(image, size), Texture(image, size), UpperMassAsymmetry(image, size));

    static void CheckSquare(ReadOnlySpan<float> image, int size)
    {
        if (size < 3 || image.Length != size * size)
            throw new ArgumentException($"expected a square picture of {size}×{size} = {size * size} intensities, got {image.Length}");
    }
}

/// <summary>The measured attributes of one picture (see <see cref="GarmentAttributes"/> for the formulas).</summary>
public readonly record struct Measurements(double Brightness, double Width, double Texture, double Asymmetry)
{
    /// <summary>
    /// The measurements of the left–right mirrored picture: the same brightness, width and texture (each formula is
    /// symmetric), the opposite asymmetry. Fashion-MNIST's shoes all face left; flipped in training, half face right.
    /// </summary>
    public Measurements Mirrored => this with { Asymmetry = -Asymmetry };
}
