// The input side of the bfloat16 transposed-convolution kernels (conv_transpose2d_bf16_kernel.cpp,
// conv_transpose2d_amx_kernel.cpp), compiled into each one's instruction-set namespace: the phase decomposition's
// taps, the task's input rows as bfloat16 pairs, and the tasks.
//
// An output row oh receives the kernel rows kh with (oh + ph - kh dh) = 0 (mod sh), from input row
// ih = (oh + ph - kh dh) / sh; an output column ow = q + sw j of column phase q receives the kernel columns kw with
// (q + pw - kw dw) = 0 (mod sw), from input column j + (q + pw - kw dw) / sw. So no zero of a strided upsampling is
// multiplied. A task's buffer holds the input rows its outputs read, rounded to bfloat16 with input channels paired
// (one 32-bit word holds channel 2 c2 in its low half and 2 c2 + 1 in its high half, the operand layout of
// VDPBF16PS and of TDPBF16PS's second tile) and zero columns on both sides, so any run of consecutive j of any tap
// is contiguous.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "conv2d_common.h"
#include "conv_transpose2d.h"
#include "parallel.h"
#include "simd.h"

namespace genrt {
namespace GENRT_ISA_NS {
namespace conv_transpose2d_detail {

inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// The row taps of one output row: buffer rows (relative to the task's first input row) and kernel rows.
struct RowTaps {
  int n = 0;
  int64_t r[16], kh[16];
};

struct TransposedRows {
  const ConvTranspose2dProblem& P;
  const float* x;
  int64_t C2;         // pair rows held per input row (pairs past C_in are zero)
  int64_t Lp = 0;     // zero words left of a buffer row's input columns
  int64_t Wb = 0;     // words per buffer row, a multiple of 16
  int64_t rows = 0;   // input rows held per pair: set with rows_for()
  std::vector<int64_t> J;                 // per column phase q: outputs ow = q + sw j for j < J[q]
  std::vector<std::vector<int64_t>> off;  // per phase, per column tap: the buffer word of j = 0
  std::vector<std::vector<int64_t>> kw;   // per phase, per column tap: the kernel column

  // reach: how far past J[0] a kernel may read a buffer row (its widest run of j).
  TransposedRows(const ConvTranspose2dProblem& P_, const float* x_, int64_t C2_, int64_t reach)
      : P(P_), x(x_), C2(C2_), J(size_t(P_.sw)), off(size_t(P_.sw)), kw(size_t(P_.sw)) {
    int64_t lo = 0, hi = 0;  // the taps' least and greatest column offsets
    for (int64_t q = 0; q < P.sw; ++q) {
      J[size_t(q)] = q < P.Wo ? (P.Wo - q + P.sw - 1) / P.sw : 0;
      for (int64_t k = 0; k < P.kW; ++k) {
        const int64_t num = q + P.pw - k * P.dw;
        if (((num % P.sw) + P.sw) % P.sw) continue;
        kw[size_t(q)].push_back(k);
        off[size_t(q)].push_back(num / P.sw);
        lo = std::min(lo, num / P.sw);
        hi = std::max(hi, num / P.sw);
      }
    }
    Lp = -lo;
    for (auto& offs : off)
      for (auto& o : offs) o += Lp;
    Wb = (std::max(Lp + J[0] + hi + reach, Lp + P.W) + 15) / 16 * 16;
  }
  int64_t pair_words() const { return conv2d_detail::odd_lines(rows * Wb); }  // padded (odd_lines)

  // A block of rb output rows reads at most (rb - 1) / sh + (kH - 1) dh / sh + 2 input rows.
  int64_t reach_rows() const { return (P.kH - 1) * P.dh / P.sh + 2; }
  void set_rows(int64_t rb) { rows = std::min<int64_t>(P.H, (rb - 1) / P.sh + reach_rows()); }

  // Output rows per task: as many as fill about one core's share of L2 with input rows (at most 32), fewer only
  // where the mblocks channel blocks cannot give the threads work (every row block streams all the weights once: at
  // 4x4 -> 8x8 with 512 input channels, splitting rows 8 ways made it 6x slower).
  int64_t rows_per_task(int64_t mblocks, int threads) const {
    constexpr int64_t kBufferBytes = 512 << 10;
    const int64_t row_bytes = C2 * Wb * 4;
    int64_t rb = std::clamp<int64_t>((kBufferBytes / row_bytes - reach_rows()) * P.sh + 1, 1, 32);
    while (rb > 1 && P.N * ((P.Ho + rb - 1) / rb) * mblocks < 8 * int64_t(threads)) rb = (rb + 1) / 2;
    return rb;
  }

