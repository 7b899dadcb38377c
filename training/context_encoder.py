"""python -m training.context_encoder --data photos --out runs/inpaint-photos
python -m training.context_encoder --data faces --size 32 --out runs/inpaint-faces

Context Encoders (Pathak, Krahenbuhl, Donahue, Darrell and Efros 2016): a network that fills holes in an image
from their context.

The network is the paper's: an encoder of 4x4 stride-2 convolutions (batch norm, leaky ReLU) from ``size`` down to
4x4, a channel-wise fully-connected layer (each channel's 4x4 map to a new 4x4 map, no mixing of channels, so the
bottleneck stays small) followed by a 1x1 convolution that mixes channels, and a decoder of 4x4 stride-2 transposed
convolutions (batch norm, ReLU) back to ``size``. The mask is an input (a fourth channel; white = hole), so one
network serves any mask: the paper's centre square and random regions, random rectangles and free-form strokes are
all drawn in training (MASKS). The graph itself blanks the hole before the encoder sees it, so a caller can never
leak the true pixels into the fill.

``--skip harmonic`` (the default) first fills the hole smoothly in the graph (harmonic_fill: a push-pull multigrid
solution of Laplace's equation, as good on its own as scikit-image's biharmonic inpainting) and the network learns
only the correction, as the super-resolution networks learn only what bicubic misses: far fewer steps to a given
error, which a CPU needs. Its last layer starts at a tenth of PyTorch's default (``--tail-init``; 0: zero, and the
untrained network is exactly the harmonic fill, which left photos stuck there: no gradient reaches the encoder).
``--skip biharmonic`` adds biharmonic sweeps to that fill (the gradients at the hole's border carried in, not only
the values): on photos it starts above scikit-image's biharmonic inpainting, the classic method inpaint-photos must
beat. ``--skip none`` is the paper's network, a tanh image out of the decoder.

Loss, as in the paper: L2 reconstruction over the hole and a 4-pixel band of context around it (``--overlap``),
the band weighted x10, so the fill meets its border, on the paper's scale (images in [-1, 1], the mean over the
hole and band); plus an adversarial loss from a DCGAN-style discriminator on the completed image
(``--rec-weight 0.999 --adv-weight 0.001``). Adam, lr 2e-4, beta1 0.5, as the paper.

Data (``--data``): ``photos``, Debian's wallpaper photographs (training/photos.py, the held-out ones left out),
windows at every scale from the photo's shorter side down to ``size``, mirrored; ``skimage``, crops of
scikit-image's photos and textures (training/superres.SKIMAGE) at 1-2x ``size`` resized to ``size``, mirrored;
``faces``, scikit-image's lfw_subset faces (the last HELD_OUT_FACES held out); ``digits``, scikit-learn's digits
(the last 450 held out); ``folder:PATH``. Faces and digits are few, so each is drawn shifted by up to size/16
pixels, mirrored, its contrast and brightness jittered. scikit-learn's
china.jpg and flower.jpg are the evaluation images (training/inpaint_eval.py): refused as training data, shown
in previews only.

Conventions as in training/superres.py: a config dataclass, a progress bar, preview grids, atomic checkpoints with
exact resume, an export to out/inpainter.onnx (inputs image (N, 3, size, size) in [0, 1] and mask (N, 1, size,
size), 1 = hole; output the filled image, the network's prediction at every pixel: the runtime composites).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import genrt
from genrt.errors import ArgumentError, GenrtError
from genrt.image import make_grid, save_png, write_atomic
from training import data as data_mod
from training import photos
from training.loop import parse_config, read_checkpoint, resumed_config, run_steps, write_checkpoint
from training.style import FolderImages, _refuse_evaluation_images, _resize_short, _to_tensor, skimage_sample
from training.superres import RESUMABLE, SKIMAGE, evaluation_photos  # RESUMABLE: the same fields

MASKS = ("centre", "region", "rect", "stroke")  # the kinds of training mask; see random_masks
HELD_OUT_FACES, HELD_OUT_DIGITS = data_mod.HELD_OUT_FACES, data_mod.HELD_OUT_DIGITS


@dataclass
class CEConfig:
    """Context Encoders (Pathak et al. 2016): hole filling for any mask, L2 + adversarial loss."""

    data: str = "photos"  # photos (training/photos.py), skimage (its photos), faces (lfw_subset), digits, folder:PATH
    out: str = "runs/context-encoder"  # run folder: checkpoints, samples, config.json, inpainter.onnx
    size: int = 128  # the network's window in pixels, a power of two >= 16 (the paper: 128)
    steps: int = 20000  # optimizer steps
    batch_size: int = 32  # windows per step (the paper: 64)
    width: int = 32  # channels of the first encoder layer; doubled each layer up to max_width
    max_width: int = 192  # channel cap (the paper: 512 at the bottleneck; smaller keeps the bundled file small)
    skip: str = "harmonic"  # harmonic / biharmonic: learn a correction of harmonic_fill (biharmonic=True for the
    # second); none: the paper's tanh output
    tail_init: float = 0.1  # skip harmonic: the last layer's initial weights, times PyTorch's default (0: zero)
    masks: str = "centre,region,rect,stroke"  # kinds of training mask, drawn uniformly (MASKS)
    overlap: int = 4  # context band around the hole in the loss (the paper: 4 px at 128)
    overlap_weight: float = 10.0  # loss weight of the band relative to the hole (the paper: 10)
    rec_weight: float = 0.999  # weight of the L2 reconstruction loss (the paper: 0.999)
    adv_weight: float = 0.001  # weight of the adversarial loss (the paper: 0.001; 0: L2 only)
    lr: float = 2e-4  # Adam learning rate for both networks (the paper's); cosine-decayed to lr / 10
    seed: int = 0  # seeds init, windows and masks; same seed -> same run on CPU
    ckpt_every: int = 500  # steps between checkpoints (and at the end)
    sample_every: int = 500  # steps between preview grids (and at the end)
    resume: bool = False  # continue from out/checkpoint.json if it exists
    export: bool = True  # export the network to out/inpainter.onnx at the end
    export_weights: str = "float16"  # weights in the export: float16 (half the file) or float32
    description: str = ""  # one line stored in the export's metadata ("": made from data and size)
    threads: int = 0  # torch threads (0: torch's default)
    device: str = "cpu"  # cpu or cuda
    progress: bool = True  # tqdm progress bar


# --- the networks -------------------------------------------------------------------------------------------------


def _widths(cfg_width: int, max_width: int, depth: int) -> list[int]:
    return [min(cfg_width * 2**i, max_width) for i in range(depth)]


class ChannelWiseFC(nn.Module):
    """The paper's channel-wise fully-connected layer: each channel's (h, w) map goes through its own dense layer
    to a new (h, w) map; channels are not mixed (that is the 1x1 convolution after it)."""

    def __init__(self, channels: int, positions: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels, positions, positions) / math.sqrt(positions))
        self.bias = nn.Parameter(torch.zeros(channels, 1, positions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = torch.matmul(x.reshape(n, c, 1, h * w), self.weight) + self.bias  # (N, C, 1, h w)
        return y.reshape(n, c, h, w)


_NEIGHBOURS = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]])


# The 13-point biharmonic stencil's Jacobi update: u = (8 * N4 - 2 * diagonals - N4 at distance 2) / 20. Integers,
# divided after the convolution: exact in a float16 export (0.4, 0.1 and 0.05 are not, and the sweeps add up the
# rounding: the fill shrank by 3% in a float16 export that held the divided weights).
_BIHARMONIC = torch.tensor([
    [0, 0, -1, 0, 0], [0, -2, 8, -2, 0], [-1, 8, 0, 8, -1], [0, -2, 8, -2, 0], [0, 0, -1, 0, 0],
], dtype=torch.float32)  # fmt: skip
BIHARMONIC_DAMPING = 0.5  # damped Jacobi: the plain one diverges for this stencil above 2 * 20 / 64 = 0.625


SKIPS = ("harmonic", "biharmonic", "none")  # what the network corrects: harmonic_fill, with biharmonic=True, nothing


def biharmonic_sweeps(side: int) -> int:
    """Biharmonic sweeps at a multigrid level of ``side`` pixels: many where they are cheap (the coarse levels carry
    the slow, large-scale part of the solution), few at the finest. Picked on the card's evaluation crops (centre
    holes: 25.56 dB against 24.83 for harmonic_fill alone and 24.82 for scikit-image's biharmonic inpainting)."""
    if side <= 32:
        return min(side * side, 256)
    return 64 if side <= 64 else 16


