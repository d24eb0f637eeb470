using Diffusion.TextToImage;

namespace Diffusion.Tests;

/// <summary>The mini-CLIP trainer (batches, captions, loss), its file format and its zero-shot evaluation.</summary>
public class MiniClipTrainingTests
{
    internal static TextEncoderConfig TinyEncoder(int dim = 16, int layers = 1, int context = 10) => new()
    {
        VocabularySize = WordTokenizer.ForCaptions().Count, ContextLength = context, Dim = dim, Heads = 2, Layers = layers, EmbedDim = dim,
    };

    /// <summary>The first <paramref name="n"/> pictures of Fashion-MNIST train (or t10k) as their own dataset.</summary>
    internal static ImageDataset Subset(int n, bool train = true)
    {
        using var all = ImageDataset.FashionMnist(TestSetup.FashionMnistDir, train);
        using var scope = NewDisposeScope();
        return new ImageDataset(all.Images[..n].clone(), all.Labels![..n].clone(), all.ClassNames, $"first {n} of {all.Description}");
    }

    static void SetLogitScale(MiniClip clip, double s)
    {
        using var _ = no_grad();
        clip.named_parameters().Single(p => p.name == "logit_scale").parameter.fill_(s);
    }

    [Fact]
    public void TrainerBatchLossIsTheSymmetricInfoNceByHandWithTheCappedTemperature()
    {
        using var scope = NewDisposeScope();
        using var data = Subset(256);                                      // ≥ 3 pictures of every class, for the terciles
        using var trainer = new MiniClipTrainer(TinyEncoder(), new TrainingOptions { Steps = 1, BatchSize = 6, Seed = 5, WarmupSteps = 0 }, data);
        long[] rows = [0, 1, 2, 3, 4, 5];
        foreach (double s in new[] { Math.Log(20), 6.0 })            // e^6 ≈ 403 is above CLIP's cap of ≈ 100
        {
            SetLogitScale(trainer.Model, s);
            var (images, captions) = trainer.Batch(rows, captionSeed: 0);
            var (ids, mask) = PromptTokens.Encode(trainer.Tokenizer, captions, 10);
            double loss = trainer.Model.call(images, ids, mask).item<float>();

            // By hand in float64: raw embeddings from the two towers, normalised, logits, both cross-entropies.
            var img = To2D(trainer.Model.Image.call(images));
            var txt = To2D(trainer.Model.Text.Embed(trainer.Model.Text.call(ids, mask), mask));
            Normalize(img);
            Normalize(txt);
            // CLIP caps s at 4.6052 (OpenAI's code clamps logit_scale there), so the scale e^s stops at e^4.6052 ≈ 100.003.
            double scale = Math.Exp(Math.Min(s, 4.6052));
            int n = rows.Length;
            var logits = new double[n, n];
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    logits[i, j] = scale * Enumerable.Range(0, img.GetLength(1)).Sum(d => img[i, d] * txt[j, d]);
            double imageToText = 0, textToImage = 0;
            for (int i = 0; i < n; i++)
            {
                imageToText += LogSumExp(Enumerable.Range(0, n).Select(j => logits[i, j])) - logits[i, i];
                textToImage += LogSumExp(Enumerable.Range(0, n).Select(j => logits[j, i])) - logits[i, i];
            }
            Assert.Equal((imageToText / n + textToImage / n) / 2, loss, 4);
        }
    }

    static double[,] To2D(Tensor t)
    {
        var d = t.detach().to(ScalarType.Float64).contiguous().data<double>().ToArray();
        int r = (int)t.shape[0], c = (int)t.shape[1];
        var m = new double[r, c];
        for (int i = 0; i < r; i++) for (int j = 0; j < c; j++) m[i, j] = d[i * c + j];
        return m;
    }

    static void Normalize(double[,] m)
    {
        for (int i = 0; i < m.GetLength(0); i++)
        {
            double norm = Math.Sqrt(Enumerable.Range(0, m.GetLength(1)).Sum(j => m[i, j] * m[i, j]));
            for (int j = 0; j < m.GetLength(1); j++) m[i, j] /= norm;
        }
    }