  // Input rows ih0 .. ih0 + nrows of every channel pair of image n: pair row (c2, r) at buf + c2 pair_words() + r Wb,
  // input column iw at word Lp + iw, zeros around.
  void build(int64_t n, int64_t ih0, int64_t nrows, uint32_t* __restrict buf) const {
    constexpr int L = Vec<float>::size;
    using F = vec_t<float>;
    using I = ivec_t<float>;
    const int64_t W = P.W;
    alignas(64) float a[L], b[L];
    for (int64_t c2 = 0; c2 < C2; ++c2)
      for (int64_t r = 0; r < nrows; ++r) {
        uint32_t* dst = buf + c2 * pair_words() + r * Wb;
        if (2 * c2 >= P.Cin) {
          std::memset(dst, 0, size_t(Wb) * 4);
          continue;
        }
        std::memset(dst, 0, size_t(Lp) * 4);
        std::memset(dst + Lp + W, 0, size_t(Wb - Lp - W) * 4);
        const float* xa = x + ((n * P.Cin + 2 * c2) * P.H + ih0 + r) * W;
        const float* xb = 2 * c2 + 1 < P.Cin ? xa + P.H * W : nullptr;
        for (int64_t j = 0; j < W; j += L) {
          const int64_t cnt = std::min<int64_t>(L, W - j);
          F va, vb = F{};
          if (cnt == L) {
            va = load(xa + j);
            if (xb) vb = load(xb + j);
          } else {
            std::memset(a, 0, sizeof(a));
            std::memset(b, 0, sizeof(b));
            std::memcpy(a, xa + j, size_t(cnt) * 4);
            if (xb) std::memcpy(b, xb + j, size_t(cnt) * 4);
            va = load(a);
            vb = load(b);
          }
          const I wv = conv2d_detail::pack_pair(va, vb);
          std::memcpy(dst + Lp + j, &wv, size_t(cnt) * 4);
        }
      }
  }

  RowTaps row_taps(int64_t oh, int64_t ih0) const {
    RowTaps rt;
    for (int64_t kh = 0; kh < P.kH; ++kh) {
      const int64_t num = oh + P.ph - kh * P.dh;
      if (((num % P.sh) + P.sh) % P.sh) continue;
      const int64_t ih = num / P.sh;
      if (ih < 0 || ih >= P.H) continue;
      rt.r[rt.n] = ih - ih0;
      rt.kh[rt.n++] = kh;
    }
    return rt;
  }

  // Tasks (image, block of rb output rows, group g), split over threads; a thread builds a row block's input rows
  // once for all its groups and calls task(g, n, oh0, oh1, ih0, buf).
  template <typename Task>
  void for_each_task(int64_t rb, int64_t groups, int threads, Task&& task) const {
    const int64_t row_blocks = (P.Ho + rb - 1) / rb;
    parallel_for(P.N * row_blocks * groups, threads, [&](int64_t b0, int64_t b1) {
      conv2d_detail::Scratch<uint32_t> buf(size_t(C2 * pair_words()));
      int64_t built = -1;  // the (image, row block) the buffer holds
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t g = b % groups, n = b / groups / row_blocks;
        const int64_t oh0 = b / groups % row_blocks * rb, oh1 = std::min(P.Ho, oh0 + rb);
        const int64_t ih0 = std::max<int64_t>(0, floor_div(oh0 + P.ph - (P.kH - 1) * P.dh + P.sh - 1, P.sh));
        const int64_t ih1 = std::min<int64_t>(P.H, floor_div(oh1 - 1 + P.ph, P.sh) + 1);
        if (built != b / groups) {
          if (ih1 > ih0) build(n, ih0, ih1 - ih0, buf.p);
          built = b / groups;
        }
        task(g, n, oh0, oh1, ih0, buf.p);
      }
    });
  }
};

}  // namespace conv_transpose2d_detail
}  // namespace GENRT_ISA_NS
}  // namespace genrt
