"""Builds genrt._C from csrc/ with pybind11; no torch involved.

Vector units: every csrc/core/*_kernel.cpp is compiled once per instruction set -- baseline (SSE2 on x86-64,
NEON on aarch64), AVX2+FMA, and AVX-512 (F, BW, DQ, VL) on x86-64 when the compiler accepts the flags -- into
separate namespaces, the *_bf16_kernel.cpp and *_amx_kernel.cpp files once more for AVX512-BF16 (avx512bf16:
VDPBF16PS), and the *_amx_kernel.cpp files once more for Intel AMX (amx: TDPBF16PS tiles; elsewhere they run on
emulated tiles). At import, genrt picks the best set the CPU and OS support, so one build runs on any x86-64 or
aarch64 machine and still uses AVX-512, AVX512-BF16 and AMX where they exist.
GENRT_ISA=baseline|avx2|avx512|avx512bf16|amx overrides the choice at run time; GENRT_BUILD_ISAS=baseline,avx2
limits what is built.

ONNX Runtime custom-op library (genrt._ort_ops, domain "genrt"): built from csrc/onnxruntime/ when ORT's C/C++
headers are found -- in $ORT_INCLUDE_DIR, then ./.ort/usr/include/onnxruntime (what scripts/fetch_ort_headers.sh
unpacks), then the system's /usr/include/onnxruntime and /usr/local/include/onnxruntime. Without them the build
still succeeds, says so, and genrt runs models with standard ONNX ops only.

CUDA (csrc/cuda/*.cu): compiled with nvcc where it is found ($CUDA_HOME/bin, then PATH, then /usr/local/cuda/bin)
unless GENRT_CUDA=0, for sm_80 and sm_90 plus PTX for newer GPUs (GENRT_CUDA_ARCHS="80,90" overrides; the last
also gets PTX). They go into modules of their own, never into genrt._C: genrt._cuda (the launchers on device
pointers, for torch) and genrt._ort_ops_cuda (the ORT library again, plus CUDA execution-provider kernels). Both
link the CUDA runtime statically, so they import on a machine without a GPU or driver. GENRT_CUDA=1 makes a
missing nvcc an error instead of a note.
"""

import os
import platform
import shutil
import subprocess
import sys
import tempfile

from pybind11.setup_helpers import Pybind11Extension
from pybind11.setup_helpers import build_ext as _build_ext
from setuptools import setup

HERE = os.path.dirname(os.path.abspath(__file__))
CORE = "csrc/core"
ORT_SRC = "csrc/onnxruntime"
ISA_FLAGS = {
    "baseline": [],
    "avx2": ["-mavx2", "-mfma", "-mf16c"],
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma", "-mf16c"],
    "avx512bf16": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512bf16", "-mavx2", "-mfma", "-mf16c"],
}
ISA_FLAGS["amx"] = ISA_FLAGS["avx512bf16"]  # the tile instructions are inline assembly (csrc/core/amx_tiles.h)
VEC_BYTES = {"baseline": 16, "avx2": 32, "avx512": 64, "avx512bf16": 64, "amx": 64}
# Levels that compile only some kernel files (by their name's ending); every other level compiles them all.
ONLY_KERNELS = {"avx512bf16": ("_bf16_kernel.cpp", "_amx_kernel.cpp"), "amx": ("_amx_kernel.cpp",)}
ISA_MACROS = {"amx": [("GENRT_AMX_TILES", "1")]}  # the *_amx_kernel.cpp files' real tiles; emulated elsewhere
COMMON_FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=fast"]
CUDA_SRC = "csrc/cuda"
ORT_CUDA_PREFIX = "cuda_"  # csrc/onnxruntime/cuda_*.cpp: CUDA EP kernels, only in genrt._ort_ops_cuda


def _kernel_sources(isa=None):
    """Every per-ISA kernel file, or those compiled for `isa` (ONLY_KERNELS)."""
    found = sorted(os.path.join(CORE, f) for f in os.listdir(CORE) if f.endswith("_kernel.cpp"))
    return [f for f in found if f.endswith(ONLY_KERNELS[isa])] if isa in ONLY_KERNELS else found


def _core_sources():
    return sorted(
        os.path.join(CORE, f) for f in os.listdir(CORE) if f.endswith(".cpp") and not f.endswith("_kernel.cpp")
    )


def _ort_include_dir():
    candidates = [
        os.environ.get("ORT_INCLUDE_DIR"),
        os.path.join(HERE, ".ort", "usr", "include", "onnxruntime"),
        "/usr/include/onnxruntime",
        "/usr/local/include/onnxruntime",
    ]
    for path in candidates:
        if path and os.path.isfile(os.path.join(path, "onnxruntime_c_api.h")):
            return path
    return None


