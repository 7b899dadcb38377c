"""genrt's one error family: every error genrt raises on purpose is a GenrtError."""

import re

# C0 and C1 control characters (newline, carriage return, the terminal's ESC, ...) and DEL: never printed raw.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text) -> str:
    """``text`` safe for one line of a terminal or a report: control characters (newline, carriage return, escape
    sequences) shown as escapes (``\\n``, ``\\x1b``), so a file name cannot split a line or forge another one."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], str(text))


class GenrtError(Exception):
    """Base class of every error genrt raises on purpose."""


class ArgumentError(GenrtError, ValueError):
    """An argument has a bad value (a negative size, an unknown option, ...)."""


class ShapeError(ArgumentError):
    """An array has the wrong rank or shape."""


class MemoryLimitError(ArgumentError):
    """A call (or ``Model.prepare``) with inputs of these shapes would need more memory than the limit.

    Refused before running, from genrt's estimate (the inputs and the model's two largest intermediate tensors, by
    ONNX shape inference) against ``GENRT_MAX_MEMORY`` (bytes or 8G, 512M, ...; default three quarters of the
    machine's memory). The message gives the estimate, the limit and how to raise it.
    """


class DTypeError(GenrtError, TypeError):
    """An array has an unsupported dtype, or is not an array."""


class MissingDependencyError(GenrtError, ImportError):
    """An optional dependency (torch for training and export) is not installed."""


class BuildError(GenrtError, ImportError):
    """genrt's compiled extension is missing or broken."""


class ModelNotFoundError(GenrtError, FileNotFoundError):
    """No model file at that path, and no bundled model of that name."""


class InvalidModelError(GenrtError, ValueError):
    """The file is not a model genrt can load: empty, truncated, another format, or unsafe (a pickle)."""


class InvalidImageError(GenrtError, ValueError):
    """The file is not an image genrt can read: not an image, truncated, corrupt, zero-size, or unsupported.

    Unsupported: a format other than PNG, JPEG, WebP, TIFF, BMP and GIF, or samples that are not 8- or 16-bit
    unsigned (32-bit integer or floating-point TIFFs). The message names the file.
    """


class ImageTooLargeError(InvalidImageError):
    """The image has more pixels than the limit (``max_pixels``, ``GENRT_MAX_PIXELS``, or 100 million).

    Refused from the file's header, before decoding: a guard against decompression bombs, a few KB that decode to
    gigabytes. The message names the file, its size and the limit.
    """


class InvalidVideoError(GenrtError, ValueError):
    """The file is not a video genrt can process: no video stream, truncated, corrupt, zero frames, a codec PyAV
    cannot decode, or frames smaller than genrt.video.MIN_SIDE. The message names the file."""


class ModelKindError(GenrtError, AttributeError):
    """A kind-specific method was used on a model whose metadata does not declare that kind.

    An AttributeError too, so ``hasattr(model, "sample")`` stays False for a discriminator.
    """


class RunError(GenrtError, RuntimeError):
    """Running the model failed inside ONNX Runtime (or torch): a shape a node rejects, a kernel refusing input.

    Attributes: ``node`` and ``op_type`` of the node that failed (None where the engine did not say),
    ``reason``: the engine's explanation.
    """

    def __init__(self, message: str, *, node: str | None = None, op_type: str | None = None, reason: str = ""):
        super().__init__(message)
        self.node, self.op_type, self.reason = node, op_type, reason


class ExportError(GenrtError, RuntimeError):
    """Export failed, or the exported model does not reproduce the torch module."""
