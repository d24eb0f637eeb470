using Diffusion.Evaluation;

namespace Diffusion.Cli;

/// <summary><c>train-classifier</c>: trains the small CNN whose features the FCD compares, and reports its t10k accuracy.</summary>
static class TrainClassifierCommand
{
    public static Command Create()
    {
        var output = Opt("--out", "Where to write the classifier (refuses to overwrite)", Path.Combine("runs", "classifier", FashionClassifier.ShippedFileName));
        var epochs = Opt("--epochs", "Passes over the 60 000 training images", 6).Range(1, 1000);
        var batch = Opt("--batch-size", "Images per step", 128).Range(1, 60000);
        var lr = Opt("--lr", "Adam peak learning rate (cosine decay to 0)", 2e-3).Range(1e-7, 1);
        var features = Opt("--features", "Width of the penultimate layer (the FCD features)", FashionClassifier.DefaultFeatureDim).Range(2, 4096);
        var seed = Opt("--seed", "Random seed", 0);
        var cmd = new Command("train-classifier",
            "Train the Fashion-MNIST classifier used by 'eval' (FCD features, class accuracy). The course ships one in data/classifier/.")
        {
            output, epochs, batch, lr, features, seed,
        };
        var machine = new MachineOptions(cmd, withDevice: false);
        cmd.SetAction(p =>
        {
            var path = p.GetValue(output)!;
            if (File.Exists(path))
                throw new CliException($"{path} already exists: pass another --out, or delete it first (it is never overwritten).");
            machine.Apply(p);
            var folder = DataLocator.FashionMnistFolder();
            using var train = ImageDataset.FashionMnist(folder, train: true);
            using var test = ImageDataset.FashionMnist(folder, train: false);
            var options = new ClassifierTrainingOptions
            {
                Epochs = p.GetValue(epochs), BatchSize = p.GetValue(batch), LearningRate = p.GetValue(lr),
                FeatureDim = p.GetValue(features), Seed = p.GetValue(seed),
            };
            FashionClassifier? model = null;
            ConsoleProgress.Run("training the classifier", options.Epochs * (60000 / options.BatchSize), report =>
            {
                var progress = new SyncProgress<ClassifierProgress>(q =>
                    report(q.Step, string.Create(CultureInfo.InvariantCulture, $"epoch {q.Epoch} loss {q.Loss:F3}")));
                model = ClassifierTraining.Train(train, options, progress);
            });
            using (model)
            {
                double accuracy = ClassifierTraining.Accuracy(model!, test);
                model!.Info = model.Info with
                {
                    TestAccuracy = accuracy,
                    Command = "train-classifier " + string.Join(" ", Environment.GetCommandLineArgs().Skip(2)),
                };
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
                model.Save(path);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"t10k accuracy {accuracy:P2} ({test.Count} test images), training {model.Info.TrainingSeconds:F0} s; wrote {path}"));
            }
            return 0;
        });
        return cmd;
    }
}
