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
