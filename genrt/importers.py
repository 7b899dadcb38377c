"""Importers: pretrained torch files people already have -> genrt models (.onnx with genrt metadata).

genrt import RealESRGAN_x4plus.pth -o realesrgan-x4.onnx
genrt import candy.pth -o style-candy.onnx

Two families, told apart by their state dicts (the file's keys and shapes, never its name):

- super-resolution and restoration networks that spandrel (PyPI) detects: ESRGAN and Real-ESRGAN's RRDBNet, the
  compact SRVGGNetCompact, SwinIR, ... spandrel reads the architecture, its hyperparameters and the scale off the
  state dict and builds the torch module; genrt exports it as an ``upscaler`` (input and output RGB in [0, 1], the
  output clipped as spandrel's own call clips it, sizes padded to the network's multiple inside the graph).
- pytorch/examples' fast_neural_style checkpoints (its ``TransformerNet``; the ``running_mean``/``running_var``
  keys that old torch versions saved for its InstanceNorm2d layers are dropped, as that project's README says):
  exported as a ``stylizer`` whose input and output are RGB in 0-255, as that network was trained.

Files are read without running code from them: ``.safetensors`` through safetensors, anything else through
``torch.load(..., weights_only=True)``, which refuses pickled objects other than tensors and plain containers.
The export goes through :func:`genrt.export` (checked, verified against the torch module, written atomically),
with dynamic batch, height and width, and is then checked again at another size.

Needs torch, and spandrel for the super-resolution family (the ``train`` extra). spandrel declares torchvision as a
requirement but uses it only inside two architectures genrt does not import (RestoreFormer's input normalisation
and LaMa's rotation): without torchvision, genrt lets spandrel import against a stand-in whose functions raise.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import os
import re
import sys
import types
from pathlib import Path

import numpy as np

from genrt.errors import ArgumentError, ExportError, InvalidModelError, MissingDependencyError, printable

__all__ = ["KINDS", "TransformerNet", "add_cli", "import_model", "load_state_dict"]  # noqa: F822 (see __getattr__)

KINDS = ("upscaler", "stylizer")

# fast_neural_style's TransformerNet (pytorch/examples, neural_style/transformer_net.py): its convolutions' state-dict
# prefixes and shapes (out, in, kernel), its InstanceNorm2d layers (affine) and its total stride.
_TN_CONVS = {
    "conv1": (32, 3, 9),
    "conv2": (64, 32, 3),
    "conv3": (128, 64, 3),
    **{f"res{i}.conv{j}": (128, 128, 3) for i in range(1, 6) for j in (1, 2)},
    "deconv1": (64, 128, 3),
    "deconv2": (32, 64, 3),
    "deconv3": (3, 32, 9),
}
_TN_NORMS = {"in1": 32, "in2": 64, "in3": 128, **{f"res{i}.in{j}": 128 for i in range(1, 6) for j in (1, 2)}}
_TN_NORMS.update({"in4": 64, "in5": 32})
_TN_MULTIPLE = 4
# What old torch versions saved for InstanceNorm2d (and what pytorch/examples' README says to delete before loading).
_TN_STALE = re.compile(r"^(?:res\d+\.)?in\d+\.(?:running_mean|running_var|num_batches_tracked)$")

_MAX_DIFF = 1e-3  # of the output range: |ONNX - torch| accepted (SwinIR: 4e-4, its attention in ORT; convnets 1e-7)


@dataclasses.dataclass
class Imported:
    """What :func:`import_model` wrote (the CLI prints it)."""

    path: Path
    kind: str
    architecture: str  # e.g. "ESRGAN (RRDBNet, 64nf, 23 blocks)" or "fast_neural_style TransformerNet"
    scale: int | None
    checked_shape: tuple[int, ...]  # the input shape of the check at a second size
    max_abs_diff: float  # the largest |ONNX - torch| at that size


# --- dependencies, imported on first use -------------------------------------------------------------------------


def _torch():
    from genrt._torch import torch

    return torch


def _torchvision_stub() -> dict[str, types.ModuleType]:
    """A stand-in for the two torchvision functions spandrel imports at import time; each raises when called."""

    def missing(name):
        def call(*args, **kwargs):
            raise MissingDependencyError(f"torchvision.transforms.functional.{name} needs torchvision installed")

        return call

    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.normalize = missing("normalize")
    functional.rotate = missing("rotate")
    functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", NEAREST="nearest", BICUBIC="bicubic")
    root.transforms, transforms.functional = transforms, functional
    root.__genrt_stub__ = True
    return {m.__name__: m for m in (root, transforms, functional)}


@functools.cache
def _spandrel():
    _torch()
    try:
        import torchvision  # noqa: F401
    except Exception:  # missing, or a wheel built for another torch: spandrel only needs two names at import
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        stub = _torchvision_stub()
    else:
        stub = {}
    sys.modules.update(stub)
    try:
        import spandrel
    except ImportError as exc:
        raise MissingDependencyError(
            f"importing super-resolution files needs spandrel: pip install --no-deps spandrel==0.4.2 einops ({exc})"
        ) from exc
    finally:
        for name, module in stub.items():  # the stand-in does not outlive spandrel's import
            if sys.modules.get(name) is module:
                del sys.modules[name]
    return spandrel


# --- reading files -----------------------------------------------------------------------------------------------


def load_state_dict(path) -> dict:
    """The tensors of a ``.pth``/``.pt``/``.ckpt`` (torch.save) or ``.safetensors`` file, without running its code.

    torch.save files load with ``weights_only=True``: tensors, numbers, strings and plain containers only; a
    pickled object of any other class is refused, never constructed. The format is judged from the first bytes.
    A checkpoint that wraps the weights (``{"params_ema": {...}}``, ``{"state_dict": {...}}``, ``module.`` prefixes)
    is unwrapped as spandrel does it.

    Raises:
        ModelNotFoundError: no such file.  InvalidModelError: empty, unreadable, unsafe, or holding no tensors.
    """
    from genrt.errors import ModelNotFoundError

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise InvalidModelError(f"{path}: the file is empty")
    torch = _torch()
    if _looks_like_safetensors(head):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise InvalidModelError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from exc
    elif head[:4] != b"PK\x03\x04" and not (head[0] == 0x80 and 2 <= head[1] <= 5):  # zip; legacy: a pickle
        raise InvalidModelError(f"{path}: not a torch.save or safetensors file (it starts with {head[:8]!r})")
    else:
        import pickle

        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "weights only" not in str(exc).lower():  # a corrupt pickle rather than a refused one
                raise InvalidModelError(f"{path}: a corrupt torch.save file ({_first_line(exc)})") from exc
            raise InvalidModelError(
                f"{path}: refused: the file holds pickled Python objects other than tensors, which would run code "
                f"to load (torch.load weights_only=True says: {_first_line(exc)}). Save the state dict alone "
                "(torch.save(model.state_dict(), path)) or as .safetensors."
            ) from exc
        except Exception as exc:  # not a torch file, truncated zip, ...
            raise InvalidModelError(
                f"{path}: not a torch.save or safetensors file ({type(exc).__name__}: {_first_line(exc)})"
            ) from exc
    state = _unwrap(state, path)
    return state


def _looks_like_safetensors(head: bytes) -> bool:
    # 8 bytes little-endian header length, then the JSON header.
    return len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _first_lines(exc, n: int = 2) -> str:
    # torch's load_state_dict puts its reason on the lines after "Error(s) in loading state_dict for ...:".
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[:n]) if lines else type(exc).__name__


def _unwrap(state, path: Path) -> dict:
    torch = _torch()
    if not isinstance(state, dict):
        raise InvalidModelError(f"{path}: expected a state dict (a dict of tensors), got {type(state).__name__}")
    spandrel = None
    try:
        spandrel = _spandrel()
    except MissingDependencyError:
        pass
    if spandrel is not None:
        state = spandrel.canonicalize_state_dict(state)
    else:  # the same unwrapping, for stylizers without spandrel installed
        for key in ("model_state_dict", "state_dict", "params_ema", "params-ema", "params", "model", "net"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
        for prefix in ("module.", "netG."):
            if state and all(isinstance(k, str) and k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise InvalidModelError(f"{path}: no tensors found (keys: {_some_keys(state)})")
    return tensors


def _some_keys(state, n: int = 5) -> str:
    keys = [str(k) for k in list(state)[:n]]
    return ", ".join(keys) + (", ..." if len(state) > n else "") if keys else "none"


# --- fast_neural_style's TransformerNet ----------------------------------------------------------------------------


@functools.cache
def _transformer_net_class():
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class _Conv(nn.Module):
        """Reflection padding (kernel // 2) and a convolution; ``upsample`` first enlarges by nearest neighbour."""

        def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, upsample: int | None = None):
            super().__init__()
            self.upsample = upsample
            self.pad = nn.ReflectionPad2d(kernel // 2)
            self.conv2d = nn.Conv2d(cin, cout, kernel, stride)  # the state dict's `<name>.conv2d.*`

        def forward(self, x):
            if self.upsample:
                x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
            return self.conv2d(self.pad(x))

    class _Residual(nn.Module):
        """Two 3x3 convolutions with instance norm, a ReLU between them, and the identity added."""

        def __init__(self, channels: int):
            super().__init__()
            self.conv1 = _Conv(channels, channels, 3)
            self.in1 = nn.InstanceNorm2d(channels, affine=True)
            self.conv2 = _Conv(channels, channels, 3)
            self.in2 = nn.InstanceNorm2d(channels, affine=True)

        def forward(self, x):
            y = torch.relu(self.in1(self.conv1(x)))
            return x + self.in2(self.conv2(y))

    class TransformerNet(nn.Module):
        """pytorch/examples' fast_neural_style network (Johnson et al. 2016 with instance norm and upsample-convs).

        (N, 3, H, W) RGB in 0-255 -> (N, 3, H, W) RGB, about 0-255 (unclipped); H and W multiples of 4. Parameter
        names match that project's checkpoints, so ``load_state_dict`` takes them (without the stale
        InstanceNorm2d running-stat keys; :func:`genrt.importers.import_model` drops those).
        """

        def __init__(self):
            super().__init__()
            self.conv1, self.in1 = _Conv(3, 32, 9), nn.InstanceNorm2d(32, affine=True)
            self.conv2, self.in2 = _Conv(32, 64, 3, stride=2), nn.InstanceNorm2d(64, affine=True)
            self.conv3, self.in3 = _Conv(64, 128, 3, stride=2), nn.InstanceNorm2d(128, affine=True)
            self.res1, self.res2, self.res3, self.res4, self.res5 = (_Residual(128) for _ in range(5))
            self.deconv1, self.in4 = _Conv(128, 64, 3, upsample=2), nn.InstanceNorm2d(64, affine=True)
            self.deconv2, self.in5 = _Conv(64, 32, 3, upsample=2), nn.InstanceNorm2d(32, affine=True)
            self.deconv3 = _Conv(32, 3, 9)

        def forward(self, x):  # (N, 3, H, W) in 0-255
            y = torch.relu(self.in1(self.conv1(x)))  # (N, 32, H, W)
            y = torch.relu(self.in2(self.conv2(y)))  # (N, 64, H/2, W/2)
            y = torch.relu(self.in3(self.conv3(y)))  # (N, 128, H/4, W/4)
            y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
            y = torch.relu(self.in4(self.deconv1(y)))  # (N, 64, H/2, W/2)
            y = torch.relu(self.in5(self.deconv2(y)))  # (N, 32, H, W)
            return self.deconv3(y)  # (N, 3, H, W), about 0-255

    TransformerNet.__module__, TransformerNet.__qualname__ = __name__, "TransformerNet"
    return TransformerNet


def __getattr__(name):  # TransformerNet is a torch class: made on first use, so importing this module needs no torch
    if name == "TransformerNet":
        return _transformer_net_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _is_transformer_net(state: dict) -> bool:
    return all(f"{name}.conv2d.weight" in state for name in ("conv1", "res1.conv1", "deconv3"))


def _transformer_net(state: dict, path: Path):
    """TransformerNet with the file's weights; InvalidModelError naming the keys or shapes that do not fit."""
    state = {k: v for k, v in state.items() if not _TN_STALE.match(k)}
    net = _transformer_net_class()()
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]  # fmt: skip
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}")
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''}")
    if wrong:
        problems.append(f"shapes {', '.join(wrong[:3])}{', ...' if len(wrong) > 3 else ''}")
    if problems:
        raise InvalidModelError(
            f"{path}: looks like a fast_neural_style TransformerNet, but its state dict does not fit that network: "
            + "; ".join(problems)
        )
    net.load_state_dict({k: v.float() for k, v in state.items()})
    return net.eval()