def _nvcc():
    """nvcc's path, or None where CUDA is not built (GENRT_CUDA=0, or no nvcc and GENRT_CUDA unset)."""
    want = os.environ.get("GENRT_CUDA", "")
    if want == "0":
        return None
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    for path in [
        os.path.join(home, "bin", "nvcc") if home else None,
        shutil.which("nvcc"),
        "/usr/local/cuda/bin/nvcc",
    ]:
        if path and os.access(path, os.X_OK):
            return path
    if want == "1":
        sys.exit("genrt: GENRT_CUDA=1 but nvcc was not found (set CUDA_HOME or put nvcc on PATH)")
    return None


def _cuda_arch_flags():
    archs = [a.strip() for a in os.environ.get("GENRT_CUDA_ARCHS", "80,90").split(",") if a.strip()]
    flags = []
    for arch in archs:
        flags += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    return flags + ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]


def _cuda_lib_dir(nvcc):
    """The folder of libcudart_static.a: beside nvcc's toolkit (nvcc may be a wrapper script), else the usual."""
    try:  # nvcc --dryrun names the toolkit it really runs from (TOP=...), wrapper scripts or not
        dry = subprocess.run([nvcc, "--dryrun", "-c", "x.cu"], capture_output=True, text=True, timeout=60).stderr
        tops = [line.split("TOP=", 1)[1].strip() for line in dry.splitlines() if "TOP=" in line]
    except (OSError, subprocess.SubprocessError):
        tops = []
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    roots = tops + [os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), home, "/usr/local/cuda"]
    for root in filter(None, roots):
        for sub in ("lib64", "lib", os.path.join("targets", f"{platform.machine()}-linux", "lib")):
            if os.path.isfile(os.path.join(root, sub, "libcudart_static.a")):
                return os.path.join(root, sub)
    return None


def _cuda_sources():
    return sorted(os.path.join(CUDA_SRC, f) for f in os.listdir(CUDA_SRC) if f.endswith(".cu"))


def _headers():
    return sorted(os.path.join(CORE, f) for f in os.listdir(CORE) if f.endswith(".h"))


class build_ext(_build_ext):
    """Compiles the per-ISA kernel objects first, then links them into the extension."""

    def _flags_work(self, flags, body=""):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.cpp")
            with open(src, "w") as f:
                f.write("int main() { " + body + " return 0; }\n")
            try:
                self.compiler.compile([src], output_dir=tmp, extra_postargs=flags)
                return True
            except Exception:
                return False

    def _wanted_isas(self):
        machine = platform.machine().lower()
        isas = ["baseline"]
        if machine in ("x86_64", "amd64") and self.compiler.compiler_type == "unix":
            isas += [isa for isa in ("avx2", "avx512", "avx512bf16") if self._flags_work(ISA_FLAGS[isa])]
            if "avx512bf16" in isas and self._flags_work(ISA_FLAGS["amx"], '__asm__ volatile("tilerelease");'):
                isas.append("amx")  # the assembler knows AMX (binutils >= 2.36)
            if "avx512" not in isas:  # avx512bf16 and amx run the AVX-512 float32 kernels
                isas = [isa for isa in isas if isa not in ONLY_KERNELS]
            if "avx512bf16" not in isas:  # amx runs the AVX512-BF16 kernels
                isas = [isa for isa in isas if isa != "amx"]
        limit = os.environ.get("GENRT_BUILD_ISAS")
        if limit:
            isas = [isa for isa in isas if isa in limit.split(",")] or ["baseline"]
        return isas

    def _cuda_objects(self, nvcc):
        """The .cu files compiled once per build (shared by every CUDA module); recompiled when any changed."""
        if getattr(self, "_cuda_built", None) is None:
            out_dir = os.path.join(self.build_temp, "cuda")
            os.makedirs(out_dir, exist_ok=True)
            deps = [os.path.join(CUDA_SRC, f) for f in os.listdir(CUDA_SRC)]
            newest = max(os.path.getmtime(d) for d in deps + [__file__])
            objects = []
            for src in _cuda_sources():
                obj = os.path.join(out_dir, os.path.basename(src)[:-3] + ".o")
                if not os.path.exists(obj) or os.path.getmtime(obj) < newest:
                    cmd = [nvcc, "-std=c++17", "-O3", "-Xcompiler", "-fPIC,-fvisibility=hidden", "-c", src, "-o", obj]
                    cmd[1:1] = _cuda_arch_flags()
                    print("genrt: " + " ".join(cmd), file=sys.stderr)
                    subprocess.check_call(cmd)
                objects.append(obj)
            self._cuda_built = objects
        return self._cuda_built

    def build_extension(self, ext):
        nvcc = getattr(ext, "genrt_nvcc", None)
        if nvcc:
            ext.extra_objects = list(ext.extra_objects or [])
            ext.extra_objects += self._cuda_objects(nvcc)
            ext.depends = ext.depends + _cuda_sources()
        if ext.name == "genrt._cuda":  # no CPU kernels in it
            return super().build_extension(ext)
        isas = self._wanted_isas()
        key = (tuple(isas), tuple(ext.extra_compile_args))
        self._isa_objects = getattr(self, "_isa_objects", {})
        if key in self._isa_objects:  # the ORT libraries link the same kernel objects as genrt._C
            ext.extra_objects = list(ext.extra_objects or []) + self._isa_objects[key]
            ext.depends = ext.depends + _kernel_sources()
            ext.define_macros += [(f"GENRT_WITH_{isa.upper()}", "1") for isa in isas if isa != "baseline"]
            return super().build_extension(ext)
        print(f"genrt: building kernels for {', '.join(isas)}", file=sys.stderr)
        objects = []
        for isa in isas:
            objects += self.compiler.compile(
                _kernel_sources(isa),
                output_dir=os.path.join(self.build_temp, "isa", isa),
                macros=[("GENRT_ISA_NS", f"isa_{isa}"), ("GENRT_VEC_BYTES", str(VEC_BYTES[isa]))]
                + ISA_MACROS.get(isa, []),
                include_dirs=ext.include_dirs,
                extra_postargs=ext.extra_compile_args + ISA_FLAGS[isa],
                depends=_headers(),
            )
        self._isa_objects[key] = objects
        ext.extra_objects = list(ext.extra_objects or []) + objects
        ext.depends = ext.depends + _kernel_sources()  # relink when only a per-ISA kernel changed
        ext.define_macros += [(f"GENRT_WITH_{isa.upper()}", "1") for isa in isas if isa != "baseline"]
        super().build_extension(ext)


