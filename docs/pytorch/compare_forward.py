"""Run the PyTorch U-Net (course_unet.py) on weights and inputs written by the course's C# side, for the peer test.

    /usr/bin/python3 docs/pytorch/compare_forward.py job.json

job.json: {"weights": "model.pt", "unet": {<the course's UnetConfig JSON>}, "x": "x.f32", "shape": [B, C, H, W],
           "t": [t_1, ..., t_B], "classes": [c_1, ..., c_B] or null, "out": "out.f32"}
x.f32 / out.f32 are raw little-endian float32 arrays in C order. The weights load with strict=True: every key and shape
must match the PyTorch module, or PyTorch names the mismatch and the script exits with 1.
Used by tests/Diffusion.Tests/PyTorchPeerTests.cs (which compares out.f32 with the C# forward pass).
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from course_unet import Unet  # noqa: E402
from load_course_weights import unet_kwargs  # noqa: E402


def main():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    torch.set_num_threads(1)
    model = Unet(**unet_kwargs(job["unet"]))
    state_dict = torch.load(job["weights"], map_location="cpu")
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    x = torch.from_numpy(np.fromfile(job["x"], dtype="<f4").reshape(job["shape"]))
    t = torch.tensor(job["t"], dtype=torch.long)
    with torch.no_grad():
        if job.get("classes") is not None:
            out = model(x, t, torch.tensor(job["classes"], dtype=torch.long))
        else:
            out = model(x, t)
    out.numpy().astype("<f4").tofile(job["out"])
    print(json.dumps({"torch": torch.__version__, "tensors": len(state_dict),
                      "parameters": sum(p.numel() for p in model.parameters()), "out_shape": list(out.shape)}))


if __name__ == "__main__":
    main()
