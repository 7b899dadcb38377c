"""`genrt edit`: its one-line errors, the `web` extra's absence, and (slow) the real command serving until Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

import genrt
from genrt.cli import main
from genrt.image import save_png
from genrt.runtime import files


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("genrt: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.skipif("dcgan-digits" not in files.bundled_models(), reason="dcgan-digits is not bundled")
def test_a_model_that_is_not_a_manipulator(capsys):
    pytest.importorskip("fastapi")
    assert "not a manipulator" in _one_line_error(capsys, ["edit", "dcgan-digits"])


def test_bad_arguments(capsys, tmp_path):
    pytest.importorskip("fastapi")
    assert "no such photo" in _one_line_error(capsys, ["edit", "igan-digits", str(tmp_path / "missing.png")])
    assert "--port" in _one_line_error(capsys, ["edit", "igan-digits", "--port", "70000"])


def test_without_the_web_extra(capsys, monkeypatch):
    for name in [n for n in sys.modules if n == "genrt.web" or n.startswith("genrt.web.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(genrt, "web", raising=False)  # else `from genrt import web` finds the loaded one
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi raises ImportError
    assert "pip install genrt[web]" in _one_line_error(capsys, ["edit", "igan-digits"])


def test_genrt_imports_without_fastapi():
    code = (
        "import sys; sys.modules['fastapi'] = sys.modules['uvicorn'] = None; import genrt, genrt.cli; "
        "assert not any(n.startswith(('fastapi', 'starlette', 'uvicorn')) for n in sys.modules if sys.modules[n])"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_serves_the_photo_until_ctrl_c(tmp_path):
    pytest.importorskip("fastapi")
    try:
        genrt.load("igan-digits")
    except genrt.ModelNotFoundError as exc:
        pytest.skip(f"the igan-digits bundle is not there yet ({exc})")
    photo = save_png(tmp_path / "photo.png", np.full((40, 30, 3), 128, np.uint8))
    command = [sys.executable, "-m", "genrt.cli", "edit", "igan-digits", str(photo), "--port", "0", "--threads", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
            url = next((word for word in line.split() if word.startswith("http://127.0.0.1:")), None)
        assert url, "genrt edit printed no URL"
        with urllib.request.urlopen(url + "api/info", timeout=30) as r:
            info = json.load(r)
        assert info["model"] == "igan-digits" and info["has_photo"] is True
        with urllib.request.urlopen(url, timeout=30) as r:
            assert b'id="canvas"' in r.read()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.returncode in (0, 130)
        assert "warning" not in proc.stderr.read()  # loopback: no warning
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