# --- spandrel's super-resolution family -----------------------------------------------------------------------------


def _describe(descriptor) -> str:
    tags = ", ".join(descriptor.tags)
    return f"{descriptor.architecture.name}" + (f" ({tags})" if tags else "")


def _spandrel_model(state: dict, path: Path):
    spandrel = _spandrel()
    try:
        descriptor = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError as exc:
        raise InvalidModelError(
            f"{path}: no known architecture matches this state dict ({len(state)} tensors; keys: "
            f"{_some_keys(state)}). "
            f"Importable: what spandrel {spandrel.__version__} detects (ESRGAN, Real-ESRGAN, SRVGGNetCompact, SwinIR, "
            "...) and pytorch/examples' fast_neural_style TransformerNet"
        ) from exc
    except Exception as exc:  # a detected architecture whose keys or shapes do not fit it
        raise InvalidModelError(
            f"{path}: spandrel detected an architecture but could not build it from this state dict "
            f"({type(exc).__name__}: {_first_lines(exc)})"
        ) from exc
    name = _describe(descriptor)
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise InvalidModelError(
            f"{path}: {name} is a {descriptor.purpose} model (it takes a mask too); genrt imports image-to-image "
            "upscalers and restorers"
        )
    if descriptor.purpose == "FaceSR":
        raise InvalidModelError(
            f"{path}: {name} restores aligned 512x512 faces, not whole images; genrt imports upscalers and restorers"
        )
    if (descriptor.input_channels, descriptor.output_channels) != (3, 3):
        raise InvalidModelError(
            f"{path}: {name} maps {descriptor.input_channels} channels to {descriptor.output_channels}; genrt's "
            "upscalers take and give RGB (3 channels)"
        )
    if descriptor.size_requirements.square:
        raise InvalidModelError(f"{path}: {name} needs square inputs; genrt's upscalers take any size")
    return descriptor.eval()


