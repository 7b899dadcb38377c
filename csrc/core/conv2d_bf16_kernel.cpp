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
// Here the copy also rounds to bfloat16 and pairs input channels: element j of pair row (c2, r) is one 32-bit word
// holding bf16(x[2 c2][r][j]) in its low half and bf16(x[2 c2 + 1][r][j]) in its high half (zero past C_in), the
// operand layout of VDPBF16PS. Weights are packed once (kept in the WeightCache) the same way, as
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
#include "parallel.h"
#include "simd.h"

#define GENRT_CONV2D_BF16_STR2(x) #x
#define GENRT_CONV2D_BF16_STR(x) GENRT_CONV2D_BF16_STR2(x)

namespace genrt {
namespace GENRT_ISA_NS {
namespace {

using conv2d_detail::PackedWeights;
using conv2d_detail::row_tiles;
using conv2d_detail::Scratch;
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
constexpr int64_t kBufferBytes = 512 << 10;  // a task's input rows: about one core's share of L2

struct Plan {
  const Conv2dProblem& P;
  const float* x;
  const uint32_t* u;  // packed weights
  const float* bias;
  float* y;
  int64_t C2;              // input channel pairs
  int64_t Kp;              // C_out rounded up to MR
  int64_t RB, row_blocks;  // output rows per task, row blocks per image
  int64_t CG, groups;      // output channels per task (a multiple of MR), groups
  int64_t rows;            // padded input rows in a task's buffer: (RB - 1) sh + kH
  int64_t Wph;             // words per phase row (zero past the padded input)
  std::vector<int64_t> off;   // per kw: (kw % sw) Wph + kw / sw, the tap's offset in a buffer row
  std::vector<int64_t> cols;  // per padded column: the input column it reads, or -1 for a zero
};

// Padded row `pr` of channel c of image n, split into phases: dst[q Wph + j] = xp[pr][q + j sw] (float32).
void phase_row(const Plan& pl, int64_t n, int64_t c, int64_t pr, float* __restrict dst) {
  const Conv2dProblem& P = pl.P;
  const int64_t H = P.H, W = P.W, s = P.sw, Wph = pl.Wph;
  const int64_t sr = c < P.Cin ? source_index(pr - P.pad[0], H, P.mode) : -1;
  if (sr < 0) {
    std::memset(dst, 0, size_t(s * Wph) * sizeof(float));
    return;
  }
  const float* src = pl.x + ((n * P.Cin + c) * H + sr) * W;
  const int64_t left = P.pad[1];
  const int64_t* cols = pl.cols.data();
  for (int64_t q = 0; q < s; ++q) {
    float* ph = dst + q * Wph;
    const int64_t lo = std::min(Wph, std::max<int64_t>(0, (left - q + s - 1) / s));
    const int64_t hi = std::max(lo, std::min(Wph, (left + W - q + s - 1) / s));
    for (int64_t j = 0; j < lo; ++j) ph[j] = cols[q + j * s] >= 0 ? src[cols[q + j * s]] : 0.0f;
    const float* sp = src + q - left;
    if (s == 1)
      std::memcpy(ph + lo, sp + lo, size_t(hi - lo) * sizeof(float));
    else
      for (int64_t j = lo; j < hi; ++j) ph[j] = sp[j * s];
    for (int64_t j = hi; j < Wph; ++j) ph[j] = cols[q + j * s] >= 0 ? src[cols[q + j * s]] : 0.0f;
  }
}

// The task's buffer: padded rows r0 .. r0 + nrows of every channel pair of image n, pair row (c2, r) at
// buf + (c2 rows + r) sw Wph, its phase q at + q Wph. tmp: 2 sw Wph floats.
void build_rows(const Plan& pl, int64_t n, int64_t r0, int64_t nrows, uint32_t* __restrict buf, float* __restrict tmp) {
  const int64_t width = pl.P.sw * pl.Wph;  // a multiple of L
  float* a = tmp;
  float* b = tmp + width;
  for (int64_t c2 = 0; c2 < pl.C2; ++c2)
    for (int64_t r = 0; r < nrows; ++r) {
      phase_row(pl, n, 2 * c2, r0 + r, a);
      phase_row(pl, n, 2 * c2 + 1, r0 + r, b);
      uint32_t* dst = buf + (c2 * pl.rows + r) * width;
      for (int64_t j = 0; j < width; j += L) {
        const I w = pack_pair(load(a + j), load(b + j));
        std::memcpy(dst + j, &w, sizeof(w));
      }
    }
}

// MR output channels (the first m stored) x NV vectors of pixels of one output row, the first `width` stored.
template <int MR, int NV>
inline void tile(const Plan& pl, const uint32_t* __restrict u, const uint32_t* __restrict rows, int64_t m,
                 float* __restrict y0, int64_t width, const float* bias0) {
  const Conv2dProblem& P = pl.P;
  const int64_t kH = P.kH, kW = P.kW, rstride = P.sw * pl.Wph, cstride = pl.rows * rstride;
  const int64_t* __restrict off = pl.off.data();
  F acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = F{};
  for (int64_t c2 = 0; c2 < pl.C2; ++c2)
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
  const bool relu = P.activation == int(Activation::relu);
  const int64_t plane = P.Ho * P.Wo;
  for (int i = 0; i < MR && i < m; ++i) {
    const F bv = splat(bias0 ? bias0[i] : 0.0f);
    float* dst = y0 + i * plane;
    for (int j = 0; j < NV; ++j) {
      F v = acc[i][j] + bv;
      if (relu) v = v > 0 ? v : F{};
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
  const uint32_t* u = pl.u + kb * pl.C2 * P.kH * P.kW;
  const float* bias0 = pl.bias ? pl.bias + kb : nullptr;
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const uint32_t* rows = buf + (oh - oh0) * P.sh * P.sw * pl.Wph;
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
  Plan pl{P, x, nullptr, bias, y, (P.Cin + 1) / 2, 0, 0, 0, 0, 0, 0, 0, {}, {}};
  const int64_t s = P.sw, taps = pl.C2 * P.kH * P.kW;
  pl.Kp = (P.Cout + MR - 1) / MR * MR;
  pl.Wph = (P.Wo + (P.kW - 1) / s + L - 1) / L * L + L;  // the last tile's vectors may run up to L - 1 past Wo
  pl.off.resize(size_t(P.kW));
  for (int64_t kw = 0; kw < P.kW; ++kw) pl.off[size_t(kw)] = (kw % s) * pl.Wph + kw / s;
  const int64_t Wp = P.W + P.pad[1] + P.pad[3];
  pl.cols.resize(size_t(s * pl.Wph));
  for (int64_t pc = 0; pc < s * pl.Wph; ++pc)
    pl.cols[size_t(pc)] = pc < Wp ? source_index(pc - P.pad[1], P.W, P.mode) : -1;
  const int64_t row_bytes = pl.C2 * s * pl.Wph * 4;
  int64_t RB = std::clamp<int64_t>((kBufferBytes / row_bytes - P.kH) / P.sh + 1, 1, 32);
  auto blocks_of = [&](int64_t rb) { return (P.Ho + rb - 1) / rb; };
  while (RB > 1 && P.N * blocks_of(RB) < 8 * int64_t(threads)) RB = (RB + 1) / 2;
  pl.RB = RB;
  pl.row_blocks = blocks_of(RB);
  pl.rows = (RB - 1) * P.sh + P.kH;
  const int64_t mblocks = pl.Kp / MR, tasks = P.N * pl.row_blocks;
  const int64_t want = std::clamp<int64_t>((4 * int64_t(threads) + tasks - 1) / tasks, 1, mblocks);
  pl.CG = (mblocks + want - 1) / want * MR;
  pl.groups = (pl.Kp + pl.CG - 1) / pl.CG;

  const std::string key = std::string("conv2d/bf16/" GENRT_CONV2D_BF16_STR(GENRT_ISA_NS) "/mr") + std::to_string(MR);
  const PackedWeights<uint32_t> packed(P.cache, key, size_t(pl.Kp) * size_t(taps),
                                       [&](uint32_t* u) { pack_weights(w, P, pl.C2, pl.Kp, MR, u); });
  pl.u = packed.data();

  using Block = void (*)(const Plan&, const uint32_t*, int64_t, int64_t, int64_t, int64_t);
  Block block = run_block<kMR, kNV>;
  if (MR == 1) block = run_block<1, kNVFew[1]>;
  if (MR == 2) block = run_block<2, kNVFew[2]>;
  if (MR == 3) block = run_block<3, kNVFew[3]>;
  if (MR == 4) block = run_block<4, kNVFew[4]>;
  const int64_t count = P.N * pl.row_blocks * pl.groups;
  parallel_for(count, threads, [&](int64_t b0, int64_t b1) {
    Scratch<uint32_t> buf(size_t(pl.C2 * pl.rows * s * pl.Wph));
    Scratch<float> tmp(size_t(2 * s * pl.Wph));
    int64_t built = -1;  // the (image, row block) the buffer holds
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t g = b % pl.groups, rb = b / pl.groups % pl.row_blocks, n = b / pl.groups / pl.row_blocks;
      const int64_t oh0 = rb * pl.RB, oh1 = std::min(P.Ho, oh0 + pl.RB);
      if (built != b / pl.groups) {
        build_rows(pl, n, oh0 * P.sh, (oh1 - 1 - oh0) * P.sh + P.kH, buf.p, tmp.p);
        built = b / pl.groups;
      }
      for (int64_t kb = g * pl.CG; kb < std::min(pl.Kp, (g + 1) * pl.CG); kb += MR) block(pl, buf.p, n, oh0, oh1, kb);
    }
  });
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
