// The library's stages and TorchSharp, for every test file (the tests read like the notebooks: torch functions unqualified).
global using Diffusion.Data;
global using Diffusion.Forward;
global using Diffusion.IO;
global using Diffusion.Model;
global using Diffusion.Sampling;
global using Diffusion.Schedules;
global using Diffusion.Training;
global using TorchSharp;
global using static TorchSharp.torch;
