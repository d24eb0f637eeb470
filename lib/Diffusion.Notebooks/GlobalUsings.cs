// The namespaces every exercise checker and kernel helper of this project uses, declared once.
global using Diffusion.Forward;
global using Diffusion.Sampling;
global using Diffusion.Schedules;
global using TorchSharp;
global using static TorchSharp.torch;
global using static Diffusion.Notebooks.Exercises.Inputs;
