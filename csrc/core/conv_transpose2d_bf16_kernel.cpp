// conv_transpose2d in bfloat16: float32 in and out, the products of bfloat16-rounded inputs and weights summed in
// float32. Compiled once per instruction set like every *_kernel.cpp (see simd.h and setup.py), and once more for
// AVX512-BF16 (namespace isa_avx512bf16), where each step is one VDPBF16PS.
//
//   y[co][oh][ow] = ep(sum over (ci, kh, kw) with oh = ih sh - ph + kh dh, ow = iw sw - pw + kw dw
//                      of bf16(x[ci][ih][iw]) bf16(w[ci][co][kh][kw]))
//
// ep is conv_transpose2d's epilogue (bias, scale, shift, activation; conv_transpose2d_epilogue.h) and bf16(v)
// rounds float32 to bfloat16 to nearest, ties to even, as conv2d's bf16 path does (conv2d_common.h).
//
// The phase decomposition of conv_transpose2d_kernel.cpp, on bfloat16 pairs. An output row oh receives the kernel
// rows kh with (oh + ph - kh dh) = 0 (mod sh), from input row ih = (oh + ph - kh dh) / sh; an output column ow = q +
// sw j of column phase q receives the kernel columns kw with (q + pw - kw dw) = 0 (mod sw), from input column
// j + (q + pw - kw dw) / sw. So no zero of a strided upsampling is multiplied. Tasks are (image, block of output
// rows, group of output channels); a task first copies the input rows its outputs read, rounded to bfloat16 with
// input channels paired (one 32-bit word holds channel 2 c2 in its low half and 2 c2 + 1 in its high half, the
// operand layout of VDPBF16PS) and zero columns on both sides, so a vector of L consecutive j of any tap is one
// load. Weights are packed once (kept in the WeightCache) as [C_out / MR][C_in / 2][kH][kW][MR] pairs.
//
// The micro-kernel holds MR output channels x NV vectors of j of one output row in float32 accumulators. Where sw is
// 2 (the transposed convolutions of every network genrt ships) it holds both column phases of those j and
// interleaves them in registers (zip), so each output vector is stored whole and once; otherwise it holds one phase,
// stored contiguously where sw is 1 and lane by lane at stride sw above 2.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "conv2d_common.h"
#include "conv_transpose2d.h"
#include "conv_transpose2d_epilogue.h"
#include "parallel.h"
#include "simd.h"

#define GENRT_CT2D_BF16_STR2(x) #x
#define GENRT_CT2D_BF16_STR(x) GENRT_CT2D_BF16_STR2(x)

