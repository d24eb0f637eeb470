// The course library, referenced by every notebook's setup cell with  #load "course.csx".
// It lives in lib/Diffusion.Notebooks/bin/Release/net10.0, built by the cell above (build-course.csx).
#r "../lib/Diffusion.Notebooks/bin/Release/net10.0/TorchSharp.dll"
#r "../lib/Diffusion.Notebooks/bin/Release/net10.0/SixLabors.ImageSharp.dll"
#r "../lib/Diffusion.Notebooks/bin/Release/net10.0/Plotly.NET.dll"
#r "../lib/Diffusion.Notebooks/bin/Release/net10.0/Plotly.NET.CSharp.dll"
#r "../lib/Diffusion.Notebooks/bin/Release/net10.0/Diffusion.dll"
#r "../lib/Diffusion.Notebooks/bin/Release/net10.0/Diffusion.Notebooks.dll"
