"""The bundled digit generators meet their cards' quality floor under the evaluation's own classifier."""

import pytest

from training import evaluate


@pytest.fixture(scope="module")
def real_classifier_cache(tmp_path_factory):
    # A cache of this module's own, so the classifier is the real one (10 epochs), trained once for both tests, and
    # not the quicker one other test modules train into the session cache.
    return tmp_path_factory.mktemp("real-classifier")


@pytest.mark.parametrize("name", ["gan-digits", "dcgan-digits"])
def test_bundled_digit_generators_clear_the_coverage_floor(name, real_classifier_cache, monkeypatch):
    monkeypatch.setenv("GENRT_CACHE", str(real_classifier_cache))  # over the session cache conftest sets
    # The card's standard evaluation: every digit class holds more than 5% of 2000 samples, and none are copies.
    result = evaluate.evaluate(name)
    assert result["coverage"] > evaluate.COVERAGE_FLOOR and result["coverage_ok"]
    assert result["confidence"] > 0.85 and result["copy_fraction"] < 0.01


def test_bundled_dcgan_digits_clears_the_floor_at_most_latent_seeds(real_classifier_cache, monkeypatch):
    monkeypatch.setenv("GENRT_CACHE", str(real_classifier_cache))
    # The card measures 39 of 40 seeds (the previous bundle: 12 of 40); seeds 0-9 all pass there.
    result = evaluate.coverage_over_seeds("dcgan-digits", 10)
    assert result["passed"] >= 9, result["coverage"]


def test_bundled_infogan_code_matches_the_digit_class(real_classifier_cache, monkeypatch):
    monkeypatch.setenv("GENRT_CACHE", str(real_classifier_cache))
    # The card: c1 under the best one-to-one map reads as the digit class for at least 90% of the samples.
    from genrt.runtime import files
    from training import infogan

    result = infogan.category_match(files.resolve("infogan-digits"))
    assert result["category_digit_match"] >= 0.90, result["confusion"]
    effects = infogan.continuous_code_effects(files.resolve("infogan-digits"))
    strongest = {code: max(abs(r["slant"]), abs(r["width"])) for code, r in effects.items()}
    assert max(strongest.values()) > 0.4, effects  # a continuous code still moves slant or width


def test_bundled_ssgan_clears_095_and_beats_label_spreading_on_its_seed():
    import dataclasses

    import numpy as np
    from sklearn.datasets import load_digits

    import genrt
    from training import ssgan

    c = genrt.load("ssgan-digits")
    fields = {f.name for f in dataclasses.fields(ssgan.SSGANConfig)}
    cfg = ssgan.SSGANConfig(**{k: v for k, v in c.metadata["config"].items() if k in fields})
    bunch = load_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)  # users' uint8 digits
    test = slice(cfg.train_images, None)
    accuracy = (c.predict(images[test]) == bunch.target[test]).mean()
    assert accuracy >= 0.95
    assert accuracy > ssgan.label_spreading_accuracy(cfg)  # scikit-learn's graph method, same seed's 100 labels
