"""The web editor's tests share one igan-digits manipulator per module (skipped until the bundle is there)."""

import pytest

import genrt
from genrt.errors import ModelNotFoundError


@pytest.fixture(scope="module")
def manipulator():
    try:
        return genrt.load("igan-digits", threads=1)
    except ModelNotFoundError as exc:
        pytest.skip(f"the igan-digits bundle is not there yet ({exc})")
