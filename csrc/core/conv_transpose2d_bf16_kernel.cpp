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
// The phase decomposition of conv_transpose2d_kernel.cpp, on bfloat16 pairs (conv_transpose2d_rows.h: the taps,
// the tasks of (image, block of output rows, group of output channels), and each task's input rows as bfloat16
// channel pairs with zero columns around, so a vector of L consecutive j of any tap is one load). Weights are
// packed once (kept in the WeightCache) as [C_out / MR][C_in / 2][kH][kW][MR] pairs.
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
#include "conv_transpose2d_rows.h"
#include "simd.h"

#define GENRT_CT2D_BF16_STR2(x) #x
#define GENRT_CT2D_BF16_STR(x) GENRT_CT2D_BF16_STR2(x)

namespace genrt {
namespace GENRT_ISA_NS {
namespace {

using conv2d_detail::bf16_bits;
using conv2d_detail::dot2;
using conv2d_detail::PackedWeights;
using conv2d_detail::row_tiles;
using conv_transpose2d_detail::Epilogue;
using conv_transpose2d_detail::RowTaps;
using conv_transpose2d_detail::TransposedRows;
using F = vec_t<float>;
using I = ivec_t<float>;

constexpr int L = Vec<float>::size;

// Tile shapes: 2 MR NV accumulators with both phases (NP 2), MR NV with one. Below 4 output channels MR is C_out
// and the vectors widen (the last layer of a generator: 1 or 3 channels).
#if GENRT_VEC_BYTES >= 64
constexpr int kMR1 = 8, kNV1 = 3, kMR2 = 4, kNV2 = 3;
constexpr int kNVFew1[4] = {0, 12, 8, 7}, kNVFew2[4] = {0, 8, 6, 4};
#else
constexpr int kMR1 = 4, kNV1 = 2, kMR2 = 2, kNV2 = 2;
constexpr int kNVFew1[4] = {0, 4, 3, 2}, kNVFew2[4] = {0, 4, 2, 1};
#endif

struct Plan {
  const ConvTranspose2dProblem& P;
  const TransposedRows& in;
  const uint32_t* u;  // packed weights
  float* y;
  Epilogue<float> ep;
  int MR, NP;          // output channels per tile; column phases per tile (2 where sw is 2, else 1)
  int64_t Kp;          // C_out rounded up to MR
  int64_t CG, groups;  // output channels per task (a multiple of MR), channel groups
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
  const std::vector<int64_t>&off0 = pl.in.off[size_t(q0)], &kw0 = pl.in.kw[size_t(q0)];
  const std::vector<int64_t>&off1 = pl.in.off[size_t(q0 + NP - 1)], &kw1 = pl.in.kw[size_t(q0 + NP - 1)];
  const int64_t n0 = int64_t(kw0.size()), n1 = int64_t(kw1.size());
  for (int64_t c2 = 0; c2 < pl.in.C2; ++c2)
    for (int t = 0; t < rt.n; ++t) {
      const uint32_t* rp = rows + c2 * pl.in.pair_words() + rt.r[t] * pl.in.Wb + j0;
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
      for (int v = 0; v < NV; ++v)
        if (!conv_transpose2d_detail::store_interleaved(dst + 2 * v * L, pl.ep.apply(acc0[i][v], kb + i),
                                                        pl.ep.apply(acc1[i][v], kb + i), width - 2 * v * L))
          break;
    } else {
      const int64_t count = std::min<int64_t>(NV * L, pl.in.J[size_t(q0)] - j0);
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
  const uint32_t* u = pl.u + kb * pl.in.C2 * P.kH * P.kW;
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const RowTaps rt = pl.in.row_taps(oh, ih0);
    float* yrow = pl.y + ((n * P.Cout + kb) * P.Ho + oh) * P.Wo;
    for (int64_t q0 = 0; q0 < (NP == 2 ? 1 : P.sw); ++q0) {
      row_tiles<NV, L>(pl.in.J[size_t(q0)],
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
  TransposedRows in(P, x, (P.Cin + 1) / 2, L);
  Plan pl{P, in, nullptr, y, Epilogue<float>{bias, scale, shift, P.activation, float(P.slope)}, MR, NP, 0, 0, 0};
  pl.Kp = (P.Cout + MR - 1) / MR * MR;
  const int64_t mblocks = pl.Kp / MR, RB = in.rows_per_task(mblocks, threads);
  in.set_rows(RB);
  const int64_t tasks = P.N * ((P.Ho + RB - 1) / RB);
  const int64_t want = std::clamp<int64_t>((4 * int64_t(threads) + tasks - 1) / tasks, 1, mblocks);
  pl.CG = (mblocks + want - 1) / want * MR;
  pl.groups = (pl.Kp + pl.CG - 1) / pl.CG;

  const std::string key =
      std::string("conv_transpose2d/bf16/" GENRT_CT2D_BF16_STR(GENRT_ISA_NS) "/mr") + std::to_string(MR);
  const PackedWeights<uint32_t> packed(P.cache, key, size_t(pl.Kp) * size_t(in.C2 * P.kH * P.kW),
                                       [&](uint32_t* u) { pack_weights(w, P, in.C2, pl.Kp, MR, u); });
  pl.u = packed.data();

  const Block block = NP == 2 ? block_for<2>(MR) : block_for<1>(MR);
  in.for_each_task(RB, pl.groups, threads, [&](int64_t g, int64_t n, int64_t oh0, int64_t oh1, int64_t ih0,
                                               const uint32_t* buf) {
    for (int64_t kb = g * pl.CG; kb < std::min(pl.Kp, (g + 1) * pl.CG); kb += MR) block(pl, buf, n, oh0, oh1, ih0, kb);
  });
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
