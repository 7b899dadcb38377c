// Helpers shared by conv2d's kernel files (conv2d_kernel.cpp, conv2d_direct_kernel.cpp, conv2d_bf16_kernel.cpp,
// conv2d_winograd_bf16_kernel.cpp, conv2d_amx_kernel.cpp) and conv_transpose2d_bf16_kernel.cpp, compiled into each
// one's instruction-set namespace.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <algorithm>
#include <utility>
#include <vector>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#include "conv2d.h"
#include "parallel.h"
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

// The lane shuffles live in simd.h.
using ::genrt::GENRT_ISA_NS::even_lanes;
using ::genrt::GENRT_ISA_NS::odd_lanes;
using ::genrt::GENRT_ISA_NS::shift_in;
using ::genrt::GENRT_ISA_NS::zip_high;
using ::genrt::GENRT_ISA_NS::zip_low;

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

// Words rounded up to an odd number of 64-byte cache lines: the stride between the pair rows of the bfloat16 kernels'
// input buffers, which an AMX tile load reads 16 of at once (a stride of a multiple of 4 KiB would put all 16 in one
// L1 set, which has 8 ways).
inline int64_t odd_lines(int64_t words) {
  const int64_t lines = (words + 15) / 16;
  return (lines | 1) * 16;
}

// L consecutive padded columns of an input row read as one vector (the bfloat16 kernels' input copies): c[0 .. L) are
// the input columns they read, -1 for a zero. Planned once per layout: a run of consecutive columns is one load, all
// zeros none, the edges (whatever the padding mode, where the row has at least L columns) one load shuffled, and
// anything else lane by lane.
struct ColumnSpan {
  static constexpr int L = Vec<float>::size;
  enum class Read { zero, run, every_second, shuffle, gather } how = Read::gather;
  int64_t base = 0;  // run, every_second: the first column; shuffle: the first column of the vector it shuffles
  I idx{};    // shuffle: per lane, the column - base; every_second: 2 lane
  I valid{};  // all ones where the lane reads a column, zero where it is padding

  ColumnSpan(const int64_t* c, int64_t W) {
    int64_t lo = W, hi = -1;
    bool run = c[0] >= 0, second = c[0] >= 0 && c[0] + 2 * L <= W;  // every_second loads 2 L columns
    for (int l = 0; l < L; ++l) {
      if (c[l] >= 0) lo = std::min(lo, c[l]), hi = std::max(hi, c[l]);
      run = run && c[l] == c[0] + l;
      second = second && c[l] == c[0] + 2 * l;
    }
    for (int l = 0; l < L; ++l) valid[l] = c[l] >= 0 ? -1 : 0;
    if (hi < 0) {
      how = Read::zero;
    } else if (run) {
      how = Read::run, base = c[0];
    } else if (second) {  // a stride-2 phase: the even lanes of two vectors
      how = Read::every_second, base = c[0];
      for (int l = 0; l < L; ++l) idx[l] = 2 * l;
    } else if (W >= L && hi - lo < L) {
      how = Read::shuffle, base = std::min(lo, W - L);
      for (int l = 0; l < L; ++l) idx[l] = int32_t(c[l] >= 0 ? c[l] - base : 0);
    }
  }

  // The vector from input row `row`; c: the same columns as planned.
  F read(const float* row, const int64_t* c) const {
    if (how == Read::run) return load(row + base);
    if (how == Read::every_second) return __builtin_shuffle(load(row + base), load(row + base + L), idx);
    if (how == Read::shuffle) return (F)((I)__builtin_shuffle(load(row + base), idx) & valid);
    F v{};
    if (how == Read::gather)
      for (int l = 0; l < L; ++l) v[l] = c[l] >= 0 ? row[c[l]] : 0.0f;
    return v;
  }
};

// The bfloat16 direct kernels' input (conv2d_bf16_kernel.cpp, conv2d_amx_kernel.cpp): a task's padded input rows,
// the padding resolved and each row split into its sw phases, so consecutive output pixels read consecutive words at
// any stride; rounded to bfloat16 and paired: element j of pair row (c2, r) is one 32-bit word holding
// bf16(x[2 c2][r][j]) in its low half and bf16(x[2 c2 + 1][r][j]) in its high half (zero past C_in), the operand
// layout of VDPBF16PS and of TDPBF16PS's second tile.
struct PairRows {
  static constexpr int L = Vec<float>::size;
  const Conv2dProblem& P;
  const float* x;
  int64_t C2;                 // pair rows held per padded row (pairs past C_in are zero)
  int64_t Wph;                // words per phase row, a multiple of the vector width (zero past the input)
  int64_t rows = 0;           // padded input rows held per pair: set by the kernel
  std::vector<int64_t> off;   // per kw: (kw % sw) Wph + kw / sw, the tap's offset in a buffer row
  std::vector<int64_t> cols;  // per buffer row word (phase q, word j at q Wph + j): its input column, or -1 for zero
  std::vector<ColumnSpan> spans;  // per vector of a buffer row, how it is read

