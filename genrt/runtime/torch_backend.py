"""Runs .pt2 (torch.export) and .pt (TorchScript) files; torch is imported only here, and only for them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from genrt.errors import InvalidModelError
from genrt.runtime.onnx_session import IOSpec

METADATA_FILE = "genrt.json"  # inside the archive; the same JSON also sits beside the file as PATH.json


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


class TorchRunner:
    def __init__(self, path: Path, fmt: str, *, device: str, threads: int):
        import genrt.ops  # noqa: F401  (registers genrt's ops before the graph refers to them)
        from genrt._torch import torch

        self._torch = torch
        self._device = "cuda" if device.startswith("cuda") else "cpu"
        extra = {METADATA_FILE: ""}
        try:
            if fmt == "pt2":
                program = torch.export.load(str(path), extra_files=extra)
                self._module = program.module()
            else:
                self._module = torch.jit.load(str(path), map_location=self._device, _extra_files=extra)
        except Exception as exc:
            raise InvalidModelError(f"{path}: torch cannot load this {fmt} file: {exc}") from None
        text = extra[METADATA_FILE]
        if not text and sidecar_path(path).is_file():
            text = sidecar_path(path).read_text()
        try:
            self.metadata = json.loads(text) if text else {}
        except json.JSONDecodeError as exc:
            raise InvalidModelError(f"{path}: genrt metadata is not valid JSON: {exc}") from None
        io = self.metadata.get("io", {})
        self.inputs = [_spec(s) for s in io.get("inputs", [])] or [IOSpec("input", ("?",), np.float32)]
        self.outputs = [_spec(s) for s in io.get("outputs", [])] or [IOSpec("output", ("?",), np.float32)]
        self._threads = threads

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(feeds[s.name]).to(self._device) for s in self.inputs]
        previous = torch.get_num_threads()
        torch.set_num_threads(self._threads)
        try:
            with torch.inference_mode():
                out = self._module(*args)
        finally:
            torch.set_num_threads(previous)
        outs = out if isinstance(out, tuple | list) else (out,)
        return [o.detach().cpu().numpy() for o in outs]


def _spec(d: dict) -> IOSpec:
    return IOSpec(d["name"], tuple(d["shape"]), np.dtype(d["dtype"]).type)
