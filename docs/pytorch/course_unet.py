"""The course's U-Net in PyTorch: the same modules, parameter names and shapes as lib/Diffusion/Model (C#).

This is the U-Net of The Annotated Diffusion Model (Hugging Face blog, after lucidrains' denoising-diffusion-pytorch)
with the course's options added, so that `Unet(...).state_dict()` has exactly the keys and shapes of the C# network
and the two load each other's weights with `strict=True`:

- `linear_attention_levels`: which resolution levels get `Residual(PreNorm(LinearAttention))` after their two blocks
  (None = every level, as in the annotated notebook; the course's default model uses (1, 2): no attention at 28x28).
  A level without it holds an `nn.Identity()` there, which has no parameters.
- `num_classes`: class conditioning. `class_emb = nn.Embedding(num_classes + 1, 4 * dim)` is added to the time
  embedding; index `num_classes` means "no label" (used for unconditional samples and classifier-free guidance).
- `block="convnext"`: the annotated notebook's earlier ConvNeXt block instead of the ResNet block.
- `Downsample` uses nn.PixelUnshuffle(2), which is einops' "b c (h p1) (w p2) -> b (c p1 p2) h w" (same channel order,
  no parameters), so the notebook's einops dependency is not needed.

Requires only torch. Status: written from the C# modules and the annotated notebook's code; it has NOT been run
against real PyTorch in this repository (PyTorch is not installed where the course was built). Its state_dict keys
and shapes were checked by running this file's constructors against a minimal stand-in for torch.nn
(tools/state_dict_keys_without_torch.py) and comparing with the C# network (tests/Diffusion.Tests/InteropTests.cs).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


class Residual(nn.Module):
    """x + fn(x)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, *args, **kwargs):
        return self.fn(x, *args, **kwargs) + x


def Upsample(dim, dim_out):
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(dim, dim_out, 3, padding=1))


def Downsample(dim, dim_out):
    # "b c (h p1) (w p2) -> b (c p1 p2) h w" with p1 = p2 = 2, then a 1x1 convolution.
    return nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(dim * 4, dim_out, 1))


class SinusoidalPositionEmbeddings(nn.Module):
    """emb(t) = [sin(t w_i), cos(t w_i)], w_i = 10000^(-i / (d/2 - 1))."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, time):
        half_dim = self.dim // 2
        embeddings = math.log(10000) / (half_dim - 1)
        embeddings = torch.exp(torch.arange(half_dim, device=time.device) * -embeddings)
        embeddings = time[:, None].float() * embeddings[None, :]
        return torch.cat((embeddings.sin(), embeddings.cos()), dim=-1)


class WeightStandardizedConv2d(nn.Conv2d):
    """Conv2d whose filters are standardised (zero mean, unit variance) before use (Qiao et al. 2019)."""

    def forward(self, x):
        eps = 1e-5
        weight = self.weight
        mean = weight.mean(dim=(1, 2, 3), keepdim=True)
        var = weight.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        normalized_weight = (weight - mean) * (var + eps).rsqrt()
        return F.conv2d(x, normalized_weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Block(nn.Module):
    def __init__(self, dim, dim_out, groups=8):
        super().__init__()
        self.proj = WeightStandardizedConv2d(dim, dim_out, 3, padding=1)
        self.norm = nn.GroupNorm(groups, dim_out)
        self.act = nn.SiLU()

    def forward(self, x, scale_shift=None):
        x = self.proj(x)
        x = self.norm(x)
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
        return self.act(x)


class ResnetBlock(nn.Module):
    """https://arxiv.org/abs/1512.03385, with the time embedding as a per-channel scale and shift."""

    def __init__(self, dim, dim_out, *, time_emb_dim, groups=8):
        super().__init__()
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(time_emb_dim, dim_out * 2))
        self.block1 = Block(dim, dim_out, groups=groups)
        self.block2 = Block(dim_out, dim_out, groups=groups)
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x, time_emb):
        time_emb = self.mlp(time_emb)[:, :, None, None]  # "b c -> b c 1 1"
        scale_shift = time_emb.chunk(2, dim=1)
        h = self.block1(x, scale_shift=scale_shift)
        h = self.block2(h)
        return h + self.res_conv(x)


