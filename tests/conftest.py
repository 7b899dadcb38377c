import numpy as np
import pytest

from genrt import _C


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
