"""genrt demo on a bundled-models folder of tiny generators."""

import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

import genrt  # noqa: E402
from genrt import demo, demo_apps  # noqa: E402
from genrt.cli import main  # noqa: E402
from genrt.runtime import files  # noqa: E402
from tests.tiny_models import make  # noqa: E402


@pytest.fixture
def bundled(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    g, d = make()
    genrt.export(g, models / "tiny-gen.onnx", torch.randn(2, 16), kind="generator", metadata={"description": "tiny"})
    genrt.export(d, models / "tiny-disc.onnx", torch.randn(4, 1, 8, 8), kind="discriminator")
    monkeypatch.setattr(files, "MODELS_DIR", models)
    monkeypatch.setattr(demo_apps, "installed_models", lambda: [])  # third-party models installed here: not these
    return models


def test_list_models(bundled):
    listed = {m["name"]: m for m in genrt.list_models()}
    assert listed["tiny-gen"]["kind"] == "generator" and listed["tiny-gen"]["description"] == "tiny"
    assert listed["tiny-disc"]["kind"] == "discriminator"
    assert genrt.load("tiny-gen").latent_dim == 16


def test_demo_writes_pictures_and_index(bundled, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["index.html", "tiny-gen-arithmetic.png", "tiny-gen-samples.png", "tiny-gen-walk.png"]
    page = (out / "index.html").read_text()
    for name in names[1:]:
        assert f"src='{name}'" in page
        assert Image.open(out / name).size[0] > 0
    assert "tiny-disc" not in page  # only generators get a section


def test_demo_without_generators_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MODELS_DIR", tmp_path)
    monkeypatch.setattr(demo_apps, "installed_models", lambda: [])
    with pytest.raises(genrt.ArgumentError, match="no bundled models"):
        demo.run(tmp_path / "out")