    static double LogSumExp(IEnumerable<double> xs)
    {
        var a = xs.ToArray();
        double max = a.Max();
        return max + Math.Log(a.Sum(x => Math.Exp(x - max)));
    }

    [Fact]
    public void BatchCaptionsFollowTheFlipsAndAMirroredShoeFacesRight()
    {
        using var scope = NewDisposeScope();
        using var data = Subset(200);
        using var trainer = new MiniClipTrainer(TinyEncoder(), new TrainingOptions { Steps = 1, BatchSize = 8, Seed = 1 }, data);
        var rows = Enumerable.Range(0, 200).Select(i => (long)i).ToArray();
        var (images, captions) = trainer.Batch(rows, captionSeed: 3);
        var originals = data.ModelInputs(tensor(rows));
        int flipped = 0;
        for (int i = 0; i < rows.Length; i++)
        {
            bool same = images[i].allclose(originals[i], rtol: 0, atol: 0);
            bool mirrored = images[i].allclose(originals[i].flip(2), rtol: 0, atol: 0);
            Assert.True(same || mirrored, $"picture {i} is neither the original nor its mirror image");
            bool isFlipped = !same;                                       // a symmetric picture counts as not flipped
            if (isFlipped) flipped++;
            Assert.Equal(trainer.Captions.Caption(i, isFlipped, 3), captions[i]);
        }
        Assert.InRange(flipped, 70, 130);                                  // Bernoulli(½) of 200
        // A real ankle boot: its caption says "facing left", its mirror image's "facing right".
        int boot = Enumerable.Range(0, 200).First(i => trainer.Captions.Labels[i] == 9 && trainer.Captions.Facts(i).Direction is not null);
        Assert.Equal("facing left", trainer.Captions.Facts(boot).Direction);
        Assert.Equal("facing right", trainer.Captions.Facts(boot, mirrored: true).Direction);
        Assert.Contains("facing right", trainer.Captions.Caption(boot, mirrored: true));
    }

