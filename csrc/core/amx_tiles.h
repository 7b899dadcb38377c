// Intel AMX tile operations for the *_amx_kernel.cpp files: the instructions themselves where the file is built for
// the amx level (GENRT_AMX_TILES=1, setup.py), and elsewhere an emulation in plain C++ that follows the pseudo-code
// of Intel's SDM instruction by instruction, so the same kernel source (tile configuration, packing, strides, the
// epilogue) runs and is tested on every CPU.
//
// Tile numbers are compile-time constants (the instructions encode them): GENRT_TILE_LOAD(t, base, stride_bytes),
// GENRT_TILE_STORE(t, base, stride_bytes), GENRT_TILE_ZERO(t), GENRT_TILE_DPBF16PS(c, a, b) (c += a b, TDPBF16PS:
// c's rows M and columns N float32, a's rows M with K bfloat16 pairs, b's rows K with N pairs). load_config() and
// release() bracket a thread's use of the tiles.
//
// The inline assembly is genrt's own, not GCC's <amxtileintrin.h>: GCC 12's macros give the tile loads no memory
// operand and ldtilecfg only the config's first 8 bytes, so the compiler may move stores past them. Each one here
// clobbers memory. Only the assembler must know AMX (binutils >= 2.36); no compiler flag is needed.
#pragma once

#include <cstdint>
#include <cstring>

