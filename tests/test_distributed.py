"""genrt on Ray Data (genrt.distributed): `genrt stylize ... --ray` against the local engine, on a real local Ray
cluster (2 CPUs, bound to 127.0.0.1, one for the module, always shut down): the same files bit for bit, the same
report; a worker killed with kill -9 mid-job loses nothing; bad files and clips are reported and skipped.

The tests marked ``ray`` start the cluster (about 3 s, and 1 to 2 s of actor start per run); the others need no
cluster. ``-m "not ray"`` leaves the cluster out of a quick run.
"""

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from genrt import batch, cli, distributed
from genrt.errors import ArgumentError
from genrt.image import PARTIAL_SUFFIX, read_image, write_image

READS = "(PNG, JPEG, WebP, TIFF, BMP or GIF)"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports from a test cluster


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    import logging

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


def make_photos(folder: Path, side=(24, 32)) -> Path:
    """Images of every kind the engine keeps (RGB, grey, 16-bit, alpha, JPEG, GIF) and two bad files."""
    from PIL import Image

    rng = np.random.default_rng(0)
    h, w = side
    (folder / "sub").mkdir(parents=True)
    write_image(folder / "rgb.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    write_image(folder / "grey.png", rng.integers(0, 256, (h, w), dtype=np.uint8))
    write_image(folder / "deep.png", rng.integers(0, 65536, (h, w, 3), dtype=np.uint16))
    write_image(folder / "alpha.png", rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
    write_image(folder / "photo.jpg", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / "anim.gif")
    write_image(folder / "sub" / "nested.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    (folder / "bad.png").write_bytes(b"not an image")
    (folder / "trunc.jpg").write_bytes((folder / "photo.jpg").read_bytes()[:200])
    return folder


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def lines(text: str) -> list[str]:
    """genrt's own lines: failures in order of path (Ray reports them as they come), then the summary."""
    found = text.splitlines()
    return sorted(line for line in found if line.startswith("failed ")) + [line for line in found if " done, " in line]


def genrt(capsys, *argv) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    return code, lines(capsys.readouterr().err)


@pytest.mark.ray
def test_same_files_and_report_as_the_local_engine(ray_cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_photos(Path("photos"))
    # An actor runs --cpus-per-actor (1) threads. Kernel choices are timed per thread count, so the local run is
    # given the same count: it times and caches them, and the actors read that cache. (With 2 local threads a
    # timing could pick ORT's convolution in one and genrt's in the other: last-bit float differences that a
    # 16-bit PNG keeps.)
    local = genrt(capsys, "stylize", "style-gravel", "photos/", "-o", "local/", "-r", "--threads", "1")
    ray = genrt(capsys, "stylize", "style-gravel", "photos/", "-o", "ray/", "-r", "--ray")
    assert local == ray
    assert local[0] == 1 and local[1][-1] == "7 done, 0 skipped (already there), 2 failed"
    assert files(Path("ray")) == files(Path("local"))  # bit for bit: 16-bit, grey, alpha, JPEG, GIF -> PNG
    assert read_image("ray/deep-styled.png").pixels.dtype == np.uint16
    assert read_image("ray/alpha-styled.png").alpha is not None

    code, report = genrt(capsys, "stylize", "style-gravel", "photos/", "-o", "ray/", "-r", "--ray")  # resumes
    assert code == 1 and report[-1] == "0 done, 7 skipped (already there), 2 failed"

    # URIs go through pyarrow's filesystems (file:// here; s3:// alike): the same files again
    uri = Path("photos").absolute().as_uri() + "/"
    code, report = genrt(capsys, "stylize", "style-gravel", uri, "-o", Path("uri").absolute().as_uri(), "-r", "--ray")
    assert code == 1 and report[-1] == "7 done, 0 skipped (already there), 2 failed"
    assert report[0] == f"failed {uri}bad.png: {uri}bad.png: not an image genrt reads " + READS
    assert files(Path("uri")) == files(Path("local"))


@pytest.mark.ray
def test_upscale_and_inpaint_match_and_a_clip_is_reported(ray_cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_photos(Path("photos"))
    (Path("photos") / "clip.mp4").write_bytes(b"\x00" * 64)
    for command in (["upscale", "sr-x4"], ["inpaint", "inpaint-photos", "--rect", "4,4,8,8"]):
        # each actor runs 1 thread (--cpus-per-actor 1): so does the local engine here, for the same last bits
        local = genrt(capsys, *command, "photos/", "-o", f"{command[0]}-local", "--threads", "1")
        code, report = genrt(capsys, *command, "photos/", "-o", f"{command[0]}-ray", "--ray", "--actors", "1")
        assert code == local[0] == 1
        assert files(Path(f"{command[0]}-ray")) == files(Path(f"{command[0]}-local"))
        clip = [line for line in report if "clip.mp4" in line]
        if command[0] == "upscale":
            assert clip == ["failed photos/clip.mp4: a video: not run on Ray yet (run the clips without --ray)"]
        assert [line for line in report if line not in clip] == [line for line in local[1] if "clip.mp4" not in line]


def _descendants(pid: int) -> list[int]:
    """This process's descendants (the test's own Ray cluster: its raylet, its workers), by /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _actor_pids() -> list[int]:
    pids = []
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::MapWorker"):
                    pids.append(pid)
        except OSError:
            pass
    return pids


@pytest.mark.ray
@pytest.mark.slow
def test_a_worker_killed_mid_job_loses_nothing(ray_cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    Path("photos").mkdir()
    for i in range(6):  # about half a second each: the job is mid-way when the first lands
        write_image(f"photos/p{i}.png", rng.integers(0, 256, (512, 512, 3), dtype=np.uint8))
    assert genrt(capsys, "stylize", "style-gravel", "photos", "-o", "local", "--threads", "1")[0] == 0

    status = {}
    argv = ["stylize", "style-gravel", "photos", "-o", "ray", "--ray", "--actors", "2"]
    job = threading.Thread(target=lambda: status.setdefault("code", cli.main(argv)))
    job.start()
    deadline = time.monotonic() + 120
    while not list(Path("ray").glob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = _actor_pids()
    written = len(list(Path("ray").glob("*.png")))
    assert pids and 0 < written < 6, (pids, written)
    os.kill(pids[0], signal.SIGKILL)  # an actor mid-image: Ray restarts it and retries its images
    job.join(timeout=180)
    assert not job.is_alive() and status["code"] == 0
    assert lines(capsys.readouterr().err)[-1] == "6 done, 0 skipped (already there), 0 failed"
    assert files(Path("ray")) == files(Path("local"))
    assert not list(Path("ray").glob(f".*{PARTIAL_SUFFIX}"))  # the killed write's partial file removed


# ---------------------------------------------------------------------------------------------------- no cluster


def test_ray_flags_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_photos(Path("photos"))
    assert cli.main(["stylize", "style-gravel", "photos", "-o", "out", "--actors", "2"]) == 2
    assert "--actors: only with --ray" in capsys.readouterr().err
    assert cli.main(["stylize", "style-gravel", "--ray", "photos", "-o", "out"]) == 2  # photos is no address
    assert "expected auto, local, HOST:PORT" in capsys.readouterr().err
    assert cli.main(["stylize", "style-gravel", "photos", "-o", "out", "--cpus-per-actor", "nan", "--ray"]) == 2
    assert cli.main(["stylize", "style-gravel", "s3://bucket/photos/", "-o", "out"]) == 2
    assert "give --ray" in capsys.readouterr().err
    pytest.importorskip("ray")
    assert cli.main(["stylize", "style-gravel", "-", "-o", "out.png", "--ray"]) == 2
    assert "--ray: not with -" in capsys.readouterr().err
    assert not Path("out").exists()


def test_uri_plan_names_like_the_local_engine(tmp_path):
    pytest.importorskip("pyarrow")
    make_photos(tmp_path / "photos")
    uri = (tmp_path / "photos").as_uri()
    out = (tmp_path / "out").as_uri()
    local = batch.plan([tmp_path / "photos"], tmp_path / "out", recursive=True, suffix="-s", ext="webp")
    remote = distributed.plan_uris([uri + "/"], out, recursive=True, suffix="-s", ext="webp")
    assert [(j.source, j.target) for j in remote] == [
        (Path(j.source).as_uri(), Path(j.target).as_uri()) for j in local
    ]
    one = distributed.plan_uris([uri + "/anim.gif"], out + "/x.png")
    assert [(j.source, j.target) for j in one] == [(uri + "/anim.gif", out + "/x.png")]
    with pytest.raises(ArgumentError, match="inside input folder"):
        distributed.plan_uris([uri], uri + "/styled", recursive=True)
    with pytest.raises(ArgumentError, match="not found"):
        distributed.plan_uris([uri + "/missing/"], out)
    with pytest.raises(ArgumentError, match="globs"):
        distributed.plan_uris([str(tmp_path / "photos" / "*.png")], out)


def test_the_mapper_on_bytes_keeps_the_kind(tmp_path):
    """AppMapper as a Ray Data user maps `ray.data.read_binary_files` rows; called here without Ray."""
    make_photos(tmp_path / "photos")
    spec = distributed.AppSpec("stylize", "style-gravel", options={"strength": 0.5})
    mapper = distributed.AppMapper(spec)
    names = ["deep.png", "alpha.png", "bad.png"]
    rows = {
        "bytes": np.asarray([(tmp_path / "photos" / n).read_bytes() for n in names], dtype=object),
        "path": np.asarray(names, dtype=object),
    }
    out = mapper(rows)
    model, apply = spec.load()
    for i, name in enumerate(names[:2]):
        expected = model.stylize_picture(read_image(tmp_path / "photos" / name), strength=0.5)
        assert out["error"][i] == ""
        write_image(tmp_path / name, expected)
        assert out["bytes"][i] == (tmp_path / name).read_bytes()
    assert out["bytes"][2] == b"" and out["error"][2].startswith("bad.png: not an image")
    assert list(out["path"]) == names
