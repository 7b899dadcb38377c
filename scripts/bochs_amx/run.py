#!/usr/bin/env python3
"""Compile freestanding x86-64 payload sources and run them in Bochs (AMX).

    python scripts/bochs_amx/run.py payload.c [more.c more.cpp] [-I dir] [-D X=1]
                                    [--timeout 300] [--mem 256] [--keep]

The payload defines `extern "C" void payload_main(void)` and uses payload.h.
Everything it writes to port 0xE9 is copied to stdout. Exit status: 0 if
payload_main returned, 1 on payload_abort / CPU exception / triple fault /
Bochs error, 2 on timeout, 3 on build errors.

Boot path: rom.S is the Bochs system ROM (reset vector -> long mode); the
linked payload image is preloaded into RAM at 8 MiB by `optramimage` entries.
Bochs copies each optramimage into a single host memory block, so the image is
split into 8 MiB pieces aligned to the 8 MiB block size (4 pieces: 32 MiB max).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("GENRT_BOCHS_DIR", Path.home() / ".cache" / "genrt" / "bochs"))
BOCHS = Path(os.environ.get("GENRT_BOCHS", CACHE / "bin" / "bochs"))

IMAGE_BASE = 0x800000
CHUNK = 8 << 20  # == memory block_size, see module docstring
MAX_CHUNKS = 4  # Bochs BX_N_OPTRAM_IMAGES
START = b"@@GENRT_BOCHS_START@@\n"
DONE = b"@@GENRT_BOCHS_DONE@@"
FAIL = b"@@GENRT_BOCHS_FAIL@@"

CFLAGS = [
    "-O2",
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-mno-red-zone",
    "-mcmodel=small",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-fno-unwind-tables",
    "-fcf-protection=none",
    "-mavx512f",
    "-mavx512bw",
    "-mavx512dq",
    "-mavx512vl",
    "-mavx512bf16",
    "-mamx-tile",
    "-mamx-bf16",
    "-mfma",
    "-mf16c",
    "-mbmi",
    "-mbmi2",
]
CXXFLAGS = ["-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics"]

BOCHSRC = """\
memory: guest={mem}, host={mem}, block_size={block_kb}
romimage: file={rom}, address=0xffff0000
vgaromimage: file={vga}
{optram}
cpu: model=sapphire_rapids, count=1, ips=100000000, reset_on_triple_fault=0
clock: sync=none
display_library: nogui
port_e9_hack: enabled=1
log: {log}
panic: action=fatal
error: action=report
info: action=report
debug: action=ignore
"""


def sh(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.stderr.write(" ".join(map(str, cmd)) + "\n" + r.stdout + r.stderr)
        sys.exit(3)
    return r


def build(args, work: Path) -> Path:
    inc = ["-I", str(HERE)] + [f"-I{d}" for d in args.I] + [f"-D{d}" for d in args.D]
    extra = args.cflags.split()
    objs = []
    srcs = [HERE / "crt0.S", HERE / "runtime.c"] + [Path(s) for s in args.sources]
    for i, src in enumerate(srcs):
        obj = work / f"{i}_{src.stem}.o"
        if src.suffix in (".cpp", ".cc", ".cxx"):
            cmd = ["g++", *CFLAGS, *CXXFLAGS]
        else:
            cmd = ["gcc", *CFLAGS]
        sh(cmd + inc + extra + ["-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    elf = work / "payload.elf"
    sh(
        [
            "gcc",
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,--build-id=none",
            "-Wl,--no-warn-rwx-segments",
            "-T",
            str(HERE / "link.ld"),
            "-o",
            str(elf),
            *objs,
            "-lgcc",
        ]
    )
    img = work / "payload.bin"
    sh(["objcopy", "-O", "binary", str(elf), str(img)])
    # ROM stub and a dummy (unused) VGA ROM
    sh(["gcc", "-c", str(HERE / "rom.S"), "-o", str(work / "rom.o")])
    sh(
        [
            "ld",
            "-m",
            "elf_x86_64",
            "-Ttext=0xffff0000",
            "--oformat",
            "binary",
            "-o",
            str(work / "rom.bin"),
            str(work / "rom.o"),
        ]
    )
    (work / "vga.bin").write_bytes(bytes(512))
    bss_end = int(
        next(ln.split()[0] for ln in sh(["nm", str(elf)]).stdout.splitlines() if ln.endswith(" __bss_end")), 16
    )
    if bss_end > args.mem << 20:
        sys.exit(f"payload needs {bss_end >> 20} MiB of RAM, --mem is {args.mem}")
    return img


def write_bochsrc(args, work: Path, img: Path) -> Path:
    data = img.read_bytes()
    if len(data) > CHUNK * MAX_CHUNKS:
        sys.exit(f"payload image {len(data)} bytes > {CHUNK * MAX_CHUNKS} bytes")
    optram = []
    for i in range(0, len(data), CHUNK):
        part = work / f"image{i // CHUNK}.bin"
        part.write_bytes(data[i : i + CHUNK])
        optram.append(f"optramimage{i // CHUNK + 1}: file={part}, address={IMAGE_BASE + i:#x}")
    rc = work / "bochsrc"
    rc.write_text(
        BOCHSRC.format(
            mem=args.mem,
            block_kb=CHUNK >> 10,
            rom=work / "rom.bin",
            vga=work / "vga.bin",
            optram="\n".join(optram),
            log=work / "bochs.log",
        )
    )
    return rc


def run(args, work: Path, rc: Path) -> int:
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(BOCHS), "-q", "-f", str(rc)],
        cwd=work,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    seen = {"start": False, "done": False, "fail": False}
    errs = []

    def pump():
        # Bochs writes port 0xE9 bytes to its stdout after its banner; forward
        # what follows the start marker, line by line, minus the markers.
        for line in proc.stdout:
            if not seen["start"]:
                seen["start"] = line.endswith(START)
                continue
            if DONE in line:
                seen["done"] = True
                line = line.replace(DONE + b"\n", b"")
            if FAIL in line:
                seen["fail"] = True
                line = line.replace(FAIL + b" ", b"PAYLOAD FAILED: ")
            if not seen.get("epipe"):
                try:
                    sys.stdout.buffer.write(line)
                    sys.stdout.buffer.flush()
                except BrokenPipeError:  # e.g. piped into head: keep draining
                    seen["epipe"] = True

    threading.Thread(target=lambda: errs.extend(proc.stderr), daemon=True).start()
    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=args.timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        timed_out = True
    reader.join(5)
    dt = time.monotonic() - t0
    ok = seen["done"] and not seen["fail"] and not timed_out
    sys.stderr.write(f"[bochs_amx] {'OK' if ok else 'FAILED'} after {dt:.2f} s wall\n")
    if not ok:
        if timed_out:
            sys.stderr.write(f"[bochs_amx] timeout after {args.timeout} s\n")
        if not seen["start"]:
            sys.stderr.write("[bochs_amx] payload never started\n")
        # Bochs' own messages: drop the info chatter, keep errors and panics
        text = b"".join(errs).decode(errors="replace").splitlines()
        log = work / "bochs.log"
        if log.exists():
            text += log.read_text(errors="replace").splitlines()
        keep = [ln for ln in text if ln.strip() and not re.match(r"^\d+i\[", ln)]
        sys.stderr.write("".join(f"[bochs] {ln}\n" for ln in keep[-20:]))
    return 0 if ok else (2 if timed_out else 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sources", nargs="+")
    ap.add_argument("-I", action="append", default=[], help="include dir")
    ap.add_argument("-D", action="append", default=[], help="preprocessor define")
    ap.add_argument("--cflags", default="", help="extra compiler flags")
    ap.add_argument("--timeout", type=float, default=300, help="seconds (wall)")
    ap.add_argument("--mem", type=int, default=256, help="guest RAM in MiB")
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    args = ap.parse_args()
    if args.mem % (CHUNK >> 20):
        ap.error(f"--mem must be a multiple of {CHUNK >> 20}")
    if not BOCHS.exists():
        sys.exit(f"{BOCHS} missing: run scripts/bochs_amx/build.sh first")
    work = Path(tempfile.mkdtemp(prefix="bochs_amx_"))
    try:
        img = build(args, work)
        rc = write_bochsrc(args, work, img)
        return run(args, work, rc)
    finally:
        if args.keep:
            sys.stderr.write(f"[bochs_amx] work dir kept: {work}\n")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
