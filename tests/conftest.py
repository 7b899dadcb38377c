import os
import tempfile

import numpy as np
import pytest

from genrt import _C

# Kernel-choice caches go to a throwaway folder, not the user's ~/.cache/genrt.
os.environ.setdefault("GENRT_CACHE_DIR", tempfile.mkdtemp(prefix="genrt-test-cache-"))
# The app commands default to precision="auto": bfloat16 on CPUs that have it. Tests compare the apps' output with
# float32 references, so they run in float32 everywhere; tests/runtime/test_precision.py tests bfloat16 and "auto".
os.environ.setdefault("GENRT_PRECISION", "f32")


@pytest.fixture(params=_C.available_isas())
def isa(request):
    """Runs a test once per instruction set this machine supports, restoring the default after."""
    previous = _C.active_isa()
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa(previous)


@pytest.fixture
def amx_tiles():
    """Runs a test at the amx level (the CPU's own AMX tiles), restoring the default after; skips, saying so, where
    the CPU has no usable AMX (the tile kernels then run only emulated, and on their encodings under Bochs)."""
    if "amx" not in _C.available_isas():
        pytest.skip(f"this CPU has no usable AMX (isas {_C.available_isas()}): the tile kernel ran emulated only")
    previous = _C.active_isa()
    _C.set_isa("amx")
    yield
    _C.set_isa(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# --- Inputs are sacred: every `genrt` command a test runs in process leaves its inputs byte for byte. -------------


def _digest(path) -> str | None:
    import hashlib
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # never open a FIFO
            return None
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def _command_inputs(args) -> list:
    """The files a parsed `genrt` command reads: its batch inputs (as the folder engine plans them), its model file,
    its masks and its photo."""
    from pathlib import Path

    from genrt import batch
    from genrt.errors import GenrtError

    found = []
    if getattr(args, "inputs", None):
        try:
            jobs = batch.plan(args.inputs, args.output, recursive=args.recursive, suffix=args.suffix, ext=args.ext)
            found += [job.source for job in jobs]
        except GenrtError:
            pass  # refused before any work: what it names is checked by the paths below
        found += [Path(p) for p in args.inputs]
    for name in ("model", "mask", "photo"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            found.append(Path(value))
    masks = getattr(args, "masks", None)
    if isinstance(masks, str) and Path(masks).is_dir():
        found += sorted(Path(masks).iterdir())
    return [p for p in found if os.path.isfile(p)]


@pytest.fixture(autouse=True)
def _cli_inputs_untouched(monkeypatch):
    import genrt.cli as cli

    real_parser = cli._parser

    def parser():
        p = real_parser()
        parse = p.parse_args

        def parse_args(argv=None, namespace=None):
            args = parse(argv, namespace)
            command = args.func

            def checked(a):
                before = {str(path): _digest(path) for path in _command_inputs(a)}
                try:
                    return command(a)
                finally:
                    changed = [path for path, digest in before.items() if _digest(path) != digest]
                    if changed:  # pytest.fail is a BaseException: genrt's own `except Exception` cannot hide it
                        pytest.fail(f"genrt {a.command} changed or removed its inputs: {changed}")

            args.func = checked
            return args

        p.parse_args = parse_args
        return p

    monkeypatch.setattr(cli, "_parser", parser)
