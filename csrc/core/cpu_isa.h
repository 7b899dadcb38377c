// Which instruction set the kernels run with.
//
// setup.py compiles every *_kernel.cpp once per instruction set it can target (baseline always; AVX2+FMA and
// AVX-512 on x86-64 when the compiler accepts the flags) and defines GENRT_WITH_AVX2 / GENRT_WITH_AVX512 for the
// other files. avx512bf16 is AVX-512 plus AVX512-BF16 (VDPBF16PS): only the *_bf16_kernel.cpp files are compiled
// for it (GENRT_WITH_AVX512BF16); every float32 kernel runs its AVX-512 code at that level. At run time the best
// set that is both compiled in and supported by the CPU and OS is used; GENRT_ISA=baseline|avx2|avx512|avx512bf16
// in the environment, or set_isa(), picks a lower one (tests use it to check that every variant agrees).
// amx is avx512bf16 plus Intel AMX (AMX-TILE, AMX-BF16) with the tile data enabled for this process by Linux
// (arch_prctl ARCH_REQ_XCOMP_PERM, asked for once, when the level is first looked for: at import). Only the
// *_amx_kernel.cpp files are compiled for it (GENRT_WITH_AMX); there the float32 kernels run their AVX-512 code and
// the other bfloat16 kernels their AVX512-BF16 code. The *_amx_kernel.cpp files are also compiled for every other
// level with the tiles emulated (amx_tiles.h), which is what GENRT_DISPATCH_AMX runs below the amx level.
#pragma once

#ifndef GENRT_WITH_AVX2
#define GENRT_WITH_AVX2 0
#endif
#ifndef GENRT_WITH_AVX512
#define GENRT_WITH_AVX512 0
#endif
#ifndef GENRT_WITH_AVX512BF16
#define GENRT_WITH_AVX512BF16 0
#endif
#ifndef GENRT_WITH_AMX
#define GENRT_WITH_AMX 0
#endif

#include <string>
#include <vector>

namespace genrt {

enum class Isa { baseline = 0, avx2 = 1, avx512 = 2, avx512bf16 = 3, amx = 4 };

const char* isa_name(Isa isa);
bool isa_compiled(Isa isa);
bool isa_supported(Isa isa);  // compiled in and runnable on this CPU
std::vector<std::string> available_isas();
Isa active_isa();
void set_isa(const std::string& name);  // throws genrt::Error on an unknown or unsupported name

}  // namespace genrt

// GENRT_DISPATCH(fn, args...) calls isa_<active>::fn(args...), the AVX-512 one at avx512bf16 and amx;
// GENRT_DISPATCH_BF16 calls isa_avx512bf16::fn at those levels (for the *_bf16_kernel.cpp functions);
// GENRT_DISPATCH_AMX calls isa_amx::fn at amx and the emulated tiles' fn of the active level below it.
#if GENRT_WITH_AVX512
#define GENRT_CASE_AVX512(fn, ...) \
  case ::genrt::Isa::avx512:       \
    return ::genrt::isa_avx512::fn(__VA_ARGS__);
#define GENRT_CASE_AVX512_FOR_BF16(fn, ...) \
  case ::genrt::Isa::avx512bf16:            \
  case ::genrt::Isa::amx:                   \
    return ::genrt::isa_avx512::fn(__VA_ARGS__);
#else
#define GENRT_CASE_AVX512(fn, ...)
#define GENRT_CASE_AVX512_FOR_BF16(fn, ...)
#endif
#if GENRT_WITH_AVX2
#define GENRT_CASE_AVX2(fn, ...) \
  case ::genrt::Isa::avx2:       \
    return ::genrt::isa_avx2::fn(__VA_ARGS__);
#else
#define GENRT_CASE_AVX2(fn, ...)
#endif
#if GENRT_WITH_AVX512BF16
#define GENRT_CASE_AVX512BF16(fn, ...) \
  case ::genrt::Isa::avx512bf16:       \
  case ::genrt::Isa::amx:              \
    return ::genrt::isa_avx512bf16::fn(__VA_ARGS__);
#else
#define GENRT_CASE_AVX512BF16(fn, ...)
#endif
#if GENRT_WITH_AMX
#define GENRT_CASE_AMX(fn, ...) \
  case ::genrt::Isa::amx:       \
    return ::genrt::isa_amx::fn(__VA_ARGS__);
