import os
import tempfile

import numpy as np
import pytest

from genrt import _C

# Kernel-choice caches go to a throwaway folder, not the user's ~/.cache/genrt.
os.environ.setdefault("GENRT_CACHE_DIR", tempfile.mkdtemp(prefix="genrt-test-cache-"))


@pytest.fixture(params=_C.available_isas())
def isa(request):
    """Runs a test once per instruction set this machine supports, restoring the default after."""
    previous = _C.active_isa()
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa(previous)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
