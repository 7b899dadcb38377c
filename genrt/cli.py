"""The `genrt` command.

genrt info dcgan-digits
genrt sample dcgan-digits -n 64 --seed 0 -o grid.png
genrt models
genrt edit igan-digits photo.png --port 8765
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

import genrt
from genrt import batch, distributed, importers, pipes
from genrt.errors import ArgumentError, GenrtError, printable


def _cmd_info(args) -> None:
    from genrt.runtime.onnx_session import ort_ops_library

    model = genrt.load(args.model, threads=args.threads, precision=args.precision)
    for text in args.input_shape or []:
        model.prepare(*[_shape(part) for part in text.split(";")])
    print(f"model:   {model.path}")
    print(f"format:  {model.format}")
    print(f"kind:    {model.kind or '(no genrt metadata)'}")
    for title, specs in (("inputs:", model.inputs), ("outputs:", model.outputs)):
        print(title)
        for spec in specs:
            print(f"  {spec}")
    if getattr(model, "kind", None) == "upscaler":
        field = model.receptive_field
        print(f"scale:   x{model.scale}")
        print(f"receptive field: {field if field is not None else 'unknown'} input pixels each side "
              "(seamless tiles need --tile-pad at least this)")  # fmt: skip
    if getattr(model, "kind", None) == "inpainter":
        print(f"window:  {model.size}x{model.size} (each hole gets a context window of twice its width, resized to "
              "this)")  # fmt: skip
    if model.format == "onnx":
        kernels = model.kernels
        chosen = kernels.pop("precision", None)
        print(f"genrt kernels: {', '.join(f'{op} ({how})' for op, how in kernels.items()) or 'none used'}")
        if chosen:
            print(f"precision: {chosen}")
        print(f"genrt ORT library: {ort_ops_library() or 'not built'}; cpu isa: {genrt.kernels.cpu_isa()}")
    print("metadata:")
    for key, value in sorted(model.metadata.items()):
        text = json.dumps(value) if not isinstance(value, str) else value
        print(f"  {key}: {text if len(text) <= 100 else text[:97] + '...'}")


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(","))
    except ValueError:
        dims = ()
    if not dims or min(dims) < 0:
        raise ArgumentError(f"--input-shape: expected sizes such as 1,3,256,256, got {text!r}")
    return dims


def _cmd_sample(args) -> None:
    model, write = _load_generator(args)
    write(model.sample(args.n, seed=args.seed), args.nrow)


def _load_generator(args):
    from genrt.image import make_grid, save_png

    out = Path(args.output)
    if not out.parent.is_dir():
        raise ArgumentError(f"--output: folder {out.parent} does not exist")
    if out.suffix.lower() != ".png":
        raise ArgumentError(f"--output: expected a .png path, got {out.name!r}")
    model = genrt.load(args.model, threads=args.threads)
    if out.exists() and out.resolve() == Path(model.path).resolve():
        raise ArgumentError("--output: refusing to overwrite the model file")

    def write(images, nrow):
        save_png(out, make_grid(images, nrow=nrow))
        print(f"wrote {out}")

    return model, write


def _indices(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise ArgumentError(f"{name}: expected comma-separated sample indices such as 3,7,12, got {text!r}")
    return values


_MAX_FRAMES = 4096  # images in one grid from `genrt walk`: points x steps grows as a product


def _cmd_walk(args) -> None:
    frames = (args.points - 1) * (args.steps - 1) + 1
    if frames > _MAX_FRAMES:
        raise ArgumentError(
            f"--points {args.points} --steps {args.steps}: {frames} frames, over {_MAX_FRAMES} in one picture"
        )
    model, write = _load_generator(args)
    frames = model.walk(model.latents(args.points, seed=args.seed), args.steps, method=args.method)
    write(frames, args.steps - 1)


def _cmd_arithmetic(args) -> None:
    model, write = _load_generator(args)
    groups = [_indices(text, flag) for text, flag in ((args.a, "--a"), (args.b, "--b"), (args.c, "--c"))]
    count = max(max(g) for g in groups) + 1
    z = model.latents(max(count, 1), seed=args.seed)
    a, b, c = (z[g] for g in groups)
    means = model.generate(np.stack([a.mean(0), b.mean(0), c.mean(0)]))
    result = model.arithmetic(a, b, c, variants=args.variants, noise=args.noise, seed=args.seed)
    write(np.concatenate([means, result]), 3 + 1 + args.variants)


def _style_weights(text: str | None):
    """--style retina  or  --style brick=0.7,retina=0.3 (weights finite and >= 0; the model checks the names)"""
    if text is None or "=" not in text:
        return text
    weights = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight < 0 or not name.strip() or name.strip() in weights:
            raise ArgumentError(
                f"--style: expected NAME or NAME=WEIGHT,... with each name once and finite weights >= 0, got {text!r}"
            )
        weights[name.strip()] = weight
    return weights


def _number(kind, low, high=None, *, low_open=False):
    """An argparse type: a finite number of `kind` (int or float) in [low, high] ((low, high] with low_open)."""

    def parse(text: str):
        try:
            value = kind(text.strip())
        except (ValueError, OverflowError):
            value = None
        if kind is float and value is not None and not math.isfinite(value):
            value = None
        ok = value is not None and (value > low if low_open else value >= low) and (high is None or value <= high)
        if not ok:
            what = "a whole number" if kind is int else "a number"
            bounds = f"in ({low}, {high}]" if low_open else f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected {what} {bounds}, got {text!r}")
        return value

    return parse


# Threads: at most 4 per CPU (at least 16): each ONNX Runtime thread costs start-up time, and more do no good.
_THREADS = _number(int, 1, max(16, 4 * (os.cpu_count() or 1)))
_COUNT = _number(int, 1, 4096)
_SEED = _number(int, 0, 2**63 - 1)


def _other_inputs(args, model) -> list[Path]:
    """The files an app command reads besides its images: the model, a --mask, the files of --masks. No output may
    be one of them."""
    found = [Path(model.path)]
    if getattr(args, "mask", None):
        found.append(Path(args.mask))
    if getattr(args, "masks", None):
        found += sorted(p for p in Path(args.masks).iterdir() if not p.is_dir())
    return found


_DESCRIBE = ("input_range", "output_range", "channel_order", "style_input", "styles", "scale")


def _add_describe_flags(p, kind: str) -> None:
    """The flags that describe a model genrt did not export (genrt.runtime.adopt), spelt the same in every command
    that takes one: the app commands (their kind implied) and `genrt adopt`."""
    p.add_argument(
        "--input-range",
        default=None,
        metavar="RANGE",
        help="a model without genrt metadata: its input values, 0-1 (default), 0-255, -1-1 or LO,HI",
    )
    p.add_argument(
        "--output-range", default=None, metavar="RANGE", help="... its output values (default: as its input)"
    )
    p.add_argument("--channel-order", default=None, type=str.upper, choices=["RGB", "BGR"],
                   help="... the order of its image channels (default RGB)")  # fmt: skip
    if kind in ("stylizer", "any"):
        p.add_argument(
            "--style-input",
            default=None,
            metavar="NAME",
            help="... a multi-style stylizer's input of style weights (default: its one other input)",
        )
        p.add_argument("--styles", default=None, metavar="A,B,...",
                       help="... names for its styles, in order (default: 0, 1, 2, ...)")  # fmt: skip
    if kind in ("upscaler", "any"):
        p.add_argument("--scale", default=None, type=_number(int, 1, 64),
                       help="... an upscaler's factor, checked against the graph (default: read off it)")  # fmt: skip


def _described(args) -> dict:
    return {key: getattr(args, key, None) for key in _DESCRIBE}


def _given(args) -> dict:
    """The describe flags given (genrt.runtime._load's ``adopt``)."""
    return {k: v for k, v in _described(args).items() if v is not None}


def _load_app(args, cls, what: str):
    """args.model loaded, if it is of the application's kind `cls` (else ArgumentError: not `what`); an ONNX model
    without genrt metadata is described as one (the flags of _add_describe_flags fill in what it cannot say)."""
    from genrt.runtime import _load

    kind = {"Stylizer": "stylizer", "Upscaler": "upscaler", "Inpainter": "inpainter"}.get(cls.__name__)
    given = _given(args)
    if given and kind is None:
        raise ArgumentError(f"{', '.join('--' + k.replace('_', '-') for k in given)}: not for this command")
    model = _load(
        args.model, threads=args.threads, adopt=given, default_kind=kind, precision=getattr(args, "precision", "f32")
    )
    if not isinstance(model, cls):
        raise ArgumentError(f"{args.model}: not {what} (its genrt.kind is {model.kind!r})")
    return model


def _cmd_adopt(args) -> None:
    from genrt.runtime.adopt import adopt

    out = adopt(args.model, args.output, kind=args.kind, **_described(args))
    model = genrt.load(out)
    extra = f", scale x{model.scale}" if model.kind == "upscaler" else f", {len(model.styles)} styles" if getattr(
        model, "styles", None) else ""  # fmt: skip
    print(f"wrote {out}: kind {model.kind}{extra}; `genrt info {out}` shows its metadata")


def _add_precision_flag(p) -> None:
    p.add_argument(
        "--precision", choices=["auto", "f32", "bf16"], default=os.environ.get("GENRT_PRECISION", "auto"),
        help="convolutions in float32 or bfloat16; auto (default, or $GENRT_PRECISION): bfloat16 where the CPU has "
        "bfloat16 instructions and the model's output stays within 45 dB PSNR of float32 on a test photo "
        "(`genrt info` says which)",
    )  # fmt: skip


def _add_video_flags(p, *, temporal: bool = False) -> None:
    """The flags for clips among the inputs (genrt.video), spelt the same in every app command that takes them."""
    p.add_argument("--codec", default=None, metavar="NAME",
                   help="video: the encoder (default libx264; libvpx-vp9 for .webm)")  # fmt: skip
    p.add_argument("--crf", type=_number(int, 0, 63), default=None,
                   help="video: constant quality, lower is better (default 18 for libx264)")  # fmt: skip
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="video: encoder speed preset (default faster for libx264; slow: smaller files)")  # fmt: skip
    p.add_argument("--pix-fmt", default=None, metavar="FMT",
                   help="video: pixel format (default yuv420p; yuv420p10le for a 10-bit source)")  # fmt: skip
    if temporal:
        p.add_argument("--no-temporal", action="store_true",
                       help="video: stylize each frame alone (default: follow the motion, no flicker)")  # fmt: skip


