"""genrt.apps.manipulate: the bundled iGAN manipulators through genrt.load, checked against independent references
(finite differences for the ONNX gradient, the nearest of random samples for projection, pixel statistics for
edits and transfer), the bundle format's safety, and the runtime with torch unimportable."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

import genrt
from genrt.apps.manipulate import Manipulator, Stroke, rasterize
from genrt.errors import ArgumentError, InvalidModelError, ShapeError
from genrt.runtime import files

NAMES = [n for n in ("igan-digits", "igan-faces") if n in files.bundled_models()]
pytestmark = pytest.mark.skipif(not NAMES, reason="no iGAN manipulator is bundled")
BAR = {"tool": "color", "points": [[0.15, 0.5], [0.85, 0.5]], "width": 0.12, "color": [255, 255, 255]}


@pytest.fixture(scope="module", params=NAMES)
def m(request):
    return genrt.load(request.param, threads=1)


@pytest.fixture(scope="module")
def digits():
    return genrt.load("igan-digits", threads=1)


def held_out_digits(n: int) -> np.ndarray:
    """The last scikit-learn digits (never trained on), 32x32 uint8, resized by Pillow (not genrt's code)."""
    from sklearn.datasets import load_digits

    images = load_digits().images[-450:][:n]
    return np.stack([
        np.asarray(Image.fromarray((im * 255 / 16).astype(np.uint8)).resize((32, 32), Image.BILINEAR))
        for im in images
    ])  # fmt: skip


def psnr(a, b) -> float:
    return float(10 * np.log10(255.0**2 / ((a.astype(float) - b.astype(float)) ** 2).mean()))


def test_load_returns_a_manipulator(m):
    assert isinstance(m, Manipulator) and m.kind == "manipulator"
    assert m.image_size == (32, 32) and m.channels == 1
    z = m.sample_latents(3, seed=0)
    assert z.shape == (3, m.latent_dim) and m.generate(z).shape == (3, 32, 32, 1)
    np.testing.assert_array_equal(m.generate(z), m.generate(m.sample_latents(3, seed=0)))


def test_gradient_matches_finite_differences(m):
    rng = np.random.default_rng(0)
    z = m.sample_latents(3, seed=1)
    target = rng.uniform(-1, 1, (m.channels, 32, 32)).astype(np.float32)
    feeds = m._feeds(target=target, pixel=np.full((32, 32), 1 / 1024, np.float32), anchor=z[0],
                     edge_target=np.ones((32, 32), np.float32), edge=np.full((32, 32), 1 / 1024, np.float32),
                     coefs=(0.1, 0.05, 0.1))  # fmt: skip
    for graph in (m, m.projection):
        _, grad, _ = graph({"z": z, **feeds})
        d = rng.standard_normal(z.shape).astype(np.float32)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        eps = 1e-2
        up = graph({"z": (z + eps * d).astype(np.float32), **feeds})[0].astype(np.float64)
        down = graph({"z": (z - eps * d).astype(np.float32), **feeds})[0].astype(np.float64)
        np.testing.assert_allclose((up - down) / (2 * eps), (grad * d).sum(1), rtol=0.05, atol=2e-4)


def test_projection_beats_the_nearest_of_1000_samples(digits):
    real = held_out_digits(8)
    samples = digits.generate(digits.sample_latents(1000, seed=7))
    nearest = [max(psnr(s, x[..., None]) for s in samples) for x in real]
    projected = [digits.project(x).psnr for x in real]
    assert np.mean(projected) > np.mean(nearest) + 3.0  # measured: 28.9 dB against 19.3 dB (BENCHMARKS.md)
    p = digits.project(real[0])
    assert p.z.shape == (digits.latent_dim,) and p.image.shape == (32, 32, 1)
    assert abs(psnr(p.image, real[0][..., None]) - p.psnr) < 0.5  # the reported PSNR is the image's


def test_encoder_starts_help(digits):
    real = held_out_digits(6)
    with_e = np.mean([digits.project(x, steps=30).psnr for x in real])
    without = np.mean([digits.project(x, steps=30, encoder=False).psnr for x in real])
    assert with_e > without


def test_colour_edit_moves_the_stroke_region_and_stays_near_z0(m):
    z0 = m.sample_latents(1, seed=3)[0]
    mask = rasterize([Stroke.of(BAR)], m.image_size, m.channels)[0] > 0.5
    before = m.generate(z0[None])[0, ..., 0]
    cands = m.edit(z0, [BAR], k=3, seed=0)
    assert len(cands) == 3 and [c.loss for c in cands] == sorted(c.loss for c in cands)
    after = cands[0].image[..., 0]
    assert after[mask].mean() > before[mask].mean() + 30
    dark = {**BAR, "color": [0, 0, 0]}
    assert m.edit(z0, [dark], k=1, seed=0)[0].image[..., 0][mask].mean() < before[mask].mean()
    # proximity keeps the result nearer z0 than a random latent is
    assert np.linalg.norm(cands[0].z - z0) < np.linalg.norm(m.sample_latents(1, seed=9)[0] - z0)


def test_sketch_edit_puts_edges_on_the_line(digits):
    from scipy import ndimage

    z0 = digits.sample_latents(1, seed=4)[0]
    line = {"tool": "sketch", "points": [[0.5, 0.1], [0.5, 0.9]], "width": 0.03}
    sketch = rasterize([Stroke.of(line)], (32, 32), 1)[2] > 0.5

    def edge(img):
        a = img[..., 0].astype(float)
        return np.hypot(ndimage.sobel(a, 0), ndimage.sobel(a, 1))[sketch].mean()

    assert edge(digits.edit(z0, [line], k=1, seed=0)[0].image) > edge(digits.generate(z0[None])[0])


@pytest.mark.torch
def test_digit_edits_stay_digits(digits):
    """The evaluation classifier (training/evaluate.py) is as sure of the edited digits as of G's own samples."""
    import torch

    from training import data as data_mod
    from training.evaluate import _classify, load_classifier

    ds = data_mod.load("digits", 32)
    net, _ = load_classifier(ds.images, ds.labels)

    def confidence(u8):
        probs, _ = _classify(net, torch.from_numpy(u8.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1))
        return probs.max(1).mean()

    zs = digits.sample_latents(24, seed=5)
    edits = np.stack([digits.edit(z, [BAR], k=1, seed=0)[0].image for z in zs])
    assert confidence(edits) > confidence(digits.generate(zs)) - 0.05  # measured (40 latents): 0.88 against 0.84


def test_no_strokes_returns_z0_first(m):
    z0 = m.sample_latents(1, seed=2)[0]
    cands = m.edit(z0, [], k=2, seed=0)
    np.testing.assert_array_equal(cands[0].z, z0)


def test_morph_runs_from_z0_to_z1(m):
    z0, z1 = m.sample_latents(2, seed=6)
    frames = m.morph(z0, z1, 5)
    assert frames.shape == (5, 32, 32, 1)
    np.testing.assert_array_equal(frames[0], m.generate(z0[None])[0])
    np.testing.assert_array_equal(frames[-1], m.generate(z1[None])[0])


def test_transfer_carries_the_edit_onto_the_photo(digits):
    pytest.importorskip("cv2")
    z0 = digits.sample_latents(1, seed=3)[0]
    z1 = digits.edit(z0, [BAR], k=1, seed=0)[0].z
    photo = np.random.default_rng(0).integers(60, 120, (150, 240, 3), dtype=np.uint8)
    same = digits.transfer(photo, z0, z0)
    assert same.shape == photo.shape and same.dtype == np.uint8
    assert np.abs(same.astype(int) - photo).max() <= 1
    out = digits.transfer(photo, z0, z1).astype(float)
    change = np.asarray(
        Image.fromarray(np.int16(digits.generate(z1[None])[0, ..., 0]) - digits.generate(z0[None])[0, ..., 0]).resize(
            (240, 150)
        )
    )
    brighter = change > 60
    assert (out - photo)[brighter].mean() > 20  # where G brightened, the photo brightened
    assert abs((out - photo)[np.abs(change) < 5].mean()) < 5  # where G stayed, so did the photo
    grey = digits.transfer(photo[..., 0], z0, z1)
    assert grey.shape == (150, 240)


def test_bad_arguments_are_clear_errors(m):
    z0 = m.sample_latents(1, seed=0)[0]
    bad = [
        [{"tool": "spray", "points": [[0, 0]]}],
        [{"tool": "color", "points": [[0.5, 1.5]]}],
        [{"tool": "color", "points": [[0.5, float("nan")]]}],
        [{"tool": "color", "points": [[0.5, 0.5]], "width": 0}],
        [{"tool": "color", "points": [[0.5, 0.5]], "color": [0, 0, 300]}],
        [{"tool": "color", "points": []}],
        [{"tool": "color", "points": [[0.5, 0.5]], "size": 3}],
        ["stroke"],
    ]
    for strokes in bad:
        with pytest.raises(ArgumentError):
            m.edit(z0, strokes)
    with pytest.raises(ShapeError):
        m.edit(z0[:-1], [BAR])
    with pytest.raises(ArgumentError):
        m.edit(np.full_like(z0, np.nan), [BAR])
    with pytest.raises(ArgumentError):
        m.edit(z0, [BAR], k=0)
    with pytest.raises(ArgumentError):
        m.edit(z0, [BAR], proximity=-1.0)
    with pytest.raises(ArgumentError):
        m.morph(z0, z0, 1)


def _bundle(tmp_path, manifest, members):
    path = tmp_path / "m.genrt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest) if isinstance(manifest, dict) else manifest)
        for name, blob in members.items():
            zf.writestr(name, blob)
    return path


def test_malformed_bundles_are_refused(tmp_path):
    real = zipfile.ZipFile(files.resolve(NAMES[0]))
    manifest = json.loads(real.read("manifest.json"))
    graphs = {n: real.read(n) for n in manifest["graphs"].values()}
    cases = [
        ("{not json", graphs, "not JSON"),
        ({**manifest, "graphs": {**manifest["graphs"], "edit": "../edit.onnx"}}, graphs, "bad member name"),
        ({**manifest, "graphs": {"edit": "edit.onnx"}}, graphs, "needs graphs"),
        (manifest, {**graphs, "edit.onnx": b"\x08\x01garbage"}, "not a readable ONNX"),
        ({**manifest, "kind": "spaceship"}, graphs, "cannot load"),
        ({k: v for k, v in manifest.items() if k != "kind"}, graphs, 'no "kind"'),
    ]
    for i, (man, members, match) in enumerate(cases):
        sub = tmp_path / str(i)
        sub.mkdir()
        with pytest.raises(InvalidModelError, match=match):
            genrt.load(_bundle(sub, man, members))
    not_zip = tmp_path / "x.genrt"
    not_zip.write_bytes(b"\x08\x01 an ONNX-looking protobuf")
    with pytest.raises(InvalidModelError, match="zip"):
        genrt.load(not_zip)


def test_listed_with_its_kind():
    listed = {m["name"]: m for m in genrt.list_models()}
    for name in NAMES:
        assert listed[name]["kind"] == "manipulator" and "iGAN" in listed[name]["description"]


def test_runs_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, genrt\n"
        "m = genrt.load(sys.argv[1], threads=1)\n"
        "p = m.project(np.zeros((20, 20), np.uint8), steps=3)\n"
        "c = m.edit(p.z, [{'tool': 'color', 'points': [[0.2, 0.5], [0.8, 0.5]]}], k=2, steps=3)\n"
        "m.morph(p.z, c[0].z, 3)\n"
        "assert not any(k == 'torch' or k.startswith('torch.') for k in sys.modules if sys.modules[k] is not None)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, NAMES[0]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