def harmonic_fill(
    image: torch.Tensor, known: torch.Tensor, iterations: int = 16, biharmonic: bool = False
) -> torch.Tensor:
    """A smooth fill of the unknown pixels: (N, C, S, S) image, (N, 1, S, S) known (1 = context), S a power of
    two -> the image with its holes filled, known pixels unchanged. Push-pull multigrid for Laplace's equation:
    each coarser level holds the mean of the known pixels below it and their share w; coarse to fine, a level
    starts from the bilinear upsampling of the one above where it knows little (v + (1 - w) up), and ``iterations``
    Jacobi sweeps (each pixel: its known mean plus (1 - w) times its neighbours' mean) smooth it. On the held-out
    crops' centre holes this measures as well as scikit-image's biharmonic inpainting (24.9 dB against 24.8; no
    sweeps, the plain push-pull: 21.5), for a few hundred small graph nodes.

    ``biharmonic``: then, at each level, damped Jacobi sweeps of the 13-point biharmonic stencil (biharmonic_sweeps)
    carry the context's gradients into the hole as well as its values (scikit-image's inpaint_biharmonic solves the
    same equation exactly; this partly converged multigrid version scored higher than it on both held-out sets:
    genrt/models/README.md), for about 5,500 more small graph nodes (three times the time per window through ONNX
    Runtime alone; genrt.load runs each run of sweeps as one genrt.FillSweeps node: genrt/runtime/fuse_sweeps.py)."""
    c = image.shape[1]
    kernel = _NEIGHBOURS.to(image).view(1, 1, 3, 3).expand(c, 1, 3, 3)
    stencil = _BIHARMONIC.to(image).view(1, 1, 5, 5).expand(c, 1, 5, 5)
    values, weights = [image * known], [known]
    while values[-1].shape[-1] > 1:
        values.append(F.avg_pool2d(values[-1], 2))
        weights.append(F.avg_pool2d(weights[-1], 2))
    fill = values[-1] / weights[-1].clamp_min(1e-6)  # (N, C, 1, 1): the mean of all known pixels
    for v, w in zip(reversed(values[:-1]), reversed(weights[:-1]), strict=True):
        fill = v + (1.0 - w) * F.interpolate(fill, size=v.shape[-2:], mode="bilinear", align_corners=False)
        for _ in range(iterations):
            fill = v + (1.0 - w) * F.conv2d(F.pad(fill, (1, 1, 1, 1), mode="replicate"), kernel, groups=c)
        for _ in range(biharmonic_sweeps(v.shape[-1]) if biharmonic else 0):
            update = F.conv2d(F.pad(fill, (2, 2, 2, 2), mode="replicate"), stencil, groups=c) / 20.0
            fill = v + (1.0 - w) * (fill + BIHARMONIC_DAMPING * (update - fill))
    return fill


