"""Finding a model file and telling what it is before anything parses it.

Nothing here runs code from a file: pickles are recognised by their first bytes and refused.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from genrt.errors import InvalidModelError, ModelNotFoundError

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
FORMATS = {".onnx": "onnx", ".genrt": "bundle", ".pt2": "pt2", ".pt": "torchscript", ".ts": "torchscript"}
BUNDLED_SUFFIXES = (".onnx", ".genrt")  # genrt/models holds ONNX files and genrt bundles (genrt.runtime.bundle)


def bundled_models() -> dict[str, Path]:
    """Bundled models by name: genrt/models/NAME.onnx and NAME.genrt."""
    if not MODELS_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(MODELS_DIR.iterdir()) if p.suffix in BUNDLED_SUFFIXES and p.is_file()}


def resolve(path_or_name) -> Path:
    """A path to an existing file, or the file of a bundled model of that name."""
    if not isinstance(path_or_name, str | Path):
        raise ModelNotFoundError(f"path_or_name: expected a path or a model name, got {type(path_or_name).__name__}")
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise ModelNotFoundError(f"{path}: is not a file")
    bundled = bundled_models()
    if isinstance(path_or_name, str) and path_or_name in bundled:
        return bundled[path_or_name]
    names = ", ".join(bundled) or "none"
    raise ModelNotFoundError(f"{path_or_name}: no such file, and no bundled model of that name (bundled: {names})")


def _looks_like_pickle(head: bytes) -> bool:
    # Protocol 2+ pickles start with PROTO (0x80) and the protocol number; protocol 0/1 ones with an opcode
    # such as '(' or ']' or 'c' and end with '.'; torch.save's legacy format starts with a pickled magic number.
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head[:1] in (b"(", b"]", b"}")


def sniff(path: Path) -> str:
    """'onnx', 'pt2' or 'torchscript', judged from the suffix and checked against the first bytes.

    Raises InvalidModelError for empty files, pickles (torch.save checkpoints: never unpickled), and files whose
    content does not match their suffix.
    """
    size = path.stat().st_size
    if size == 0:
        raise InvalidModelError(f"{path}: the file is empty")
    with open(path, "rb") as f:
        head = f.read(16)
    fmt = FORMATS.get(path.suffix.lower())
    if _looks_like_pickle(head):
        raise InvalidModelError(
            f"{path}: this is a Python pickle (e.g. a torch.save checkpoint); genrt never unpickles files, since "
            "loading a pickle can run arbitrary code. Export the model with genrt.export(...) to .onnx or .pt2."
        )
    is_zip = head[:4] == b"PK\x03\x04"
    if fmt is None:
        raise InvalidModelError(f"{path}: unknown model format {path.suffix!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "onnx" and is_zip:
        raise InvalidModelError(f"{path}: a zip archive, not an ONNX protobuf (a .pt/.pt2 file renamed?)")
    if fmt == "bundle" and not is_zip:
        raise InvalidModelError(f"{path}: not a genrt bundle (expected a zip file)")
    if fmt in ("pt2", "torchscript"):
        if not is_zip:
            raise InvalidModelError(f"{path}: not a {fmt} archive (expected a zip file)")
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidModelError(f"{path}: truncated or corrupt archive ({exc})") from None
        is_torchscript = any(n.endswith("/code/__torch__.py") or "/code/" in n for n in names)
        if fmt == "pt2" and is_torchscript:
            raise InvalidModelError(f"{path}: a TorchScript archive; name it .pt to load it as TorchScript")
        if fmt == "torchscript" and not is_torchscript:
            raise InvalidModelError(
                f"{path}: not a TorchScript archive (a torch.save checkpoint holds pickles, which genrt never "
                "loads); export with genrt.export(...)"
            )
    return fmt
