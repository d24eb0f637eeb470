// What every command file uses: the command-line parser, the library's stages, TorchSharp and the option helpers.
global using System.CommandLine;
global using System.Diagnostics;
global using System.Globalization;
global using Diffusion.Data;
global using Diffusion.Forward;
global using Diffusion.IO;
global using Diffusion.Platform;
global using Diffusion.Sampling;
global using Diffusion.Schedules;
global using Diffusion.Training;
global using TorchSharp;
global using static Diffusion.Cli.Parsing;
global using static TorchSharp.torch;
