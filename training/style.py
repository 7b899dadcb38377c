"""python -m training.style --style hubble_deep_field --out runs/style-hubble [--loss-net vgg16-random]
python -m training.style --style retina,immunohistochemistry --loss-net vgg16:vgg16.pth --out runs/style-mix

Fast style transfer with perceptual losses (Johnson, Alahi and Fei-Fei 2016): an image transformation network is
trained so that its output keeps the content photo's features (feature reconstruction loss at a shallow layer of a
frozen loss network) and takes the style image's Gram matrices (style loss at several layers), plus a total
variation term. Losses and loss networks live in training/perceptual.py.

The network is the paper's (supplementary material): c9s1-32, d64, d128, five residual blocks, u64, u32, c9s1-3,
reflection padding and instance normalization (Ulyanov et al. 2016) throughout. Upsampling is fractionally strided
(ConvTranspose2d, stride 2), or with ``--upsample resize`` nearest x2 then a 3x3 convolution (Odena et al. 2016),
which avoids checkerboard artifacts. Input: RGB in [0, 1]; output (tanh(h) + 1) / 2, in [0, 1] (the paper's scaled
tanh, moved to [0, 1]); height and width must be multiples of 4 (the Stylizer pads to that).

Several styles (``--style a.png,b.png``) train one network with conditional instance normalization (Dumoulin, Shlens
and Kudlur 2017): every instance norm has a scale and shift per style, and the network takes a second input
``style`` (N, S) of weights summing to 1 that mixes them; training uses one-hot weights, each sample of a batch
taking the next style in turn. The export has inputs ``image`` (N, 3, H, W) and ``style`` (N, S); the Stylizer mixes
styles by name (metadata "styles").

Style images: a path, or a scikit-image sample by name (STYLE_SAMPLES: hubble_deep_field, immunohistochemistry,
retina, brick, grass, gravel, ...). Content images: random crops (``--crop``, default 256) with random mirroring of
``skimage``: scikit-image's photos astronaut, chelsea, coffee, rocket, motorcycle_left and motorcycle_right, each
resized so its shorter side is ``--content-size``; or ``folder:PATH``: every image below PATH (.jpg, .png, .webp),
read when drawn (so any number of images), the shorter side resized to ``--content-size``. scikit-learn's sample
images china.jpg and flower.jpg are the evaluation images: they are refused as content or style, byte for byte or
as look-alikes (mirrored, resized, re-encoded).

Loss networks (``--loss-net``): vgg16:PATH (a torchvision VGG16 state dict you already have; also --loss-net vgg16
--vgg PATH), vgg16-random[:SEED], efficientnet-lite0, efficientnet-lite0-soft[:T] (see training/perceptual.py). Loss
weights and layers left at -1 / "" take the loss network's defaults (DEFAULTS below).

Determinism and resume: before step s, torch's RNG is seeded from (seed, s) and draws that step's crops, so a
checkpoint holds the network, Adam's state and the step; a resumed run reproduces the uninterrupted one exactly.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import genrt
from genrt.errors import ArgumentError, GenrtError
from genrt.image import make_grid, save_png, to_uint8_images, write_atomic
from training import data as data_mod
from training import perceptual, photos
from training.loop import parse_config, read_checkpoint, resumed_config, run_steps, write_checkpoint

CHECKPOINT = "checkpoint.json"

# scikit-image samples that ship inside the wheel (nothing is downloaded); grey ones are repeated to RGB
STYLE_SAMPLES = (
    "hubble_deep_field", "immunohistochemistry", "retina", "brick", "grass", "gravel", "astronaut", "camera",
    "chelsea", "coffee", "rocket", "colorwheel", "coins", "moon", "page", "text", "clock", "cell", "logo",
    "microaneurysms", "motorcycle_left", "motorcycle_right",
)  # fmt: skip
CONTENT_SAMPLES = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right")

# Loss weights per loss network. Adam makes only their ratios matter. vgg16 (trained weights): pytorch/examples'
# fast_neural_style values, for the same input normalisation and loss scales, and a TV weight a guess. The others
# were calibrated on 256x256 crops of the skimage photos and the styles hubble_deep_field, immunohistochemistry,
# retina, brick and gravel, so that the weighted content loss between two different photos is about 1, the weighted
# style loss of a photo against a style image about 5 and the weighted TV of a photo about 0.05 (measured: random
# VGG 0.44, 1.7e-4, 0.0055; EfficientNet-Lite0 133, 3.2). EfficientNet-Lite0's style weight was then measured on
# 400-step runs (genrt/models/README.md, "How the loss network was chosen"): at 2.0 the style wipes out the content,
# so the default is 1.0 (the bundled stylizers but the first, at 0.5). Softened Gram matrices (about 7e7 there)
# trained to saturated blobs at the calibrated ratio and left the photo almost as it was at 100x lower. Random VGG
# lost the content within 200 steps at its calibrated weights.
DEFAULTS = {
    "vgg16": dict(content_weight=1e5, style_weight=1e10, tv_weight=1e6),
    "vgg16-random": dict(content_weight=2.0, style_weight=3e4, tv_weight=10.0),
    "efficientnet-lite0": dict(content_weight=1e-2, style_weight=1.0, tv_weight=10.0),
    "efficientnet-lite0-soft": dict(content_weight=1e-2, style_weight=7e-10, tv_weight=10.0),
}


@dataclass
class StyleConfig:
    """Johnson et al. 2016 perceptual-loss style transfer: one network per style, or one for several styles
    (conditional instance norm)."""

    style: str = "hubble_deep_field"  # image path or scikit-image sample, NAME=that to name it; a,b,...: multi-style
    content: str = "skimage"  # content photos: skimage (its photos), photos (training/photos.py) or folder:PATH
    out: str = "runs/style"  # run folder: checkpoints, samples, config.json, stylizer.onnx
    steps: int = 40000  # optimizer steps (the paper: 40k at batch 4, two epochs of COCO)
    batch_size: int = 4  # content crops per step
    crop: int = 256  # content crops are crop x crop pixels (a multiple of 4)
    content_size: int = 384  # content photos are resized to this shorter side before cropping (>= crop)
    style_size: int = 256  # the style image is resized to this shorter side (0: as it is)
    width: int = 32  # channels of the first layer (the paper: 32; then 64, 128); smaller for tests
    blocks: int = 5  # residual blocks
    upsample: str = "deconv"  # deconv (fractionally-strided conv, the paper) or resize (nearest x2 + conv, Odena)
    up_norm: str = "instance"  # the up-sampling layers' norm: instance (the paper) or affine (its scale and shift
    # without per-image statistics: no blobs, the instance-norm "droplet" of Karras et al. 2020; the models' card)
    loss_net: str = "efficientnet-lite0"  # vgg16:PATH, vgg16-random[:SEED], efficientnet-lite0[-soft[:T]], vgg16
    vgg: str = ""  # torchvision VGG16 state dict (.pth or .safetensors) for --loss-net vgg16
    content_weight: float = -1.0  # weight of the feature reconstruction loss (-1: the loss network's default)
    style_weight: float = -1.0  # weight of the style (Gram) loss (-1: the loss network's default)
    tv_weight: float = -1.0  # weight of the total variation loss (-1: the loss network's default; 0: off)
    content_layers: str = ""  # comma-separated loss-network layers for content ("": its default, VGG relu2_2)
    style_layers: str = ""  # comma-separated layers for style ("": its default, VGG relu1_2,relu2_2,relu3_3,relu4_3)
    lr: float = 1e-3  # Adam learning rate (the paper's)
    seed: int = 0  # seeds init and crops; same seed -> same run on CPU
    ckpt_every: int = 500  # steps between checkpoints (and at the end)
    sample_every: int = 500  # steps between preview grids (and at the end)
    preview: int = 4  # content crops in each preview grid
    resume: bool = False  # continue from out/checkpoint.json if it exists
    export: bool = True  # export the network to out/stylizer.onnx at the end
    export_weights: str = "float16"  # weights in the export: float16 (half the file; 64-70 dB from float32) or float32
    description: str = ""  # one line stored in the export's metadata ("": made from the styles and loss network)
    threads: int = 0  # torch threads (0: torch's default)
    device: str = "cpu"  # cpu or cuda
    progress: bool = True  # tqdm progress bar


# Fields a resumed run may change; anything else must match the checkpoint's config.
RESUMABLE = {
    "out", "steps", "ckpt_every", "sample_every", "preview", "resume", "export", "export_weights", "description",
    "threads", "device", "progress",
}  # fmt: skip


# --- the image transformation network -----------------------------------------------------------------------------


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm with a learned scale and shift per style (Dumoulin et al. 2017), mixed by style weights.

    One style: a plain affine InstanceNorm2d (forward ignores ``style``). S styles: x (N, C, H, W) and style
    weights (N, S) -> norm(x) * (style @ weight) + (style @ bias), weight and bias (S, C).
    """

    def __init__(self, channels: int, styles: int = 1, normalize: bool = True):
        super().__init__()
        self.styles = styles
        self.norm = nn.InstanceNorm2d(channels, affine=styles == 1) if normalize else None
        if styles > 1 or not normalize:  # normalize=False: the scale and shift alone, no per-image statistics
            self.weight = nn.Parameter(torch.ones(styles, channels))
            self.bias = nn.Parameter(torch.zeros(styles, channels))

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
            if self.styles == 1:
                return x
        if self.styles == 1:
            return x * self.weight[0, :, None, None] + self.bias[0, :, None, None]
        gamma = style @ self.weight  # (N, C)
        beta = style @ self.bias  # (N, C)
        return x * gamma[:, :, None, None] + beta[:, :, None, None]


