"""The bundled VAE, RBM, classifier and InfoGAN models load by name (no torch) and do what their cards say."""

import numpy as np
import pytest

import genrt
from genrt.runtime import files


def _bundled(name):
    if name not in files.bundled_models():
        pytest.skip(f"{name} is not bundled in this checkout")
    return genrt.load(name, threads=1)


def _digits(size=8):
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images * (255 / 16)).round().astype(np.uint8), d.target


@pytest.mark.parametrize("name", ["vae-digits", "vae-digits-2d", "vae-faces-2d"])
def test_bundled_vae(name):
    v = _bundled(name)
    assert v.kind == "vae" and v.metadata["description"] and v.metadata["likelihood"] == "bernoulli"
    s = v.sample(4, seed=0)
    assert s.dtype == np.uint8 and s.shape == (4, 32, 32, 1)
    assert v.reconstruct(s).shape == s.shape
    if v.latent_dim == 2:
        assert v.manifold(5).shape == (160, 160, 1)


def test_bundled_vae_reconstructs_held_out_digits_better_than_their_mean():
    v = _bundled("vae-digits")
    images, _ = _digits()
    test = images[1347:1447]
    rec = v.reconstruct(test)[..., 0].astype(np.float64)  # (100, 32, 32)
    small = rec.reshape(-1, 8, 4, 8, 4).mean((2, 4))  # compared at the digits' own 8x8
    err = np.abs(small - test).mean()
    assert err < 0.5 * np.abs(test.mean(0) - test).mean()


def test_bundled_rbm():
    r = _bundled("rbm-digits")
    images, _ = _digits()
    f = r.features(images[:5])
    assert f.shape == (5, r.hidden) and (f >= 0).all() and (f <= 1).all()
    assert r.sample(3, seed=0, gibbs_steps=50).shape == (3, 8, 8, 1)
    assert r.filters().ndim == 3


def test_bundled_ssgan_classifies_held_out_digits():
    c = _bundled("ssgan-digits")
    images, labels = _digits()
    acc = (c.predict(images[1347:]) == labels[1347:]).mean()
    assert acc == pytest.approx(c.metadata["metrics"]["test_accuracy"], abs=0.02)
    assert c.predict_proba(images[:3]).shape == (3, 10)


def test_bundled_infogan():
    m = _bundled("infogan-digits")
    s = m.sample(4, seed=0, codes={"category": 3, "continuous": [0.5, -1.0]})
    assert s.shape == (4, 16, 16, 1)
    assert m.traverse("category", rows=2).shape[1] == 2 + 10 * 18


def test_new_kinds_run_without_torch():
    import subprocess
    import sys

    names = [
        n for n in ("vae-digits-2d", "rbm-digits", "ssgan-digits", "infogan-digits") if n in files.bundled_models()
    ]
    if not names:
        pytest.skip("none of these models is bundled")
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, genrt\n"
        "x = np.zeros((2, 8, 8), np.uint8)\n"
        "for name in sys.argv[1:]:\n"
        "    m = genrt.load(name, threads=1)\n"
        "    {'vae': lambda: (m.sample(2, seed=0), m.reconstruct(x), m.manifold(3)),\n"
        "     'rbm': lambda: (m.features(x), m.sample(2, gibbs_steps=5), m.filters()),\n"
        "     'classifier': lambda: (m.predict(x), m.predict_proba(x)),\n"
        "     'infogan': lambda: (m.sample(2, codes={'category': 1}), m.traverse('continuous:0', 3))}[m.kind]()\n"
        "assert not any(k == 'torch' or k.startswith('torch.') for k in sys.modules if sys.modules[k] is not None)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