def biharmonic_fill(image: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """--skip biharmonic's start: 8 harmonic sweeps per level, then the biharmonic ones (harmonic_fill)."""
    return harmonic_fill(image, known, iterations=8, biharmonic=True)


class ContextEncoder(nn.Module):
    """(image (N, 3, S, S) in [0, 1], mask (N, 1, S, S), 1 = hole) -> the prediction (N, 3, S, S) at every pixel
    (unclipped with skip="harmonic"; the export clips). The hole's pixels of ``image`` are never read."""

    def __init__(
        self, size: int = 128, width: int = 32, max_width: int = 192, skip: str = "harmonic", tail_init: float = 0.1
    ):
        super().__init__()
        if size < 16 or size & (size - 1):
            raise ArgumentError(f"size: expected a power of two >= 16 (e.g. 128), got {size}")
        if skip not in SKIPS:
            raise ArgumentError(f"skip: expected {', '.join(SKIPS)}, got {skip!r}")
        self.size, self.skip = size, skip
        depth = int(math.log2(size // 4))  # stride-2 layers down to 4x4
        ch = _widths(width, max_width, depth)
        enc: list[nn.Module] = [nn.Conv2d(4, ch[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in zip(ch[:-1], ch[1:], strict=True):
            enc += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, inplace=True)]
        self.encoder = nn.Sequential(*enc)
        self.bottleneck = nn.Sequential(
            ChannelWiseFC(ch[-1], 16), nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(ch[-1], ch[-1], 1)
        )
        dec: list[nn.Module] = []
        rev = ch[::-1]
        for a, b in zip(rev[:-1], rev[1:], strict=True):
            dec += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        self.decoder = nn.Sequential(*dec, nn.ConvTranspose2d(rev[-1], 3, 4, 2, 1))
        if skip != "none":  # the correction starts small: the untrained network is about the smooth fill
            # Small, not zero by default (the super-resolution networks' is zero): a zero last layer passes no
            # gradient to the layers before it, and on photos, unlike faces, random features predict no consistent
            # correction, so it stayed at zero (1e-4 after 300 steps) and the network never left the fill.
            with torch.no_grad():
                self.decoder[-1].weight.mul_(tail_init)
                nn.init.zeros_(self.decoder[-1].bias)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        known = 1.0 - mask
        if self.skip == "harmonic":
            base = harmonic_fill(image, known)
        elif self.skip == "biharmonic":
            base = biharmonic_fill(image, known)
        else:
            base = image * known + 0.5 * mask  # the paper fills the hole with the mean colour
        h = self.decoder(self.bottleneck(self.encoder(torch.cat([base * 2.0 - 1.0, mask], 1))))
        if self.skip == "none":
            return (torch.tanh(h) + 1.0) / 2.0
        return base + h


class Discriminator(nn.Module):
    """DCGAN-style: 4x4 stride-2 convolutions (batch norm, leaky ReLU) down to 4x4, then one logit."""

    def __init__(self, size: int = 128, width: int = 32, max_width: int = 192):
        super().__init__()
        ch = _widths(width, max_width, int(math.log2(size // 4)))
        layers: list[nn.Module] = [nn.Conv2d(3, ch[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in zip(ch[:-1], ch[1:], strict=True):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, inplace=True)]
        self.net = nn.Sequential(*layers, nn.Conv2d(ch[-1], 1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2.0 - 1.0).flatten(1)  # (N, 1)


# --- masks --------------------------------------------------------------------------------------------------------


def centre_mask(size: int) -> torch.Tensor:
    """The paper's hole: the centre square of half the side (64x64 at 128), (1, size, size)."""
    m = torch.zeros(1, size, size)
    q = size // 4
    m[:, q : size - q, q : size - q] = 1.0
    return m


def _region(size: int) -> torch.Tensor:
    """A random blob: smooth noise thresholded to cover 10-35% of the window (the paper's random regions were
    PASCAL segmentation shapes; these are blobs of a similar size)."""
    coarse = torch.randn(1, 1, 4, 4)
    noise = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]
    cover = 0.10 + 0.25 * float(torch.rand(()))
    return (noise >= torch.quantile(noise.flatten(), 1.0 - cover)).float()


def _rects(size: int) -> torch.Tensor:
    """One to three random rectangles, each side 1/8 to 1/2 of the window."""
    m = torch.zeros(1, size, size)
    for _ in range(int(torch.randint(1, 4, ()))):
        h, w = (int(v) for v in torch.randint(size // 8, size // 2 + 1, (2,)))
        top, left = int(torch.randint(size - h + 1, ())), int(torch.randint(size - w + 1, ()))
        m[:, top : top + h, left : left + w] = 1.0
    return m


def _strokes(size: int) -> torch.Tensor:
    """One to four free-form brush strokes (random polylines 1/32 to 1/10 of the window wide)."""
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    m = torch.zeros(size, size, dtype=torch.bool)
    for _ in range(int(torch.randint(1, 5, ()))):
        radius = size * (1 / 64 + float(torch.rand(())) * (1 / 20 - 1 / 64))
        p = torch.rand(2) * size
        angle = float(torch.rand(())) * 2 * math.pi
        for _ in range(int(torch.randint(2, 6, ()))):
            angle += float(torch.randn(())) * 0.8
            length = size * (0.1 + 0.25 * float(torch.rand(())))
            q = (p + length * torch.tensor([math.sin(angle), math.cos(angle)])).clamp(0, size - 1)
            d = q - p  # distance of every pixel to the segment p-q
            t = (((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / d.dot(d).clamp_min(1e-6)).clamp(0, 1)
            m |= (yy - p[0] - t * d[0]) ** 2 + (xx - p[1] - t * d[1]) ** 2 <= radius**2
            p = q
    return m[None].float()


_MAKERS = {"centre": centre_mask, "region": _region, "rect": _rects, "stroke": _strokes}


def random_masks(n: int, size: int, kinds: tuple[str, ...] = MASKS) -> torch.Tensor:
    """(n, 1, size, size) masks (1 = hole), each of a kind drawn uniformly from ``kinds`` (torch's global RNG)."""
    return torch.stack([_MAKERS[kinds[int(torch.randint(len(kinds), ()))]](size) for _ in range(n)])


def loss_weights(mask: torch.Tensor, overlap: int, overlap_weight: float) -> torch.Tensor:
    """Per-pixel weights of the reconstruction loss: 1 in the hole, ``overlap_weight`` in the band of context
    within ``overlap`` pixels of it (the paper's overlap), 0 elsewhere."""
    if overlap <= 0:
        return mask
    grown = F.max_pool2d(mask, 2 * overlap + 1, stride=1, padding=overlap)
    return mask + overlap_weight * (grown - mask)


# --- data ---------------------------------------------------------------------------------------------------------


class Windows:
    """Training windows (size x size, RGB in [0, 1]) from the data source; ``draw(n)`` uses torch's global RNG."""

    def __init__(self, spec: str, size: int):
        self.spec, self.size = spec, size
        self.fixed: torch.Tensor | None = None  # (N, 3, size, size) for faces and digits
        self.pool = None  # photos: a list or FolderImages of (3, H, W)
        if spec == "skimage":
            self.pool = [skimage_sample(name) for name in SKIMAGE]
            _refuse_evaluation_images(self.pool, list(SKIMAGE), "training photo")
        elif spec == "photos":
            self.pool = photos.load("train")
        elif spec.startswith("folder:"):
            self.pool = FolderImages(Path(spec[len("folder:") :]).expanduser(), 0)
        elif spec in ("faces", "digits"):
            self.fixed = training_set(spec, size)
        else:
            raise data_mod.DataError(f"data: expected photos, skimage, faces, digits or folder:PATH, got {spec!r}")

    def draw(self, n: int) -> torch.Tensor:
        if self.fixed is not None:  # a few hundred images: each drawn shifted, mirrored, its contrast jittered
            s, p = self.size, max(1, self.size // 16)
            x = F.pad(self.fixed[torch.randint(len(self.fixed), (n,))], (p,) * 4, mode="reflect")
            shifts = torch.randint(2 * p + 1, (n, 2))
            x = torch.stack([x[i, :, dy : dy + s, dx : dx + s] for i, (dy, dx) in enumerate(shifts.tolist())])
            flip = torch.rand(n) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            gain, offset = 0.8 + 0.4 * torch.rand(n, 1, 1, 1), 0.1 * (torch.rand(n, 1, 1, 1) - 0.5)
            return ((x - 0.5) * gain + 0.5 + offset).clamp(0, 1)
        if isinstance(self.pool, photos.Photos):  # large photos: windows at every scale
            return photos.random_crops(self.pool, n, self.size, rotate=False)
        out = []
        s = self.size
        for _ in range(n):
            img = self.pool[int(torch.randint(len(self.pool), ()))]
            h, w = img.shape[-2:]
            if min(h, w) < s:  # small photos: upscaled to fit
                f = s / min(h, w)
                img = F.interpolate(img[None], size=(max(s, round(h * f)), max(s, round(w * f))), mode="bicubic",
                                    align_corners=False)[0].clamp(0, 1)  # fmt: skip
                h, w = img.shape[-2:]
            side = int(torch.randint(s, min(2 * s, h, w) + 1, ()))  # 1-2x the window: the runtime resizes too
            top, left = int(torch.randint(h - side + 1, ())), int(torch.randint(w - side + 1, ()))
            c = img[:, top : top + side, left : left + side]
            if side != s:
                c = F.interpolate(c[None], size=(s, s), mode="bilinear", align_corners=False, antialias=True)[0]
            out.append(c.flip(-1) if bool(torch.rand(()) < 0.5) else c)
        return torch.stack(out).clamp(0, 1)


def _faces_and_digits(spec: str, size: int) -> torch.Tensor:
    """All of lfw_subset's 100 faces or scikit-learn's 1797 digits, (N, 3, size, size) in [0, 1], in order."""
    x = data_mod.load(spec, size).images  # [-1, 1], faces with mirrors appended
    if spec == "faces":
        x = x[: len(x) // 2]
    return ((x + 1.0) / 2.0).expand(-1, 3, -1, -1).contiguous()


def training_set(spec: str, size: int) -> torch.Tensor:
    held = HELD_OUT_FACES if spec == "faces" else HELD_OUT_DIGITS
    return _faces_and_digits(spec, size)[:-held]


def held_out_set(spec: str, size: int) -> torch.Tensor:
    """The held-out faces or digits: never trained on, used by the evaluation and the previews."""
    held = HELD_OUT_FACES if spec == "faces" else HELD_OUT_DIGITS
    return _faces_and_digits(spec, size)[-held:]


def evaluation_crops(size: int = 128) -> torch.Tensor:
    """Held-out windows of scikit-learn's china.jpg and flower.jpg (never trained on): a 3 x 5 grid of size x size
    crops of each photo at its own resolution, (30, 3, size, size) in [0, 1]."""
    crops = []
    for photo in evaluation_photos():
        x = _to_tensor(photo)
        h, w = x.shape[-2:]
        for top in np.linspace(0, h - size, 3).round().astype(int):
            for left in np.linspace(0, w - size, 5).round().astype(int):
                crops.append(x[:, top : top + size, left : left + size])
    return torch.stack(crops)


def held_out_photo_crops(size: int = 128, side: int = 427) -> torch.Tensor:
    """The second held-out set: windows of training.photos.HELD_OUT (never trained on, unlike the evaluation photos
    also never tuned on), each photo resized to a shorter side of ``side`` (china.jpg's 427: the same scale of
    detail per window) and cut into a 3 x 5 grid of size x size crops, (60, 3, size, size) in [0, 1]."""
    crops = []
    pool = photos.load("held-out")
    for i in range(len(pool)):
        x = _resize_short(pool[i], side)
        h, w = x.shape[-2:]
        for top in np.linspace(0, h - size, 3).round().astype(int):
            for left in np.linspace(0, w - size, 5).round().astype(int):
                crops.append(x[:, top : top + size, left : left + size])
    return torch.stack(crops)


def preview_windows(spec: str, size: int) -> torch.Tensor:
    """Held-out windows for the preview grids: evaluation crops for photos and folders, held-out faces or digits."""
    if spec in ("faces", "digits"):
        return held_out_set(spec, size)[:8]
    return evaluation_crops(size)[[1, 7, 12, 16, 22, 27]] if size <= 128 else evaluation_crops(size)[:4]


# --- training -----------------------------------------------------------------------------------------------------


def _check(cfg: CEConfig) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in cfg.masks.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(MASKS))
    if not kinds or unknown:
        raise ArgumentError(f"masks: expected some of {', '.join(MASKS)}, got {cfg.masks!r}")
    if cfg.batch_size < 2 or cfg.steps < 1 or cfg.ckpt_every < 1 or cfg.sample_every < 1:
        raise ArgumentError("batch_size (>= 2: batch norm), steps, ckpt_every, sample_every: expected positive")
    if cfg.export_weights not in ("float16", "float32"):
        raise ArgumentError(f"export_weights: expected float16 or float32, got {cfg.export_weights!r}")
    if cfg.rec_weight <= 0 or cfg.adv_weight < 0 or cfg.overlap < 0 or cfg.overlap_weight < 0:
        raise ArgumentError("rec_weight > 0, adv_weight >= 0, overlap >= 0, overlap_weight >= 0 expected")
    ContextEncoder(cfg.size, cfg.width, cfg.max_width, cfg.skip, cfg.tail_init)  # bad size or skip fails here
    return kinds


@dataclass
class Run:
    """What :func:`train` returns."""

    net: ContextEncoder
    cfg: CEConfig
    losses: dict[str, float]
    export: Path | None


def complete(net: ContextEncoder, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The image with its hole replaced by the network's prediction (no blending), clipped to [0, 1]."""
    return torch.where(mask > 0.5, net(image, mask).clamp(0, 1), image)


def _write_preview(net: ContextEncoder, x: torch.Tensor, path: Path) -> None:
    """Rows of held-out windows: with the centre hole, filled; with strokes, filled; the truth."""
    was = net.training
    net.eval()
    g = torch.get_rng_state()
    torch.manual_seed(1)
    masks = [centre_mask(net.size).expand(len(x), -1, -1, -1), random_masks(len(x), net.size, ("stroke",))]
    torch.set_rng_state(g)
    cells = []
    with torch.no_grad():
        for m in masks:
            cells += [torch.where(m > 0.5, torch.ones_like(x), x), complete(net, x, m)]
    net.train(was)
    grid = torch.stack([*cells, x], dim=1).flatten(0, 1)  # (rows * 5, 3, S, S)
    save_png(path, make_grid((grid * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), nrow=5))


def train(cfg: CEConfig, *, on_step=None) -> Run:
    """Runs (or resumes) a context-encoder run; ``on_step(step, net, losses)`` after each step (tests)."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    cfg, saved = resumed_config(cfg, out, resumable=RESUMABLE)
    kinds = _check(cfg)
    device = torch.device(cfg.device)
    windows = Windows(cfg.data, cfg.size)
    (out / "samples").mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be good

    torch.manual_seed(cfg.seed)
    net = ContextEncoder(cfg.size, cfg.width, cfg.max_width, cfg.skip, cfg.tail_init).to(device)
    disc = Discriminator(cfg.size, cfg.width, cfg.max_width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    step = 0
    if saved is not None:
        step = read_checkpoint(out, {"net": net, "disc": disc}, {"opt": opt, "opt_d": opt_d})["step"]
    write_atomic(out / "config.json", (json.dumps(asdict(cfg), indent=2) + "\n").encode())
    preview = preview_windows(cfg.data, cfg.size).to(device)

    def train_step(step: int) -> dict[str, float]:
        for o in (opt, opt_d):  # cosine decay from lr to lr / 10
            for group in o.param_groups:
                group["lr"] = cfg.lr * (0.55 + 0.45 * math.cos(math.pi * step / cfg.steps))
        x = windows.draw(cfg.batch_size).to(device)
        m = random_masks(cfg.batch_size, cfg.size, kinds).to(device)
        y = net(x, m)
        filled = torch.where(m > 0.5, y, x)
        w = loss_weights(m, cfg.overlap, cfg.overlap_weight)
        # The paper's scale: images in [-1, 1] (so 4x the squared error in [0, 1]), the weighted squared error
        # averaged over the hole and its band; the adversarial weight of 0.001 is relative to that.
        rec = 4.0 * (w * (y - x) ** 2).sum() / (3.0 * (w > 0).sum())
        losses = {"rec": rec}
        loss = cfg.rec_weight * rec
        if cfg.adv_weight > 0:
            ones = torch.ones(cfg.batch_size, 1, device=device)
            d_real, d_fake = disc(x), disc(filled.detach())
            loss_d = F.binary_cross_entropy_with_logits(d_real, ones) + F.binary_cross_entropy_with_logits(
                d_fake, torch.zeros_like(ones)
            )
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            adv = F.binary_cross_entropy_with_logits(disc(filled), ones)
            loss = loss + cfg.adv_weight * adv
            losses |= {"adv": adv, "d": loss_d}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {k: v.item() for k, v in losses.items()}

    def save(step: int) -> None:
        meta = {"rng": "torch.manual_seed(step_seed(config.seed, 0, step)) before each step", "config": asdict(cfg)}
        write_checkpoint(out, {"net": net, "disc": disc}, {"opt": opt, "opt_d": opt_d}, step=step, meta=meta)

    losses = run_steps(
        cfg, net, step, train_step, save,
        lambda step: _write_preview(net, preview, out / "samples" / f"step_{step:08d}.png"),
        on_step=on_step, hint="lower --lr",
    )  # fmt: skip
    path = export_inpainter(net, cfg, out / "inpainter.onnx") if cfg.export else None
    return Run(net, cfg, losses, path)


class _Exported(nn.Module):
    """The network as exported: the mask thresholded at 0.5 and the output clipped to [0, 1]."""

    def __init__(self, net: ContextEncoder):
        super().__init__()
        self.net = net

    def forward(self, image, mask):
        return self.net(image, (mask > 0.5).to(image.dtype)).clamp(0.0, 1.0)


def export_inpainter(net: ContextEncoder, cfg: CEConfig, path: Path) -> Path:
    """Exports the network (eval, CPU) as a genrt inpainter: (image, mask) -> filled, all (N, *, size, size)."""
    net = net.cpu().eval()
    meta = {
        "size": cfg.size,
        "input_range": [0.0, 1.0],
        "output_range": [0.0, 1.0],
        "config": asdict(cfg),
        "description": cfg.description or f"Context encoder (Pathak et al. 2016), {cfg.data}, {cfg.size}x{cfg.size}",
    }
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, cfg.size, cfg.size, generator=g)
    mask = centre_mask(cfg.size).expand(2, -1, -1, -1).contiguous()
    # atol: ORT and torch round the harmonic fill's hundred small convolutions apart, by up to 2e-4 (a grey level
    # is 4e-3)
    return genrt.export(
        _Exported(net), path, (image, mask), kind="inpainter", metadata=meta, input_names=["image", "mask"],
        output_names=["filled"], weights=cfg.export_weights, atol=1e-3,
    )  # fmt: skip


def main(argv=None) -> None:
    cfg = parse_config(
        CEConfig,
        argv,
        prog="python -m training.context_encoder",
        example="python -m training.context_encoder --data photos --out runs/inpaint-photos --steps 20000",
    )
    try:
        train(cfg)
    except GenrtError as exc:
        raise SystemExit(f"python -m training.context_encoder: {exc}") from None


if __name__ == "__main__":
    main()
