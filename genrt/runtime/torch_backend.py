"""Runs .pt2 (torch.export) and .pt (TorchScript) files; torch is imported only here, and only for them."""

from __future__ import annotations

import contextlib
import pickle
import threading
from pathlib import Path

import numpy as np

from genrt.errors import ArgumentError, GenrtError, InvalidModelError, RunError
from genrt.runtime import metadata as md
from genrt.runtime.onnx_session import IOSpec

METADATA_FILE = "genrt.json"  # inside the archive; the same JSON also sits beside the file as PATH.json


_patch_lock = threading.Lock()


@contextlib.contextmanager
def _refusing_pickles(torch, path: Path):
    """While a .pt2 loads: torch.load only with weights_only=True, and no plain unpickling at all.

    torch.export.load falls back to full unpickling for some archives, which can run arbitrary code; genrt loads
    only what loads without it.
    """

    def refuse(*args, **kwargs):
        raise InvalidModelError(
            f"{path}: this archive needs Python unpickling to load, which can run arbitrary code; genrt refuses it. "
            "Re-export the model with genrt.export(...)."
        )

    real_load = torch.load

    def weights_only_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    with _patch_lock:
        saved = (torch.load, pickle.loads, pickle.load, torch._C._pickle_load_obj)
        torch.load, pickle.loads, pickle.load, torch._C._pickle_load_obj = weights_only_load, refuse, refuse, refuse
        try:
            yield
        finally:
            torch.load, pickle.loads, pickle.load, torch._C._pickle_load_obj = saved


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _read_metadata(path: Path, text) -> dict:
    """The genrt metadata of a .pt2/.pt file: its archive's genrt.json, else the JSON beside it; size, nesting and
    contract checked (InvalidModelError naming the file and the key)."""
    where = f"{path}: {METADATA_FILE}"
    if not text:
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            return {}
        where = str(sidecar)
        try:
            if sidecar.stat().st_size > md.MAX_TOTAL_CHARS:
                raise InvalidModelError(
                    f"{sidecar} is {sidecar.stat().st_size} bytes, over the {md.MAX_TOTAL_CHARS} limit"
                )
            text = sidecar.read_bytes()
        except OSError as exc:
            raise InvalidModelError(f"{sidecar}: cannot read it ({exc.strerror or exc})") from None
    metadata = md.loads(text, where, max_chars=md.MAX_TOTAL_CHARS)
    if not isinstance(metadata, dict):
        raise InvalidModelError(f"{where}: genrt metadata must be a JSON object, got {type(metadata).__name__}")
    return md.validate(metadata, path, label="")


class TorchRunner:
    def __init__(self, path: Path, fmt: str, *, device: str, threads: int):
        import genrt.ops  # noqa: F401  (registers genrt's ops before the graph refers to them)
        from genrt._torch import torch

        self._torch = torch
        if device != "cpu" and not (device == "cuda" or device.startswith("cuda:")):
            raise ArgumentError(f"device: expected 'cpu' or 'cuda[:N]', got {device!r}")
        if device != "cpu" and not torch.cuda.is_available():
            raise GenrtError(f"device={device!r}: torch sees no CUDA GPU on this machine")
        self._device = device
        extra = {METADATA_FILE: ""}
        try:
            if fmt == "pt2":
                with _refusing_pickles(torch, path):
                    program = torch.export.load(str(path), extra_files=extra)
                self._module = program.module().to(self._device)
            else:
                self._module = torch.jit.load(str(path), map_location=self._device, _extra_files=extra)
        except InvalidModelError:
            raise
        except Exception as exc:
            raise InvalidModelError(f"{path}: torch cannot load this {fmt} file: {exc}") from None
        self.metadata = _read_metadata(path, extra[METADATA_FILE])
        io = self.metadata.get("io", {})
        self.inputs = [_spec(s) for s in io.get("inputs", [])] or [IOSpec("input", ("?",), np.float32)]
        self.outputs = [_spec(s) for s in io.get("outputs", [])] or [IOSpec("output", ("?",), np.float32)]
        self._threads = threads
        self._path = path

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(feeds[s.name]).to(self._device) for s in self.inputs]
        previous = torch.get_num_threads()
        torch.set_num_threads(self._threads)
        try:
            with torch.inference_mode():
                out = self._module(*args)
        except Exception as exc:  # a shape the graph rejects, a genrt op refusing its input, ...
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RunError(f"{self._path}: torch failed to run the model: {reason}", reason=reason) from exc
        finally:
            torch.set_num_threads(previous)
        outs = out if isinstance(out, tuple | list) else (out,)
        return [o.detach().cpu().numpy() for o in outs]


def _spec(d: dict) -> IOSpec:
    return IOSpec(d["name"], tuple(d["shape"]), np.dtype(d["dtype"]).type)