def _video(args, model, options: dict, make_transform):
    """The batch work for a clip (genrt.video.process): frames through ``make_transform()``'s callable, encoded
    with the video flags; a bad flag fails now, before any work."""
    from genrt import video

    encode = video.EncodeOptions(codec=args.codec, crf=args.crf, pix_fmt=args.pix_fmt, preset=args.preset)
    if encode != video.EncodeOptions():
        video.check_options(encode, "clip.mp4")
    st = os.stat(model.path)
    key = json.dumps(
        {"model": os.path.realpath(model.path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "options": options,
         "temporal": not getattr(args, "no_temporal", False)},
        sort_keys=True, default=str,
    )  # fmt: skip

    def work(job):
        video.process(job.source, job.target, make_transform(), options=encode, key=key)

    return work


def _cmd_stylize(args) -> int:
    from genrt import video
    from genrt.apps.stylize import Stylizer, TemporalStylizer
    from genrt.image import read_image, write_image

    model = _load_app(args, Stylizer, "a stylizer")
    options = dict(
        strength=args.strength, preserve_color=args.preserve_color, style=_style_weights(args.style), tile=args.tile
    )
    model.style_weights(options["style"])  # a bad --style or --tile fails before any work
    model.check_tile(args.tile)
    if args.ray is not None:  # the same jobs on a Ray cluster
        spec = distributed.AppSpec(
            "stylize", distributed.model_ref(args.model), options, args.threads, _given(args), precision=args.precision
        )
        return distributed.run_cli(args, spec, protect=_other_inputs(args, model), video=True)
    clip = _video(args, model, options, lambda: TemporalStylizer(model, **options, temporal=not args.no_temporal))

    def work(job):
        if video.is_video(job.source):
            return clip(job)
        write_image(job.target, model.stylize_picture(read_image(job.source), **options))

    if pipes.is_pipe(args):  # - as the input or the output: one image through stdin / stdout
        return pipes.run(args, lambda picture: model.stylize_picture(picture, **options), protect=[model.path])
    return batch.run_cli(args, work, protect=_other_inputs(args, model), video=True)


def _cmd_upscale(args) -> int:
    from genrt import video
    from genrt.apps.upscale import Upscaler
    from genrt.image import read_image, write_image

    model = _load_app(args, Upscaler, "an upscaler")
    options = dict(
        outscale=args.outscale, tile=args.tile, tile_pad=args.tile_pad, device=args.device,
        precision="float32" if args.fp32 else None,
    )  # fmt: skip
    if args.ray is not None:  # the same jobs on a Ray cluster, whose actors check --device (they hold the GPUs)
        model.check_tile(args.tile, args.tile_pad)
        spec = distributed.AppSpec(
            "upscale", distributed.model_ref(args.model), options, args.threads, _given(args), precision=args.precision
        )
        return distributed.run_cli(args, spec, protect=_other_inputs(args, model), video=True)
    model._engine(args.device, options["precision"])  # a bad --device, --tile or --tile-pad fails before any work
    model.check_tile(args.tile, args.tile_pad)
    clip = _video(args, model, options, lambda: lambda frame: model.upscale(frame, **options))

    def work(job):
        if video.is_video(job.source):
            return clip(job)
        write_image(job.target, model.upscale_picture(read_image(job.source), **options))

    if pipes.is_pipe(args):  # - as the input or the output: one image through stdin / stdout
        return pipes.run(args, lambda picture: model.upscale_picture(picture, **options), protect=[model.path])
    return batch.run_cli(args, work, protect=_other_inputs(args, model), video=True)


def _rect(text: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values[:2]) < 0 or min(values[2:]) < 1:
        raise ArgumentError(f"--rect: expected X,Y,W,H in pixels (W, H >= 1), got {text!r}")
    return values


def _mask_for(source: Path, masks: Path):
    """The mask of an input in --masks DIR: the file of the same name, else the one image of the same stem."""
    from genrt.errors import InvalidImageError
    from genrt.image import READ_SUFFIXES

    same = masks / source.name
    if same.is_file():
        return same
    found = sorted(p for p in masks.glob(f"{glob.escape(source.stem)}.*") if p.suffix.lower() in READ_SUFFIXES)
    if len(found) != 1:
        raise InvalidImageError(
            f"no mask named {source.stem}.* in {masks}" if not found
            else f"{len(found)} masks for it in {masks} ({', '.join(p.name for p in found)}); keep one"
        )  # fmt: skip
    return found[0]


def _cmd_inpaint(args) -> int:
    from genrt.apps.inpaint import Inpainter
    from genrt.image import read_image, write_image

    model = _load_app(args, Inpainter, "an inpainter")
    masks = None if args.masks is None else Path(args.masks)
    if masks is not None and not masks.is_dir():
        raise ArgumentError(f"--masks: {masks} is not a folder")
    if args.mask is not None and not Path(args.mask).is_file():
        raise ArgumentError(f"--mask: {args.mask} is not a file")
    fixed = _rect(args.rect) if args.rect is not None else read_image(args.mask) if args.mask is not None else None
    if args.ray is not None:  # the same jobs on a Ray cluster
        spec = distributed.AppSpec(
            "inpaint", distributed.model_ref(args.model), {"blend": args.blend}, args.threads, _given(args),
            mask=fixed, masks=None if masks is None else str(masks.absolute()), precision=args.precision,
        )  # fmt: skip
        return distributed.run_cli(args, spec, protect=_other_inputs(args, model))

    def fill(picture):  # picture.source: the input file read_image read it from
        mask = fixed if masks is None else read_image(_mask_for(Path(picture.source), masks))
        return model.inpaint_picture(picture, mask, blend=args.blend)

    def work(job):
        write_image(job.target, fill(read_image(job.source)))

    if pipes.is_pipe(args):  # - as the input or the output: one image through stdin / stdout
        if masks is not None and pipes.PIPE in args.inputs:
            raise ArgumentError("--masks: masks are matched by input file name, and stdin has none; give --mask")
        return pipes.run(args, fill, protect=_other_inputs(args, model))
    return batch.run_cli(args, work, protect=_other_inputs(args, model))


def _cmd_edit(args) -> None:
    from genrt.apps.manipulate import Manipulator

    if args.photo is not None and not Path(args.photo).is_file():
        raise ArgumentError(f"{args.photo}: no such photo")
    from genrt import web  # MissingDependencyError without fastapi or uvicorn: before the model loads

    model = _load_app(args, Manipulator, "a manipulator (an iGAN bundle such as igan-digits)")
    if args.photo is not None:
        print(f"projecting {args.photo} onto {model.name}...", flush=True)
    web.serve(model, args.photo, host=args.host, port=args.port)


def _cmd_demo(args) -> None:
    from genrt import demo

    demo.run(args.output, seed=args.seed, threads=args.threads)


def _cmd_models(args) -> None:
    models = genrt.list_models()
    if not models:
        print("no bundled models")
    for m in models:
        print(f"{m['name']:<20} {m['kind'] or '-':<14} {m['description']}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="genrt",
        description="Run generative image models exported by genrt.",
        epilog="example: genrt sample dcgan-digits -n 64 --seed 0 -o grid.png",
    )
    parser.add_argument("--version", action="version", version=f"genrt {genrt.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "info", help="show a model's kind, inputs, outputs, metadata and genrt kernels",
        epilog="example: genrt info dcgan-digits; genrt info style.onnx --input-shape 1,3,512,512",
    )  # fmt: skip
    p.add_argument("model", help="a model file (.onnx, .pt2, .pt) or a bundled model's name")
    p.add_argument("--threads", type=_THREADS, default=None, help="intra-op threads (default: all CPUs)")
    _add_precision_flag(p)
    p.add_argument(
        "--input-shape", action="append", metavar="N,C,H,W",
        help="choose genrt's kernels for inputs of this shape first (repeatable; several inputs: separate their "
        "shapes with ';'); models with dynamic height and width otherwise choose on the first call of each size",
    )  # fmt: skip
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "sample", help="write a PNG grid of samples from a generator",
        epilog="example: genrt sample dcgan-digits -n 64 --seed 0 -o grid.png",
    )  # fmt: skip
    p.add_argument("model", help="a generator file or bundled name")
    p.add_argument("-n", type=_COUNT, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=_SEED, default=None, help="random seed (default: fresh randomness)")
    p.add_argument("-o", "--output", default="samples.png", help="PNG to write (default samples.png)")
    p.add_argument("--nrow", type=_COUNT, default=None, help="images per row (default: about square)")
    p.add_argument("--threads", type=_THREADS, default=None, help="intra-op threads (default: all CPUs)")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser(
        "walk", help="write a latent-space walk through random points as a PNG (rows follow the path)",
        epilog="example: genrt walk dcgan-digits --points 4 --steps 8 --seed 0 -o walk.png",
    )  # fmt: skip
    p.add_argument("model", help="a generator file or bundled name")
    p.add_argument("--points", type=_COUNT, default=4, help="random latents to visit (default 4)")
    p.add_argument("--steps", type=_COUNT, default=8, help="frames per segment, ends included (default 8)")
    p.add_argument("--method", choices=["slerp", "linear"], default="slerp")
    p.add_argument("--seed", type=_SEED, default=0)
    p.add_argument("-o", "--output", default="walk.png")
    p.add_argument("--threads", type=_THREADS, default=None)
    p.set_defaults(func=_cmd_walk)

    p = sub.add_parser(
        "arithmetic",
        help="A - B + C on concept vectors, picked by index from `genrt sample` with the same seed",
        epilog="example: genrt sample dcgan-faces -n 64 --seed 0 -o s.png   # pick indices in s.png, then\n"
        "         genrt arithmetic dcgan-faces --seed 0 --a 3,7,12 --b 5,9,20 --c 1,2,30 -o sum.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="a generator file or bundled name")
    for flag in ("a", "b", "c"):
        p.add_argument(f"--{flag}", required=True, help=f"indices of the samples showing concept {flag.upper()}")
    p.add_argument("--seed", type=_SEED, default=0, help="the seed of the `genrt sample` grid the indices refer to")
    p.add_argument(
        "--variants", type=_number(int, 0, 4096), default=5, help="noisy variants of the result (default 5)"
    )
    p.add_argument("--noise", type=_number(float, 0, 1e6), default=0.25, help="std of the noise added to the variants")
    p.add_argument("-o", "--output", default="arithmetic.png")
    p.add_argument("--threads", type=_THREADS, default=None)
    p.set_defaults(func=_cmd_arithmetic)

    p = sub.add_parser(
        "stylize", help="stylize images, videos, folders or globs with a style-transfer model",
        epilog="examples:\n"
        "  genrt stylize style-gravel photo.jpg -o photo-gravel.jpg\n"
        "  genrt stylize style-brick photos/ -r -o styled/ --strength 0.8 --jobs 2   # a rerun resumes\n"
        "  genrt stylize style-multi photos/ -o mixed/ --style brick=0.7,retina=0.3 --preserve-color\n"
        "  cat photo.jpg | genrt stylize style-gravel - -o - > photo-gravel.png   # - : stdin / stdout (--format)\n"
        "  genrt stylize style-gravel clip.mp4 -o clip-gravel.mp4   # video: sound and timing kept, no flicker",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("model", help="a stylizer file (.onnx) or a bundled style model's name")
    batch.add_arguments(p, suffix="-styled")
    p.add_argument(
        "--strength", type=_number(float, 0, 1), default=1.0, help="0: the photo, 1: the full style (default 1)"
    )
    p.add_argument("--preserve-color", action="store_true", help="keep the photo's colours (luminance-only transfer)")
    p.add_argument("--style", default=None, help="on a multi-style model: NAME, or NAME=WEIGHT,... to mix")
    p.add_argument(
        "--tile",
        type=_number(int, 0),
        default=None,
        help="tile size in pixels (default: tiles of 1024 above 2048x2048; 0: never)",
    )
    p.add_argument("--threads", type=_THREADS, default=None, help="intra-op threads per image (default: all CPUs)")
    _add_precision_flag(p)
    _add_video_flags(p, temporal=True)
    _add_describe_flags(p, "stylizer")
    p.set_defaults(func=_cmd_stylize)

    p = sub.add_parser(
        "upscale", help="super-resolve images, videos, folders or globs with an upscaler (x4, x8)",
        epilog="examples:\n"
        "  genrt upscale sr-x4 photo.png -o photo-x4.png\n"
        "  genrt upscale sr-x4-perceptual photos/ -r -o big/ --tile 256 --jobs 2   # a rerun resumes\n"
        "  genrt upscale sr-x8 small.png -o out/ -s 6 --device cuda                # x8 network, resized to x6\n"
        "  genrt upscale sr-x4 clip.mp4 -o clip-x4.mp4 --crf 20                     # video: sound and timing kept",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("model", help="an upscaler file (.onnx) or a bundled upscaler's name (sr-x4, ...)")
    batch.add_arguments(p, suffix="-upscaled")
    p.add_argument(
        "-s", "--outscale", type=_number(float, 0, 64, low_open=True), default=None,
        help="output size over input size (default: the network's scale; others resize its output with Lanczos)",
    )  # fmt: skip
    p.add_argument(
        "--tile", type=_number(int, 0), default=None,
        help="tile size in input pixels, to cap memory (default: above 256x256, tiles of up to 256 that fit 1 GiB of "
        "activations; 0: never)",
    )  # fmt: skip
    p.add_argument(
        "--tile-pad", type=_number(int, 0), default=None,
        help="pixels each tile sees beyond its own (default: the network's receptive field: seamless)",
    )  # fmt: skip
    p.add_argument("--device", default=None, help="cpu (default) or cuda[:N] (needs genrt[gpu])")
    p.add_argument("--fp32", action="store_true", help="on a GPU, compute in float32 (default there: float16)")
    p.add_argument("--threads", type=_THREADS, default=None, help="intra-op threads per image (default: all CPUs)")
    _add_precision_flag(p)
    _add_video_flags(p)
    _add_describe_flags(p, "upscaler")
    p.set_defaults(func=_cmd_upscale)

    p = sub.add_parser(
        "inpaint", help="fill holes in images, folders or globs with an inpainter (context encoder)",
        epilog="examples:\n"
        "  genrt inpaint inpaint-photos photo.jpg --mask hole.png -o filled.png     # white = hole\n"
        "  genrt inpaint inpaint-photos photos/ --masks masks/ -o filled/ -r          # masks matched by name\n"
        "  genrt inpaint inpaint-photos photo.png --rect 120,80,64,64 -o out/ --blend feather\n"
        "  genrt inpaint inpaint-photos cutout.png -o out/        # no mask: the transparent pixels are the hole",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("model", help="an inpainter file (.onnx) or a bundled inpainter's name (inpaint-photos, ...)")
    batch.add_arguments(p, suffix="-filled")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--mask", default=None, help="one mask image for every input (white = hole, any mode)")
    group.add_argument("--masks", default=None, metavar="DIR", help="a folder of masks, one per input, by file name")
    group.add_argument("--rect", default=None, metavar="X,Y,W,H", help="a rectangle to fill in every input")
    p.add_argument(
        "--blend", choices=["poisson", "feather", "none"], default="poisson",
        help="poisson (default: the fill's gradients, the context's colours at its border), feather, or none",
    )  # fmt: skip
    p.add_argument("--threads", type=_THREADS, default=None, help="intra-op threads per image (default: all CPUs)")
    _add_precision_flag(p)
    _add_describe_flags(p, "inpainter")
    p.set_defaults(func=_cmd_inpaint)

    p = sub.add_parser(
        "edit", help="edit images in a browser on a generator's manifold (iGAN: strokes, candidates, morph)",
        epilog="examples:\n"
        "  genrt edit igan-digits                    # then open http://127.0.0.1:8765/\n"
        "  genrt edit igan-faces face.jpg --port 9000  # edit a photo; Download gives it edited at full size",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("model", help="a manipulator bundle (.genrt) or a bundled one's name (igan-digits, igan-faces)")
    p.add_argument("photo", nargs="?", default=None, help="a photo to start from, projected onto the model")
    p.add_argument(
        "--port", type=_number(int, 0, 65535), default=8765, help="TCP port (default 8765; 0: any free one)"
    )
    p.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; others warn: there is no login)",
    )  # fmt: skip
    p.add_argument("--threads", type=_THREADS, default=None, help="intra-op threads (default: all CPUs)")
    _add_precision_flag(p)
    p.set_defaults(func=_cmd_edit)

    p = sub.add_parser(
        "demo", help="write a folder of PNGs from the bundled models with an index.html",
        epilog="example: genrt demo -o genrt-demo",
    )  # fmt: skip
    p.add_argument("-o", "--output", default="genrt-demo", help="folder to write (default ./genrt-demo)")
    p.add_argument("--seed", type=_SEED, default=0)
    p.add_argument("--threads", type=_THREADS, default=None)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "adopt", help="write genrt metadata into a copy of an ONNX model genrt did not export (then no flags needed)",
        epilog="examples:\n"
        "  genrt adopt RealESRGAN_x4plus.onnx --kind upscaler -o realesrgan-x4.onnx     # scale read off the graph\n"
        "  genrt adopt multistyle26.onnx --kind stylizer -o magenta26.onnx              # styles 0 to 25\n"
        "  genrt adopt model.onnx --kind stylizer --input-range 0-255 --channel-order BGR -o mine.onnx",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("model", help="an ONNX model file")
    p.add_argument("--kind", required=True, choices=["stylizer", "upscaler", "inpainter"], help="its application")
    p.add_argument("-o", "--output", required=True, help="the .onnx file to write (never the model itself)")
    _add_describe_flags(p, "any")
    p.set_defaults(func=_cmd_adopt)

    importers.add_cli(sub)  # genrt import: .pth / .safetensors -> a genrt ONNX model (needs the train extra)

    p = sub.add_parser("models", help="list the bundled models", epilog="example: genrt models")
    p.set_defaults(func=_cmd_models)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse with genrt's one-line errors: "genrt: error: ..." and exit status 2, no usage block."""

    def error(self, message: str):
        self.exit(2, printable(f"genrt: error: {message} (see {self.prog} --help)") + "\n")


def main(argv: list[str] | None = None) -> int:
    """The `genrt` command: 0 on success, 1 when some file of a batch failed, 2 on bad input (one line on stderr),
    130 when interrupted. An error genrt did not expect also gives one line and 2, its traceback going to a log."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # a bad argument (its one line printed), --help or --version: a status, in process too
        return exc.code if isinstance(exc.code, int) else 2
    try:
        status = args.func(args) or 0
    except GenrtError as exc:
        print(printable(f"genrt: error: {' '.join(str(exc).split())}"), file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an unwritable output folder
        text = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        print(printable(f"genrt: error: {text}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genrt: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("genrt: error: not enough memory (MemoryError); try smaller tiles or inputs", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: one line here, the traceback in a log
        from genrt.workspace import internal_error_line

        print(f"genrt: {internal_error_line(exc, f'genrt {args.command}')}", file=sys.stderr)
        return 2
    return status  # app commands return the folder engine's status (1 when some file failed)


if __name__ == "__main__":
    sys.exit(main())
