"""What `pip install .` puts into site-packages: genrt only, no top-level `training` package (it would collide with
any other project's `training`); the training scripts run from a clone (`python -m training.dcgan`)."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_install_puts_no_training_package_in_site_packages(tmp_path):
    pytest.importorskip("pybind11")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info")
    for name in ("csrc", "genrt", "training"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    # GENRT_CUDA=0: also the CPU-only build, which must leave the CUDA modules out (and take no nvcc time).
    env = {**os.environ, "GENRT_BUILD_ISAS": "baseline", "GENRT_CUDA": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "wheels", src], env=env,
                   check=True, capture_output=True)  # fmt: skip
    (wheel,) = (tmp_path / "wheels").glob("genrt-*.whl")
    top = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert "genrt" in top and "training" not in top, top
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], env=env, check=True, capture_output=True)
    assert (site / "genrt" / "runtime").is_dir() and (site / "genrt" / "models").is_dir()
    shipped = {p.name for p in (site / "genrt" / "models").iterdir()}
    assert {p.name for p in (ROOT / "genrt" / "models").glob("*.genrt")} <= shipped  # bundles ship beside .onnx
    assert (site / "genrt" / "web" / "static" / "index.html").is_file()  # the editor's page ships in the package
    assert not (site / "training").exists()
    assert not list((site / "genrt").glob("_cuda*")) and not list((site / "genrt").glob("_ort_ops_cuda*"))
