"""Imports the compiled extension genrt._C, with an actionable message when it is missing."""

try:
    from genrt import _C
except ImportError as exc:  # never swallowed: a genrt without its kernels is a broken install
    from genrt.errors import BuildError

    raise BuildError(
        f"genrt's compiled extension genrt._C could not be imported ({exc}). Reinstall with `pip install .` "
        "(or `pip install -e .`) from the source tree; this needs a C++17 compiler."
    ) from exc

__all__ = ["_C"]
