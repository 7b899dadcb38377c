// conv2d in bfloat16: float32 in and out, the products of bfloat16-rounded inputs and weights summed in float32.
// Compiled once per instruction set like every *_kernel.cpp (see simd.h and setup.py), and once more for
// AVX512-BF16 (namespace isa_avx512bf16), where each step is one VDPBF16PS.
//
//   y[co][oh][ow] = act(bias[co] + sum over taps (ci, kh, kw) of bf16(w[co][ci][kh][kw]) bf16(xp[ci][oh sh + kh][ow sw + kw]))
//
// bf16(v) rounds float32 to bfloat16 to nearest, ties to even (a quiet NaN stays NaN). The products are exact in
// float32 (8-bit significands), so only the order of the float32 sums differs between instruction sets.
//
// The layout follows conv2d's direct path (conv2d_direct_kernel.cpp): tasks of (image, block of output rows, group
// of output channels); a task first copies the padded input rows its outputs read, the padding resolved and each
// row split into its sw phases, so NV vectors of consecutive output pixels are NV contiguous loads at any stride.
// Here the copy also rounds to bfloat16 and pairs input channels (conv2d_common.h's PairRows), the operand layout
// of VDPBF16PS. Weights are packed once (kept in the WeightCache) the same way, as
// [C_out / MR][C_in / 2][kH][kW][MR] words. The micro-kernel: MR x NV float32 accumulators, per (pair, kh, kw) NV
// loads and MR broadcasts, each accumulator gaining two products per lane; elsewhere the two halves are widened to
// float32 (a shift and a mask) and multiplied and added, low half last, as VDPBF16PS orders them.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "conv2d.h"
#include "conv2d_common.h"
#include "simd.h"

#define GENRT_CONV2D_BF16_STR2(x) #x
#define GENRT_CONV2D_BF16_STR(x) GENRT_CONV2D_BF16_STR2(x)

