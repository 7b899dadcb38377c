"""The fuzzers' shared harness: time budgets, reproducible seeds, and a subprocess with its peak memory measured.

    GENRT_FUZZ_SECONDS=3600 python -m pytest -m fuzz tests/fuzz      # a nightly run: an hour per fuzzer
    GENRT_FUZZ_SEED=1234 python -m pytest -m fuzz tests/fuzz         # rerun a failure with the seed it printed

Each fuzzer is a function ``fuzz_<what>(seconds, seed)`` in its test module. The pytest test (marked ``fuzz``) runs
it in a child process (``python -m tests.fuzz.harness MODULE:FUNCTION``) and asserts that the child passed and that
its peak resident memory (its own VmHWM, else ``ru_maxrss`` from ``os.wait4``) stayed under MAX_RSS_BYTES; the child
also runs under an address-space limit (ADDRESS_LIMIT_BYTES), so an allocation driven by a forged size fails fast
(MemoryError, reported as a finding) instead of swapping the CI machine.

Budget: GENRT_FUZZ_SECONDS per fuzzer; default 60 when CI=true, else 10 (a developer's ``pytest`` stays fast).
Seed: GENRT_FUZZ_SEED; on CI the fixed CI_SEED (a submission's run is reproducible), else a fresh one (a nightly
job explores).
Inside the child, hypothesis runs in rounds of ROUND_EXAMPLES examples, each with its own derived seed and no
example database (database=None: a CI run depends on the seed alone), until the budget is spent. A failure is
shrunk by hypothesis, which prints the falsifying example; the harness adds the seed and the command to rerun.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
# Peak resident memory a fuzzer may reach. Python + numpy + Pillow + ONNX Runtime with a tiny model is about
# 150-350 MB; the inputs are small (<= 64x64 seeds, read with a 4-megapixel limit), so legitimate work adds tens of
# MB. 1.5 GB leaves room for that and for the CLI fuzzer's bundled models, and is far below what a forged header
# would make a decoder allocate without its size check (gigabytes), and below a CI runner's 7 GB.
MAX_RSS_BYTES = int(1.5 * 2**30)
# Virtual memory: ONNX Runtime and threads reserve far more than they touch. 64 GiB: `--threads 4096` (the most
# genrt accepts) reserves 4096 thread stacks of 8 MiB, 32 GiB; under a lower limit ORT's thread pool fails to start
# and then hangs joining the threads it did start (a hang of ORT's, not a genrt finding).
ADDRESS_LIMIT_BYTES = 64 * 2**30
ROUND_EXAMPLES = 100


CI_SEED = 20261206  # CI's seed: a submission's run is reproducible; nightly and local runs draw fresh seeds


def _on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def fuzz_seconds() -> float:
    """GENRT_FUZZ_SECONDS, else 60 on CI (CI=true), else 10."""
    text = os.environ.get("GENRT_FUZZ_SECONDS", "").strip()
    if text:
        return float(text)
    return 60.0 if _on_ci() else 10.0


def fuzz_seed() -> int:
    """GENRT_FUZZ_SEED, else CI_SEED on CI (the same examples every run), else a fresh random seed (printed, so a
    failure can be rerun)."""
    text = os.environ.get("GENRT_FUZZ_SEED", "").strip()
    if text:
        return int(text)
    return CI_SEED if _on_ci() else random.SystemRandom().randrange(2**32)


def run_rounds(
    name: str,
    strategy: st.SearchStrategy,
    body: Callable,
    *,
    seconds: float,
    seed: int,
    min_rounds: int = 1,
    examples: int = ROUND_EXAMPLES,
) -> int:
    """Runs body(example) on examples of strategy for about `seconds`; returns the number of rounds run.

    Each round is a hypothesis run of `examples` examples (fewer for slow bodies, so the budget holds) with seed
    ``seed + round``; a failing round shrinks its example and raises, with the seed in the message.
    """
    start = time.monotonic()
    rounds = 0
    while rounds < min_rounds or time.monotonic() - start < seconds:
        round_seed = seed + rounds

        @hypothesis_seed(round_seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=False,
            phases=(Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        )
        @given(strategy)
        def one_round(example):
            body(example)

        try:
            one_round()
        except BaseException:
            print(
                f"\n{name}: FAILED in round {rounds} (hypothesis seed {round_seed}); rerun with "
                f"GENRT_FUZZ_SEED={seed} (round {rounds}) or the @reproduce_failure blob above",
                file=sys.stderr,
            )
            raise
        rounds += 1
    elapsed = time.monotonic() - start
    print(f"{name}: {rounds} rounds of up to {examples} examples in {elapsed:.0f} s, seed {seed}")
    return rounds


class ExampleTimeout(Exception):
    """An example ran past its alarm: a read, a load or a command that hangs."""


@contextlib.contextmanager
def time_limit(seconds: int, what: str):
    """Raises ExampleTimeout in the block after `seconds` (SIGALRM: the main thread of the fuzzer's process)."""

    def ring(signum, frame):
        raise ExampleTimeout(f"the alarm went off after {seconds} s: {what} hangs")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def run_fuzzer(target: str, *, seconds: float | None = None, seed: int | None = None) -> None:
    """Runs fuzzer `target` ("tests.fuzz.test_fuzz_image:fuzz_image") in a child process and asserts it passed
    within MAX_RSS_BYTES of peak memory; on failure the child's output tail is in the assertion message."""
    seconds = fuzz_seconds() if seconds is None else seconds
    seed = fuzz_seed() if seed is None else seed
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.setdefault("GENRT_CACHE_DIR", tempfile.mkdtemp(prefix="genrt-fuzz-cache-"))
    command = [sys.executable, "-m", "tests.fuzz.harness", target, str(seconds), str(seed)]
    print(f"fuzzing {target} for {seconds:g} s, seed {seed}: {' '.join(command[1:])}")
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        timeout = seconds * 3 + 300  # rounds end at the budget; the slack covers the last round and a shrink
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.2)
        child.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    # The child's own peak (VmHWM, which it prints as it ends): wait4's ru_maxrss also counts what the forking
    # pytest process held, carried over execve, so a large test session would inflate it.
    own = [line.split()[-1] for line in output.splitlines() if line.startswith("FUZZ-PEAK ")]
    peak = int(own[-1]) if own else usage.ru_maxrss * 1024  # Linux: kilobytes
    tail = output[-20000:]
    print(tail)
    print(f"{target}: exit status {child.returncode}, peak memory {peak / 2**20:.0f} MiB")
    assert child.returncode == 0, f"fuzzer {target} failed (seed {seed}, status {child.returncode}):\n{tail}"
    assert peak < MAX_RSS_BYTES, f"fuzzer {target}: peak memory {peak / 2**20:.0f} MiB over {MAX_RSS_BYTES >> 20} MiB"


def _main(argv: list[str]) -> None:
    target, seconds, seed = argv[0], float(argv[1]), int(argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_LIMIT_BYTES, ADDRESS_LIMIT_BYTES))
    module_name, _, function = target.partition(":")
    getattr(importlib.import_module(module_name), function)(seconds, seed)
    try:
        with open("/proc/self/status") as f:
            hwm = next((line.split()[1] for line in f if line.startswith("VmHWM:")), None)
        if hwm:
            print(f"FUZZ-PEAK {int(hwm) * 1024}")
    except OSError:
        pass


if __name__ == "__main__":
    _main(sys.argv[1:])