class ConvNextBlock(nn.Module):
    """https://arxiv.org/abs/2201.03545, as in the first version of the annotated notebook."""

    def __init__(self, dim, dim_out, *, time_emb_dim, mult=2):
        super().__init__()
        self.mlp = nn.Sequential(nn.GELU(), nn.Linear(time_emb_dim, dim))
        self.ds_conv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.net = nn.Sequential(
            nn.GroupNorm(1, dim),
            nn.Conv2d(dim, dim_out * mult, 3, padding=1),
            nn.GELU(),
            nn.GroupNorm(1, dim_out * mult),
            nn.Conv2d(dim_out * mult, dim_out, 3, padding=1),
        )
        self.res_conv = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()

    def forward(self, x, time_emb):
        h = self.ds_conv(x)
        h = h + self.mlp(time_emb)[:, :, None, None]
        h = self.net(h)
        return h + self.res_conv(x)


class Attention(nn.Module):
    """softmax(q k^T / sqrt(d)) v over all pixel pairs."""

    def __init__(self, dim, heads=4, dim_head=32):
        super().__init__()
        self.scale = dim_head ** -0.5
        self.heads = heads
        hidden_dim = dim_head * heads
        self.to_qkv = nn.Conv2d(dim, hidden_dim * 3, 1, bias=False)
        self.to_out = nn.Conv2d(hidden_dim, dim, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, -1, h * w) for t in self.to_qkv(x).chunk(3, dim=1))  # "b (h c) x y -> b h c (x y)"
        q = q * self.scale
        sim = torch.einsum("b h d i, b h d j -> b h i j", q, k)
        sim = sim - sim.amax(dim=-1, keepdim=True).detach()
        attn = sim.softmax(dim=-1)
        out = torch.einsum("b h i j, b h d j -> b h i d", attn, v)
        out = out.permute(0, 1, 3, 2).reshape(b, -1, h, w)  # "b h (x y) d -> b (h d) x y"
        return self.to_out(out)


class LinearAttention(nn.Module):
    """Attention with softmax over features (q) and positions (k): cost linear in the number of pixels."""

    def __init__(self, dim, heads=4, dim_head=32):
        super().__init__()
        self.scale = dim_head ** -0.5
        self.heads = heads
        hidden_dim = dim_head * heads
        self.to_qkv = nn.Conv2d(dim, hidden_dim * 3, 1, bias=False)
        self.to_out = nn.Sequential(nn.Conv2d(hidden_dim, dim, 1), nn.GroupNorm(1, dim))

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = (t.reshape(b, self.heads, -1, h * w) for t in self.to_qkv(x).chunk(3, dim=1))
        q = q.softmax(dim=-2)
        k = k.softmax(dim=-1)
        q = q * self.scale
        context = torch.einsum("b h d n, b h e n -> b h d e", k, v)
        out = torch.einsum("b h d e, b h d n -> b h e n", context, q)
        out = out.reshape(b, -1, h, w)  # "b h c (x y) -> b (h c) x y"
        return self.to_out(out)


class PreNorm(nn.Module):
    def __init__(self, dim, fn):
        super().__init__()
        self.fn = fn
        self.norm = nn.GroupNorm(1, dim)

    def forward(self, x):
        return self.fn(self.norm(x))


