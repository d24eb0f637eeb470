// The namespaces most of the library's files use, declared once.
global using Diffusion.IO;
global using Diffusion.Model;
global using Diffusion.Schedules;
global using TorchSharp;
global using TorchSharp.Modules;
global using static TorchSharp.torch;
