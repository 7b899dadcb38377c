"""Any ONNX model as a first-class genrt application model: `genrt adopt` and ``genrt.load(path, kind=...)``.

genrt's own exports say in their metadata what they are (genrt.runtime.metadata). A model exported elsewhere (a
Real-ESRGAN upscaler, Magenta's 26-style network) says nothing, so genrt's apps would refuse it. :func:`describe`
works out that metadata: what the graph says (its image input, a stylizer's style input and style count, an
upscaler's scale, a stylizer's stride, an inpainter's window) is read off it, what it cannot say (the kind, the
value range, the channel order) is what the user gives, and one small probe run checks the lot: the output must be
an image of the expected size whose values lie in the declared range, so a wrong guess fails with a message, never
a wrong picture. :func:`adopt` writes the result into a copy of the file, after which the model needs no flags.
torch-free: this is a metadata rewrite.

Example::

    genrt adopt RealESRGAN_x4plus.onnx --kind upscaler -o realesrgan-x4.onnx   # scale read off the graph: 4
    genrt adopt multistyle26.onnx --kind stylizer -o magenta26.onnx             # 26 styles, named 0 to 25
    genrt stylize magenta26.onnx photo.jpg --style 3=0.5,12=0.5 -o mixed.jpg
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import onnx

from genrt.errors import ArgumentError, InvalidModelError
from genrt.runtime import metadata as md

ADOPTABLE = ("stylizer", "upscaler", "inpainter")
NAMED_RANGES = {"0-1": [0.0, 1.0], "0-255": [0.0, 255.0], "-1-1": [-1.0, 1.0]}
CHANNEL_ORDERS = ("RGB", "BGR")
_PROBE = 64  # pixels of the probe image (an upscaler's: 32)
_SPREAD = 0.25  # a probe output may stray this far (of the range's span) outside the declared output range
_INSIDE = 0.95  # ... in this share of its values at least
_USED = 0.05  # and its values must spread over this share of the range at least (a 0-1 output read as 0-255 fails)


def parse_range(text, name: str = "range") -> list[float]:
    """ "0-1", "0-255", "-1-1" (also "-1..1"), or "LO,HI" -> [lo, hi]; ArgumentError naming `name` otherwise."""
    if isinstance(text, list | tuple) and len(text) == 2:
        lo, hi = text
    else:
        key = str(text).strip().replace("..", "-").replace(" ", "")
        if key in NAMED_RANGES:
            return list(NAMED_RANGES[key])
        m = re.fullmatch(r"([^,]+),([^,]+)", key)
        lo, hi = m.groups() if m else (None, None)
    try:
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        lo = hi = math.nan
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ArgumentError(f"{name}: expected 0-1, 0-255, -1-1 or LO,HI with LO < HI, got {text!r}")
    return [lo, hi]


def _inputs(model: onnx.ModelProto) -> list[tuple[str, list]]:
    """(name, dims: ints or None for dynamic) of each graph input that is not an initializer."""
    inits = {t.name for t in model.graph.initializer}
    out = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in value.type.tensor_type.shape.dim]  # fmt: skip
        out.append((value.name, dims))
    return out


def describe(
    model: onnx.ModelProto,
    path,
    *,
    kind: str | None = None,
    input_range=None,
    output_range=None,
    channel_order: str | None = None,
    style_input: str | None = None,
    styles=None,
    scale: int | None = None,
) -> dict:
    """The model's genrt metadata with what is given filled in (given values win over the file's), and what the
    graph says read off it and checked by one probe run. With nothing given, the file's own metadata.

    Raises ArgumentError for a kind genrt cannot adopt or a bad value, InvalidModelError where the graph does not
    fit the kind (no image input, an output that is not an image, a scale other than the one given, an output
    outside the declared range).
    """
    from genrt.runtime.onnx_session import onnx_metadata

    meta = dict(onnx_metadata(model, path))
    given = {
        k: v
        for k, v in dict(
            kind=kind, input_range=input_range, output_range=output_range, channel_order=channel_order,
            style_input=style_input, styles=styles, scale=scale,
        ).items()
        if v is not None
    }  # fmt: skip
    if not given:
        return meta
    kind = given.get("kind", meta.get("kind"))
    if kind not in ADOPTABLE:
        raise ArgumentError(f"kind: genrt adopts {', '.join(ADOPTABLE)} models, got {kind!r}")
    out = dict(meta, kind=kind)
    if "input_range" in given:
        out["input_range"] = parse_range(given["input_range"], "input_range")
    out.setdefault("input_range", [0.0, 1.0])
    if "output_range" in given:
        out["output_range"] = parse_range(given["output_range"], "output_range")
    out.setdefault("output_range", list(out["input_range"]))
    order = given.get("channel_order", out.get("channel_order", "RGB"))
    if not isinstance(order, str) or order.upper() not in CHANNEL_ORDERS:
        raise ArgumentError(f"channel_order: expected RGB or BGR, got {order!r}")
    out["channel_order"] = order.upper()

    inputs = _inputs(model)
    images = [(n, d) for n, d in inputs if len(d) == 4 and d[1] in (3, None)]
    if not images:
        shown = ", ".join(f"{n} {d}" for n, d in inputs)
        raise InvalidModelError(f"{path}: a {kind} needs an image input (N, 3, H, W); its inputs are {shown}")
    image = images[0][0]
    if image != inputs[0][0]:
        out["image_input"] = image
    others = [(n, d) for n, d in inputs if n != image]
    probe = _Probe(model, path, image)
    if kind == "stylizer":
        _stylizer(out, given, others, path)
        out["multiple"] = int(meta.get("multiple") or probe.multiple(out))
    elif kind == "upscaler":
        if others:
            raise InvalidModelError(f"{path}: an upscaler takes one input, the image; it also has {others[0][0]!r}")
    else:
        _inpainter(out, others, images[0][1], path)
    out["scale"] = probe.check(out, given.get("scale"))
    if kind != "upscaler":
        out.pop("scale")
    out.setdefault("adopted_from", Path(str(path)).name)
    out.setdefault("description", f"{kind} adopted from {Path(str(path)).name}")
    return md.validate(out, path)


def _stylizer(out: dict, given: dict, others: list, path) -> None:
    """The style input and style names of a (multi-style) stylizer, into `out`."""
    name = given.get("style_input", out.get("style_input"))
    if name is None and len(others) == 1:
        name = others[0][0]
    if name is None and others:
        raise ArgumentError(
            f"style_input: {path} has several inputs besides the image ({', '.join(n for n, _ in others)}); "
            "say which holds the style weights"
        )
    if name is None:
        out.pop("styles", None)
        return
    dims = dict(others).get(name)
    if dims is None:
        raise ArgumentError(f"style_input: {path} has no input {name!r} (inputs: {', '.join(n for n, _ in others)})")
    if len(dims) not in (1, 2) or (len(dims) == 2 and dims[0] not in (1, None)):
        raise InvalidModelError(f"{path}: style input {name!r} has shape {dims}; expected (styles,) or (1, styles)")
    if len(others) > 1:
        raise InvalidModelError(
            f"{path}: besides the image and {name!r} it has inputs genrt would not know how to feed"
        )
    count = dims[-1]
    styles = given.get("styles", out.get("styles"))
    if isinstance(styles, str):
        styles = [s.strip() for s in styles.split(",")]
    if styles is None:
        if count is None:
            raise ArgumentError(f"styles: the style input {name!r} has no fixed size; name the styles")
        styles = [str(i) for i in range(count)]
    if count is not None and len(styles) != count:
        raise ArgumentError(f"styles: {len(styles)} names for the {count} styles of {name!r}")
    if len(set(styles)) != len(styles) or not all(styles):
        raise ArgumentError(f"styles: names must be distinct and not empty, got {styles}")
    out["style_input"], out["styles"] = name, list(styles)


def _inpainter(out: dict, others: list, image_dims: list, path) -> None:
    masks = [n for n, d in others if len(d) == 4 and d[1] in (1, None)]
    if len(others) != 1 or not masks:
        raise InvalidModelError(f"{path}: an inpainter takes an image and a mask (N, 1, H, W); its other inputs are "
                                f"{', '.join(n for n, _ in others) or 'none'}")  # fmt: skip
    out["mask_input"] = masks[0]
    side = out.get("size") or (image_dims[2] if image_dims[2] == image_dims[3] else None)
    if not side:
        raise InvalidModelError(f"{path}: an inpainter's window must be square and fixed, got {image_dims[2:]}")
    out["size"] = int(side)


class _Probe:
    """Runs the plain graph in ONNX Runtime on small smooth images (no genrt kernels: nothing to choose yet)."""

    def __init__(self, model: onnx.ModelProto, path, image: str):
        import onnxruntime as ort

        from genrt.runtime.onnx_session import Session, _log_severity

        options = ort.SessionOptions()
        options.log_severity_level = _log_severity()
        options.intra_op_num_threads = 1
        try:
            self._session = Session(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            from genrt.runtime.onnx_session import describe_ort_error

            raise InvalidModelError(f"{path}: onnxruntime cannot load this model: {describe_ort_error(exc)}") from None
        self._path, self._image = path, image
        from genrt.runtime.onnx_session import io_specs

        self._inputs = {spec.name: spec for spec in io_specs(self._session.get_inputs(), path)}

    def _feeds(self, meta: dict, h: int, w: int) -> dict:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        planes = [0.5 + 0.4 * np.sin(xx / 7 + c) * np.cos(yy / 5 - c) for c in range(3)]  # smooth, every level
        lo, hi = meta["input_range"]
        feeds = {self._image: (np.stack(planes)[None] * np.float32(hi - lo) + np.float32(lo)).astype(np.float32)}
        if meta.get("style_input"):
            n = len(meta["styles"])
            rank = len(self._inputs[meta["style_input"]].shape)
            feeds[meta["style_input"]] = np.full((n,) if rank == 1 else (1, n), 1.0 / n, np.float32)
        if meta.get("mask_input"):
            mask = np.zeros((1, 1, h, w), np.float32)
            mask[:, :, h // 4 : h // 2, w // 4 : w // 2] = 1
            feeds[meta["mask_input"]] = mask
        return feeds

    def run(self, meta: dict, h: int, w: int) -> np.ndarray:
        from genrt.runtime.onnx_session import describe_ort_error

        try:
            y = self._session.run(None, self._feeds(meta, h, w))[0]
        except Exception as exc:
            raise InvalidModelError(
                f"{self._path}: it does not run on a {h}x{w} image as a {meta['kind']}: {describe_ort_error(exc)}"
            ) from None
        return np.asarray(y)

    def multiple(self, meta: dict) -> int:
        """The smallest m (a power of two) such that an image whose sides are multiples of m keeps its size."""
        for m in (1, 2, 4, 8, 16, 32, 64):
            try:
                y = self.run(meta, _PROBE + m, _PROBE + 2 * m)
            except InvalidModelError:
                continue
            if y.ndim == 4 and y.shape[2:] == (_PROBE + m, _PROBE + 2 * m):
                return m
        raise InvalidModelError(f"{self._path}: its output never has its input's size; is it a stylizer?")

    def check(self, meta: dict, scale) -> int:
        """The output's scale over the input, checked: an image, of the kind's size, in the declared range."""
        kind = meta["kind"]
        side = meta["size"] if kind == "inpainter" else _PROBE // 2 if kind == "upscaler" else _PROBE
        side += -side % int(meta.get("multiple", 1))
        y = self.run(meta, side, side)
        if y.ndim != 4 or y.shape[:2] != (1, 3) or y.shape[2] != y.shape[3] or y.shape[2] % side:
            raise InvalidModelError(
                f"{self._path}: not an image-to-image model: a (1, 3, {side}, {side}) image gives {y.shape}"
            )
        found = y.shape[2] // side
        if kind == "upscaler":
            if scale is not None and int(scale) != found:
                raise InvalidModelError(f"{self._path}: scale {scale} given, but it makes images {found}x larger")
            if found < 2:
                raise InvalidModelError(f"{self._path}: not an upscaler: its output has its input's size")
        elif found != 1:
            raise InvalidModelError(f"{self._path}: not a {kind}: its output is {found}x its input's size")
        if not np.isfinite(y).all():
            raise InvalidModelError(f"{self._path}: its output on a test image is not finite (NaN or infinite)")
        lo, hi = meta["output_range"]
        span = hi - lo
        inside = np.mean((y >= lo - _SPREAD * span) & (y <= hi + _SPREAD * span))
        if inside < _INSIDE:
            raise InvalidModelError(
                f"{self._path}: on a test image in its input range {meta['input_range']} its output spans "
                f"[{float(y.min()):.4g}, {float(y.max()):.4g}], not the output range {meta['output_range']}; "
                "give the right input and output ranges (0-1, 0-255, -1-1)"
            )
        spread = np.percentile(y, 99) - np.percentile(y, 1)
        if spread < _USED * span:
            raise InvalidModelError(
                f"{self._path}: on a test image in its input range {meta['input_range']} its output spans only "
                f"[{float(y.min()):.4g}, {float(y.max()):.4g}] of the output range {meta['output_range']}; "
                "give the right input and output ranges (0-1, 0-255, -1-1)"
            )
        return found


def adopt(path, output, **given) -> Path:
    """Writes a copy of the ONNX model at `path` to `output` with genrt metadata (see :func:`describe`); returns
    `output`. The copy is written atomically and never over `path`."""
    from genrt.image import write_atomic
    from genrt.runtime import files
    from genrt.runtime.onnx_session import load_onnx

    source = files.resolve(path)
    if files.sniff(source) != "onnx":
        raise ArgumentError(f"{source}: genrt adopts ONNX files (.onnx); export other formats to ONNX first")
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ArgumentError(f"output: expected a .onnx path, got {output.name!r}")
    if output.exists() and output.resolve() == source.resolve():
        raise ArgumentError(f"output: refusing to write over the model itself ({source}); give another path")
    if not output.parent.is_dir():
        raise ArgumentError(f"output: folder {output.parent} does not exist")
    model = load_onnx(source)
    meta = describe(model, source, **given)
    kept = [p for p in model.metadata_props if not p.key.startswith(md.PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, text in md.encode(meta).items():
        model.metadata_props.add(key=key, value=text)
    if model.ByteSize() >= (1 << 31) - 1:
        raise ArgumentError(f"{source}: over 2 GB; genrt adopt writes single-file ONNX models")
    write_atomic(output, model.SerializeToString())
    return output
