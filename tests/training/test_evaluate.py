import numpy as np
import pytest
import torch

import genrt
from training import data, evaluate


@pytest.fixture(scope="module")
def fast_classifier():
    # Fewer classifier epochs than the real evaluation: enough to tell digits apart, and quick.
    original = evaluate.train_classifier.__defaults__
    evaluate.train_classifier.__defaults__ = (3,)
    yield
    evaluate.train_classifier.__defaults__ = original


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 3))
    assert evaluate.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # N(0, I) vs N(m, 4I): |m|^2 + sum (1 + 4 - 2 * 2) = |m|^2 + 3
    b = 2.0 * rng.standard_normal((4000, 3)) + np.array([1.0, 0.0, 0.0])
    assert evaluate.frechet_distance(a, b) == pytest.approx(4.0, rel=0.1)


def test_real_digits_vs_collapsed_generator(fast_classifier):
    real = data.load("digits").images
    good = evaluate.evaluate_digits(real[torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:500]])
    assert good["coverage"] > 0.05 and good["coverage_ok"]
    assert good["confidence"] > 0.8 and good["classifier_held_out_accuracy"] > 0.8
    assert good["copy_fraction"] > 0.9  # real digits are their own nearest neighbours

    collapsed = evaluate.evaluate_digits(real[7:8].repeat(500, 1, 1, 1))
    assert collapsed["coverage"] < 0.01 and not collapsed["coverage_ok"]  # 9 classes never appear
    assert collapsed["frechet"] > 10 * good["frechet"]


def test_evaluate_through_the_runtime(tmp_path, fast_classifier):
    class Constant(torch.nn.Module):
        def __init__(self, image):
            super().__init__()
            self.register_buffer("image", image)

        def forward(self, z):
            return self.image.expand(z.shape[0], -1, -1, -1) + 0.0 * z[:, :1, None, None]

    image = data.load("digits").images[0:1]  # (1, 1, 32, 32)
    path = genrt.export(
        Constant(image), tmp_path / "c.onnx", torch.zeros(2, 8), kind="generator", metadata={"dataset": "digits"}
    )
    result = evaluate.evaluate(str(path), n=200)
    assert result["n"] == 200 and result["coverage"] == 0.0 and result["real_coverage"] > 0.05
    assert evaluate.main([str(path), "--n", "50", "--json", str(tmp_path / "r.json")]) == 0
    assert (tmp_path / "r.json").is_file()

    over = evaluate.coverage_over_seeds(str(path), 3, n=100)  # one digit at every seed: no seed clears the floor
    assert over["coverage"] == [0.0, 0.0, 0.0] and over["passed"] == 0
    assert evaluate.main([str(path), "--seeds", "2", "--n", "50"]) == 0
    assert evaluate.main(["dcgan-faces", "--seeds", "2"]) == 1  # not a digits generator: one-line error


def test_classifier_free_metrics():
    real = data.load("faces").images
    r = evaluate.evaluate_images(real[:100], real)
    assert r["copy_fraction"] == 1.0 and r["pca_frechet"] < r["real_pca_frechet"] * 5
    noise = torch.rand(100, 1, 32, 32) * 2 - 1
    assert evaluate.evaluate_images(noise, real)["pca_frechet"] > 5 * r["pca_frechet"]