class ConvLayer(nn.Module):
    """Reflection pad, k x k conv (stride s), instance norm, ReLU (none on a residual block's second conv)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, styles: int = 1, relu: bool = True):
        super().__init__()
        self.pad = nn.ReflectionPad2d(k // 2)
        self.conv = nn.Conv2d(cin, cout, k, stride)
        self.norm = ConditionalInstanceNorm2d(cout, styles)
        self.relu = relu

    def forward(self, x, style=None):
        x = self.norm(self.conv(self.pad(x)), style)
        return F.relu(x) if self.relu else x


class UpLayer(nn.Module):
    """x2 upsampling: a 3x3 fractionally-strided conv (deconv) or nearest x2 then a 3x3 conv (resize); norm, ReLU.
    ``normalize=False``: the norm's scale and shift without instance statistics (TransformerNet's up_norm)."""

    def __init__(self, cin: int, cout: int, mode: str, styles: int = 1, normalize: bool = True):
        super().__init__()
        self.mode = mode
        if mode == "deconv":
            self.conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
        else:
            self.pad = nn.ReflectionPad2d(1)
            self.conv = nn.Conv2d(cin, cout, 3)
        self.norm = ConditionalInstanceNorm2d(cout, styles, normalize)

    def forward(self, x, style=None):
        if self.mode == "deconv":
            x = self.conv(x)  # (N, C', 2H, 2W)
        else:
            x = self.conv(self.pad(F.interpolate(x, scale_factor=2.0, mode="nearest")))
        return F.relu(self.norm(x, style))


class ResidualBlock(nn.Module):
    """Two 3x3 conv layers and the identity (Gross and Wilber's variant, no ReLU after the sum), as in the paper."""

    def __init__(self, channels: int, styles: int = 1):
        super().__init__()
        self.a = ConvLayer(channels, channels, 3, styles=styles)
        self.b = ConvLayer(channels, channels, 3, styles=styles, relu=False)

    def forward(self, x, style=None):
        return x + self.b(self.a(x, style), style)


class TransformerNet(nn.Module):
    """Johnson et al.'s image transformation network: (N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1].

    H and W must be multiples of 4. With ``styles`` > 1, forward takes a second input ``style`` (N, S): weights
    (summing to 1) that mix the per-style instance-norm parameters.
    """

    def __init__(
        self, width: int = 32, blocks: int = 5, upsample: str = "deconv", styles: int = 1, up_norm: str = "instance"
    ):
        super().__init__()
        if upsample not in ("deconv", "resize"):
            raise ArgumentError(f"upsample: expected 'deconv' or 'resize', got {upsample!r}")
        if up_norm not in ("instance", "affine"):
            raise ArgumentError(f"up_norm: expected 'instance' or 'affine', got {up_norm!r}")
        if width < 1 or blocks < 0 or styles < 1:
            raise ArgumentError(f"width, blocks, styles: expected >= 1, >= 0, >= 1; got {width}, {blocks}, {styles}")
        w, s = width, styles
        self.styles = styles
        self.down = nn.ModuleList(
            [
                ConvLayer(3, w, 9, styles=s),
                ConvLayer(w, 2 * w, 3, 2, styles=s),
                ConvLayer(2 * w, 4 * w, 3, 2, styles=s),
            ]
        )  # c9s1-w, d2w, d4w
        self.res = nn.ModuleList([ResidualBlock(4 * w, s) for _ in range(blocks)])
        norm = up_norm == "instance"
        self.up = nn.ModuleList([UpLayer(4 * w, 2 * w, upsample, s, norm), UpLayer(2 * w, w, upsample, s, norm)])
        self.out = nn.Sequential(nn.ReflectionPad2d(4), nn.Conv2d(w, 3, 9))

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        if self.styles > 1 and style is None:
            raise ArgumentError(f"style: this network holds {self.styles} styles; pass weights (N, {self.styles})")
        h = x  # (N, 3, H, W)
        for layer in self.down:
            h = layer(h, style)  # ... (N, 4w, H/4, W/4)
        for block in self.res:
            h = block(h, style)
        for layer in self.up:
            h = layer(h, style)  # ... (N, w, H, W)
        return (torch.tanh(self.out(h)) + 1.0) / 2.0  # (N, 3, H, W) in [0, 1]


# --- images -------------------------------------------------------------------------------------------------------


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8/uint16/bool/float (H, W[, C]) -> (3, H, W) float32 in [0, 1]; grey repeated, alpha dropped."""
    a = np.asarray(image)
    if a.dtype == bool:
        a = a.astype(np.float32)
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float32) / np.iinfo(a.dtype).max
    a = a.astype(np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] in (2, 4):
        a = a[:, :, :-1]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).clamp(0.0, 1.0)


def _resize_short(x: torch.Tensor, short: int) -> torch.Tensor:
    """(3, H, W) -> (3, H', W') with min(H', W') == short, aspect kept (bicubic, antialiased)."""
    h, w = x.shape[-2:]
    if short <= 0 or min(h, w) == short:
        return x
    scale = short / min(h, w)
    size = (max(short, round(h * scale)), max(short, round(w * scale)))
    return F.interpolate(x[None], size=size, mode="bicubic", align_corners=False, antialias=True)[0].clamp(0, 1)


def _center_square(x: torch.Tensor, size: int) -> torch.Tensor:
    x = _resize_short(x, size)
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[:, top : top + size, left : left + size]


def skimage_sample(name: str) -> torch.Tensor:
    """A scikit-image sample image (one that ships with it) as (3, H, W) in [0, 1]."""
    import skimage.data

    if name not in STYLE_SAMPLES:
        raise data_mod.DataError(f"{name!r}: not a scikit-image sample this uses; expected one of {STYLE_SAMPLES}")
    if name.startswith("motorcycle_"):
        left, right, _ = skimage.data.stereo_motorcycle()
        return _to_tensor(left if name == "motorcycle_left" else right)
    return _to_tensor(getattr(skimage.data, name)())


_EVALUATION_NAMES = ("china.jpg", "flower.jpg")  # scikit-learn's sample photos: evaluation images, never trained on


def _evaluation_paths() -> list[Path]:
    folder = Path(importlib.util.find_spec("sklearn").origin).parent / "datasets" / "images"  # without importing it
    return [folder / name for name in _EVALUATION_NAMES]


@functools.lru_cache(maxsize=4)
def _evaluation_images(size: int) -> list[torch.Tensor]:
    """scikit-learn's china.jpg and flower.jpg (the evaluation images) as center squares of ``size``."""
    from PIL import Image

    out = []
    for path in _evaluation_paths():
        with Image.open(path) as im:
            out.append(_center_square(_to_tensor(np.asarray(im.convert("RGB"))), size))
    return out


def _refuse_evaluation_images(images, names: list[str], what: str) -> None:
    """DataError if any image looks like an evaluation image, mirrored or not: a mean absolute difference under 0.05
    between 32x32 center squares. Re-encoded or resized copies measure about 0.01, unrelated photos over 0.2."""
    refs = _evaluation_images(32)
    for image, name in zip(images, names, strict=True):
        small = _center_square(image, 32)
        for ref, ref_name in zip(refs, _EVALUATION_NAMES, strict=True):
            if min((small - ref).abs().mean(), (small - ref.flip(-1)).abs().mean()) < 0.05:
                raise data_mod.DataError(
                    f"{what} {name}: looks like scikit-learn's {ref_name}, an evaluation image; never train on it"
                )


def split_styles(text: str) -> list[str]:
    """``a,b[1:2,3:4],c`` -> the style specs, split at the commas outside a [box]."""
    return [t.strip() for t in re.split(r",(?![^\[]*\])", text) if t.strip()]


def load_style(spec: str, size: int) -> tuple[str, torch.Tensor]:
    """(name, (3, H, W) in [0, 1]) for a path or a scikit-image sample name, shorter side resized to ``size``.

    The name is the file's stem or the sample's name, or NAME in ``NAME=SOURCE`` (``hubble=hubble_deep_field``):
    what a multi-style model's users pass to mix styles. ``SOURCE[TOP:BOTTOM,LEFT:RIGHT]`` takes that box of the
    source's pixels (``retina[276:1130,358:1157]``: the fundus without its optic disc and black surround).
    """
    given, sep, source = spec.partition("=")
    if sep and given.strip() and not Path(spec).expanduser().is_file():
        spec = source.strip()
    else:
        given = ""
    box = None
    if spec.endswith("]") and "[" in spec and not Path(spec).expanduser().is_file():
        spec, _, text = spec[:-1].rpartition("[")
        try:
            rows, cols = text.split(",")
            box = tuple(int(v) for v in (*rows.split(":"), *cols.split(":")))
        except ValueError:
            raise data_mod.DataError(f"style: expected SOURCE[TOP:BOTTOM,LEFT:RIGHT], got [{text}]") from None
    path = Path(spec).expanduser()
    if not path.is_file() and spec in photos.PAINTINGS:  # a painting from Debian's wallpapers (training/photos.py)
        path = photos.painting(spec)
    if path.is_file():
        x, name = _read_photo(path), path.stem if spec not in photos.PAINTINGS else spec
    elif spec in STYLE_SAMPLES:
        x, name = skimage_sample(spec), spec
    else:
        raise data_mod.DataError(
            f"style: {spec!r} is neither an image file, a scikit-image sample ({', '.join(STYLE_SAMPLES)}) nor a "
            f"painting ({', '.join(photos.PAINTINGS)})"
        )
    if box is not None:
        top, bottom, left, right = box
        if not (0 <= top < bottom <= x.shape[-2] and 0 <= left < right <= x.shape[-1]):
            raise data_mod.DataError(f"style: box {list(box)} is outside {spec}'s {x.shape[-2]}x{x.shape[-1]} pixels")
        x = x[:, top:bottom, left:right]
    x = _resize_short(x.float().contiguous(), size)
    _refuse_evaluation_images([x], [spec], "style")
    return given.strip() or name, x


def _read_photo(path: Path) -> torch.Tensor:
    """An image file as (3, H, W) in [0, 1] (genrt's reader: EXIF orientation, 16-bit, grey repeated)."""
    from genrt.image import picture_to_float, read_image

    x = torch.from_numpy(picture_to_float(read_image(path)))  # (C, H, W)
    return (x.expand(3, -1, -1) if x.shape[0] == 1 else x[:3]).contiguous()


class FolderImages:
    """The images below a folder (recursive, sorted), read when used: ``pool[i]`` is (3, H, W) in [0, 1] with the
    shorter side ``size``, so a folder of any size trains in little memory. An unreadable file is reported once and
    replaced by the next readable one (the same on every run); an evaluation look-alike raises DataError."""

    def __init__(self, root: Path, size: int, cache: int = 64):
        if not root.is_dir():
            raise data_mod.DataError(f"folder:{root}: no such folder")
        self.root, self.size = root, size
        self.paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in data_mod.IMAGE_SUFFIXES)
        if not self.paths:
            raise data_mod.DataError(f"folder:{root}: no image ({' '.join(data_mod.IMAGE_SUFFIXES)})")
        self.bad: dict[int, str] = {}
        self._load = functools.lru_cache(maxsize=cache)(self._read)
        _refuse_copies(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, i: int) -> torch.Tensor:
        x = _resize_short(_read_photo(self.paths[i]), self.size)
        _refuse_evaluation_images([x], [str(self.paths[i])], "content image")
        return x

    def __getitem__(self, i: int) -> torch.Tensor:
        for k in range(len(self.paths)):
            j = (i + k) % len(self.paths)
            if j in self.bad:
                continue
            try:
                return self._load(j)
            except GenrtError as exc:
                if isinstance(exc, data_mod.DataError):
                    raise
                self.bad[j] = str(exc).splitlines()[0]
                print(f"folder:{self.root}: skipping {self.paths[j]} ({self.bad[j]})")
        raise data_mod.DataError(f"folder:{self.root}: no readable image among {len(self.paths)} files")