  PairRows(const Conv2dProblem& P_, const float* x_, int64_t C2_, int64_t Wph_)
      : P(P_), x(x_), C2(C2_), Wph(Wph_), off(size_t(P_.kW)), cols(size_t(P_.sw * Wph_)) {
    const int64_t s = P.sw, Wp = P.W + P.pad[1] + P.pad[3];
    for (int64_t kw = 0; kw < P.kW; ++kw) off[size_t(kw)] = (kw % s) * Wph + kw / s;
    for (int64_t q = 0; q < s; ++q)
      for (int64_t j = 0; j < Wph; ++j) {
        const int64_t pc = q + j * s;  // the padded column
        cols[size_t(q * Wph + j)] = pc < Wp ? source_index(pc - P.pad[1], P.W, P.mode) : -1;
      }
    for (int64_t j = 0; j < s * Wph; j += L) spans.emplace_back(cols.data() + j, P.W);
  }
  int64_t row_words() const { return P.sw * Wph; }        // one padded row of one pair, all phases
  const float* plane(int64_t n, int64_t c) const {        // input channel c of image n
    return P.in_planes ? P.in_planes[n * P.Cin + c] : x + (n * P.Cin + c) * P.H * P.W;
  }
  int64_t pair_words() const { return odd_lines(rows * row_words()); }  // one pair's rows, padded

  // Padded row `pr` of pair c2 converted straight from the input rows, each vector read as its ColumnSpan says.
  void row(int64_t n, int64_t c2, int64_t pr, uint32_t* __restrict dst) const {
    const int64_t sr = source_index(pr - P.pad[0], P.H, P.mode), W = P.W;
    if (sr < 0 || 2 * c2 >= P.Cin) {
      std::memset(dst, 0, size_t(row_words()) * sizeof(uint32_t));
      return;
    }
    const float* xa = plane(n, 2 * c2) + sr * W;
    const float* xb = 2 * c2 + 1 < P.Cin ? plane(n, 2 * c2 + 1) + sr * W : nullptr;
    const ColumnSpan* sp = spans.data();
    if (P.in_affine) {  // x' = act(a x + b) on the columns read, the padding still zero
      const float* ab = P.in_affine + 2 * (n * P.Cin + 2 * c2);
      const F sa = splat(ab[0]), ta = splat(ab[1]), sb = splat(xb ? ab[2] : 0.0f), tb = splat(xb ? ab[3] : 0.0f);
      auto affine = [&](F v, F scale, F shift, I valid) {
        return (F)((I)conv2d_activate(v * scale + shift, P.in_act, 0.0f) & valid);
      };
      for (int64_t j = 0; j < row_words(); j += L, ++sp) {
        const F a = affine(sp->read(xa, cols.data() + j), sa, ta, sp->valid);
        const F b = xb ? affine(sp->read(xb, cols.data() + j), sb, tb, sp->valid) : F{};
        const I w = pack_pair(a, b);
        std::memcpy(dst + j, &w, sizeof(w));
      }
      return;
    }
    for (int64_t j = 0; j < row_words(); j += L, ++sp) {
      const F a = sp->read(xa, cols.data() + j), b = xb ? sp->read(xb, cols.data() + j) : F{};
      const I w = pack_pair(a, b);
      std::memcpy(dst + j, &w, sizeof(w));
    }
  }

  // Padded rows r0 .. r0 + nrows of every pair of image n: pair row (c2, r) at buf + c2 pair_words() + r
  // row_words(), its phase q at + q Wph.
  void build(int64_t n, int64_t r0, int64_t nrows, uint32_t* __restrict buf) const {
    for (int64_t c2 = 0; c2 < C2; ++c2)
      for (int64_t r = 0; r < nrows; ++r) row(n, c2, r0 + r, buf + c2 * pair_words() + r * row_words());
  }
};

// The bfloat16 direct kernels' tasks: (image, block of rb output rows, group g of output channels), split over
// threads; a thread builds a row block's PairRows once for all its groups and calls task(g, n, oh0, oh1, buf).
// rows_per_task: as many output rows as fill about one core's share of L2 with input rows (at most 32), and at least
// kH - 1 while the buffer stays under 4 MiB (a block of rb rows converts rb - 1 + kH input rows: wide rows of many
// channels, a super-resolution network's last layer, would otherwise convert each input row kH times); fewer while
// there would be under 8 tasks per thread.
inline int64_t rows_per_task(const PairRows& in, int threads) {
  constexpr int64_t kBufferBytes = 512 << 10, kMaxBufferBytes = 4 << 20;
  const Conv2dProblem& P = in.P;
  const int64_t row_bytes = in.C2 * in.row_words() * 4;
  const int64_t most = std::clamp<int64_t>((kMaxBufferBytes / row_bytes - P.kH) / P.sh + 1, 1, 32);
  int64_t rb = std::clamp<int64_t>((kBufferBytes / row_bytes - P.kH) / P.sh + 1, 1, 32);
  rb = std::max(rb, std::min(most, P.kH - 1));
  while (rb > 1 && P.N * ((P.Ho + rb - 1) / rb) < 8 * int64_t(threads)) rb = (rb + 1) / 2;
  return rb;
}
template <typename Task>
void for_each_task(const PairRows& in, int64_t rb, int64_t groups, int threads, Task&& task) {
  const Conv2dProblem& P = in.P;
  const int64_t row_blocks = (P.Ho + rb - 1) / rb;
  parallel_for(P.N * row_blocks * groups, threads, [&](int64_t b0, int64_t b1) {
    Scratch<uint32_t> buf(size_t(in.C2 * in.pair_words()));
    int64_t built = -1;  // the (image, row block) the buffer holds
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t g = b % groups, n = b / groups / row_blocks;
      const int64_t oh0 = b / groups % row_blocks * rb, oh1 = std::min(P.Ho, oh0 + rb);
      if (built != b / groups) {
        in.build(n, oh0 * P.sh, (oh1 - 1 - oh0) * P.sh + P.kH, buf.p);
        built = b / groups;
      }
      task(g, n, oh0, oh1, buf.p);
    }
  });
}

}  // namespace conv2d_detail
}  // namespace GENRT_ISA_NS
}  // namespace genrt
