"""Builds genrt._C from csrc/ with pybind11; no torch involved.

Vector units: every csrc/core/*_kernel.cpp is compiled once per instruction set -- baseline (SSE2 on x86-64,
NEON on aarch64), AVX2+FMA, and AVX-512 (F, BW, DQ, VL) on x86-64 when the compiler accepts the flags -- into
separate namespaces. At import, genrt picks the best set the CPU and OS support, so one build runs on any x86-64
or aarch64 machine and still uses AVX-512 where it exists. GENRT_ISA=baseline|avx2|avx512 overrides the choice
at run time; GENRT_BUILD_ISAS=baseline,avx2 limits what is built.
"""

import os
import platform
import sys
import tempfile

from pybind11.setup_helpers import Pybind11Extension
from pybind11.setup_helpers import build_ext as _build_ext
from setuptools import setup

CORE = "csrc/core"
ISA_FLAGS = {
    "baseline": [],
    "avx2": ["-mavx2", "-mfma", "-mf16c"],
    "avx512": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma", "-mf16c"],
}
VEC_BYTES = {"baseline": 16, "avx2": 32, "avx512": 64}
COMMON_FLAGS = ["-O3", "-fno-math-errno", "-ffp-contract=fast"]


def _kernel_sources():
    return sorted(os.path.join(CORE, f) for f in os.listdir(CORE) if f.endswith("_kernel.cpp"))


def _other_sources():
    core = [os.path.join(CORE, f) for f in os.listdir(CORE) if f.endswith(".cpp") and not f.endswith("_kernel.cpp")]
    return sorted(core) + ["csrc/python/module.cpp"]


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
        ext.define_macros += [(f"GENRT_WITH_{isa.upper()}", "1") for isa in isas if isa != "baseline"]
        super().build_extension(ext)


ext = Pybind11Extension(
    "genrt._C",
    _other_sources(),
    include_dirs=[CORE],
    cxx_std=17,
    extra_compile_args=COMMON_FLAGS + ["-fvisibility=hidden"],
    depends=_headers(),
)

setup(ext_modules=[ext], cmdclass={"build_ext": build_ext})
