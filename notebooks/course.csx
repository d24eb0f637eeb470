// The course library and the namespaces every notebook uses, loaded by each notebook's first cell:
//
//     #load "build-course.csx"     builds lib/Diffusion.Notebooks when it is missing or older than its sources
//     #!csharp                     starts a second submission, so the library exists before the lines below reference it
//     #load "course.csx"           this file
//     Course.Setup();              loads TorchSharp, picks the device and prints it
//
// The usings are `global`: a plain using in a #load-ed script stays inside the script, a global one reaches every cell.
#r "../lib/Diffusion.Notebooks/bin/Release/net10.0/TorchSharp.dll"
#r "../lib/Diffusion.Notebooks/bin/Release/net10.0/SixLabors.ImageSharp.dll"
#r "../lib/Diffusion.Notebooks/bin/Release/net10.0/Plotly.NET.dll"
#r "../lib/Diffusion.Notebooks/bin/Release/net10.0/Plotly.NET.CSharp.dll"
#r "../lib/Diffusion.Notebooks/bin/Release/net10.0/Diffusion.dll"
#r "../lib/Diffusion.Notebooks/bin/Release/net10.0/Diffusion.Notebooks.dll"

global using System.Diagnostics;
global using System.IO;
global using TorchSharp;
global using static TorchSharp.torch;
global using Diffusion.Data;
global using Diffusion.Schedules;
global using Diffusion.Forward;
global using Diffusion.Model;
global using Diffusion.Training;
global using Diffusion.Sampling;
global using Diffusion.Visuals;
global using Diffusion.Platform;
global using Diffusion.Notebooks;
global using Diffusion.Notebooks.Exercises;