    [Fact]
    public void AFewDozenStepsOnTinySettingsLowerTheLoss()
    {
        using var scope = NewDisposeScope();
        using var data = Subset(512);
        var options = new TrainingOptions
        {
            Steps = 40, BatchSize = 32, LearningRate = 3e-3, WarmupSteps = 0, LearningRateSchedule = LearningRateSchedule.Constant, Seed = 2,
        };
        using var trainer = new MiniClipTrainer(TinyEncoder(dim: 32), options, data);
        trainer.TrainStep();                                                // creates the gradients and AdamW's moments
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        trainer.Train();
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);       // every step cleans up after itself
        double first = trainer.History.Take(5).Average(h => h.Loss), last = trainer.History.TakeLast(5).Average(h => h.Loss);
        // ln 32 = 3.47 is the loss of a network that cannot tell the pairs apart; measured 3.49 → 2.68.
        Assert.True(last < first - 0.3, $"contrastive loss {first:F3} (first 5 steps) → {last:F3} (last 5)");
        Assert.Equal(40, trainer.Step);
    }

    [Fact]
    public void SaveLoadRoundTripGivesIdenticalEmbeddingsAndDamagedFilesAClearError()
    {
        using var scope = NewDisposeScope();
        using var dir = TestSetup.Temp();
        using var data = Subset(256);
        using var trainer = new MiniClipTrainer(TinyEncoder(), new TrainingOptions { Steps = 2, BatchSize = 8, Seed = 3 }, data);
        trainer.Train();
        var path = dir["clip.bin"];
        MiniClipFile.Save(path, trainer.Model, trainer.Info("test") with { ZeroShotAccuracy = 0.25 });

        var (clip, tokenizer, info) = MiniClipFile.Load(path);
        using (clip)
        {
            Assert.Equal(trainer.Tokenizer.Words, tokenizer.Words);
            Assert.Equal(trainer.Model.Text.Config, info.Config);
            Assert.Equal(0.25, info.ZeroShotAccuracy!.Value);
            Assert.Equal(2, info.Steps);
            Assert.Equal(trainer.Captions.Thresholds.Terciles[9][1][0], info.Thresholds.Terciles[9][1][0]);
            var prompts = new[] { "a photo of a dark coat", "sandal facing right", "" };
            var (ids, mask) = PromptTokens.Encode(tokenizer, prompts, info.Config.ContextLength);
            var images = data.ModelInputs(arange(5, dtype: ScalarType.Int64));
            trainer.Model.eval();
            using (no_grad())
            {
                Assert.True(clip.EmbedText(ids, mask).allclose(trainer.Model.EmbedText(ids, mask), rtol: 0, atol: 0));
                Assert.True(clip.EmbedImages(images).allclose(trainer.Model.EmbedImages(images), rtol: 0, atol: 0));
                Assert.Equal(trainer.Model.Scale().item<float>(), clip.Scale().item<float>());
            }
        }

        var bytes = File.ReadAllBytes(path);
        bytes[bytes.Length / 2] ^= 1;
        File.WriteAllBytes(dir["damaged.bin"], bytes);
        Assert.Contains("damaged or truncated", Assert.Throws<CheckpointException>(() => MiniClipFile.Load(dir["damaged.bin"])).Message);
        File.WriteAllBytes(dir["short.bin"], File.ReadAllBytes(path)[..100]);
        Assert.Contains("damaged or truncated", Assert.Throws<CheckpointException>(() => MiniClipFile.Load(dir["short.bin"])).Message);
        File.Copy(LatentTests.ShippedAutoencoder, dir["other.bin"]);
        Assert.Contains("not a mini-CLIP file", Assert.Throws<CheckpointException>(() => MiniClipFile.Load(dir["other.bin"])).Message);
        Assert.Contains("train-clip", Assert.Throws<CheckpointException>(() => MiniClipFile.Load(dir["missing.bin"])).Message);
    }

    [Fact]
    public void ZeroShotAccuracyIsTheShareOfPicturesClosestToTheirOwnClassPrompt()
    {
        using var scope = NewDisposeScope();
        using var test = Subset(100, train: false);
        var tok = WordTokenizer.ForCaptions();
        manual_seed(7);
        using var clip = new MiniClip(TinyEncoder());
        clip.eval();
        double accuracy = MiniClipEvaluation.ZeroShotAccuracy(clip, tok, test, batchSize: 25);
        // By hand: each picture against each class prompt, one at a time, cosine similarity in float64.
        int correct = 0;
        using (no_grad())
        {
            var classes = Enumerable.Range(0, 10).Select(k =>
            {
                var (ids, mask) = PromptTokens.Encode(tok, [PromptTokens.ClassPrompt(k)], 10);
                return clip.Text.Embed(clip.Text.call(ids, mask), mask).to(ScalarType.Float64)[0];
            }).ToArray();
            var labels = test.Labels!.data<long>().ToArray();
            for (int i = 0; i < 100; i++)
            {
                var image = clip.Image.call(test.ModelInputs(tensor(new long[] { i })))[0].to(ScalarType.Float64);
                var cosine = classes.Select(c => (c * image).sum().item<double>() / (c.norm().item<double>() * image.norm().item<double>())).ToArray();
                if (Array.IndexOf(cosine, cosine.Max()) == labels[i]) correct++;
            }
        }
        Assert.Equal(correct / 100.0, accuracy, 9);
        Assert.Equal("a photo of trousers", PromptTokens.ClassPrompt(1));
        Assert.Equal("a photo of an ankle boot", PromptTokens.ClassPrompt(9));
        Assert.Equal("a photo of a dark ankle boot", PromptTokens.ClassPrompt(9, "dark"));
        // Attribute retrieval runs on the same pictures; every rate is a share of the pictures that have the word.
        var thresholds = new CaptionSource(test).Thresholds;
        var attributes = MiniClipEvaluation.AttributeAccuracy(clip, tok, test, thresholds);
        Assert.Equal(["brightness", "width", "texture", "direction"], attributes.Select(a => a.Attribute));
        Assert.All(attributes.Take(3), a => Assert.InRange(a.Pairs, 40, 100));   // about the outer two thirds of each class
        Assert.All(attributes.Where(a => a.Pairs > 0), a => Assert.InRange(a.Accuracy, 0, 1));
    }
}