namespace genrt {
namespace GENRT_ISA_NS {
namespace {

using conv2d_detail::PackedWeights;
using conv2d_detail::PairRows;
using conv2d_detail::row_tiles;
using conv2d_detail::for_each_task;
using conv2d_detail::rows_per_task;
using conv2d_detail::source_index;
using conv2d_detail::bf16_bits;
using conv2d_detail::dot2;
using conv2d_detail::pack_pair;
using F = vec_t<float>;
using I = ivec_t<float>;

constexpr int L = Vec<float>::size;

#if GENRT_VEC_BYTES >= 64
constexpr int kMR = 8, kNV = 3;
constexpr int kNVFew[5] = {0, 12, 8, 7, 5};
#else
constexpr int kMR = 4, kNV = 2;
constexpr int kNVFew[5] = {0, 4, 3, 2, 2};
#endif

struct Plan {
  const Conv2dProblem& P;
  const PairRows& in;
  const uint32_t* u;  // packed weights
  const float* bias;
  float* y;
  int64_t Kp;          // C_out rounded up to MR
  int64_t CG, groups;  // output channels per task (a multiple of MR), groups
};

// MR output channels (the first m stored) x NV vectors of pixels of one output row, the first `width` stored.
template <int MR, int NV>
inline void tile(const Plan& pl, const uint32_t* __restrict u, const uint32_t* __restrict rows, int64_t m,
                 float* __restrict y0, int64_t width, const float* bias0) {
  const Conv2dProblem& P = pl.P;
  const int64_t kH = P.kH, kW = P.kW, rstride = pl.in.row_words(), cstride = pl.in.pair_words();
  const int64_t* __restrict off = pl.in.off.data();
  F acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = F{};
  for (int64_t c2 = 0; c2 < pl.in.C2; ++c2)
    for (int64_t kh = 0; kh < kH; ++kh) {
      const uint32_t* rp = rows + c2 * cstride + kh * rstride;
      for (int64_t kw = 0; kw < kW; ++kw, u += MR) {
        const uint32_t* bp = rp + off[kw];
        I b[NV];
        for (int j = 0; j < NV; ++j) std::memcpy(&b[j], bp + j * L, sizeof(I));
        for (int i = 0; i < MR; ++i)
          for (int j = 0; j < NV; ++j) dot2(acc[i][j], b[j], u[i]);
      }
    }
  const float slope = float(P.slope);
  const int64_t plane = P.Ho * P.Wo;
  for (int i = 0; i < MR && i < m; ++i) {
    const F bv = splat(bias0 ? bias0[i] : 0.0f);
    float* dst = y0 + i * plane;
    for (int j = 0; j < NV; ++j) {
      F v = acc[i][j] + bv;
      v = conv2d_activate(v, P.activation, slope);
      if ((j + 1) * L <= width) {
        store(dst + j * L, v);
      } else {  // the row's last, partial vector
        alignas(64) float tmp[L];
        store(tmp, v);
        for (int64_t l = 0; l < width - j * L; ++l) dst[j * L + l] = tmp[l];
        break;
      }
    }
  }
}

template <int MR, int NV>
void tail(int nv, const Plan& pl, const uint32_t* u, const uint32_t* rows, int64_t m, float* y0, int64_t width,
          const float* bias0) {
  if constexpr (NV > 1)
    if (nv < NV) return tail<MR, NV - 1>(nv, pl, u, rows, m, y0, width, bias0);
  tile<MR, NV>(pl, u, rows, m, y0, width, bias0);
}

// Output channels kb .. kb + MR (the first m exist) of output rows oh0 .. oh1 of image n, from the task's buffer.
template <int MR, int NV>
void run_block(const Plan& pl, const uint32_t* buf, int64_t n, int64_t oh0, int64_t oh1, int64_t kb) {
  const Conv2dProblem& P = pl.P;
  const int64_t Wo = P.Wo, m = std::min<int64_t>(MR, P.Cout - kb);
  const uint32_t* u = pl.u + kb * pl.in.C2 * P.kH * P.kW;
  const float* bias0 = pl.bias ? pl.bias + kb : nullptr;
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const uint32_t* rows = buf + (oh - oh0) * P.sh * pl.in.row_words();
    float* yrow = pl.y + ((n * P.Cout + kb) * P.Ho + oh) * Wo;
    row_tiles<NV, L>(Wo, [&](int64_t ow, int nv) {
      tail<MR, NV>(nv, pl, u, rows + ow, m, yrow + ow, std::min<int64_t>(nv * L, Wo - ow), bias0);
    });
  }
}

// w (C_out, C_in, kH, kW) as [C_out / MR][C_in / 2][kH][kW][MR] bfloat16 pairs, channel 2 c2 in the low half;
// rows past C_out and the channel past an odd C_in zero.
void pack_weights(const float* w, const Conv2dProblem& P, int64_t C2, int64_t Kp, int MR, uint32_t* u) {
  const int64_t khw = P.kH * P.kW, taps = C2 * khw;
  for (int64_t k = 0; k < Kp; ++k)
    for (int64_t c2 = 0; c2 < C2; ++c2)
      for (int64_t t = 0; t < khw; ++t) {
        uint32_t pair = 0;
        if (k < P.Cout) {
          const float* wk = w + k * P.Cin * khw;
          pair = bf16_bits(wk[2 * c2 * khw + t]);
          if (2 * c2 + 1 < P.Cin) pair |= bf16_bits(wk[(2 * c2 + 1) * khw + t]) << 16;
        }
        u[(k / MR * taps + c2 * khw + t) * MR + k % MR] = pair;
      }
}

}  // namespace

void conv2d_bf16_kernel(const Conv2dProblem& P, const float* x, const float* w, const float* bias, float* y,
                        int threads) {
  const int MR = P.Cout <= 4 ? int(P.Cout) : kMR;
  const int64_t s = P.sw, C2 = (P.Cin + 1) / 2;
  // The last tile's vectors run to Wo rounded up to L, and read up to (kW - 1) / s words on.
  PairRows in(P, x, C2, (P.Wo + L - 1) / L * L + ((P.kW - 1) / s + L - 1) / L * L);
  Plan pl{P, in, nullptr, bias, y, (P.Cout + MR - 1) / MR * MR, 0, 0};
  const int64_t taps = C2 * P.kH * P.kW, RB = rows_per_task(in, threads);
  in.rows = (RB - 1) * P.sh + P.kH;
  const int64_t mblocks = pl.Kp / MR, tasks = P.N * ((P.Ho + RB - 1) / RB);
  const int64_t want = std::clamp<int64_t>((4 * int64_t(threads) + tasks - 1) / tasks, 1, mblocks);
  pl.CG = (mblocks + want - 1) / want * MR;
  pl.groups = (pl.Kp + pl.CG - 1) / pl.CG;

  const std::string key = std::string("conv2d/bf16/" GENRT_CONV2D_BF16_STR(GENRT_ISA_NS) "/mr") + std::to_string(MR);
  const PackedWeights<uint32_t> packed(P.cache, key, size_t(pl.Kp) * size_t(taps),
                                       [&](uint32_t* u) { pack_weights(w, P, C2, pl.Kp, MR, u); });
  pl.u = packed.data();

  using Block = void (*)(const Plan&, const uint32_t*, int64_t, int64_t, int64_t, int64_t);
  Block block = run_block<kMR, kNV>;
  if (MR == 1) block = run_block<1, kNVFew[1]>;
  if (MR == 2) block = run_block<2, kNVFew[2]>;
  if (MR == 3) block = run_block<3, kNVFew[3]>;
  if (MR == 4) block = run_block<4, kNVFew[4]>;
  for_each_task(in, RB, pl.groups, threads, [&](int64_t g, int64_t n, int64_t oh0, int64_t oh1, const uint32_t* buf) {
    for (int64_t kb = g * pl.CG; kb < std::min(pl.Kp, (g + 1) * pl.CG); kb += MR) block(pl, buf, n, oh0, oh1, kb);
  });
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
