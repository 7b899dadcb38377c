"""GPU tests: every test marked `cuda` here skips cleanly unless genrt's CUDA kernels are built and see a GPU."""

import pytest

from genrt import kernels


def pytest_collection_modifyitems(config, items):
    if kernels.cuda_available():
        return
    why = "no CUDA GPU for genrt's kernels" if kernels._cuda_module() is not None else "genrt built without CUDA"
    skip = pytest.mark.skip(reason=why)
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