namespace genrt {
namespace GENRT_ISA_NS {
namespace {

using conv2d_detail::bf16_bits;
using conv2d_detail::dot2;
using conv2d_detail::pack_pair;
using conv2d_detail::PackedWeights;
using conv2d_detail::row_tiles;
using conv2d_detail::Scratch;
using conv_transpose2d_detail::Epilogue;
using F = vec_t<float>;
using I = ivec_t<float>;

constexpr int L = Vec<float>::size;
constexpr int64_t kBufferBytes = 512 << 10;  // a task's input rows: about one core's share of L2

// Tile shapes: 2 MR NV accumulators with both phases (NP 2), MR NV with one. Below 4 output channels MR is C_out
// and the vectors widen (the last layer of a generator: 1 or 3 channels).
#if GENRT_VEC_BYTES >= 64
constexpr int kMR1 = 8, kNV1 = 3, kMR2 = 4, kNV2 = 3;
constexpr int kNVFew1[4] = {0, 12, 8, 7}, kNVFew2[4] = {0, 8, 6, 4};
#else
constexpr int kMR1 = 4, kNV1 = 2, kMR2 = 2, kNV2 = 2;
constexpr int kNVFew1[4] = {0, 4, 3, 2}, kNVFew2[4] = {0, 4, 2, 1};
#endif

inline int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

struct Plan {
  const ConvTranspose2dProblem& P;
  const float* x;
  const uint32_t* u;  // packed weights
  float* y;
  Epilogue<float> ep;
  int MR, NP;          // output channels per tile; column phases per tile (2 where sw is 2, else 1)
  int64_t C2, Kp;      // input channel pairs; C_out rounded up to MR
  int64_t Lp, Wb;      // zero words left of a buffer row's input columns; words per buffer row
  int64_t RB, row_blocks, rows_cap;
  int64_t CG, groups;  // output channels per task (a multiple of MR), channel groups
  // Column phase q: outputs ow = q + sw j for j < J[q]; its taps read buffer word Lp + j + off and weight column kw.
  std::vector<int64_t> J;
  std::vector<std::vector<int64_t>> off, kw;
};

// Input rows ih0 .. ih0 + nrows of every channel pair of image n: pair row (c2, r) at buf + (c2 rows_cap + r) Wb,
// input column iw at word Lp + iw, zeros around.
void build_rows(const Plan& pl, int64_t n, int64_t ih0, int64_t nrows, uint32_t* __restrict buf) {
  const ConvTranspose2dProblem& P = pl.P;
  const int64_t W = P.W;
  alignas(64) float a[L], b[L];
  for (int64_t c2 = 0; c2 < pl.C2; ++c2)
    for (int64_t r = 0; r < nrows; ++r) {
      uint32_t* dst = buf + (c2 * pl.rows_cap + r) * pl.Wb;
      std::memset(dst, 0, size_t(pl.Lp) * 4);
      std::memset(dst + pl.Lp + W, 0, size_t(pl.Wb - pl.Lp - W) * 4);
      const float* xa = pl.x + ((n * P.Cin + 2 * c2) * P.H + ih0 + r) * W;
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
        const I wv = pack_pair(va, vb);
        std::memcpy(dst + pl.Lp + j, &wv, size_t(cnt) * 4);
      }
    }
}

// The row taps of output row oh: buffer rows (relative to ih0) and kernel rows.
struct RowTaps {
  int n = 0;
  int64_t r[16], kh[16];
};

// acc += the n column taps of one phase: tap s reads the buffer row rp from word off[s] and weight column kw[s].
template <int MR, int NV>
__attribute__((always_inline)) inline void phase_taps(F (&acc)[MR][NV], const uint32_t* __restrict rp,
                                                      const uint32_t* __restrict up, const int64_t* off,
                                                      const int64_t* kw, int64_t n) {
  for (int64_t s = 0; s < n; ++s) {
    const uint32_t* bp = rp + off[s];
    const uint32_t* wp = up + kw[s] * MR;
    I b[NV];
    for (int v = 0; v < NV; ++v) std::memcpy(&b[v], bp + v * L, sizeof(I));
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NV; ++v) dot2(acc[i][v], b[v], wp[i]);
  }
}

// MR output channels (the first m stored) x NV vectors of j from j0 of output row yrow (channel kb's), phases q0 ..
// q0 + NP. rows: the task's buffer; u: the channel block's packed weights. (Each phase has its own accumulator
// array, so that both stay in registers.)
template <int MR, int NV, int NP>
void tile(const Plan& pl, const uint32_t* __restrict u, const uint32_t* __restrict rows, const RowTaps& rt,
          int64_t q0, int64_t j0, int64_t m, float* __restrict yrow, int64_t kb) {
  const ConvTranspose2dProblem& P = pl.P;
  const int64_t khw = P.kH * P.kW, plane = P.Ho * P.Wo;
  F acc0[MR][NV], acc1[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc0[i][v] = acc1[i][v] = F{};
  const std::vector<int64_t>&off0 = pl.off[size_t(q0)], &kw0 = pl.kw[size_t(q0)];
  const std::vector<int64_t>&off1 = pl.off[size_t(q0 + NP - 1)], &kw1 = pl.kw[size_t(q0 + NP - 1)];
  const int64_t n0 = int64_t(kw0.size()), n1 = int64_t(kw1.size());
  for (int64_t c2 = 0; c2 < pl.C2; ++c2)
    for (int t = 0; t < rt.n; ++t) {
      const uint32_t* rp = rows + (c2 * pl.rows_cap + rt.r[t]) * pl.Wb + j0;
      const uint32_t* up = u + (c2 * khw + rt.kh[t] * P.kW) * MR;
      phase_taps<MR, NV>(acc0, rp, up, off0.data(), kw0.data(), n0);
      if constexpr (NP == 2) phase_taps<MR, NV>(acc1, rp, up, off1.data(), kw1.data(), n1);
    }
  const int64_t sw = P.sw;
  for (int i = 0; i < MR && i < m; ++i) {
    float* dst = yrow + i * plane;
    if constexpr (NP == 2) {  // sw == 2: outputs 2 j0 .. 2 (j0 + NV L), the phases interleaved
      const int64_t width = std::min<int64_t>(2 * NV * L, P.Wo - 2 * j0);
      dst += 2 * j0;
      for (int v = 0; v < NV; ++v) {
        const F a = pl.ep.apply(acc0[i][v], kb + i), b = pl.ep.apply(acc1[i][v], kb + i);
        const F half[2] = {conv2d_detail::zip_low(a, b, std::make_index_sequence<L>{}),
                           conv2d_detail::zip_high(a, b, std::make_index_sequence<L>{})};
        for (int h = 0; h < 2; ++h) {
          const int64_t at = (2 * v + h) * L;
          if (at + L <= width) {
            store(dst + at, half[h]);
          } else {
            alignas(64) float tmp[L];
            store(tmp, half[h]);
            for (int64_t l = 0; at + l < width; ++l) dst[at + l] = tmp[l];
            break;
          }
        }
      }
    } else {
      const int64_t count = std::min<int64_t>(NV * L, pl.J[size_t(q0)] - j0);
      for (int v = 0; v < NV && v * L < count; ++v) {
        const F a = pl.ep.apply(acc0[i][v], kb + i);
        const int64_t n = std::min<int64_t>(L, count - v * L);
        if (sw == 1 && n == L) {
          store(dst + j0 + v * L, a);
        } else {
          alignas(64) float tmp[L];
          store(tmp, a);
          for (int64_t l = 0; l < n; ++l) dst[q0 + sw * (j0 + v * L + l)] = tmp[l];
        }
      }
    }
  }
}

// tile with nv <= NV vectors.
template <int MR, int NV, int NP>
void tail(int nv, const Plan& pl, const uint32_t* u, const uint32_t* rows, const RowTaps& rt, int64_t q0, int64_t j0,
          int64_t m, float* yrow, int64_t kb) {
  if constexpr (NV > 1)
    if (nv < NV) return tail<MR, NV - 1, NP>(nv, pl, u, rows, rt, q0, j0, m, yrow, kb);
  tile<MR, NV, NP>(pl, u, rows, rt, q0, j0, m, yrow, kb);
}

// Output channels kb .. kb + MR (the first m exist) of output rows oh0 .. oh1 of image n; the task's buffer holds
// input rows from ih0.
template <int MR, int NV, int NP>
void run_block(const Plan& pl, const uint32_t* buf, int64_t n, int64_t oh0, int64_t oh1, int64_t ih0, int64_t kb) {
  const ConvTranspose2dProblem& P = pl.P;
  const int64_t m = std::min<int64_t>(MR, P.Cout - kb);
  const uint32_t* u = pl.u + kb * pl.C2 * P.kH * P.kW;
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    RowTaps rt;
    for (int64_t kh = 0; kh < P.kH; ++kh) {
      const int64_t num = oh + P.ph - kh * P.dh;
      if (((num % P.sh) + P.sh) % P.sh) continue;
      const int64_t ih = num / P.sh;
      if (ih < 0 || ih >= P.H) continue;
      rt.r[rt.n] = ih - ih0;
      rt.kh[rt.n++] = kh;
    }
    float* yrow = pl.y + ((n * P.Cout + kb) * P.Ho + oh) * P.Wo;
    for (int64_t q0 = 0; q0 < (NP == 2 ? 1 : P.sw); ++q0) {
      row_tiles<NV, L>(pl.J[size_t(q0)],
                       [&](int64_t j0, int nv) { tail<MR, NV, NP>(nv, pl, u, buf, rt, q0, j0, m, yrow, kb); });
    }
  }
}

// w (C_in, C_out, kH, kW) as [C_out / MR][C_in / 2][kH][kW][MR] bfloat16 pairs, channel 2 c2 in the low half; rows
// past C_out and the channel past an odd C_in zero.
void pack_weights(const float* w, const ConvTranspose2dProblem& P, int64_t C2, int64_t Kp, int MR, uint32_t* u) {
  const int64_t khw = P.kH * P.kW, taps = C2 * khw;
  for (int64_t k = 0; k < Kp; ++k)
    for (int64_t c2 = 0; c2 < C2; ++c2)
      for (int64_t t = 0; t < khw; ++t) {
        uint32_t pair = 0;
        if (k < P.Cout) {
          pair = bf16_bits(w[((2 * c2) * P.Cout + k) * khw + t]);
          if (2 * c2 + 1 < P.Cin) pair |= bf16_bits(w[((2 * c2 + 1) * P.Cout + k) * khw + t]) << 16;
        }
        u[(k / MR * taps + c2 * khw + t) * MR + k % MR] = pair;
      }
}

using Block = void (*)(const Plan&, const uint32_t*, int64_t, int64_t, int64_t, int64_t, int64_t);

template <int NP>
Block block_for(int MR) {
  constexpr const int* few = NP == 2 ? kNVFew2 : kNVFew1;
  if (MR == 1) return run_block<1, few[1], NP>;
  if (MR == 2) return run_block<2, few[2], NP>;
  if (MR == 3) return run_block<3, few[3], NP>;
  return run_block<NP == 2 ? kMR2 : kMR1, NP == 2 ? kNV2 : kNV1, NP>;
}

}  // namespace