#else
#define GENRT_CASE_AMX(fn, ...)
#endif
#if GENRT_WITH_AVX512BF16
#define GENRT_CASE_AMX_EMULATED(fn, ...) \
  GENRT_CASE_AMX(fn, __VA_ARGS__)        \
  case ::genrt::Isa::avx512bf16:         \
    return ::genrt::isa_avx512bf16::fn(__VA_ARGS__);
#else
#define GENRT_CASE_AMX_EMULATED(fn, ...) GENRT_CASE_AMX(fn, __VA_ARGS__)
#endif
// TOP is the case for avx512bf16: the AVX-512 float32 kernels (GENRT_DISPATCH) or the AVX512-BF16 ones.
#define GENRT_DISPATCH_FROM(TOP, fn, ...)              \
  do {                                                 \
    switch (::genrt::active_isa()) {                   \
      TOP(fn, __VA_ARGS__)                             \
      GENRT_CASE_AVX512(fn, __VA_ARGS__)               \
      GENRT_CASE_AVX2(fn, __VA_ARGS__)                 \
      default:                                         \
        return ::genrt::isa_baseline::fn(__VA_ARGS__); \
    }                                                  \
  } while (0)
#define GENRT_DISPATCH(fn, ...) GENRT_DISPATCH_FROM(GENRT_CASE_AVX512_FOR_BF16, fn, __VA_ARGS__)
#define GENRT_DISPATCH_BF16(fn, ...) GENRT_DISPATCH_FROM(GENRT_CASE_AVX512BF16, fn, __VA_ARGS__)
#define GENRT_DISPATCH_AMX(fn, ...) GENRT_DISPATCH_FROM(GENRT_CASE_AMX_EMULATED, fn, __VA_ARGS__)

// GENRT_DECLARE_ISA_KERNELS(DECLS) declares the per-ISA kernel functions listed in DECLS in every ISA namespace.
#define GENRT_DECLARE_ISA_BASELINE(DECLS) \
  namespace genrt {                       \
  namespace isa_baseline {                \
  DECLS                                   \
  }                                       \
  }
#if GENRT_WITH_AVX2
#define GENRT_DECLARE_ISA_AVX2(DECLS) \
  namespace genrt {                   \
  namespace isa_avx2 {                \
  DECLS                               \
  }                                   \
  }
#else
#define GENRT_DECLARE_ISA_AVX2(DECLS)
#endif
#if GENRT_WITH_AVX512
#define GENRT_DECLARE_ISA_AVX512(DECLS) \
  namespace genrt {                     \
  namespace isa_avx512 {                \
  DECLS                                 \
  }                                     \
  }
#else
#define GENRT_DECLARE_ISA_AVX512(DECLS)
#endif
#define GENRT_DECLARE_ISA_KERNELS(DECLS) \
  GENRT_DECLARE_ISA_BASELINE(DECLS)      \
  GENRT_DECLARE_ISA_AVX2(DECLS)          \
  GENRT_DECLARE_ISA_AVX512(DECLS)
// The same for the *_bf16_kernel.cpp functions, which also have an avx512bf16 variant.
#if GENRT_WITH_AVX512BF16
#define GENRT_DECLARE_ISA_BF16_KERNELS(DECLS) \
  GENRT_DECLARE_ISA_KERNELS(DECLS)            \
  namespace genrt {                           \
  namespace isa_avx512bf16 {                  \
  DECLS                                       \
  }                                           \
  }
#else
#define GENRT_DECLARE_ISA_BF16_KERNELS(DECLS) GENRT_DECLARE_ISA_KERNELS(DECLS)
#endif
// And for the *_amx_kernel.cpp functions: every level, amx included.
#if GENRT_WITH_AMX
#define GENRT_DECLARE_ISA_AMX_KERNELS(DECLS) \
  GENRT_DECLARE_ISA_BF16_KERNELS(DECLS)      \
  namespace genrt {                          \
  namespace isa_amx {                        \
  DECLS                                      \
  }                                          \
  }
#else
#define GENRT_DECLARE_ISA_AMX_KERNELS(DECLS) GENRT_DECLARE_ISA_BF16_KERNELS(DECLS)
#endif
