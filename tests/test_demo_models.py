"""The demo sections of the bundled VAE, RBM, classifier and InfoGAN models write their pictures."""

import pytest

from genrt import demo_models


def test_each_section_writes_its_files(tmp_path):
    todo = demo_models.sections()
    if not todo:
        pytest.skip("no bundled model of these kinds")
    for section in todo:
        title, items = section(tmp_path, {"seed": 0, "threads": 1})
        assert title and all((tmp_path / f).stat().st_size > 0 and caption for f, caption in items)
