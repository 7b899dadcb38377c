// conv2d's direct path, compiled once per instruction set (see simd.h and setup.py): an implicit GEMM for every
// kernel size and stride except 3x3 stride 1 (Winograd's, conv2d_kernel.cpp).
//
//   y[co][oh][ow] = sum over taps (ci, kh, kw) of w[co][ci][kh][kw] * xp[ci][oh sh + kh][ow sw + kw]
//
// Tasks are (image, block of RB output rows, group of output channels). A task first copies the padded input rows
// its output rows read, every input channel, the padding resolved while copying, each row split into its sw phases
// (phase q holds the padded columns q, q + sw, q + 2 sw, ..): tap kw of output column ow is then element
// ow + kw / sw of phase kw % sw, so NV vectors of consecutive output pixels are NV contiguous loads at any stride.
// Then per MR output channels (weights packed [C_out / MR][C_in][kH][kW][MR], once, kept in the WeightCache) and per
// output row, the micro-kernel walks along the row: MR x NV accumulators in registers, per tap MR broadcasts from
// the packed weights and NV loads, bias and activation applied to the accumulators, each output stored once. MR and NV
// depend on C_out: a few output channels (the RGB output layer of a style network) get MR = C_out and a wide NV,
// so no FMA is spent on zero weight rows.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "conv2d.h"
#include "conv2d_common.h"
#include "parallel.h"
#include "simd.h"

#define GENRT_CONV2D_DIRECT_STR2(x) #x
#define GENRT_CONV2D_DIRECT_STR(x) GENRT_CONV2D_DIRECT_STR2(x)