def _refuse_copies(paths: list[Path]) -> None:
    """DataError for a byte-for-byte copy of an evaluation image (only files of the same size are hashed)."""
    refs = {p.stat().st_size: (p.name, perceptual.file_digest(p)) for p in _evaluation_paths()}
    for p in paths:
        ref = refs.get(p.stat().st_size)
        if ref is not None and perceptual.file_digest(p) == ref[1]:
            raise data_mod.DataError(f"content image {p}: a copy of scikit-learn's {ref[0]}, an evaluation image")


def load_content(spec: str, size: int):
    """Content photos with shorter side ``size``: a list of (3, H, W) in [0, 1] for ``skimage``, a
    :class:`FolderImages` for ``folder:PATH``; and their names."""
    if spec == "skimage":
        return [_resize_short(skimage_sample(n), size) for n in CONTENT_SAMPLES], list(CONTENT_SAMPLES)
    if spec == "photos":
        pool = photos.load("train")
        return [_resize_short(pool[i], size) for i in range(len(pool))], pool.names
    if spec.startswith("folder:"):
        pool = FolderImages(Path(spec[len("folder:") :]).expanduser(), size)
        return pool, [str(p) for p in pool.paths]
    raise data_mod.DataError(f"content: expected 'skimage', 'photos' or 'folder:PATH', got {spec!r}")