namespace genrt {
namespace GENRT_ISA_NS {  // one copy per build: the emulated and the real functions share names
namespace amx {

// The 64-byte tile configuration of palette 1.
struct alignas(64) Config {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};  // bytes per row, tiles 0..7
  uint8_t rows[16] = {};    // rows, tiles 0..7
};
static_assert(sizeof(Config) == 64, "AMX tile configuration is 64 bytes");

constexpr int kRows = 16;      // rows per tile, at most
constexpr int kRowBytes = 64;  // bytes per row, at most

// The configuration of genrt's 2 x 2 blocking: tiles 0-3 hold results (m rows of 16 float32), 4-5 weights (m rows
// of k bfloat16 pairs), 6-7 inputs (k rows of 16 pairs), so TDPBF16PS c (0-3) += a (4-5) b (6-7).
inline Config gemm_config(int m, int k) {
  Config c;
  for (int t = 0; t < 8; ++t) {
    c.rows[t] = uint8_t(t < 6 ? m : k);
    c.colsb[t] = uint16_t(t == 4 || t == 5 ? 4 * k : kRowBytes);
  }
  return c;
}

#if defined(GENRT_AMX_TILES) && GENRT_AMX_TILES

inline void load_config(const Config& c) { __asm__ volatile("ldtilecfg %0" ::"m"(c) : "memory"); }
inline void release() { __asm__ volatile("tilerelease" ::: "memory"); }

#define GENRT_TILE_LOAD(t, base, stride) \
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"((const void*)(base)), "r"((long)(stride)) : "memory")
#define GENRT_TILE_STORE(t, base, stride) \
  __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"((void*)(base)), "r"((long)(stride)) : "memory")
#define GENRT_TILE_ZERO(t) __asm__ volatile("tilezero %%tmm" #t ::: "memory")
#define GENRT_TILE_DPBF16PS(c, a, b) __asm__ volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::: "memory")

#else  // emulated tiles

struct Emulated {
  Config config;
  alignas(64) uint8_t tile[8][kRows][kRowBytes];
};
inline Emulated& emulated() {
  static thread_local Emulated state;
  return state;
}

inline void load_config(const Config& c) {
  Emulated& e = emulated();
  e.config = c;
  std::memset(e.tile, 0, sizeof(e.tile));  // LDTILECFG zeroes every tile
}
inline void release() { load_config(Config{0}); }

// TILELOADD: the configured rows and bytes of each row; the rest of the tile is zero.
inline void tile_load(int t, const void* base, long stride) {
  Emulated& e = emulated();
  std::memset(e.tile[t], 0, sizeof(e.tile[t]));
  for (int r = 0; r < e.config.rows[t]; ++r)
    std::memcpy(e.tile[t][r], static_cast<const uint8_t*>(base) + r * stride, e.config.colsb[t]);
}
inline void tile_store(int t, void* base, long stride) {
  Emulated& e = emulated();
  for (int r = 0; r < e.config.rows[t]; ++r)
    std::memcpy(static_cast<uint8_t*>(base) + r * stride, e.tile[t][r], e.config.colsb[t]);
}
inline void tile_zero(int t) { std::memset(emulated().tile[t], 0, sizeof(emulated().tile[t])); }

// bfloat16 to float32 with denormals read as zero (TDPBF16PS's DAZ).
inline float bf16_daz(uint16_t h) {
  const uint32_t u = (h & 0x7f80u) ? uint32_t(h) << 16 : uint32_t(h & 0x8000u) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float ftz(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if (!(u & 0x7f800000u)) u &= 0x80000000u;
  std::memcpy(&v, &u, 4);
  return v;
}

// TDPBF16PS as the SDM writes it: per row m of c and column n, for each pair k of a's row, the even products then
// the odd ones added to the float32 sum (rounded to nearest even, denormal results flushed to zero).
inline void tile_dpbf16ps(int c, int a, int b) {
  Emulated& e = emulated();
  const int M = e.config.rows[c], N = e.config.colsb[c] / 4, K = e.config.colsb[a] / 4;
  for (int m = 0; m < M; ++m) {
    float acc[kRowBytes / 4];
    std::memcpy(acc, e.tile[c][m], sizeof(acc));
    for (int k = 0; k < K; ++k) {
      uint16_t av[2], bv[2];
      std::memcpy(av, e.tile[a][m] + 4 * k, 4);
      for (int n = 0; n < N; ++n) {
        std::memcpy(bv, e.tile[b][k] + 4 * n, 4);
        acc[n] = ftz(acc[n] + bf16_daz(av[0]) * bf16_daz(bv[0]));
        acc[n] = ftz(acc[n] + bf16_daz(av[1]) * bf16_daz(bv[1]));
      }
    }
    std::memset(e.tile[c][m], 0, kRowBytes);
    std::memcpy(e.tile[c][m], acc, size_t(N) * 4);
  }
}

#define GENRT_TILE_LOAD(t, base, stride) ::genrt::GENRT_ISA_NS::amx::tile_load(t, base, stride)
#define GENRT_TILE_STORE(t, base, stride) ::genrt::GENRT_ISA_NS::amx::tile_store(t, base, stride)
#define GENRT_TILE_ZERO(t) ::genrt::GENRT_ISA_NS::amx::tile_zero(t)
#define GENRT_TILE_DPBF16PS(c, a, b) ::genrt::GENRT_ISA_NS::amx::tile_dpbf16ps(c, a, b)

#endif

// The same with the tile numbers as template arguments (computed at compile time, e.g. 6 + C).
template <int T>
inline void load(const void* base, long stride) {
  static_assert(T >= 0 && T < 8, "tmm0-7");
  if constexpr (T == 0) GENRT_TILE_LOAD(0, base, stride);
  if constexpr (T == 1) GENRT_TILE_LOAD(1, base, stride);
  if constexpr (T == 2) GENRT_TILE_LOAD(2, base, stride);
  if constexpr (T == 3) GENRT_TILE_LOAD(3, base, stride);
  if constexpr (T == 4) GENRT_TILE_LOAD(4, base, stride);
  if constexpr (T == 5) GENRT_TILE_LOAD(5, base, stride);
  if constexpr (T == 6) GENRT_TILE_LOAD(6, base, stride);
  if constexpr (T == 7) GENRT_TILE_LOAD(7, base, stride);
}
// c (a result tile, 0-3) += a (4 or 5) b (6 or 7): the combinations genrt's 2 x 2 blocking uses.
template <int C, int A, int B>
inline void dpbf16ps() {
  static_assert(C >= 0 && C < 4 && (A == 4 || A == 5) && (B == 6 || B == 7), "results 0-3, weights 4-5, inputs 6-7");
  if constexpr (C == 0 && A == 4 && B == 6) GENRT_TILE_DPBF16PS(0, 4, 6);
  if constexpr (C == 1 && A == 4 && B == 7) GENRT_TILE_DPBF16PS(1, 4, 7);
  if constexpr (C == 2 && A == 5 && B == 6) GENRT_TILE_DPBF16PS(2, 5, 6);
  if constexpr (C == 3 && A == 5 && B == 7) GENRT_TILE_DPBF16PS(3, 5, 7);
  static_assert(C == (A - 4) * 2 + (B - 6), "result tile (i, j) pairs weight tile i with input tile j");
}

}  // namespace amx
}  // namespace GENRT_ISA_NS
}  // namespace genrt