class Unet(nn.Module):
    """eps_theta(x_t, t[, y]). The defaults are the annotated notebook's; the course's shipped model is
    Unet(dim=28, dim_mults=(1, 2, 4), channels=1, resnet_block_groups=4, linear_attention_levels=(1, 2))."""

    def __init__(self, dim, init_dim=None, out_dim=None, dim_mults=(1, 2, 4), channels=1, resnet_block_groups=4,
                 block="resnet", convnext_mult=2, heads=4, dim_head=32, linear_attention_levels=None, num_classes=0):
        super().__init__()
        self.channels = channels
        self.num_classes = num_classes
        init_dim = init_dim if init_dim is not None else dim
        self.init_conv = nn.Conv2d(channels, init_dim, 1, padding=0)

        dims = [init_dim, *map(lambda m: dim * m, dim_mults)]
        in_out = list(zip(dims[:-1], dims[1:]))
        time_dim = dim * 4

        def block_klass(dim_in, dim_out):
            if block == "resnet":
                return ResnetBlock(dim_in, dim_out, time_emb_dim=time_dim, groups=resnet_block_groups)
            if block == "convnext":
                return ConvNextBlock(dim_in, dim_out, time_emb_dim=time_dim, mult=convnext_mult)
            raise ValueError(f"block must be 'resnet' or 'convnext', got {block!r}")

        def attention_or_identity(level, channels_):
            if linear_attention_levels is None or level in linear_attention_levels:
                return Residual(PreNorm(channels_, LinearAttention(channels_, heads, dim_head)))
            return nn.Identity()

        self.time_mlp = nn.Sequential(
            SinusoidalPositionEmbeddings(dim),
            nn.Linear(dim, time_dim),
            nn.GELU(),
            nn.Linear(time_dim, time_dim),
        )
        self.class_emb = nn.Embedding(num_classes + 1, time_dim) if num_classes > 0 else None

        self.downs = nn.ModuleList([])
        self.ups = nn.ModuleList([])
        num_resolutions = len(in_out)

        for ind, (dim_in, dim_out) in enumerate(in_out):
            is_last = ind >= (num_resolutions - 1)
            self.downs.append(nn.ModuleList([
                block_klass(dim_in, dim_in),
                block_klass(dim_in, dim_in),
                attention_or_identity(ind, dim_in),
                Downsample(dim_in, dim_out) if not is_last else nn.Conv2d(dim_in, dim_out, 3, padding=1),
            ]))

        mid_dim = dims[-1]
        self.mid_block1 = block_klass(mid_dim, mid_dim)
        self.mid_attn = Residual(PreNorm(mid_dim, Attention(mid_dim, heads, dim_head)))
        self.mid_block2 = block_klass(mid_dim, mid_dim)

        for ind, (dim_in, dim_out) in enumerate(reversed(in_out)):
            is_last = ind == (len(in_out) - 1)
            level = num_resolutions - 1 - ind
            self.ups.append(nn.ModuleList([
                block_klass(dim_out + dim_in, dim_out),
                block_klass(dim_out + dim_in, dim_out),
                attention_or_identity(level, dim_out),
                Upsample(dim_out, dim_in) if not is_last else nn.Conv2d(dim_out, dim_in, 3, padding=1),
            ]))

        self.out_dim = out_dim if out_dim is not None else channels
        self.final_res_block = block_klass(init_dim * 2, dim)   # the notebook writes dim * 2 (init_dim = dim there)
        self.final_conv = nn.Conv2d(dim, self.out_dim, 1)

    def forward(self, x, time, classes=None):
        x = self.init_conv(x)
        r = x.clone()
        t = self.time_mlp(time)
        if self.class_emb is not None:
            if classes is None:  # "no label" for every image
                classes = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            t = t + self.class_emb(classes)

        h = []
        for block1, block2, attn, downsample in self.downs:
            x = block1(x, t)
            h.append(x)
            x = block2(x, t)
            x = attn(x)
            h.append(x)
            x = downsample(x)

        x = self.mid_block1(x, t)
        x = self.mid_attn(x)
        x = self.mid_block2(x, t)

        for block1, block2, attn, upsample in self.ups:
            x = torch.cat((x, h.pop()), dim=1)
            x = block1(x, t)
            x = torch.cat((x, h.pop()), dim=1)
            x = block2(x, t)
            x = attn(x)
            x = upsample(x)

        x = torch.cat((x, r), dim=1)
        x = self.final_res_block(x, t)
        return self.final_conv(x)
