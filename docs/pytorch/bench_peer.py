"""Times one training step of the course's U-Net in PyTorch: the yardstick of `bench --peer` (lib/Diffusion/Benchmarks/Peer.cs).

One step is what the C# side times (PeerStep.cs): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps with a cosine schedule
(T = 500), L = mean((eps - eps_theta(x_t, t))^2), backward, AdamW step. x_0 is uniform noise in [-1, 1]: the data do not
change the cost.

    /usr/bin/python3 bench_peer.py --config annotated --batch 64 --threads 2 --steps 10     # one JSON line
    /usr/bin/python3 bench_peer.py --config default --batch 64 --threads 2 --serve           # reads "k", answers k step times

--serve keeps the network warm and runs k timed steps for every line "k" on stdin, so that the C# side can alternate
its own steps with these in one run (the machine's load then affects both alike). Needs only torch (Debian's
python3-torch 1.13 was used); prints which BLAS the process loaded, since Debian's torch falls back to the reference BLAS
unless libopenblas0-pthread is installed.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from course_unet import Unet  # noqa: E402

CONFIGS = {
    # lib/Diffusion/Training/Recipe.cs CourseUnet: the shipped checkpoints' network
    "default": dict(dim=28, dim_mults=(1, 2, 4), channels=1, resnet_block_groups=4, linear_attention_levels=(1, 2)),
    # lib/Diffusion/Training/Recipe.cs Default: what `train` trains by default (CourseUnet at dim 16)
    "train-default": dict(dim=16, dim_mults=(1, 2, 4), channels=1, resnet_block_groups=4, linear_attention_levels=(1, 2)),
    # the annotated notebook's network: linear attention at every level (UnetConfig's defaults)
    "annotated": dict(dim=28, dim_mults=(1, 2, 4), channels=1, resnet_block_groups=4, linear_attention_levels=None),
}


def cosine_alphas_cumprod(timesteps, s=0.008):
    """abar_t of Nichol & Dhariwal's cosine schedule, betas clipped to 0.999 (as lib/Diffusion/Schedules)."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64)
    f = torch.cos(((steps / timesteps) + s) / (1 + s) * math.pi * 0.5) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0).float()


def blas_library():
    """The BLAS shared object this process has mapped (e.g. libopenblasp-r0.3.21.so), or 'none found'."""
    try:
        with open("/proc/self/maps") as maps:
            names = {line.split()[-1] for line in maps if "blas" in line.lower()}
        return ", ".join(sorted(os.path.basename(n) for n in names)) or "none found"
    except OSError:
        return "unknown"


class Step:
    def __init__(self, config, batch, size=28, timesteps=500, seed=0):
        torch.manual_seed(seed)
        self.model = Unet(**CONFIGS[config])
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.abar = cosine_alphas_cumprod(timesteps)
        self.batch, self.size, self.timesteps = batch, size, timesteps

    def run(self):
        x0 = torch.rand(self.batch, 1, self.size, self.size) * 2 - 1
        t = torch.randint(0, self.timesteps, (self.batch,))
        eps = torch.randn_like(x0)
        a = self.abar[t].view(-1, 1, 1, 1)
        # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        # L_simple = ||eps - eps_theta(x_t, t)||^2
        loss = F.mse_loss(self.model(xt, t), eps)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def timed(self, k):
        times = []
        for _ in range(k):
            start = time.perf_counter()
            self.run()
            times.append((time.perf_counter() - start) * 1000)
        return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="annotated")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (without --serve)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--serve", action="store_true", help="answer each stdin line 'k' with k timed steps")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    step = Step(args.config, args.batch)
    step.timed(args.warmup)
    header = dict(torch=torch.__version__, threads=torch.get_num_threads(), blas=blas_library(),
                  config=args.config, batch=args.batch,
                  parameters=sum(p.numel() for p in step.model.parameters()))
    if not args.serve:
        times = sorted(step.timed(args.steps))
        median = times[len(times) // 2] if len(times) % 2 else (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2
        print(json.dumps(dict(header, step_ms=times, median_ms=median, images_per_s=args.batch * 1000 / median)))
        return
    print(json.dumps(dict(header, ready=True)), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        if line == "quit":
            break
        print(json.dumps(dict(step_ms=step.timed(int(line)))), flush=True)


if __name__ == "__main__":
    main()
