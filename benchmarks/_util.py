"""Shared helpers of the benchmark scripts: medians of repeated timings and peak-memory readings."""

from __future__ import annotations

import ctypes
import gc
import os
import platform
import statistics
import time


def median_time(fn, *, repeats: int = 7, min_time: float = 0.0, warmup: int = 1) -> float:
    """Median wall time of fn() in seconds over `repeats` runs (more while their total is under `min_time`)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeats or sum(times) < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(fns: dict, *, repeats: int = 15, min_time: float = 0.05) -> dict:
    """Median seconds per call of each fn, timed in turn within every repeat, so slow drifts of a shared machine
    hit all of them alike. Each timing averages enough calls to last about `min_time`."""
    inner = {}
    for name, fn in fns.items():
        fn()  # warm up
        t0 = time.perf_counter()
        fn()
        inner[name] = max(1, int(min_time / max(time.perf_counter() - t0, 1e-6)))
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / inner[name])
    return {name: statistics.median(ts) for name, ts in times.items()}


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_extra_bytes(fn) -> int | None:
    """Peak resident memory fn() adds above what the process held before, from Linux's VmHWM.

    Writing 5 to /proc/self/clear_refs resets the high-water mark, so each measurement starts fresh.
    Returns None where that is unavailable.
    """
    try:
        gc.collect()
        _malloc_trim()  # return freed heap pages, so reused memory counts as new
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_kb("VmRSS")
        fn()
        return (_status_kb("VmHWM") - before) * 1024
    except OSError:
        return None


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}"


def cpu() -> str:
    """The CPU's model name, its widest vector unit and the CPU count, from lscpu: the name beside every figure."""
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
        flags = next(line for line in out.splitlines() if line.startswith("Flags"))
        isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
        return f"{name} ({isa}, {os.cpu_count()} CPUs)"
    except Exception:
        return platform.processor() or "unknown CPU"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 2**20:.1f} MB" if n < 2**30 else f"{n / 2**30:.2f} GB"