extensions = [
    Pybind11Extension(
        "genrt._C",
        _core_sources() + ["csrc/python/module.cpp"],
        include_dirs=[CORE],
        cxx_std=17,
        extra_compile_args=COMMON_FLAGS + ["-fvisibility=hidden"],
        depends=_headers(),
    )
]


def _ort_sources(cuda: bool):
    names = sorted(f for f in os.listdir(ORT_SRC) if f.endswith(".cpp"))
    return [os.path.join(ORT_SRC, f) for f in names if cuda or not f.startswith(ORT_CUDA_PREFIX)]


def _ort_library(name, include, cuda_lib=None, cuda_macros=()):
    ext = Pybind11Extension(  # a plain shared library; Pybind11Extension only for its C++17 flags
        name,
        _core_sources() + _ort_sources(cuda_lib is not None),
        include_dirs=[CORE, include],
        cxx_std=17,
        extra_compile_args=COMMON_FLAGS + ["-fvisibility=hidden"],
        define_macros=list(cuda_macros),
        depends=_headers() + [os.path.join(ORT_SRC, f) for f in os.listdir(ORT_SRC) if f.endswith(".h")],
        **_cuda_link(cuda_lib),
    )
    return ext


def _cuda_link(lib_dir):
    if lib_dir is None:
        return {}
    return {"library_dirs": [lib_dir], "libraries": ["cudart_static", "rt", "pthread", "dl"]}


NVCC = _nvcc()
CUDA_LIB = _cuda_lib_dir(NVCC) if NVCC else None
if NVCC and CUDA_LIB is None:
    print(
        f"genrt: nvcc at {NVCC} but no libcudart_static.a beside it: the CUDA kernels are not built", file=sys.stderr
    )
    if os.environ.get("GENRT_CUDA") == "1":
        sys.exit("genrt: GENRT_CUDA=1 and the CUDA runtime library was not found")
    NVCC = None
if NVCC:
    print(f"genrt: building the CUDA kernels with {NVCC} ({' '.join(_cuda_arch_flags())})", file=sys.stderr)
    cuda_ext = Pybind11Extension(
        "genrt._cuda",
        ["csrc/python/cuda_module.cpp"],
        cxx_std=17,
        extra_compile_args=["-O2", "-fvisibility=hidden"],
        depends=[os.path.join(CUDA_SRC, "genrt_cuda.h")],
        **_cuda_link(CUDA_LIB),
    )
    cuda_ext.genrt_nvcc = NVCC
    extensions.append(cuda_ext)
else:
    print("genrt: no nvcc (or GENRT_CUDA=0): the CUDA kernels are not built; CUDA tensors use torch", file=sys.stderr)

ort_include = _ort_include_dir()
if ort_include:
    print(f"genrt: building the ONNX Runtime custom-op library with headers from {ort_include}", file=sys.stderr)
    extensions.append(_ort_library("genrt._ort_ops", ort_include))
    if NVCC:
        cuda_ort = _ort_library("genrt._ort_ops_cuda", ort_include, CUDA_LIB, [("GENRT_WITH_CUDA", "1")])
        cuda_ort.genrt_nvcc = NVCC
        extensions.append(cuda_ort)
else:
    print(
        "\n" + "=" * 78 + "\ngenrt: ONNX Runtime headers NOT found: genrt's ORT custom-op library is not built, and\n"
        "models will run with standard ONNX ops only. Run `bash scripts/fetch_ort_headers.sh` (Debian/Ubuntu)\n"
        "or set ORT_INCLUDE_DIR, then reinstall.\n" + "=" * 78,
        file=sys.stderr,
    )

setup(ext_modules=extensions, cmdclass={"build_ext": build_ext})
