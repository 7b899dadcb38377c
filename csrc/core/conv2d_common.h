// Helpers shared by conv2d's kernel files (conv2d_kernel.cpp, conv2d_direct_kernel.cpp, conv2d_bf16_kernel.cpp,
// conv2d_winograd_bf16_kernel.cpp) and conv_transpose2d_bf16_kernel.cpp, compiled into each one's instruction-set
// namespace.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#include "conv2d.h"
#include "simd.h"

namespace genrt {
namespace GENRT_ISA_NS {
namespace conv2d_detail {

// 64-byte aligned scratch, freed on scope exit.
template <typename T>
struct Scratch {
  T* p;
  explicit Scratch(size_t n)
      : p(n ? static_cast<T*>(std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64)) : nullptr) {
    if (n && !p) throw std::bad_alloc();
  }
  ~Scratch() { std::free(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// A kernel's packed weights: kept in `cache` under `key` (the layout's name), built there by fill(buffer) on first
// use, or, without a cache, built into this object's own buffer for the one call.
template <typename T>
class PackedWeights {
 public:
  template <typename Fill>
  PackedWeights(WeightCache* cache, const std::string& key, size_t count, Fill fill) : local_(cache ? 0 : count) {
    if (cache) {
      data_ = static_cast<const T*>(cache->get(key, count * sizeof(T), [&](void* b) { fill(static_cast<T*>(b)); }));
    } else {
      fill(local_.p);
      data_ = local_.p;
    }
  }
  const T* data() const { return data_; }

 private:
  Scratch<T> local_;
  const T* data_;
};

// The register tiles along a row of n outputs, L per vector: f(first, vectors) for the whole tiles of NV vectors,
// then for the rest, in tiles of at most NV; a rest of one vector after a whole tile is merged with it into two
// half tiles (one vector alone is bound by its MR broadcasts, not by its multiply-adds).
template <int NV, int L, typename Fn>
inline void row_tiles(int64_t n, Fn&& f) {
  constexpr int64_t NL = int64_t(NV) * L;
  int64_t full = n / NL;
  if (NV >= 3 && full > 0 && (n - full * NL + L - 1) / L == 1) --full;
  int64_t j = 0;
  for (int64_t t = 0; t < full; ++t, j += NL) f(j, NV);
  while (j < n) {
    const int64_t left = (n - j + L - 1) / L;
    const int nv = int(left > NV ? (left + 1) / 2 : left);
    f(j, nv);
    j += nv * L;
  }
}

// The index in [0, n) that padded position i (an index into the unpadded axis, possibly outside it) reads, or -1
// for a zero.
inline int64_t source_index(int64_t i, int64_t n, int mode) {
  if (i >= 0 && i < n) return i;
  if (mode == int(PaddingMode::zeros)) return -1;
  if (mode == int(PaddingMode::reflect)) return i < 0 ? -i : 2 * (n - 1) - i;
  return i < 0 ? 0 : n - 1;
}

// Lane shuffles with indices built at compile time for this vector width (GCC >= 12 and clang).
template <typename V, size_t... I>
inline V even_lanes(V a, V b, std::index_sequence<I...>) {  // a0 a2 .. b0 b2 ..
  return __builtin_shufflevector(a, b, (2 * I)...);
}
template <typename V, size_t... I>
inline V odd_lanes(V a, V b, std::index_sequence<I...>) {  // a1 a3 .. b1 b3 ..
  return __builtin_shufflevector(a, b, (2 * I + 1)...);
}
template <typename V, size_t... I>
inline V shift_in(V a, V b, std::index_sequence<I...>) {  // a1 a2 .. a(L-1) b0
  return __builtin_shufflevector(a, b, (I + 1)...);
}
template <typename V, size_t... I>
inline V zip_low(V a, V b, std::index_sequence<I...>) {  // a0 b0 a1 b1 .. (first halves)
  return __builtin_shufflevector(a, b, (I % 2 * sizeof...(I) + I / 2)...);
}
template <typename V, size_t... I>
inline V zip_high(V a, V b, std::index_sequence<I...>) {  // second halves
  return __builtin_shufflevector(a, b, (I % 2 * sizeof...(I) + sizeof...(I) / 2 + I / 2)...);
}

// bfloat16 (conv2d_bf16_kernel.cpp, conv2d_winograd_bf16_kernel.cpp) ------------------------------------------

using F = vec_t<float>;   // float32 lanes
using I = ivec_t<float>;  // the same lanes as int32: bfloat16 pairs

// bfloat16 bits of v, rounded to nearest even; a NaN stays a (quiet) NaN.
inline uint32_t bf16_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

// The same on a vector: the low 16 bits of each lane.
inline I bf16_bits(F v) {
  const I u = (I)v;
  const I nan = (u & 0x7fffffff) > 0x7f800000;
  const I rounded = (I)(((ivec_t<float>)((u + 0x7fff + ((u >> 16) & 1)))) >> 16) & 0xffff;
  const I quiet = ((u >> 16) | 0x40) & 0xffff;
  return (nan & quiet) | (~nan & rounded);
}

// Per lane: bf16(lo) in the low half, bf16(hi) in the high half. AVX512-BF16 converts with VCVTNE2PS2BF16 (the
// same rounding, but denormal inputs become zero) and interleaves with one VPERMW.
inline I pack_pair(F lo, F hi) {
#if defined(__AVX512BF16__)
  const __m512i both = (__m512i)_mm512_cvtne2ps_pbh((__m512)hi, (__m512)lo);  // lo's 16, then hi's 16
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                         6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return (I)_mm512_permutexvar_epi16(order, both);
#else
  return bf16_bits(lo) | (bf16_bits(hi) << 16);
#endif
}

// acc += the products of the bfloat16 pairs in b (per lane) and the pair `w` (broadcast).
inline void dot2(F& acc, I b, uint32_t w) {
#if defined(__AVX512BF16__)
  acc = (F)_mm512_dpbf16_ps((__m512)acc, (__m512bh)b, (__m512bh)_mm512_set1_epi32(int(w)));
#else
  const float wh = [&] {
    const uint32_t v = w & 0xffff0000u;
    float f;
    std::memcpy(&f, &v, 4);
    return f;
  }();
  const float wl = [&] {
    const uint32_t v = w << 16;
    float f;
    std::memcpy(&f, &v, 4);
    return f;
  }();
  acc += (F)(b & int32_t(0xffff0000u)) * wh;
  acc += (F)(b << 16) * wl;
#endif
}

}  // namespace conv2d_detail
}  // namespace GENRT_ISA_NS
}  // namespace genrt
