"""genrt.load of VAE and RBM models: each method against torch/numpy references, and bad inputs."""

from statistics import NormalDist

import numpy as np
import pytest

import genrt
from genrt.errors import ArgumentError, DTypeError, GenrtError, ModelKindError, ShapeError

torch = pytest.importorskip("torch")
F = torch.nn.functional

from training import rbm as rbm_mod  # noqa: E402
from training import vae as vae_mod  # noqa: E402
from training.loop import Parts  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    enc, dec = vae_mod.Encoder(1, 8, 4, 2), vae_mod.Decoder(1, 8, 4, 2)
    cfg = vae_mod.VAEConfig(image_size=8, latent_dim=2, width=4)
    parts = Parts(vae_mod.ImageDecoder(dec), enc, {}, None)
    v = vae_mod.export(parts, cfg, "digits", root / "vae.onnx")
    r = rbm_mod.RBM((1, 4, 4), 5)
    with torch.no_grad():
        r.W.normal_(0, 1.0)
        r.b.normal_()
        r.c.normal_()
    rcfg = rbm_mod.RBMConfig(image_size=4, latent_dim=5)
    rp = rbm_mod.export(Parts(r, torch.nn.Module(), {}, None), rcfg, "digits", root / "rbm.onnx")
    return {"vae": genrt.load(v), "enc": enc, "dec": dec, "rbm": genrt.load(rp), "r": r}


def _torch_images(images: np.ndarray, size: int, lo: float, hi: float) -> torch.Tensor:
    x = torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]  # (N, 1, H, W)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x * (hi - lo) + lo


def _uint8(x: torch.Tensor) -> np.ndarray:
    return np.clip(np.rint(x.detach().numpy() * 255), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def test_vae_encode_decode_against_torch(models):
    v, enc, dec = models["vae"], models["enc"], models["dec"]
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8), dtype=np.uint8)
    mu, logvar = v.encode(images)
    with torch.no_grad():
        want_mu, want_logvar = enc(_torch_images(images, 8, -1, 1))
    np.testing.assert_allclose(mu, want_mu.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logvar, want_logvar.numpy(), rtol=1e-4, atol=1e-5)
    # any size and RGB(A) input: resized (antialiased, as training/data.py) and converted to grey
    big = np.random.default_rng(1).integers(0, 256, (2, 20, 13), dtype=np.uint8)
    with torch.no_grad():
        want, _ = enc(_torch_images(big, 8, -1, 1))
    np.testing.assert_allclose(v.encode(big)[0], want.numpy(), rtol=1e-4, atol=1e-4)
    rgba = np.repeat(big[..., None], 4, axis=3)
    np.testing.assert_allclose(v.encode(rgba)[0], want.numpy(), rtol=1e-3, atol=1e-3)
    z = np.random.default_rng(2).standard_normal((4, 2)).astype(np.float32)
    got = v.decode(z)
    assert got.shape == (4, 8, 8, 1) and got.dtype == np.uint8
    with torch.no_grad():
        want = _uint8(torch.sigmoid(dec(torch.from_numpy(z))))
    assert np.abs(got.astype(int) - want).max() <= 1
    np.testing.assert_array_equal(v.reconstruct(images), v.decode(mu))


def test_vae_sample_and_manifold(models):
    v = models["vae"]
    a = v.sample(5, seed=3)
    np.testing.assert_array_equal(a, v.sample(5, seed=3))
    np.testing.assert_array_equal(a, v.decode(np.random.default_rng(3).standard_normal((5, 2), dtype=np.float32)))
    assert not np.array_equal(a, v.sample(5, seed=4))
    grid = v.manifold(4)
    assert grid.shape == (32, 32, 1)
    q = [NormalDist().inv_cdf(p) for p in (0.125, 0.375, 0.625, 0.875)]
    np.testing.assert_array_equal(grid[:8, 8:16], v.decode(np.array([[q[1], q[0]]], np.float32))[0])
    np.testing.assert_array_equal(grid[24:, :8], v.decode(np.array([[q[0], q[3]]], np.float32))[0])


