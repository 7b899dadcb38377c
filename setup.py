"""Builds genrt._C from csrc/ with pybind11; no torch involved.

Vector units: every csrc/core/*_kernel.cpp is compiled once per instruction set -- baseline (SSE2 on x86-64,
NEON on aarch64), AVX2+FMA, and AVX-512 (F, BW, DQ, VL) on x86-64 when the compiler accepts the flags -- into
separate namespaces. At import, genrt picks the best set the CPU and OS support, so one build runs on any x86-64
or aarch64 machine and still uses AVX-512 where it exists. GENRT_ISA=baseline|avx2|avx512 overrides the choice
at run time; GENRT_BUILD_ISAS=baseline,avx2 limits what is built.

ONNX Runtime custom-op library (genrt._ort_ops, domain "genrt"): built from csrc/onnxruntime/ when ORT's C/C++
headers are found -- in $ORT_INCLUDE_DIR, then ./.ort/usr/include/onnxruntime (what scripts/fetch_ort_headers.sh
unpacks), then the system's /usr/include/onnxruntime and /usr/local/include/onnxruntime. Without them the build
still succeeds, says so, and genrt runs models with standard ONNX ops only.
"""

import os
import platform
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
}
VEC_BYTES = {"baseline": 16, "avx2": 32, "avx512": 64}
COMMON_FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=fast"]


def _kernel_sources():
    return sorted(os.path.join(CORE, f) for f in os.listdir(CORE) if f.endswith("_kernel.cpp"))


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


def _headers():
    return sorted(os.path.join(CORE, f) for f in os.listdir(CORE) if f.endswith(".h"))


class build_ext(_build_ext):
    """Compiles the per-ISA kernel objects first, then links them into the extension."""

    def _flags_work(self, flags):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "probe.cpp")
            with open(src, "w") as f:
                f.write("int main() { return 0; }\n")
            try:
                self.compiler.compile([src], output_dir=tmp, extra_postargs=flags)
                return True
            except Exception:
                return False

    def _wanted_isas(self):
        machine = platform.machine().lower()
        isas = ["baseline"]
        if machine in ("x86_64", "amd64") and self.compiler.compiler_type == "unix":
            isas += [isa for isa in ("avx2", "avx512") if self._flags_work(ISA_FLAGS[isa])]
        limit = os.environ.get("GENRT_BUILD_ISAS")
        if limit:
            isas = [isa for isa in isas if isa in limit.split(",")] or ["baseline"]
        return isas

    def build_extension(self, ext):
        isas = self._wanted_isas()
        print(f"genrt: building kernels for {', '.join(isas)}", file=sys.stderr)
        objects = []
        for isa in isas:
            objects += self.compiler.compile(
                _kernel_sources(),
                output_dir=os.path.join(self.build_temp, "isa", isa),
                macros=[("GENRT_ISA_NS", f"isa_{isa}"), ("GENRT_VEC_BYTES", str(VEC_BYTES[isa]))],
                include_dirs=ext.include_dirs,
                extra_postargs=ext.extra_compile_args + ISA_FLAGS[isa],
                depends=_headers(),
            )
        ext.extra_objects = objects
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

ort_include = _ort_include_dir()
if ort_include:
    print(f"genrt: building the ONNX Runtime custom-op library with headers from {ort_include}", file=sys.stderr)
    extensions.append(
        Pybind11Extension(  # a plain shared library; Pybind11Extension only for its C++17 flags
            "genrt._ort_ops",
            _core_sources() + sorted(os.path.join(ORT_SRC, f) for f in os.listdir(ORT_SRC) if f.endswith(".cpp")),
            include_dirs=[CORE, ort_include],
            cxx_std=17,
            extra_compile_args=COMMON_FLAGS + ["-fvisibility=hidden"],
            depends=_headers() + [os.path.join(ORT_SRC, f) for f in os.listdir(ORT_SRC) if f.endswith(".h")],
        )
    )
else:
    print(
        "\n" + "=" * 78 + "\ngenrt: ONNX Runtime headers NOT found: genrt's ORT custom-op library is not built, and\n"
        "models will run with standard ONNX ops only. Run `bash scripts/fetch_ort_headers.sh` (Debian/Ubuntu)\n"
        "or set ORT_INCLUDE_DIR, then reinstall.\n" + "=" * 78,
        file=sys.stderr,
    )

setup(ext_modules=extensions, cmdclass={"build_ext": build_ext})
