import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """The evaluation classifier is cached per test session, never in the user's ~/.cache."""
    monkeypatch.setenv("GENRT_CACHE", str(tmp_path_factory.getbasetemp() / "genrt-cache"))


def tiny(cls, tmp_path, **overrides):
    """A config for a few steps on digits: small batch, no export, no progress bar, one thread."""
    base = dict(
        dataset="digits",
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=16,
        max_steps=4,
        ckpt_every=2,
        sample_every=2,
        export=False,
        progress=False,
        threads=1,
    )
    base.update(overrides)
    return cls(**base)