@pytest.mark.parametrize(
    "call,error",
    [
        (lambda v: v.encode(np.zeros((2, 8, 8), np.float32)), DTypeError),
        (lambda v: v.encode(np.zeros((8, 8, 2, 2), np.uint8)), ShapeError),
        (lambda v: v.encode(np.zeros((0, 8, 8), np.uint8)), ShapeError),
        (lambda v: v.encode(np.zeros((8,), np.uint8)), ShapeError),
        (lambda v: v.encode("digits.png"), DTypeError),
        (lambda v: v.decode(np.zeros((3, 5), np.float32)), ShapeError),
        (lambda v: v.decode(np.zeros((0, 2), np.float32)), ShapeError),
        (lambda v: v.decode(np.array([[np.nan, 0.0]])), ArgumentError),
        (lambda v: v.decode([["a", "b"]]), DTypeError),
        (lambda v: v.sample(0), ArgumentError),
        (lambda v: v.sample(2.5), ArgumentError),
        (lambda v: v.sample(2, seed=-1), ArgumentError),
        (lambda v: v.sample(2, seed="x"), ArgumentError),
        (lambda v: v.manifold(1), ArgumentError),
        (lambda v: v.predict(np.zeros((1, 8, 8), np.uint8)), ModelKindError),
    ],
)
def test_vae_bad_inputs(models, call, error):
    with pytest.raises(error) as info:
        call(models["vae"])
    assert isinstance(info.value, GenrtError) and str(info.value)


def test_vae_manifold_needs_a_2d_latent(tmp_path):
    torch.manual_seed(0)
    enc, dec = vae_mod.Encoder(1, 8, 4, 3), vae_mod.Decoder(1, 8, 4, 3)
    cfg = vae_mod.VAEConfig(image_size=8, latent_dim=3, width=4)
    v = genrt.load(vae_mod.export(Parts(vae_mod.ImageDecoder(dec), enc, {}, None), cfg, "digits", tmp_path / "v.onnx"))
    with pytest.raises(ArgumentError, match="2-D latent"):
        v.manifold(5)


def test_rbm_features_weights_filters(models):
    m, r = models["rbm"], models["r"]
    W, b, c = m.weights
    np.testing.assert_allclose(W, r.W.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(b, r.b.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(c, r.c.detach().numpy(), rtol=1e-6)
    assert m.hidden == 5
    images = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 1), dtype=np.uint8)
    with torch.no_grad():
        want = r.p_h(_torch_images(images[..., 0], 4, 0, 1).flatten(1)).numpy()
    np.testing.assert_allclose(m.features(images), want, rtol=1e-5, atol=1e-6)
    grid = m.filters()
    assert grid.shape == (1 + 2 * 5, 1 + 3 * 5, 1) and grid.dtype == np.uint8  # 5 filters, 3 per row
    w0 = W[:, 0].reshape(4, 4)
    np.testing.assert_array_equal(grid[1:5, 1:5, 0], np.rint((w0 - w0.min()) / (w0.max() - w0.min()) * 255))


def test_rbm_sample_follows_the_model(models, tmp_path):
    m = models["rbm"]
    a = m.sample(4, seed=1, gibbs_steps=20)
    assert a.shape == (4, 4, 4, 1) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, m.sample(4, seed=1, gibbs_steps=20))
    # an RBM with W = 0 has independent pixels: every chain's last p(v|h) is sigmoid(b), exactly
    r = rbm_mod.RBM((1, 3, 3), 4)
    with torch.no_grad():
        r.W.zero_()
        r.b.copy_(torch.linspace(-3, 3, 9))
    cfg = rbm_mod.RBMConfig(image_size=3, latent_dim=4)
    flat = genrt.load(rbm_mod.export(Parts(r, torch.nn.Module(), {}, None), cfg, "digits", tmp_path / "r.onnx"))
    want = np.rint(255 / (1 + np.exp(-np.linspace(-3, 3, 9)))).reshape(3, 3)
    np.testing.assert_array_equal(flat.sample(3, seed=0, gibbs_steps=2)[..., 0], np.broadcast_to(want, (3, 3, 3)))


@pytest.mark.parametrize(
    "call,error",
    [
        (lambda m: m.features(np.zeros((2, 4, 4), np.int64)), DTypeError),
        (lambda m: m.features(np.zeros((2, 4, 4, 2), np.uint8)), ShapeError),
        (lambda m: m.features([np.zeros((4, 4), np.uint8), np.zeros((5, 5), np.uint8)]), ShapeError),
        (lambda m: m.sample(0), ArgumentError),
        (lambda m: m.sample(2, gibbs_steps=0), ArgumentError),
        (lambda m: m.sample(2, seed=1.5), ArgumentError),
        (lambda m: m.filters(nrow=0), ArgumentError),
        (lambda m: m.filters(padding=-1), ArgumentError),
        (lambda m: m.encode(np.zeros((1, 4, 4), np.uint8)), ModelKindError),
    ],
)
def test_rbm_bad_inputs(models, call, error):
    with pytest.raises(error) as info:
        call(models["rbm"])
    assert isinstance(info.value, GenrtError) and str(info.value)
