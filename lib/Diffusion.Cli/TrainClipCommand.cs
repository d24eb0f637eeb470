using Diffusion.TextToImage;

namespace Diffusion.Cli;

/// <summary>
/// <c>train-clip</c>: the mini-CLIP of the text-to-image model — a small text encoder and image encoder trained with the
/// contrastive loss on Fashion-MNIST pictures and their measured captions; reports zero-shot accuracy and attribute
/// retrieval on t10k and writes one file (weights, vocabulary, caption terciles).
/// </summary>
static class TrainClipCommand
{
    public static Command Create()
    {
        var cmd = new Command("train-clip",
            "Train the mini-CLIP (text encoder + image encoder, contrastive loss on captioned Fashion-MNIST); report its zero-shot accuracy on t10k.");
        var file = new ModelFileTrainingOptions(cmd, "the mini-CLIP", Path.Combine("runs", "clip", MiniClipFile.ShippedFileName), steps: ("Contrastive training steps", 2000),
            batch: ("(picture, caption) pairs per step: each picture must find its caption among this many", 128, 2, 60000), lr: ("AdamW peak learning rate (warm-up, cosine decay)", 1e-3));
        var dim = Opt("--dim", "Width of the text encoder", 64).Range(2, 4096);
        var layers = Opt("--layers", "Transformer blocks of the text encoder", 2).Range(1, 64);
        var evalCount = Opt("--eval-count", "t10k pictures for the zero-shot and attribute accuracy", 10000).Range(1, 10000);
        foreach (var option in new Option[] { dim, layers, evalCount }) cmd.Options.Add(option);
        var machine = new MachineOptions(cmd);
        cmd.SetAction(p =>
        {
            var path = file.NewFile(p);
            var dev = machine.Apply(p).Device;
            var folder = DataLocator.FashionMnistFolder();
            using var train = ImageDataset.FashionMnist(folder, train: true);
            using var test = ImageDataset.FashionMnist(folder, train: false);
            var config = new TextEncoderConfig { Dim = p.GetValue(dim), Layers = p.GetValue(layers), EmbedDim = p.GetValue(dim) };
            var options = file.Training(p) with { WeightDecay = 0.01 };
            var sw = Stopwatch.StartNew();
            var captions = new CaptionSource(train);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"captions: {train.Count} pictures measured in {sw.Elapsed.TotalSeconds:F1} s, e.g. \"{captions.Caption(0)}\", \"{captions.Caption(1, mirrored: true)}\""));
            using var trainer = new MiniClipTrainer(config, options, train, captions, dev);
            ConsoleProgress.Run("contrastive training", options.Steps, report =>
            {
                trainer.Progress += q => report(q.Step, string.Create(CultureInfo.InvariantCulture, $"loss {q.Loss:F3} τ {q.Temperature:F3}"));
                trainer.Train();
            });
            int n = p.GetValue(evalCount);
            double zeroShot = MiniClipEvaluation.ZeroShotAccuracy(trainer.Model, trainer.Tokenizer, test, n);
            var attributes = MiniClipEvaluation.AttributeAccuracy(trainer.Model, trainer.Tokenizer, test, captions.Thresholds, n);
            var info = trainer.Info(file.CommandLine()) with { ZeroShotAccuracy = zeroShot, AttributeRetrieval = attributes };
            file.Save(path, to => MiniClipFile.Save(to, trainer.Model, info));
            var inv = CultureInfo.InvariantCulture;
            Console.WriteLine(string.Create(inv,
                $"zero-shot accuracy on {n} t10k pictures (\"{PromptTokens.ClassPrompt(0)}\", …): {zeroShot:P1} (chance 10 %)"));
            foreach (var a in attributes)
                Console.WriteLine(string.Create(inv, $"attribute retrieval, {a.Attribute}: {a.Accuracy:P1} of {a.Pairs} pictures (chance 50 %)"));
            Console.WriteLine(string.Create(inv,
                $"trained {trainer.Step} steps in {trainer.Elapsed.TotalSeconds:F0} s, loss (last 50) {info.RecentLoss:F3}, τ {info.Temperature:F3}; wrote {path}"));
            return 0;
        });
        return cmd;
    }
}