def random_crops(pool, n: int, crop: int, generator=None) -> torch.Tensor:
    """n crops (n, 3, crop, crop): a photo drawn uniformly, a position uniformly, mirrored with probability 1/2."""
    out = []
    for _ in range(n):
        img = pool[int(torch.randint(len(pool), (), generator=generator))]
        h, w = img.shape[-2:]
        top = int(torch.randint(h - crop + 1, (), generator=generator))
        left = int(torch.randint(w - crop + 1, (), generator=generator))
        c = img[:, top : top + crop, left : left + crop]
        if bool(torch.rand((), generator=generator) < 0.5):
            c = c.flip(-1)
        out.append(c)
    return torch.stack(out)


# --- config -------------------------------------------------------------------------------------------------------


def _layers(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def loss_network_spec(cfg: StyleConfig) -> str:
    """The full --loss-net spec, with --vgg folded in (vgg16 + --vgg PATH -> vgg16:PATH)."""
    if cfg.loss_net == "vgg16":
        if not cfg.vgg:
            raise ArgumentError("loss_net: vgg16 needs --vgg PATH (a torchvision VGG16 state dict), or vgg16:PATH")
        return f"vgg16:{cfg.vgg}"
    if cfg.vgg and not cfg.loss_net.startswith("vgg16:"):
        raise ArgumentError(f"vgg: --vgg is for --loss-net vgg16, not {cfg.loss_net!r}")
    return cfg.loss_net


def _family(spec: str) -> str:
    return "vgg16" if spec.startswith("vgg16:") else spec.split(":")[0]  # vgg16-random:1 -> vgg16-random


def resolve(cfg: StyleConfig, net: perceptual.LossNetwork) -> StyleConfig:
    """The config with -1 weights and empty layer lists replaced by the loss network's defaults."""
    spec = loss_network_spec(cfg)
    defaults = DEFAULTS[_family(spec)]
    filled = {k: v for k, v in defaults.items() if getattr(cfg, k) < 0}
    if not cfg.content_layers:
        filled["content_layers"] = ",".join(net.default_content_layers)
    if not cfg.style_layers:
        filled["style_layers"] = ",".join(net.default_style_layers)
    out = StyleConfig(**{**asdict(cfg), **filled})
    out._given = getattr(cfg, "_given", set())
    return out


def _check(cfg: StyleConfig) -> None:
    if cfg.crop < 8 or cfg.crop % 4:
        raise ArgumentError(f"crop: expected a multiple of 4 >= 8, got {cfg.crop}")
    if cfg.content_size < cfg.crop:
        raise ArgumentError(f"content_size: must be >= crop ({cfg.crop}), got {cfg.content_size}")
    if cfg.batch_size < 1 or cfg.steps < 1 or cfg.preview < 1:
        raise ArgumentError("batch_size, steps, preview: expected positive integers")
    if cfg.export_weights not in ("float16", "float32"):
        raise ArgumentError(f"export_weights: expected float16 or float32, got {cfg.export_weights!r}")
    for k in ("ckpt_every", "sample_every"):
        if getattr(cfg, k) < 1:
            raise ArgumentError(f"{k}: expected a positive integer, got {getattr(cfg, k)}")


# --- checkpoints --------------------------------------------------------------------------------------------------


def save_checkpoint(out: Path, net: nn.Module, opt: torch.optim.Optimizer, cfg: StyleConfig, step: int) -> Path:
    """ckpt-STEP.safetensors (network and Adam state), then checkpoint.json (the pointer, replaced last)."""
    meta = {
        "rng": "torch.manual_seed(step_seed(config.seed, 0, step)) before each step draws its crops",
        "config": asdict(cfg),
    }
    return write_checkpoint(out, {"net": net}, {"opt": opt}, step=step, meta=meta)


def load_checkpoint(out: Path, net: nn.Module, opt: torch.optim.Optimizer) -> dict:
    return read_checkpoint(out, {"net": net}, {"opt": opt})


# --- training -----------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """What :func:`train` returns: the trained network and what it was trained with."""

    net: TransformerNet
    cfg: StyleConfig
    styles: list[str]
    loss_network: str
    losses: dict[str, float]
    export: Path | None


def _style_targets(loss_net, styles: list[torch.Tensor], layers: list[str], device) -> dict[str, torch.Tensor]:
    """{layer: (S, C, C)} Gram matrices of each style image (whole, at its own size)."""
    grams: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    with torch.no_grad():
        for s in styles:
            feats = loss_net.features(s[None].to(device), layers)
            for layer in layers:
                grams[layer].append(perceptual.gram_matrix(loss_net.gram_features(feats[layer]))[0])
    return {layer: torch.stack(g) for layer, g in grams.items()}


def _write_preview(net, x, styles_img, path: Path) -> None:
    """A grid: the first row the content crops (after a blank cell), then per style its image and the stylizations."""
    n, s = x.shape[0], net.styles
    was = net.training
    net.eval()
    rows = [torch.cat([torch.full_like(x[:1], 0.5), x]).cpu()]
    with torch.no_grad():
        for k in range(s):
            style = F.one_hot(torch.full((n,), k), s).float().to(x.device) if s > 1 else None
            y = net(x, style).cpu()
            rows.append(torch.cat([styles_img[k][None], y]))
    net.train(was)
    grid = torch.cat(rows).numpy()  # ((S + 1) (n + 1), 3, crop, crop)
    save_png(path, make_grid(to_uint8_images(grid, (0.0, 1.0)), nrow=n + 1))


def train(cfg: StyleConfig, *, on_step=None) -> Run:
    """Runs (or resumes) a style-transfer run; ``on_step(step, net, losses)`` after each step (tests: crash, NaN)."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    cfg, saved = resumed_config(cfg, out, resumable=RESUMABLE)
    _check(cfg)
    device = torch.device(cfg.device)

    spec = loss_network_spec(cfg)
    loss_net = perceptual.load_loss_network(spec).to(device)
    cfg = resolve(cfg, loss_net)
    content_layers = list(loss_net.check_layers(_layers(cfg.content_layers)))
    style_layers = list(loss_net.check_layers(_layers(cfg.style_layers)))
    all_layers = sorted(set(content_layers) | set(style_layers), key=loss_net.layers.index)

    named = [load_style(s, cfg.style_size) for s in split_styles(cfg.style)]
    names = [n for n, _ in named]
    if not names or len(set(names)) != len(names):
        raise ArgumentError(f"style: expected one or more styles with distinct names, got {names}")
    style_images = [x for _, x in named]
    pool, _content_names = load_content(cfg.content, cfg.content_size)  # every photo's shorter side >= crop
    grams = _style_targets(loss_net, style_images, style_layers, device)  # {layer: (S, C, C)}
    (out / "samples").mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be good

    torch.manual_seed(cfg.seed)
    net = TransformerNet(cfg.width, cfg.blocks, cfg.upsample, styles=len(names), up_norm=cfg.up_norm).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    step = 0
    if saved is not None:
        step = load_checkpoint(out, net, opt)["step"]
    write_atomic(out / "config.json", (json.dumps(asdict(cfg), indent=2) + "\n").encode())

    preview_x = random_crops(pool, cfg.preview, cfg.crop, torch.Generator().manual_seed(cfg.seed + 12345)).to(device)
    thumbs = [_center_square(s, cfg.crop) for s in style_images]
    S = len(names)

    def one_step(x: torch.Tensor, step: int) -> dict[str, float]:
        ids = (step * x.shape[0] + torch.arange(x.shape[0])) % S  # each sample takes the next style in turn
        style = F.one_hot(ids, S).float().to(device) if S > 1 else None
        y = net(x, style)  # (N, 3, crop, crop) in [0, 1]
        with torch.no_grad():
            fx = loss_net.features(x, content_layers)
        fy = loss_net.features(y, all_layers)
        l_content = sum(perceptual.feature_reconstruction_loss(fy[k], fx[k]) for k in content_layers)
        fs = {k: loss_net.gram_features(fy[k]) for k in style_layers}  # softened for efficientnet-lite0-soft
        l_style = perceptual.style_loss(fs, {k: grams[k][ids.to(device)] for k in style_layers})
        l_tv = perceptual.total_variation_loss(y)
        loss = cfg.content_weight * l_content + cfg.style_weight * l_style + cfg.tv_weight * l_tv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "content": l_content.item(), "style": l_style.item(), "tv": l_tv.item()}

    def train_step(step: int) -> dict[str, float]:
        return one_step(random_crops(pool, cfg.batch_size, cfg.crop).to(device), step)

    losses = run_steps(
        cfg, net, step, train_step, lambda step: save_checkpoint(out, net, opt, cfg, step),
        lambda step: _write_preview(net, preview_x, thumbs, out / "samples" / f"step_{step:08d}.png"),
        on_step=on_step, hint="lower --lr or the loss weights",
    )  # fmt: skip
    path = export_stylizer(net, cfg, names, loss_net.spec, out / "stylizer.onnx") if cfg.export else None
    return Run(net, cfg, names, loss_net.spec, losses, path)


def export_stylizer(net: TransformerNet, cfg: StyleConfig, styles: list[str], loss_network: str, path: Path) -> Path:
    """Exports the network (eval, CPU) as a genrt stylizer: inputs image (N, 3, H, W) [and style (N, S)]."""
    net = net.cpu().eval()
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    description = cfg.description or (
        f"Johnson et al. 2016 style transfer, {' + '.join(styles)} ({loss_network} loss network)"
    )
    meta = {
        "input_range": [0.0, 1.0],
        "output_range": [0.0, 1.0],
        "multiple": 4,
        "loss_network": loss_network,
        "config": asdict(cfg),
        "description": description,
        "content": cfg.content,
    }
    if loss_network.startswith("vgg16:"):  # which weights, without relying on the path
        meta["loss_network_sha256"] = perceptual.file_digest(loss_network[len("vgg16:") :])
    if net.styles > 1:
        meta["styles"] = styles
        inputs = (image, torch.full((1, net.styles), 1.0 / net.styles))
        names = ["image", "style"]
    else:
        meta["style"] = styles[0]
        inputs, names = (image,), ["image"]
    return genrt.export(
        net, path, inputs, kind="stylizer", metadata=meta, input_names=names, output_names=["stylized"],
        weights=cfg.export_weights,
    )  # fmt: skip


def main(argv=None) -> None:
    cfg = parse_config(
        StyleConfig,
        argv,
        prog="python -m training.style",
        example="python -m training.style --style hubble_deep_field --out runs/style-hubble --steps 40000",
    )
    try:
        train(cfg)
    except GenrtError as exc:  # bad input or a diverged run: one line, non-zero exit
        raise SystemExit(f"python -m training.style: {exc}") from None


if __name__ == "__main__":
    main()
