"""The `genrt` command.

genrt info dcgan-digits
genrt sample dcgan-digits -n 64 --seed 0 -o grid.png
genrt models
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import genrt
from genrt.errors import ArgumentError, GenrtError


def _cmd_info(args) -> None:
    from genrt.runtime.onnx_session import ort_ops_library

    model = genrt.load(args.model, threads=args.threads)
    print(f"model:   {model.path}")
    print(f"format:  {model.format}")
    print(f"kind:    {model.kind or '(no genrt metadata)'}")
    for title, specs in (("inputs:", model.inputs), ("outputs:", model.outputs)):
        print(title)
        for spec in specs:
            print(f"  {spec}")
    if model.format == "onnx":
        print(f"genrt kernels: {', '.join(f'{op} ({how})' for op, how in model.kernels.items()) or 'none used'}")
        print(f"genrt ORT library: {ort_ops_library() or 'not built'}; cpu isa: {genrt.kernels.cpu_isa()}")
    print("metadata:")
    for key, value in sorted(model.metadata.items()):
        text = json.dumps(value) if not isinstance(value, str) else value
        print(f"  {key}: {text if len(text) <= 100 else text[:97] + '...'}")


def _cmd_sample(args) -> None:
    from genrt.image import make_grid, save_png

    out = Path(args.output)
    if not out.parent.is_dir():
        raise ArgumentError(f"--output: folder {out.parent} does not exist")
    if out.suffix.lower() != ".png":
        raise ArgumentError(f"--output: expected a .png path, got {out.name!r}")
    model = genrt.load(args.model, threads=args.threads)
    if out.exists() and out.resolve() == Path(model.path).resolve():
        raise ArgumentError("--output: refusing to overwrite the model file")
    images = model.sample(args.n, seed=args.seed)
    save_png(out, make_grid(images, nrow=args.nrow))
    print(f"wrote {out} ({args.n} samples, seed {args.seed})")


def _cmd_models(args) -> None:
    models = genrt.list_models()
    if not models:
        print("no bundled models")
    for m in models:
        print(f"{m['name']:<20} {m['kind'] or '-':<14} {m['description']}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genrt",
        description="Run generative image models exported by genrt.",
        epilog="example: genrt sample dcgan-digits -n 64 --seed 0 -o grid.png",
    )
    parser.add_argument("--version", action="version", version=f"genrt {genrt.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "info", help="show a model's kind, inputs, outputs, metadata and genrt kernels",
        epilog="example: genrt info dcgan-digits",
    )  # fmt: skip
    p.add_argument("model", help="a model file (.onnx, .pt2, .pt) or a bundled model's name")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all CPUs)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "sample", help="write a PNG grid of samples from a generator",
        epilog="example: genrt sample dcgan-digits -n 64 --seed 0 -o grid.png",
    )  # fmt: skip
    p.add_argument("model", help="a generator file or bundled name")
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fresh randomness)")
    p.add_argument("-o", "--output", default="samples.png", help="PNG to write (default samples.png)")
    p.add_argument("--nrow", type=int, default=None, help="images per row (default: about square)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all CPUs)")
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser("models", help="list the bundled models", epilog="example: genrt models")
    p.set_defaults(func=_cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.func(args)
    except GenrtError as exc:
        print(f"genrt: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an unwritable output folder
        print(f"genrt: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genrt: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
