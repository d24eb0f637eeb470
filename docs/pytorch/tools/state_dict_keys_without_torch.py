"""Lists the state_dict keys and shapes of course_unet.Unet WITHOUT PyTorch, to write docs/pytorch/*.keys.txt.

Where PyTorch is not installed (as on the machine the course was built on), this runs course_unet.py's constructors
against a minimal stand-in for torch.nn that follows PyTorch's rules for state_dict names and shapes:
- a module's own parameters come first (in the order they were assigned), then each child's, prefixed "child.";
- nn.Sequential and nn.ModuleList name their children "0", "1", ...;
- Conv2d: weight [out, in/groups, k, k] and bias [out] (unless bias=False); Linear: weight [out, in], bias [out];
  GroupNorm: weight [C], bias [C]; Embedding: weight [num, dim]; GELU, SiLU, Identity, Upsample, PixelUnshuffle:
  no parameters. None of these modules registers buffers.
Only the constructors run; forward() is never called. With real PyTorch, the same list comes from
    [(k, list(v.shape)) for k, v in Unet(...).state_dict().items()]

Usage: python3 state_dict_keys_without_torch.py [default|variant]  (prints "name<TAB>[d0, d1, ...]" lines)
"""
import importlib.util
import os
import sys
import types


class Parameter:
    def __init__(self, *shape):
        self.shape = list(shape)


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif value is None and name in self._modules:
            self._modules[name] = None
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for store in ("_parameters", "_modules"):
            d = object.__getattribute__(self, store)
            if name in d:
                return d[name]
        raise AttributeError(name)

    def state_dict(self, prefix=""):
        out = [(prefix + k, p.shape) for k, p in self._parameters.items() if p is not None]
        for name, child in self._modules.items():
            if child is not None:
                out += child.state_dict(prefix + name + ".")
        return out


class Sequential(Module):
    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            self._modules[str(i)] = m


class ModuleList(Module):
    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, m):
        self._modules[str(len(self._modules))] = m


class Conv2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super().__init__()
        self.weight = Parameter(out_channels, in_channels // groups, kernel_size, kernel_size)
        if bias:
            self.bias = Parameter(out_channels)


class Linear(Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.weight = Parameter(out_features, in_features)
        if bias:
            self.bias = Parameter(out_features)


class GroupNorm(Module):
    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        super().__init__()
        self.weight = Parameter(num_channels)
        self.bias = Parameter(num_channels)


class Embedding(Module):
    def __init__(self, num_embeddings, embedding_dim):
        super().__init__()
        self.weight = Parameter(num_embeddings, embedding_dim)


class NoParameters(Module):
    def __init__(self, *args, **kwargs):
        super().__init__()


def install_stand_in():
    torch = types.ModuleType("torch")
    nn = types.ModuleType("torch.nn")
    functional = types.ModuleType("torch.nn.functional")
    for cls in (Module, Sequential, ModuleList, Conv2d, Linear, GroupNorm, Embedding):
        setattr(nn, cls.__name__, cls)
    for name in ("GELU", "SiLU", "Identity", "Upsample", "PixelUnshuffle"):
        setattr(nn, name, type(name, (NoParameters,), {}))
    nn.functional = functional
    torch.nn = nn
    sys.modules.update({"torch": torch, "torch.nn": nn, "torch.nn.functional": functional})


CONFIGS = {
    # The shipped checkpoint data/checkpoints/fashion-mnist-ddpm.ckpt.
    "default": dict(dim=28, dim_mults=(1, 2, 4), channels=1, resnet_block_groups=4, linear_attention_levels=(1, 2)),
    # Every other option: ConvNeXt blocks, RGB, attention at every level, 10 classes.
    "variant": dict(dim=16, dim_mults=(1, 2), channels=3, block="convnext", convnext_mult=2,
                    linear_attention_levels=None, num_classes=10),
}

if __name__ == "__main__":
    install_stand_in()
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("course_unet", os.path.join(here, "..", "course_unet.py"))
    course_unet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(course_unet)
    config = CONFIGS[sys.argv[1] if len(sys.argv) > 1 else "default"]
    print("# Unet(" + ", ".join(f"{k}={v!r}" for k, v in config.items()) + ").state_dict(): name<TAB>shape")
    for name, shape in course_unet.Unet(**config).state_dict():
        print(f"{name}\t{shape}")