def _upscaler_module(descriptor):
    """The network as spandrel's call runs it: sizes padded to its multiple (reflection), output cropped, clipped."""
    torch = _torch()

    class SpandrelUpscaler(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = descriptor.model
            self.scale = int(descriptor.scale)
            self.multiple = int(descriptor.size_requirements.multiple_of)
            self._call = getattr(descriptor, "_call_fn", None) or (lambda model, image: model(image))

        def forward(self, x):  # (N, 3, h, w) in [0, 1]
            h, w = x.shape[-2], x.shape[-1]
            if self.multiple > 1:  # always padded (by 0 where it fits), so one graph serves every size
                x = torch.nn.functional.pad(x, (0, (-w) % self.multiple, 0, (-h) % self.multiple), mode="reflect")
            y = self._call(self.model, x)  # (N, 3, s * h', s * w')
            if self.multiple > 1:
                y = y[:, :, : h * self.scale, : w * self.scale]
            return y.clamp(0.0, 1.0)  # (N, 3, s * h, s * w)

    return SpandrelUpscaler().eval()


# --- import --------------------------------------------------------------------------------------------------------


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def import_model(
    path,
    output=None,
    *,
    kind: str | None = None,
    weights: str = "float32",
    description: str | None = None,
) -> Path:
    """Imports a pretrained torch file as a genrt model (.onnx with genrt metadata); returns the path written.

    Args:
        path: a ``.pth``/``.pt``/``.ckpt`` state dict (torch.save; loaded with ``weights_only=True``, never
            unpickled beyond tensors) or a ``.safetensors`` file: an ESRGAN-family or other super-resolution network
            that spandrel detects, or a pytorch/examples fast_neural_style checkpoint.
        output: the ``.onnx`` file to write (default: ``path`` with the suffix ``.onnx``); written atomically.
        kind: "upscaler" or "stylizer" to insist on one (an error if the file is the other); default: detected.
        weights: "float32", or "float16" to store the weights in half the bytes (genrt.export's ``weights``).
        description: the one line stored in the metadata (default: the architecture and the source file).

    Returns:
        The path written. ``genrt.load(path)`` gives an Upscaler (``upscale``) or a Stylizer (``stylize``).

    Raises:
        ModelNotFoundError: no such file.
        InvalidModelError: unreadable, unsafe (pickled objects), or of no architecture genrt can import.
        ArgumentError: bad ``output``, ``kind`` or ``weights``.
        ExportError: the architecture does not export to ONNX (the message names the failing op), exports only at
            a fixed size, or its export does not reproduce the torch module.
        MissingDependencyError: torch (or spandrel, for super-resolution files) is not installed.

    Example:
        >>> genrt.importers.import_model("RealESRGAN_x4plus.pth", "realesrgan-x4.onnx")
        >>> genrt.load("realesrgan-x4.onnx").upscale(photo)
    """
    return _import(path, output, kind=kind, weights=weights, description=description).path


def _import(path, output=None, *, kind=None, weights="float32", description=None) -> Imported:
    path = Path(path)
    if kind not in (None, *KINDS):
        raise ArgumentError(f"kind: expected one of {', '.join(KINDS)} (or None: detect), got {kind!r}")
    if weights not in ("float32", "float16"):
        raise ArgumentError(f"weights: expected 'float32' or 'float16', got {weights!r}")
    output = Path(output) if output is not None else path.with_suffix(".onnx")
    if output.suffix.lower() != ".onnx":
        raise ArgumentError(f"output: expected a .onnx file, got {output.name!r}")
    if not output.parent.is_dir():
        raise ArgumentError(f"output: folder {output.parent} does not exist")
    if output.exists() and path.exists() and os.path.samefile(output, path):
        raise ArgumentError(f"output: {output} is the input file; choose another name")
    if output.is_dir():
        raise ArgumentError(f"output: {output} is a folder; give a .onnx file name")
    if description is not None and (not isinstance(description, str) or "\n" in description):
        raise ArgumentError("description: expected one line of text")

    state = load_state_dict(path)
    found = "stylizer" if _is_transformer_net(state) else "upscaler"
    if kind is not None and kind != found:
        what = ("" if found == "stylizer" else "not ") + "a fast_neural_style TransformerNet"
        raise InvalidModelError(f"{path}: --kind {kind} asked for, but the file is {what} (a {found})")
    source = {"file": path.name, "sha256": _file_digest(path)}
    torch = _torch()
    gen = torch.Generator().manual_seed(0)
    if found == "stylizer":
        module = _transformer_net(state, path)
        architecture = "fast_neural_style TransformerNet"
        scale = None
        span = 255.0
        meta = {
            "input_range": [0.0, 255.0],  # the network was trained on RGB in 0-255 (fast_neural_style's stylize)
            "output_range": [0.0, 255.0],
            "multiple": _TN_MULTIPLE,
            "style": path.stem,
        }
        source.update(architecture="TransformerNet", project="pytorch/examples fast_neural_style")
        example = torch.rand(1, 3, 64, 64, generator=gen) * 255.0
        check = torch.rand(1, 3, 36, 52, generator=gen) * 255.0
        names = (["image"], ["stylized"])
    else:
        descriptor = _spandrel_model(state, path)
        module = _upscaler_module(descriptor)
        architecture = _describe(descriptor)
        scale = int(descriptor.scale)
        span = 1.0
        meta = {"scale": scale, "input_range": [0.0, 1.0], "output_range": [0.0, 1.0]}
        source.update(
            architecture=descriptor.architecture.id, tags=list(descriptor.tags), purpose=descriptor.purpose,
            importer=f"spandrel {_spandrel().__version__}",
        )  # fmt: skip
        size = max(16, descriptor.size_requirements.minimum)
        example = torch.rand(1, 3, size + 8, size + 4, generator=gen)
        check = torch.rand(1, 3, size + 3, size + 9, generator=gen)  # odd sizes: the in-graph padding runs
        names = (["image"], ["upscaled"])
    meta["description"] = description or (f"{architecture}{f' x{scale}' if scale else ''}, imported from {path.name}")
    meta["source"] = source

    import genrt

    tmp = output.with_name(f".{output.stem}.importing.onnx")
    try:
        try:
            genrt.export(module, tmp, (example,), kind=found, metadata=meta, input_names=names[0],
                         output_names=names[1], weights=weights, rtol=1e-3, atol=_MAX_DIFF * span)  # fmt: skip
        except ExportError as exc:
            raise ExportError(f"{path.name}: {architecture} does not export to ONNX: {exc}") from exc
        _require_dynamic(tmp, architecture)
        diff = _check(tmp, module, check, weights, span, architecture)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    return Imported(output, found, architecture, scale, tuple(check.shape), diff)


def _require_dynamic(path: Path, architecture: str) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    fixed = [str(d.dim_value) for d in list(dims)[2:4] if not d.dim_param]
    if fixed:
        raise ExportError(
            f"{architecture} exported with a fixed height/width ({'x'.join(fixed)}): its code fixes the size while "
            "tracing, so the ONNX file would take one size only"
        )


def _check(path: Path, module, x, weights: str, span: float, architecture: str) -> float:
    """Runs the file at a second input size against the torch module; returns the largest difference."""
    import genrt
    from genrt.exporter import _weights_rounded

    torch = _torch()
    with torch.no_grad(), _weights_rounded(module, weights == "float16"):
        expected = module(x).numpy()
    got = genrt.load(path, threads=1)(x.numpy())
    got = got[0] if isinstance(got, tuple) else got
    if got.shape != expected.shape:
        raise ExportError(f"{architecture}: the ONNX file gives shape {got.shape} at input {tuple(x.shape)}, "
                          f"torch {expected.shape}")  # fmt: skip
    diff = float(np.abs(got - expected).max())
    if not diff <= _MAX_DIFF * span:
        raise ExportError(
            f"{architecture}: the ONNX file differs from the torch module by {diff:.3g} at input {tuple(x.shape)} "
            f"(allowed {_MAX_DIFF * span:.3g})"
        )
    return diff


# --- the `genrt import` command -------------------------------------------------------------------------------------


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Adds ``genrt import`` to the ``genrt`` command's subparsers; returns its parser."""
    p = subparsers.add_parser(
        "import",
        help="import a pretrained .pth/.safetensors (ESRGAN-family upscaler, fast_neural_style) as a genrt .onnx",
        description="Import a pretrained torch file as a genrt model: super-resolution networks that spandrel "
        "detects (ESRGAN, Real-ESRGAN RRDBNet and SRVGGNetCompact, SwinIR, ...) become upscalers; pytorch/examples "
        "fast_neural_style checkpoints become stylizers. Files are read with torch.load(weights_only=True) or "
        "safetensors: nothing in them is run. Needs the train extra (torch, spandrel).",
        epilog="examples:\n"
        "  genrt import RealESRGAN_x4plus.pth -o realesrgan-x4.onnx     # then:\n"
        "  genrt upscale realesrgan-x4.onnx photo.png -o photo-x4.png\n"
        "  genrt import candy.pth -o style-candy.onnx && genrt stylize style-candy.onnx photo.jpg -o candy.jpg\n"
        "  genrt import 4x-model.safetensors --weights float16     # writes 4x-model.onnx beside it",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("model", help="a .pth/.pt/.ckpt state dict (torch.save) or a .safetensors file")
    p.add_argument("-o", "--output", default=None, help="the .onnx file to write (default: MODEL with suffix .onnx)")
    p.add_argument("--kind", choices=KINDS, default=None, help="insist on one kind (default: detected from the file)")
    p.add_argument(
        "--weights", choices=("float32", "float16"), default="float32",
        help="float16 stores the weights in half the bytes (computed in float32 still); default float32",
    )  # fmt: skip
    p.add_argument("--description", default=None, help="one line for the metadata (default: architecture and file)")
    p.set_defaults(func=_cmd_import)
    return p


def _cmd_import(args) -> int:
    result = _import(args.model, args.output, kind=args.kind, weights=args.weights, description=args.description)
    scale = f" x{result.scale}" if result.scale else ""
    shape = "x".join(str(d) for d in result.checked_shape)
    print(printable(f"wrote {result.path}: {result.kind}{scale}, {result.architecture}"))
    print(f"checked against torch at {shape}: max |onnx - torch| = {result.max_abs_diff:.3g}")
    return 0
