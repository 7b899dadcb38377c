"""python benchmarks/bench_amx_steps.py

What one step of the AMX convolution's tile loop costs on this CPU, with every tile load hitting L1: the 2 x 2 step
(two weight tiles, two input tiles, four TDPBF16PS into four result tiles) with each load just before the first
product that reads it, against its four loads first and then its four products, against the four products alone;
and four tile loads whose 64-byte rows lie on cache lines against rows 16 bytes off them. Builds
benchmarks/native/amx_tile_steps.cpp with the system's g++ (the assembler must know AMX: binutils >= 2.36) into a
temporary folder and runs it: one thread, best of 5 runs of 200000 steps each. Needs a CPU with AMX (it says so and
exits otherwise).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import cpu  # noqa: E402

SOURCE = Path(__file__).resolve().parent / "native" / "amx_tile_steps.cpp"


def main() -> None:
    if not shutil.which("g++"):
        sys.exit("g++ not found")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "amx_tile_steps"
        subprocess.run(["g++", "-O2", "-std=c++17", str(SOURCE), "-o", str(exe)], check=True)
        print(cpu())
        proc = subprocess.run([str(exe)], capture_output=True, text=True)
        print(proc.stdout, end="")
        if proc.returncode:
            sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
