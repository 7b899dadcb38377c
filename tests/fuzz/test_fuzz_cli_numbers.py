"""Fuzzing the genrt command's number parsing: genrt.cli.main([...]) in process, with hostile number strings.

    GENRT_FUZZ_SECONDS=600 python -m pytest -m fuzz tests/fuzz/test_fuzz_cli_numbers.py -s

Flags: --strength --style (NAME=WEIGHT,...) --tile (stylize, on style-multi); -s/--outscale --tile --tile-pad
(upscale, on sr-x4); --rect (inpaint, on inpaint-photos); -n --seed --nrow (sample), --points --steps (walk), on
dcgan-digits; --input-shape and --threads (info); --jobs (every folder command); --port (edit, with the server
replaced by a stub). Values: nan, inf, -inf, 1e308, -0, 0, huge integers, hex, unicode digits, empty strings,
whitespace, and hypothesis's integers, floats and text. The input is one 8x8 PNG.

The contract: exit 0; or exit 2 with exactly one stderr line starting "genrt: error:", or argparse's usage error
(SystemExit(2)), and then no output file written. Never a traceback, never exit 1 (a per-file failure: a bad
number must be refused before any work), never a hang. The one exit 1 allowed: a well-formed --rect that leaves
the 8x8 input (a property of each input, not of the number: the same rectangle fits a larger one). Bundled models
are loaded once per (name, threads) and reused: the fuzzer is about numbers, not loading.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

import genrt
from tests.fuzz.harness import run_fuzzer, run_rounds, time_limit

EXAMPLE_SECONDS = 120

SPECIAL = [
    "nan", "NaN", "inf", "-inf", "Infinity", "1e308", "-1e308", "1e309", "-0", "0", "-0.0", "1", "2", "-1", "0.5",
    "1e-320", "0x10", "0o7", "0b1", "1_000", "+3", " 3 ", "3 ", "\t4", "", " ", "\u0663", "\uff13", "\u0661\u0662",
    "\u2167", "9" * 30, str(2**63), str(-(2**63) - 1), "9" * 5000, "1,2", "1;2", "3x4", "1e3", "12abc",
]  # fmt: skip
NUMBER = (
    st.sampled_from(SPECIAL)
    | st.integers().map(str)
    | st.integers(-3, 300).map(str)
    | st.floats(allow_nan=True, allow_infinity=True).map(repr)
    | st.text(max_size=6)
)


def _many_threads(text: str) -> bool:
    try:
        return 16 < int(text) <= 1024
    except ValueError:
        return False


# Valid thread counts above 16 are left out: each ONNX Runtime thread adds about 0.15 s to a model's setup on a
# 2-core runner (--threads 1000 takes minutes), which no alarm interrupts; the bounds 0, 1025 and beyond stay in.
THREADS = NUMBER.filter(lambda text: not _many_threads(text))
STYLE_NAME = st.sampled_from(["hubble", "retina", "brick", "gravel", "nosuch", "", " hubble"])


@st.composite
def style_value(draw):
    if draw(st.booleans()):
        return draw(STYLE_NAME)
    parts = draw(st.lists(st.tuples(STYLE_NAME, NUMBER), min_size=1, max_size=3))
    return ",".join(f"{name}={value}" for name, value in parts)


@st.composite
def separated(draw, count: int, sep: str = ","):
    return sep.join(draw(st.lists(NUMBER, min_size=1, max_size=count)))


def _flag(flag: str, value) -> list[str]:
    return [f"{flag}={value}"] if draw_eq(value) else [flag, value]


def draw_eq(value: str) -> bool:
    return value.startswith("-")  # "--tile -1" would read -1 as a flag: "--tile=-1" passes it as a value


@st.composite
def options(draw, choices: dict) -> list[str]:
    argv = []
    for flag in draw(st.lists(st.sampled_from(sorted(choices)), min_size=1, max_size=3, unique=True)):
        argv += _flag(flag, draw(choices[flag]))
    return argv


JOBS = {"--jobs": NUMBER, "--threads": THREADS}
STYLIZE = {"--strength": NUMBER, "--style": style_value(), "--tile": NUMBER, **JOBS}
UPSCALE = {"-s": NUMBER, "--outscale": NUMBER, "--tile": NUMBER, "--tile-pad": NUMBER, **JOBS}
SAMPLE = {"-n": NUMBER, "--seed": NUMBER, "--nrow": NUMBER, "--threads": THREADS}
COMMANDS = {
    "stylize": (["stylize", "style-multi", "{input}", "-o", "{out}/"], STYLIZE),
    "upscale": (["upscale", "sr-x4", "{input}", "-o", "{out}/"], UPSCALE),
    "inpaint": (["inpaint", "inpaint-photos", "{input}", "-o", "{out}/", "--blend", "none"], {"--rect": separated(5)}),
    "sample": (["sample", "dcgan-digits", "-o", "{out}/grid.png"], SAMPLE),
    "walk": (
        ["walk", "dcgan-digits", "-o", "{out}/walk.png"],
        {"--points": NUMBER, "--steps": NUMBER, "--seed": NUMBER},
    ),
    "info": (["info", "dcgan-digits"], {"--input-shape": separated(5) | separated(3, ";"), "--threads": THREADS}),
    "edit": (["edit", "igan-digits"], {"--port": NUMBER, "--threads": THREADS}),
}


@st.composite
def cli_case(draw) -> tuple[str, list[str]]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    base, choices = COMMANDS[name]
    return name, base + draw(options(choices))


# --- the contract -------------------------------------------------------------------------------------------------


_loaded: dict = {}
_MAX_LOADED = 4  # models kept loaded at once


def _cached_load(real_load):
    def load(path_or_name, **kwargs):
        key = (str(path_or_name), repr(sorted(kwargs.items())))  # repr: app commands pass a dict (adopt=...)
        if key not in _loaded and len(_loaded) >= _MAX_LOADED:
            _loaded.clear()  # many (model, threads) pairs held at once would pass the fuzzer's memory bound
        if key not in _loaded:
            _loaded[key] = real_load(path_or_name, **kwargs)
        return _loaded[key]

    return load


def _outputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def check_case(case, root: Path, served: list) -> None:
    from genrt.cli import main

    name, template = case
    out = Path(tempfile.mkdtemp(dir=root, prefix="out-"))
    argv = [a.replace("{input}", str(root / "in.png")).replace("{out}", str(out)) for a in template]
    stderr, stdout = io.StringIO(), io.StringIO()
    served.clear()
    with time_limit(EXAMPLE_SECONDS, "a command"):
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            try:
                status = main(argv)
            except SystemExit as exc:  # argparse's usage error
                assert exc.code == 2, f"SystemExit({exc.code!r}) for {argv}"
                assert "error:" in stderr.getvalue(), stderr.getvalue()
                status = "usage"
    lines = stderr.getvalue().splitlines()
    if status == 0:
        return
    if status == 1 and name == "inpaint" and "leaves the" in stderr.getvalue():
        return  # a well-formed --rect outside this 8x8 input: per file, since the same rect fits a larger input
    assert status in (2, "usage"), f"exit {status} for {argv}; stderr: {stderr.getvalue()[-2000:]}"
    if status == 2:
        assert len(lines) == 1 and lines[0].startswith("genrt: error:"), f"{argv}: stderr {lines}"
    assert not _outputs(out), f"{argv} refused (exit 2) but wrote {_outputs(out)}"
    assert not served, f"{argv} refused but started the server"


def _setup(root: Path, patch=setattr) -> list:
    """The input image, genrt.load cached and the editor's server stubbed out; `patch` (setattr in the fuzzer's
    own process, monkeypatch.setattr in a test) makes each change."""
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "in.png")
    patch(genrt, "load", _cached_load(genrt.load))
    patch(genrt.runtime, "_load", _cached_load(genrt.runtime._load))  # what the app commands load through
    served: list = []
    try:
        from genrt import web

        patch(web, "serve", lambda *args, **kwargs: served.append((args, kwargs)))  # --port accepted: no server
    except ImportError:
        pass  # fastapi or uvicorn missing: `genrt edit` refuses with a MissingDependencyError, exit 2
    return served


def fuzz_cli_numbers(seconds: float, seed: int) -> None:
    """The fuzzer (run by the harness in a child process)."""
    with tempfile.TemporaryDirectory(prefix="genrt-fuzz-cli-") as tmp:
        root = Path(tmp)
        served = _setup(root)
        run_rounds(
            "fuzz_cli_numbers",
            cli_case(),
            lambda case: check_case(case, root, served),
            seconds=seconds,
            seed=seed,
            examples=5,
        )


@pytest.mark.fuzz
def test_fuzz_cli_numbers():
    run_fuzzer("tests.fuzz.test_fuzz_cli_numbers:fuzz_cli_numbers")


# --- fixed cases (fast, not marked fuzz) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "dcgan-digits", "-n", "2", "--seed", "0", "-o", "{out}/grid.png"],
        ["upscale", "sr-x4", "{input}", "-o", "{out}/", "-s", "2"],
        ["stylize", "style-multi", "{input}", "-o", "{out}/", "--style", "hubble=1,retina=0.5", "--strength", "0.5"],
        ["sample", "dcgan-digits", "-n", "nan", "-o", "{out}/grid.png"],
        ["upscale", "sr-x4", "{input}", "-o", "{out}/", "-s=-1"],
        ["info", "dcgan-digits", "--input-shape", "1,x"],
    ],
)
def test_cli_contract_examples(argv, tmp_path, monkeypatch):
    _loaded.clear()
    served = _setup(tmp_path, monkeypatch.setattr)
    check_case(("fixed", argv), tmp_path, served)
