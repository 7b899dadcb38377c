"""genrt.load of classifier and InfoGAN models: each method against torch references, and bad inputs."""

import numpy as np
import pytest

import genrt
from genrt.errors import ArgumentError, DTypeError, GenrtError, ModelKindError, ShapeError

torch = pytest.importorskip("torch")
F = torch.nn.functional

from training import infogan as infogan_mod  # noqa: E402
from training import ssgan as ssgan_mod  # noqa: E402
from training.loop import Parts  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    D = ssgan_mod.Classifier(1, 4, 4, 0.5)
    cfg = ssgan_mod.SSGANConfig(image_size=8, classes=4, labels_per_class=2)
    c = ssgan_mod.export(Parts(torch.nn.Module(), D, {}, None), cfg, "digits", root / "c.onnx")
    icfg = infogan_mod.InfoGANConfig(noise_dim=3, categories=4, continuous=2, latent_dim=9, base_width=4)
    parts = infogan_mod.build(icfg, (1, 16, 16), "cpu")
    i = infogan_mod.export(parts, icfg, "digits", root / "i.onnx")
    return {"c": genrt.load(c), "D": D.eval(), "i": genrt.load(i), "G": parts.G.G.eval()}


def _torch_images(images: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    x = x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x * 2 - 1


def test_classifier_predict_against_torch(models):
    c, D = models["c"], models["D"]
    images = np.random.default_rng(0).integers(0, 256, (7, 8, 8), dtype=np.uint8)
    with torch.no_grad():
        logits = D(_torch_images(images, 8))[0]
    proba = c.predict_proba(images)
    np.testing.assert_allclose(proba, torch.softmax(logits, 1).numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(c.predict(images), logits.argmax(1).numpy())
    assert c.predict(images).dtype == np.int64 and c.classes == ["0", "1", "2", "3"]
    # any size, (N, H, W, 1) or RGB: resized as the training data was
    big = np.random.default_rng(1).integers(0, 256, (3, 30, 30, 1), dtype=np.uint8)
    with torch.no_grad():
        want = torch.softmax(D(_torch_images(big, 8))[0], 1).numpy()
    np.testing.assert_allclose(c.predict_proba(big), want, rtol=1e-4, atol=1e-5)
    rgb = np.repeat(big, 3, axis=3)
    np.testing.assert_allclose(c.predict_proba(rgb), want, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    "call,error",
    [
        (lambda c: c.predict(np.zeros((2, 8, 8), np.float64)), DTypeError),
        (lambda c: c.predict(np.zeros((2, 8, 8, 5), np.uint8)), ShapeError),
        (lambda c: c.predict(np.zeros((8, 8), np.uint8)), ShapeError),
        (lambda c: c.predict(np.zeros((0, 8, 8), np.uint8)), ShapeError),
        (lambda c: c.predict_proba(None), DTypeError),
        (lambda c: c.sample(3), ModelKindError),
        (lambda c: c.traverse("category"), ModelKindError),
    ],
)
def test_classifier_bad_inputs(models, call, error):
    with pytest.raises(error) as info:
        call(models["c"])
    assert isinstance(info.value, GenrtError) and str(info.value)


def test_infogan_latents_and_sample(models):
    m, G = models["i"], models["G"]
    assert (m.noise_dim, m.categories, m.continuous, m.latent_dim) == (3, 4, 2, 9)
    z = m.latents(6, seed=1, codes={"category": 2, "continuous": [0.5, -1.0]})
    np.testing.assert_array_equal(z[:, 3:7], np.eye(4, dtype=np.float32)[[2] * 6])
    np.testing.assert_array_equal(z[:, 7:], [[0.5, -1.0]] * 6)
    free = m.latents(6, seed=1)
    np.testing.assert_array_equal(z[:, :3], free[:, :3])  # fixing codes leaves the noise of a seed unchanged
    assert set(free[:, 3:7].sum(1)) == {1.0} and np.abs(free[:, 7:]).max() <= 1.0
    per_row = m.latents(4, seed=0, codes={"category": [0, 1, 2, 3], "continuous": np.zeros((4, 2))})
    np.testing.assert_array_equal(per_row[:, 3:7], np.eye(4))
    images = m.sample(6, seed=1, codes={"category": 2, "continuous": [0.5, -1.0]})
    with torch.no_grad():
        ref = G(torch.from_numpy(z)).numpy()
    want = np.clip(np.rint((ref + 1) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    assert images.shape == (6, 16, 16, 1) and np.abs(images.astype(int) - want).max() <= 1


def test_infogan_traverse_grids(models):
    m = models["i"]
    grid = m.traverse("category", rows=3, seed=5)
    assert grid.shape == (2 + 3 * 18, 2 + 4 * 18, 1)
    base = m.latents(3, seed=5)
    z = base[1].copy()
    z[3:7] = np.eye(4)[2]
    np.testing.assert_array_equal(grid[20:36, 38:54], m.generate(z[None])[0])  # row 1, column 2
    walk = m.traverse("continuous:1", 5, rows=2, seed=0)
    assert walk.shape == (2 + 2 * 18, 2 + 5 * 18, 1)
    z = m.latents(2, seed=0)[0].copy()
    z[8] = -1.0
    np.testing.assert_array_equal(walk[2:18, 2:18], m.generate(z[None])[0])


@pytest.mark.parametrize(
    "call,error",
    [
        (lambda m: m.sample(0), ArgumentError),
        (lambda m: m.sample(2, codes={"category": 4}), ArgumentError),
        (lambda m: m.sample(2, codes={"category": 1.5}), ArgumentError),
        (lambda m: m.sample(2, codes={"category": [1, 2, 3]}), ArgumentError),
        (lambda m: m.sample(2, codes={"colour": 1}), ArgumentError),
        (lambda m: m.sample(2, codes=[1, 2]), ArgumentError),
        (lambda m: m.sample(2, codes={"continuous": [0.5]}), ShapeError),
        (lambda m: m.sample(2, codes={"continuous": [np.nan, 0.0]}), ArgumentError),
        (lambda m: m.sample(2, codes={"continuous": "ab"}), DTypeError),
        (lambda m: m.generate(np.zeros((2, 8), np.float32)), ShapeError),
        (lambda m: m.traverse("style"), ArgumentError),
        (lambda m: m.traverse("continuous:2"), ArgumentError),
        (lambda m: m.traverse("category", 5), ArgumentError),
        (lambda m: m.traverse("continuous:0", 1), ArgumentError),
        (lambda m: m.traverse("continuous:0", span=(1, -1)), ArgumentError),
        (lambda m: m.traverse("category", rows=0), ArgumentError),
        (lambda m: m.predict(np.zeros((1, 16, 16), np.uint8)), ModelKindError),
    ],
)
def test_infogan_bad_inputs(models, call, error):
    with pytest.raises(error) as info:
        call(models["i"])
    assert isinstance(info.value, GenrtError) and str(info.value)


@pytest.mark.parametrize("kind", ["vae", "rbm", "classifier", "infogan"])
def test_missing_metadata_is_a_clear_error(tmp_path, kind):
    # a file of that kind exported without the training script's metadata: methods say what is missing
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    m = genrt.load(genrt.export(net, tmp_path / f"{kind}.onnx", torch.rand(2, 1, 4, 4), kind=kind))
    call = {
        "vae": lambda: m.sample(2),
        "rbm": lambda: m.features(np.zeros((1, 4, 4), np.uint8)),
        "classifier": lambda: m.predict(np.zeros((1, 4, 4), np.uint8)),
        "infogan": lambda: m.sample(2),
    }[kind]
    with pytest.raises(genrt.InvalidModelError, match="metadata has no"):
        call()