void conv_transpose2d_bf16_kernel(const ConvTranspose2dProblem& P, const float* x, const float* w, const float* bias,
                                  const float* scale, const float* shift, float* y, int threads) {
  const int NP = P.sw == 2 ? 2 : 1;
  const int widest = NP == 2 ? kMR2 : kMR1;
  const int MR = P.Cout < 4 && P.Cout < widest ? int(P.Cout) : widest;
  Plan pl{P, x, nullptr, y, Epilogue<float>{bias, scale, shift, P.activation, float(P.slope)}, MR, NP,
          (P.Cin + 1) / 2, 0, 0, 0, 0, 0, 0, 0, 0, {}, {}, {}};
  pl.Kp = (P.Cout + MR - 1) / MR * MR;
  int64_t lo = 0, hi = 0;  // the taps' least and greatest column offsets
  pl.J.resize(size_t(P.sw));
  pl.off.resize(size_t(P.sw));
  pl.kw.resize(size_t(P.sw));
  for (int64_t q = 0; q < P.sw; ++q) {
    pl.J[size_t(q)] = q < P.Wo ? (P.Wo - q + P.sw - 1) / P.sw : 0;
    for (int64_t kw = 0; kw < P.kW; ++kw) {
      const int64_t num = q + P.pw - kw * P.dw;
      if (((num % P.sw) + P.sw) % P.sw) continue;
      pl.kw[size_t(q)].push_back(kw);
      pl.off[size_t(q)].push_back(num / P.sw);
      lo = std::min(lo, num / P.sw);
      hi = std::max(hi, num / P.sw);
    }
  }
  pl.Lp = -lo;
  for (auto& offs : pl.off)
    for (auto& o : offs) o += pl.Lp;
  pl.Wb = (std::max(pl.Lp + pl.J[0] + hi + L, pl.Lp + P.W) + L - 1) / L * L;

  // Rows: a block of RB output rows reads at most (RB - 1) / sh + (kH - 1) dh / sh + 2 input rows.
  const int64_t reach = (P.kH - 1) * P.dh / P.sh + 2;
  const int64_t row_bytes = pl.C2 * pl.Wb * 4;
  int64_t RB = std::clamp<int64_t>((kBufferBytes / row_bytes - reach) * P.sh + 1, 1, 32);
  auto blocks_of = [&](int64_t rb) { return (P.Ho + rb - 1) / rb; };
  // Fewer rows per task only where the channel blocks cannot give the threads work: every row block streams all
  // the weights once (at 4x4 -> 8x8 with 512 input channels, splitting rows 8 ways made it 6x slower).
  const int64_t mblocks = pl.Kp / MR;
  while (RB > 1 && P.N * blocks_of(RB) * mblocks < 8 * int64_t(threads)) RB = (RB + 1) / 2;
  pl.RB = RB;
  pl.row_blocks = blocks_of(RB);
  pl.rows_cap = std::min<int64_t>(P.H, (RB - 1) / P.sh + reach);
  const int64_t tasks = P.N * pl.row_blocks;
  const int64_t want = std::clamp<int64_t>((4 * int64_t(threads) + tasks - 1) / tasks, 1, mblocks);
  pl.CG = (mblocks + want - 1) / want * MR;
  pl.groups = (pl.Kp + pl.CG - 1) / pl.CG;

  const std::string key =
      std::string("conv_transpose2d/bf16/" GENRT_CT2D_BF16_STR(GENRT_ISA_NS) "/mr") + std::to_string(MR);
  const PackedWeights<uint32_t> packed(P.cache, key, size_t(pl.Kp) * size_t(pl.C2 * P.kH * P.kW),
                                       [&](uint32_t* u) { pack_weights(w, P, pl.C2, pl.Kp, MR, u); });
  pl.u = packed.data();

  const Block block = NP == 2 ? block_for<2>(MR) : block_for<1>(MR);
  const int64_t count = P.N * pl.row_blocks * pl.groups;
  parallel_for(count, threads, [&](int64_t b0, int64_t b1) {
    Scratch<uint32_t> buf(size_t(pl.C2 * pl.rows_cap * pl.Wb));
    int64_t built = -1;  // the (image, row block) the buffer holds
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t g = b % pl.groups, rb = b / pl.groups % pl.row_blocks, n = b / pl.groups / pl.row_blocks;
      const int64_t oh0 = rb * pl.RB, oh1 = std::min(P.Ho, oh0 + pl.RB);
      const int64_t ih0 = std::max<int64_t>(0, floor_div(oh0 + P.ph - (P.kH - 1) * P.dh + P.sh - 1, P.sh));
      const int64_t ih1 = std::min<int64_t>(P.H, floor_div(oh1 - 1 + P.ph, P.sh) + 1);
      if (built != b / pl.groups) {
        if (ih1 > ih0) build_rows(pl, n, ih0, ih1 - ih0, buf.p);
        built = b / pl.groups;
      }
      for (int64_t kb = g * pl.CG; kb < std::min(pl.Kp, (g + 1) * pl.CG); kb += MR)
        block(pl, buf.p, n, oh0, oh1, ih0, kb);
    }
  });
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