namespace genrt {
namespace GENRT_ISA_NS {
namespace {

using conv2d_detail::PackedWeights;
using conv2d_detail::row_tiles;
using conv2d_detail::Scratch;
using conv2d_detail::source_index;
using conv2d_detail::even_lanes;

// Register tiles: MR output channels x NV vectors of pixels. AVX-512 (32 registers): 8 x 3 = 24 accumulators and 3
// pixel vectors; for C_out = MR = 1..4 as many vectors as fit. AVX2 and SSE/NEON have 16 registers.
#if GENRT_VEC_BYTES >= 64
constexpr int kMR = 8, kNV = 3;
constexpr int kNVFew[5] = {0, 12, 8, 7, 5};
#else
constexpr int kMR = 6, kNV = 2;
constexpr int kNVFew[5] = {0, 6, 4, 3, 3};
#endif
constexpr int64_t kBufferBytes = 512 << 10;  // a task's input rows: about one core's share of L2

template <typename T>
struct Plan {
  const Conv2dProblem& P;
  const T* x;
  const T* u;  // packed weights
  const T* bias;
  T* y;
  int64_t Kp;              // C_out rounded up to MR
  int64_t RB, row_blocks;  // output rows per task, row blocks per image
  int64_t CG, groups;      // output channels per task (a multiple of MR), groups
  int64_t rows;            // padded input rows in a task's buffer: (RB - 1) sh + kH
  int64_t Wph;             // elements per phase row (zero past the padded input)
  std::vector<int64_t> off;   // per kw: (kw % sw) Wph + kw / sw, the tap's offset in a buffer row
  std::vector<int64_t> cols;  // per padded column: the input column it reads, or -1 for a zero
};

// The task's buffer: padded rows r0 .. r0 + nrows of every input channel of image n, row (c, r) at
// buf + (c rows + r) sw Wph, its phase q at + q Wph.
template <typename T>
void build_rows(const Plan<T>& pl, int64_t n, int64_t r0, int64_t nrows, T* __restrict buf) {
  constexpr int L = Vec<T>::size;
  constexpr auto seq = std::make_index_sequence<L>{};
  const Conv2dProblem& P = pl.P;
  const int64_t C = P.Cin, H = P.H, W = P.W, s = P.sw, Wph = pl.Wph, left = P.pad[1];
  const int64_t* cols = pl.cols.data();
  for (int64_t c = 0; c < C; ++c)
    for (int64_t r = 0; r < nrows; ++r) {
      T* dst = buf + (c * pl.rows + r) * s * Wph;
      const int64_t sr = source_index(r0 + r - P.pad[0], H, P.mode);
      if (sr < 0) {
        std::memset(dst, 0, size_t(s * Wph) * sizeof(T));
        continue;
      }
      const T* src = pl.x + ((n * C + c) * H + sr) * W;
      for (int64_t q = 0; q < s; ++q) {
        T* ph = dst + q * Wph;
        // phase elements j whose column q + j s - left lies inside the row: a plain (strided) copy
        const int64_t lo = std::min(Wph, std::max<int64_t>(0, (left - q + s - 1) / s));
        const int64_t hi = std::max(lo, std::min(Wph, (left + W - q + s - 1) / s));
        for (int64_t j = 0; j < lo; ++j) ph[j] = cols[q + j * s] >= 0 ? src[cols[q + j * s]] : T(0);
        const T* sp = src + q - left;
        if (s == 1) {
          std::memcpy(ph + lo, sp + lo, size_t(hi - lo) * sizeof(T));
        } else {
          int64_t j = lo;
          if (s == 2)  // the even lanes of two vectors, while both lie inside the row
            for (; j + L <= hi && q - left + 2 * (j + L) <= W; j += L)
              store(ph + j, even_lanes(load(sp + 2 * j), load(sp + 2 * j + L), seq));
          for (; j < hi; ++j) ph[j] = sp[j * s];
        }
        for (int64_t j = hi; j < Wph; ++j) ph[j] = cols[q + j * s] >= 0 ? src[cols[q + j * s]] : T(0);
      }
    }
}

// MR output channels (the first m stored) x nv = NV vectors of pixels of one output row, the first `width` stored.
// rows: the buffer at this output row's first padded row, plus the tile's first output column; y0: the output at
// (first channel, row, first column).
template <typename T, int MR, int NV>
inline void tile(const Plan<T>& pl, const T* __restrict u, const T* __restrict rows, int64_t m, T* __restrict y0,
                 int64_t width, const T* bias0) {
  using V = vec_t<T>;
  constexpr int L = Vec<T>::size;
  const Conv2dProblem& P = pl.P;
  const int64_t C = P.Cin, kH = P.kH, kW = P.kW, rstride = P.sw * pl.Wph, cstride = pl.rows * rstride;
  const int64_t* __restrict off = pl.off.data();
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = V{};
  for (int64_t c = 0; c < C; ++c)
    for (int64_t kh = 0; kh < kH; ++kh) {
      const T* rp = rows + c * cstride + kh * rstride;
      for (int64_t kw = 0; kw < kW; ++kw, u += MR) {
        const T* bp = rp + off[kw];
        V b[NV];
        for (int j = 0; j < NV; ++j) b[j] = load(bp + j * L);
        for (int i = 0; i < MR; ++i) {
          const V a = splat(u[i]);
          for (int j = 0; j < NV; ++j) acc[i][j] += a * b[j];
        }
      }
    }
  const int64_t plane = P.Ho * P.Wo;
  for (int i = 0; i < MR && i < m; ++i) {
    const V bv = splat(bias0 ? bias0[i] : T(0));
    T* dst = y0 + i * plane;
    for (int j = 0; j < NV; ++j) {
      V v = acc[i][j] + bv;
      v = conv2d_activate(v, P.activation, T(P.slope));
      if ((j + 1) * L <= width) {
        store(dst + j * L, v);
      } else {  // the row's last, partial vector
        alignas(64) T tmp[L];
        store(tmp, v);
        for (int64_t l = 0; l < width - j * L; ++l) dst[j * L + l] = tmp[l];
        break;
      }
    }
  }
}

// The end of a row: nv <= NV vectors.
template <typename T, int MR, int NV>
void tail(int nv, const Plan<T>& pl, const T* u, const T* rows, int64_t m, T* y0, int64_t width, const T* bias0) {
  if constexpr (NV > 1)
    if (nv < NV) return tail<T, MR, NV - 1>(nv, pl, u, rows, m, y0, width, bias0);
  tile<T, MR, NV>(pl, u, rows, m, y0, width, bias0);
}

// Output channels kb .. kb + MR (the first m exist) of output rows oh0 .. oh1 of image n, from the task's buffer.
template <typename T, int MR, int NV>
void run_block(const Plan<T>& pl, const T* buf, int64_t n, int64_t oh0, int64_t oh1, int64_t kb) {
  constexpr int L = Vec<T>::size;
  const Conv2dProblem& P = pl.P;
  const int64_t Wo = P.Wo, m = std::min<int64_t>(MR, P.Cout - kb);
  const T* u = pl.u + kb * P.Cin * P.kH * P.kW;
  const T* bias0 = pl.bias ? pl.bias + kb : nullptr;
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const T* rows = buf + (oh - oh0) * P.sh * P.sw * pl.Wph;
    T* yrow = pl.y + ((n * P.Cout + kb) * P.Ho + oh) * Wo;
    row_tiles<NV, L>(Wo, [&](int64_t ow, int nv) {
      tail<T, MR, NV>(nv, pl, u, rows + ow, m, yrow + ow, std::min<int64_t>(nv * L, Wo - ow), bias0);
    });
  }
}

// w (C_out, C_in, kH, kW) as [C_out / MR][C_in][kH][kW][MR], rows past C_out zero.
template <typename T>
void pack_weights(const T* w, int64_t K, int64_t taps, int64_t Kp, int MR, T* u) {
  for (int64_t k = 0; k < Kp; ++k)
    for (int64_t t = 0; t < taps; ++t) u[(k / MR * taps + t) * MR + k % MR] = k < K ? w[k * taps + t] : T(0);
}

template <typename T>
void forward(const Conv2dProblem& P, const T* x, const T* w, const T* bias, T* y, int threads) {
  constexpr int L = Vec<T>::size;
  const int MR = P.Cout <= 4 ? int(P.Cout) : kMR;
  Plan<T> pl{P, x, nullptr, bias, y, 0, 0, 0, 0, 0, 0, 0, {}, {}};
  const int64_t s = P.sw, taps = P.Cin * P.kH * P.kW;
  pl.Kp = (P.Cout + MR - 1) / MR * MR;
  pl.Wph = (P.Wo + (P.kW - 1) / s + L - 1) / L * L + L;  // the last tile's vectors may run up to L - 1 past Wo
  pl.off.resize(size_t(P.kW));
  for (int64_t kw = 0; kw < P.kW; ++kw) pl.off[size_t(kw)] = (kw % s) * pl.Wph + kw / s;
  const int64_t Wp = P.W + P.pad[1] + P.pad[3];
  pl.cols.resize(size_t(s * pl.Wph));
  for (int64_t pc = 0; pc < s * pl.Wph; ++pc)
    pl.cols[size_t(pc)] = pc < Wp ? source_index(pc - P.pad[1], P.W, P.mode) : -1;
  // Rows per task: as many as keep the buffer within budget (at least one), halved while the images give fewer
  // than eight tasks per thread (machines shared with other work balance better); then output channel groups where
  // rows alone do not give four.
  const int64_t row_bytes = P.Cin * s * pl.Wph * int64_t(sizeof(T));
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

  const std::string key = std::string("conv2d/direct/" GENRT_CONV2D_DIRECT_STR(GENRT_ISA_NS) "/mr") +
                          std::to_string(MR) + (sizeof(T) == 4 ? "/f32" : "/f64");
  const PackedWeights<T> packed(P.cache, key, size_t(pl.Kp) * size_t(taps),
                                [&](T* u) { pack_weights(w, P.Cout, taps, pl.Kp, MR, u); });
  pl.u = packed.data();

  using Block = void (*)(const Plan<T>&, const T*, int64_t, int64_t, int64_t, int64_t);
  Block block = run_block<T, kMR, kNV>;
  if (MR == 1) block = run_block<T, 1, kNVFew[1]>;
  if (MR == 2) block = run_block<T, 2, kNVFew[2]>;
  if (MR == 3) block = run_block<T, 3, kNVFew[3]>;
  if (MR == 4) block = run_block<T, 4, kNVFew[4]>;
  const int64_t count = P.N * pl.row_blocks * pl.groups;
  parallel_for(count, threads, [&](int64_t b0, int64_t b1) {
    Scratch<T> buf(size_t(P.Cin * pl.rows * s * pl.Wph));
    int64_t built = -1;  // the (image, row block) the buffer holds
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t g = b % pl.groups, rb = b / pl.groups % pl.row_blocks, n = b / pl.groups / pl.row_blocks;
      const int64_t oh0 = rb * pl.RB, oh1 = std::min(P.Ho, oh0 + pl.RB);
      if (built != b / pl.groups) {
        build_rows(pl, n, oh0 * P.sh, (oh1 - 1 - oh0) * P.sh + P.kH, buf.p);
        built = b / pl.groups;
      }
      for (int64_t kb = g * pl.CG; kb < std::min(pl.Kp, (g + 1) * pl.CG); kb += MR) block(pl, buf.p, n, oh0, oh1, kb);
    }
  });
}

}  // namespace

void conv2d_direct_kernel(const Conv2dProblem& P, const float* x, const float* w, const float* bias, float* y,
                          int threads) {
  forward(P, x, w, bias, y, threads);
}

void conv2d_direct_kernel(const Conv2dProblem& P, const double* x, const double* w, const double* bias, double* y,
                          int threads) {
  forward(P, x, w, bias, y, threads);
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
