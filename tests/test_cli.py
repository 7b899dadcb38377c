"""The genrt command: one-line errors with a non-zero exit, and real output files."""

import subprocess
import sys

import numpy as np
import pytest

from genrt.cli import main

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

import genrt  # noqa: E402
from tests.tiny_models import make  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    g, d = make()
    return (
        genrt.export(g, root / "g.onnx", torch.randn(2, 16), kind="generator"),
        genrt.export(d, root / "d.onnx", torch.randn(4, 1, 8, 8), kind="discriminator"),
    )


def test_sample_writes_a_grid(files, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sample", str(files[0]), "-n", "6", "--seed", "0", "--nrow", "3", "-o", str(out)]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.shape == (2 + 2 * 10, 2 + 3 * 10)  # 2 rows of 3 8x8 images, padding 2, gray
    expected = genrt.load(files[0]).sample(6, seed=0)
    np.testing.assert_array_equal(grid[2:10, 2:10], expected[0, :, :, 0])
    assert "wrote" in capsys.readouterr().out


def test_info(files, capsys):
    assert main(["info", str(files[1])]) == 0
    out = capsys.readouterr().out
    assert "kind:    discriminator" in out and "MinibatchDiscrimination" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "no-such-model"], "no such file, and no bundled model"),
        (["sample", "D", "-o", "x.png"], "sample() needs a generator model"),
        (["sample", "G", "-n", "0", "-o", "x.png"], "argument -n: expected a whole number in [1, 4096]"),
        (["sample", "G", "-o", "/no/such/dir/x.png"], "--output: folder /no/such/dir does not exist"),
        (["sample", "G", "-o", "x.jpg"], "expected a .png path"),
    ],
)
def test_errors_are_one_line(files, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    argv = [str(files[0]) if a == "G" else str(files[1]) if a == "D" else a for a in argv]
    result = subprocess.run([sys.executable, "-m", "genrt.cli", *argv], capture_output=True, text=True)
    assert result.returncode == 2
    # a genrt built without its ONNX Runtime library says so once (a warning about the build, not the error)
    lines = [line for line in result.stderr.strip().splitlines() if "kernels are not built" not in line]
    assert len(lines) == 1 and lines[0].startswith("genrt: error:") and message in lines[0], result.stderr


def test_walk_and_arithmetic(files, tmp_path):
    walk = tmp_path / "walk.png"
    assert main(["walk", str(files[0]), "--points", "3", "--steps", "4", "-o", str(walk)]) == 0
    assert np.asarray(Image.open(walk)).shape == (2 + 3 * 10, 2 + 3 * 10)  # 7 frames, 3 per row
    out = tmp_path / "sum.png"
    argv = ["arithmetic", str(files[0]), "--a", "0,1", "--b", "2", "--c", "3,4,5", "--variants", "2", "-o", str(out)]
    assert main(argv) == 0
    strip = np.asarray(Image.open(out))
    assert strip.shape == (2 + 10, 2 + 6 * 10)
    g = genrt.load(files[0])
    z = g.latents(6, seed=0)
    expected = g.generate((z[:2].mean(0) - z[2] + z[3:6].mean(0))[None])[0, :, :, 0]
    np.testing.assert_array_equal(strip[2:10, 32:40], expected)


def test_arithmetic_rejects_bad_indices(files, tmp_path, capsys):
    assert main(["arithmetic", str(files[0]), "--a", "x", "--b", "1", "--c", "2", "-o", str(tmp_path / "a.png")]) == 2
    assert "--a: expected comma-separated sample indices" in capsys.readouterr().err
