"""Load weights exported by the C# course into the PyTorch U-Net (strict=True) and sample images with DDPM.

    # in the repository, export the shipped model first (C#):
    dotnet run -c Release --project lib/Diffusion.Cli -- export --checkpoint data/checkpoints/fashion-mnist-ddpm.ckpt \
        --format safetensors --out fashion-mnist-ddpm.safetensors
    # then, with torch (and safetensors for .safetensors files) installed:
    python docs/pytorch/load_course_weights.py fashion-mnist-ddpm.safetensors --count 16 --out samples.png

A .safetensors file exported by the course carries its configuration (U-Net options, beta schedule, T, prediction,
image size) in its metadata; a .pt state_dict does not, so the options default to the shipped model's and can be
changed with --config '<the JSON that export stores, or a subset such as {"Unet": {"Dim": 32}}>'.

Status: NOT executed in this repository (PyTorch is not installed where the course was built). The key names and
shapes were checked against the C# network without torch (see tools/ and tests/Diffusion.Tests/InteropTests.cs).
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from course_unet import Unet  # noqa: E402

# The shipped checkpoint's configuration (data/checkpoints/fashion-mnist-ddpm.ckpt), in the course's JSON names.
SHIPPED = {
    "Unet": {"Dim": 28, "InitDim": None, "OutDim": None, "DimMults": [1, 2, 4], "Channels": 1, "ResnetBlockGroups": 4,
             "Block": "ResNet", "ConvNextMult": 2, "AttentionHeads": 4, "AttentionDimHead": 32,
             "LinearAttentionLevels": [1, 2], "NumClasses": 0},
    "Schedule": "Cosine", "Timesteps": 500, "Prediction": "Epsilon", "ImageSize": 28, "ClassNames": [],
}


def unet_kwargs(u):
    """The course's UnetConfig (JSON) -> course_unet.Unet keyword arguments."""
    levels = u.get("LinearAttentionLevels")
    return dict(dim=u["Dim"], init_dim=u.get("InitDim"), out_dim=u.get("OutDim"), dim_mults=tuple(u["DimMults"]),
                channels=u["Channels"], resnet_block_groups=u["ResnetBlockGroups"],
                block="convnext" if u.get("Block", "ResNet") == "ConvNext" else "resnet",
                convnext_mult=u.get("ConvNextMult", 2), heads=u.get("AttentionHeads", 4),
                dim_head=u.get("AttentionDimHead", 32),
                linear_attention_levels=None if levels is None else tuple(levels), num_classes=u.get("NumClasses", 0))


def betas_for(kind, T):
    """The four beta schedules of lib/Diffusion/Schedules/BetaSchedules.cs, in float64."""
    start, end = 1e-4, 0.02
    if kind == "Linear":
        return torch.linspace(start, end, T, dtype=torch.float64)
    if kind == "Quadratic":
        return torch.linspace(start ** 0.5, end ** 0.5, T, dtype=torch.float64) ** 2
    if kind == "Sigmoid":
        return torch.sigmoid(torch.linspace(-6, 6, T, dtype=torch.float64)) * (end - start) + start
    if kind == "Cosine":  # Nichol & Dhariwal 2021, eq. 17, s = 0.008, beta <= 0.999
        f = lambda t: math.cos(((t / T) + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - f(t) / f(t - 1), 0.999) for t in range(1, T + 1)], dtype=torch.float64)
    raise ValueError(f"unknown schedule {kind}")


@torch.no_grad()
def sample_ddpm(model, config, count, seed=0, classes=None):
    """Algorithm 2 of Ho et al. (2020) with sigma_t^2 = beta-tilde_t and x_0 clipped to [-1, 1] (the course's defaults)."""
    T = config["Timesteps"]
    betas = betas_for(config["Schedule"], T)
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
    posterior_variance = betas * (1 - abar_prev) / (1 - abar)
    coef_x0 = betas * abar_prev.sqrt() / (1 - abar)           # mu~_t = coef_x0 x0 + coef_xt x_t  (DDPM eq. 7)
    coef_xt = (1 - abar_prev) * alphas.sqrt() / (1 - abar)

    g = torch.Generator().manual_seed(seed)
    size, channels = config["ImageSize"], config["Unet"]["Channels"]
    x = torch.randn(count, channels, size, size, generator=g)
    for t in reversed(range(T)):
        tt = torch.full((count,), t, dtype=torch.long)
        out = model(x, tt, classes) if classes is not None else model(x, tt)
        a = abar[t].item()
        if config["Prediction"] == "Epsilon":
            x0 = (x - math.sqrt(1 - a) * out) / math.sqrt(a)
        elif config["Prediction"] == "Start":
            x0 = out
        else:  # Velocity: x0 = sqrt(abar) x_t - sqrt(1 - abar) v
            x0 = math.sqrt(a) * x - math.sqrt(1 - a) * out
        x0 = x0.clamp(-1, 1)
        mean = coef_x0[t].item() * x0 + coef_xt[t].item() * x
        if t == 0:
            x = mean
        else:
            x = mean + math.sqrt(posterior_variance[t].item()) * torch.randn(x.shape, generator=g)
    return (x.clamp(-1, 1) + 1) / 2                               # [-1, 1] -> [0, 1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("weights", help=".pt (state_dict) or .safetensors file written by the course's 'export' command")
    p.add_argument("--config", help="JSON overriding the configuration (needed for a .pt of a non-default model)")
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="samples.png")
    args = p.parse_args()

    config = json.loads(json.dumps(SHIPPED))
    if args.weights.endswith(".safetensors"):
        from safetensors import safe_open
        from safetensors.torch import load_file
        with safe_open(args.weights, framework="pt") as f:
            meta = f.metadata() or {}
        if "diffusion_config" in meta:
            config = json.loads(meta["diffusion_config"])
        state_dict = load_file(args.weights)
    else:
        state_dict = torch.load(args.weights, map_location="cpu", weights_only=True)
    if args.config:
        override = json.loads(args.config)
        config["Unet"].update(override.pop("Unet", {}))
        config.update(override)

    model = Unet(**unet_kwargs(config["Unet"]))
    model.load_state_dict(state_dict, strict=True)   # every key and shape must match, or PyTorch names the mismatch
    model.eval()
    print(f"loaded {len(state_dict)} tensors, {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"{config['Schedule']} T={config['Timesteps']}, prediction {config['Prediction']}")

    images = sample_ddpm(model, config, args.count, args.seed)
    try:
        from torchvision.utils import save_image
        save_image(images, args.out, nrow=int(math.ceil(math.sqrt(args.count))))
        print(f"wrote {args.out}")
    except ImportError:
        torch.save(images, args.out + ".pt")
        print(f"torchvision is not installed: wrote the images as a tensor to {args.out}.pt")


if __name__ == "__main__":
    main()
