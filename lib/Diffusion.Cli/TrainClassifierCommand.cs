using Diffusion.Evaluation;

namespace Diffusion.Cli;

/// <summary><c>train-classifier</c>: trains the small CNN whose features the FCD compares, and reports its t10k accuracy.</summary>
static class TrainClassifierCommand
{
    public static Command Create()
    {
        var epochs = Opt("--epochs", "Passes over the 60 000 training images", 6).Range(1, 1000);
        var features = Opt("--features", "Width of the penultimate layer (the FCD features)", FashionClassifier.DefaultFeatureDim).Range(2, 4096);
        var cmd = new Command("train-classifier",
            "Train the Fashion-MNIST classifier used by 'eval' (FCD features, class accuracy). The course ships one in data/classifier/.")
        {
            epochs, features,
        };
        var file = new ModelFileTrainingOptions(cmd, "the classifier", Path.Combine("runs", "classifier", FashionClassifier.ShippedFileName), steps: null,
            batch: ("Images per step", 128, 1, 60000), lr: ("Adam peak learning rate (cosine decay to 0)", 2e-3));
        var machine = new MachineOptions(cmd, withDevice: false);
        cmd.SetAction(p =>
        {
            var path = file.NewFile(p);
            machine.Apply(p);
            var folder = DataLocator.FashionMnistFolder();
            using var train = ImageDataset.FashionMnist(folder, train: true);
            using var test = ImageDataset.FashionMnist(folder, train: false);
            var options = new ClassifierTrainingOptions
            {
                Epochs = p.GetValue(epochs), BatchSize = file.BatchSize(p), LearningRate = file.LearningRate(p),
                FeatureDim = p.GetValue(features), Seed = file.Seed(p),
            };
            using var model = ConsoleProgress.Run("training the classifier", options.Epochs * (60000 / options.BatchSize), report =>
                ClassifierTraining.Train(train, options, new SyncProgress<ClassifierProgress>(q =>
                    report(q.Step, string.Create(CultureInfo.InvariantCulture, $"epoch {q.Epoch} loss {q.Loss:F3}")))));
            double accuracy = ClassifierTraining.Accuracy(model, test);
            model.Info = model.Info with { TestAccuracy = accuracy, Command = file.CommandLine() };
            file.Save(path, model.Save);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"t10k accuracy {accuracy:P2} ({test.Count} test images), training {model.Info.TrainingSeconds:F0} s; wrote {path}"));
            return 0;
        });
        return cmd;
    }
}
