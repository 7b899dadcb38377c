// conv2d's kernel body: Winograd F(4x4, 3x3), compiled once per instruction set (see simd.h and setup.py).
//
// Transforms (Lavin & Gray 2016, interpolation points 0, +-1, +-2 and infinity, the standard choice: the
// smallest points, so the transform matrices' entries stay small (at most 8 and 1/24) and float32 loses only
// about one decimal digit against direct convolution):
//   input  V = B^T d B   (d: a 6x6 input tile, 2 rows and columns shared with each neighbour)
//   weight U = G g G^T   (g: a 3x3 kernel; done once per weight, in float64, kept in the WeightCache)
//   output Y = A^T M A   (M[xi][k] = sum_c U[xi][k][c] V[xi][c], xi = 0..35: 36 GEMMs; Y: a 4x4 output tile)
//
// Work is cut into blocks of TB output tiles (a few vectors of horizontally adjacent tiles, each vector from one
// tile row), one block per task, everything of a block in one thread's L2:
//   1. input transform of the block's tiles, padding resolved while gathering: V (36, C_in, TB), vectorised
//      over tiles (one vector lane per tile);
//   2. per chunk of KC output channels: the 36 GEMMs (KC x C_in) x (C_in x TB) with an MR x NV-vector register
//      tile (weights broadcast, tiles in vectors) into M (36, KC, TB), then the output transform of that chunk
//      with bias and activation, writing only the parts of tiles inside the output (the rest is cropped).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <utility>

#include "conv2d.h"
#include "conv2d_common.h"
#include "parallel.h"
#include "simd.h"

#define GENRT_CONV2D_STR2(x) #x
#define GENRT_CONV2D_STR(x) GENRT_CONV2D_STR2(x)

namespace genrt {
namespace GENRT_ISA_NS {
namespace {

using conv2d_detail::PackedWeights;
using conv2d_detail::Scratch;
using conv2d_detail::source_index;
using conv2d_detail::even_lanes;
using conv2d_detail::odd_lanes;
using conv2d_detail::shift_in;
using conv2d_detail::zip_high;
using conv2d_detail::zip_low;

// Register tile of the micro-kernel: MR output channels x NV vectors of tiles. AVX-512 has 32 vector registers:
// 8 x 3 = 24 accumulators, 3 tile vectors, broadcasts as memory operands; AVX2 and SSE/NEON have 16 (6 x 2 = 12).
#ifndef GENRT_CONV2D_MR
#if GENRT_VEC_BYTES >= 64
#define GENRT_CONV2D_MR 8
#define GENRT_CONV2D_NV 3
#else
#define GENRT_CONV2D_MR 6
#define GENRT_CONV2D_NV 2
#endif
#endif
constexpr int MR = GENRT_CONV2D_MR, NV = GENRT_CONV2D_NV;
constexpr int kPoints = 36;      // 6x6 transformed positions per tile
constexpr int64_t kTargetKC = 48;  // output channels per chunk: M (36, KC, TB) stays small next to V

// U = G g G^T for every (k, c), in float64, packed as [xi][k / MR][c][k % MR] (rows k >= K zero), so that the
// micro-kernel's MR broadcasts per input channel are adjacent.
template <typename T>
void pack_weights(const T* w, int64_t K, int64_t C, int64_t Kp, T* u) {
  static const double G[6][3] = {{1.0 / 4, 0, 0},
                                 {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                 {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                 {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                 {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                 {0, 0, 1}};
  for (int64_t k = 0; k < Kp; ++k)
    for (int64_t c = 0; c < C; ++c) {
      double t[kPoints] = {};
      if (k < K) {
        const T* g = w + (k * C + c) * 9;
        double gg[6][3];  // G g
        for (int i = 0; i < 6; ++i)
          for (int j = 0; j < 3; ++j) gg[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
        for (int i = 0; i < 6; ++i)
          for (int j = 0; j < 6; ++j) t[i * 6 + j] = gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2];
      }
      for (int xi = 0; xi < kPoints; ++xi) u[(xi * Kp + k / MR * MR) * C + c * MR + k % MR] = T(t[xi]);
    }
}

// B^T applied to six vectors (a row or a column of a 6x6 tile).
template <typename V>
inline void bt6(const V d[6], V t[6]) {
  t[0] = d[0] * 4 - d[2] * 5 + d[4];
  t[1] = (d[3] + d[4]) - (d[1] + d[2]) * 4;
  t[2] = (d[4] - d[3]) + (d[1] - d[2]) * 4;
  t[3] = (d[4] - d[2]) + (d[3] - d[1]) * 2;
  t[4] = (d[4] - d[2]) - (d[3] - d[1]) * 2;
  t[5] = d[1] * 4 - d[3] * 5 + d[5];
}

// A^T applied to six vectors.
template <typename V>
inline void at6(const V m[6], V o[4]) {
  const V s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
  o[0] = m[0] + s12 + s34;
  o[1] = d12 + d34 * 2;
  o[2] = s12 + s34 * 4;
  o[3] = d12 + d34 * 8 + m[5];
}

// dst[0..n / L * L) = src[..]: the whole vectors of a short copy, n <= N, in a loop of fixed length with a
// condition, which the compiler cannot turn into a memcpy call (a call costs more than the copy here).
template <typename T, int N>
inline void copy_short(T* __restrict dst, const T* __restrict src, int64_t n) {
  constexpr int L = Vec<T>::size;
  for (int j = 0; j + L <= N; j += L)
    if (j + L <= n) store(dst + j, load(src + j));
}

// The six columns of L horizontally adjacent 6x6 tiles, d[s][l] = x[4 l + s], from v[q] = x[q L .. q L + L) and
// the two columns after them (x[4 L], x[4 L + 1]): a 4-way deinterleave in two rounds of even/odd lanes.
template <typename T>
inline void tile_columns(const vec_t<T> v[4], T x4, T x5, vec_t<T> d[6]) {
  using V = vec_t<T>;
  constexpr auto seq = std::make_index_sequence<Vec<T>::size>{};
  const V e01 = even_lanes(v[0], v[1], seq), o01 = odd_lanes(v[0], v[1], seq);
  const V e23 = even_lanes(v[2], v[3], seq), o23 = odd_lanes(v[2], v[3], seq);
  d[0] = even_lanes(e01, e23, seq);
  d[2] = odd_lanes(e01, e23, seq);
  d[1] = even_lanes(o01, o23, seq);
  d[3] = odd_lanes(o01, o23, seq);
  V n4{}, n5{};
  n4[0] = x4;
  n5[0] = x5;
  d[4] = shift_in(d[0], n4, seq);
  d[5] = shift_in(d[1], n5, seq);
}

// The inverse for four output columns: out[q] = x[q L .. q L + L) with x[4 l + s] = y[s][l].
template <typename T>
inline void interleave_columns(const vec_t<T> y[4], vec_t<T> out[4]) {
  using V = vec_t<T>;
  constexpr auto seq = std::make_index_sequence<Vec<T>::size>{};
  const V a0 = zip_low(y[0], y[2], seq), a1 = zip_high(y[0], y[2], seq);
  const V b0 = zip_low(y[1], y[3], seq), b1 = zip_high(y[1], y[3], seq);
  out[0] = zip_low(a0, b0, seq);
  out[1] = zip_high(a0, b0, seq);
  out[2] = zip_low(a1, b1, seq);
  out[3] = zip_high(a1, b1, seq);
}

// m[i][0..NV*L) = sum_c u[c][i] v[c][0..NV*L) for i < MR: the register-tiled GEMM step.
template <typename T>
inline void micro_kernel(const T* __restrict u, const T* __restrict v, int64_t C, int64_t ldv, T* __restrict m,
                         int64_t ldm) {
  using V = vec_t<T>;
  constexpr int L = Vec<T>::size;
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = V{};
  for (int64_t c = 0; c < C; ++c) {
    V b[NV];
    for (int j = 0; j < NV; ++j) b[j] = load(v + c * ldv + j * L);
    for (int i = 0; i < MR; ++i) {
      const V a = splat(u[c * MR + i]);
      for (int j = 0; j < NV; ++j) acc[i][j] += a * b[j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) store(m + i * ldm + j * L, acc[i][j]);
}

template <typename T>
struct Plan {
  const Conv2dProblem& P;
  const T* x;
  const T* u;  // packed transformed weights
  const T* bias;
  T* y;
  int64_t th, tw, twp;  // tile rows, tiles per row, tiles per row rounded up to whole vectors
  int64_t TB, blocks;   // tiles per block, blocks per image
  int64_t Kp, KC;       // output channels rounded up to MR, per chunk
};

// Step 1: V[xi][c][0..TB) for the block's tiles.
template <typename T>
void input_transform(const Plan<T>& pl, int64_t n, int64_t blk, T* __restrict vbuf) {
  using V = vec_t<T>;
  constexpr int L = Vec<T>::size;
  constexpr int S = 4 * L + 2;  // input columns under one vector of tiles
  const Conv2dProblem& P = pl.P;
  const int64_t C = P.Cin, H = P.H, W = P.W, TB = pl.TB;
  const int64_t Hp = H + P.pad[0] + P.pad[2], Wp = W + P.pad[1] + P.pad[3];
  for (int64_t q = 0; q < TB / L; ++q) {
    const int64_t p = blk * TB + q * L, ti = p / pl.twp, tj0 = p % pl.twp;
    T* vq = vbuf + q * L;
    if (ti >= pl.th) {  // past the last tile row: zeros (the GEMM still reads them)
      for (int64_t r = 0; r < kPoints * C; ++r) store(vq + r * TB, V{});
      continue;
    }
    int64_t rows[6], cols[S];
    for (int r = 0; r < 6; ++r) {
      const int64_t pr = 4 * ti + r;  // rows past the padded input only feed cropped outputs: zeros
      rows[r] = pr < Hp ? source_index(pr - P.pad[0], H, P.mode) : -1;
    }
    for (int j = 0; j < S; ++j) {
      const int64_t pc = 4 * tj0 + j;
      cols[j] = pc < Wp ? source_index(pc - P.pad[1], W, P.mode) : -1;
    }
    // Columns [a, b) are inside the image: one copy per row; only the few padded ones around it are gathered.
    const int64_t a = std::clamp<int64_t>(P.pad[1] - 4 * tj0, 0, S);
    const int64_t b = std::clamp<int64_t>(W + P.pad[1] - 4 * tj0, a, S);
    const bool interior = a == 0 && b == S;
    for (int64_t c = 0; c < C; ++c) {
      const T* xc = pl.x + (n * C + c) * H * W;
      V t[6][6];
      for (int r = 0; r < 6; ++r) {
        V d[6];
        if (rows[r] < 0) {
          for (int s = 0; s < 6; ++s) d[s] = V{};
        } else if (interior) {
          const T* row = xc + rows[r] * W + cols[0];
          const V v[4] = {load(row), load(row + L), load(row + 2 * L), load(row + 3 * L)};
          tile_columns<T>(v, row[4 * L], row[4 * L + 1], d);
        } else {  // padding or the end of the row under these tiles: gather what lies outside [a, b)
          const T* row = xc + rows[r] * W;
          alignas(64) T span[S];
          if (b > a) copy_short<T, S>(span + a, row + a + 4 * tj0 - P.pad[1], b - a);
          for (int64_t j = 0; j < a; ++j) span[j] = cols[j] >= 0 ? row[cols[j]] : T(0);
          for (int64_t j = a + (b - a) / L * L; j < S; ++j) span[j] = cols[j] >= 0 ? row[cols[j]] : T(0);
          const V v[4] = {load(span), load(span + L), load(span + 2 * L), load(span + 3 * L)};
          tile_columns<T>(v, span[4 * L], span[4 * L + 1], d);
        }
        bt6(d, t[r]);
      }
      for (int j = 0; j < 6; ++j) {
        const V col[6] = {t[0][j], t[1][j], t[2][j], t[3][j], t[4][j], t[5][j]};
        V o[6];
        bt6(col, o);
        for (int i = 0; i < 6; ++i) store(vq + ((i * 6 + j) * C + c) * TB, o[i]);
      }
    }
  }
}

// Step 2b: output channels [k0, k1) of the block from M (36, KC, TB), with bias and activation; cropped to the output.
template <typename T>
void output_transform(const Plan<T>& pl, int64_t n, int64_t blk, int64_t k0, int64_t k1, const T* __restrict mbuf) {
  using V = vec_t<T>;
  constexpr int L = Vec<T>::size;
  const Conv2dProblem& P = pl.P;
  const int64_t Ho = P.Ho, Wo = P.Wo, TB = pl.TB, KC = pl.KC;
  const T slope = T(P.slope);
  for (int64_t k = k0; k < k1; ++k) {
    const V b = splat(pl.bias ? pl.bias[k] : T(0));
    T* yk = pl.y + (n * P.Cout + k) * Ho * Wo;
    const T* mk = mbuf + (k - k0) * TB;
    for (int64_t q = 0; q < TB / L; ++q) {
      const int64_t p = blk * TB + q * L, ti = p / pl.twp, tj0 = p % pl.twp;
      if (ti >= pl.th) break;  // later vectors of the block are past the last row too
      V tmp[6][4];
      for (int i = 0; i < 6; ++i) {
        V m[6];
        for (int j = 0; j < 6; ++j) m[j] = load(mk + (i * 6 + j) * KC * TB + q * L);
        at6(m, tmp[i]);
      }
      const int64_t width = std::min<int64_t>(4 * L, Wo - 4 * tj0);
      V out[4][4];  // out[s][r]: output row r, column s
      for (int s = 0; s < 4; ++s) {
        const V col[6] = {tmp[0][s], tmp[1][s], tmp[2][s], tmp[3][s], tmp[4][s], tmp[5][s]};
        at6(col, out[s]);
      }
      for (int r = 0; r < 4 && 4 * ti + r < Ho; ++r) {
        V cols[4], row[4];
        for (int s = 0; s < 4; ++s) {
          cols[s] = out[s][r] + b;
          cols[s] = conv2d_activate(cols[s], P.activation, slope);
        }
        interleave_columns<T>(cols, row);
        T* dst = yk + (4 * ti + r) * Wo + 4 * tj0;
        if (width == 4 * L) {
          for (int v = 0; v < 4; ++v) store(dst + v * L, row[v]);
        } else {  // the last tiles of a row: crop
          alignas(64) T buf[4 * L];
          for (int v = 0; v < 4; ++v) store(buf + v * L, row[v]);
          copy_short<T, 4 * L>(dst, buf, width);
          for (int j = 0; j < L; ++j)
            if (width / L * L + j < width) dst[width / L * L + j] = buf[width / L * L + j];
        }
      }
    }
  }
}

template <typename T>
void run_block(const Plan<T>& pl, int64_t n, int64_t blk, T* vbuf, T* mbuf) {
  constexpr int NL = NV * Vec<T>::size;
  const int64_t C = pl.P.Cin, TB = pl.TB, Kp = pl.Kp, KC = pl.KC;
  input_transform(pl, n, blk, vbuf);
  for (int64_t kc = 0; kc < Kp; kc += KC) {
    const int64_t kn = std::min(KC, Kp - kc);
    for (int xi = 0; xi < kPoints; ++xi) {
      const T* vx = vbuf + xi * C * TB;
      T* mx = mbuf + xi * KC * TB;
      for (int64_t kb = 0; kb < kn; kb += MR) {
        const T* up = pl.u + (xi * Kp + kc + kb) * C;
        for (int64_t nb = 0; nb < TB; nb += NL) micro_kernel(up, vx + nb, C, TB, mx + kb * TB + nb, TB);
      }
    }
    output_transform(pl, n, blk, kc, std::min(kc + kn, pl.P.Cout), mbuf);
  }
}

template <typename T>
void forward(const Conv2dProblem& P, const T* x, const T* w, const T* bias, T* y, int threads) {
  constexpr int L = Vec<T>::size, NL = NV * L;
  Plan<T> pl{P, x, nullptr, bias, y, 0, 0, 0, 0, 0, 0, 0};
  pl.th = (P.Ho + 3) / 4;
  pl.tw = (P.Wo + 3) / 4;
  pl.twp = (pl.tw + L - 1) / L * L;
  pl.Kp = (P.Cout + MR - 1) / MR * MR;
  pl.KC = std::min(pl.Kp, std::max<int64_t>(MR, kTargetKC / MR * MR));
  // About 32 tiles per block, a whole number of register tiles; halved (down to one register tile) while the
  // images give fewer than two blocks per thread.
  int64_t sub = std::max(1, 32 / NL);
  const int64_t tiles = pl.th * pl.twp;
  auto blocks_of = [&](int64_t s) { return (tiles + s * NL - 1) / (s * NL); };
  while (sub > 1 && P.N * blocks_of(sub) < 2 * int64_t(threads)) sub /= 2;
  pl.TB = sub * NL;
  pl.blocks = blocks_of(sub);

  const std::string key = std::string("conv2d/winograd43/" GENRT_CONV2D_STR(GENRT_ISA_NS) "/mr") +
                          std::to_string(MR) + (sizeof(T) == 4 ? "/f32" : "/f64");
  const PackedWeights<T> packed(P.cache, key, size_t(kPoints) * size_t(pl.Kp) * size_t(P.Cin),
                                [&](T* u) { pack_weights(w, P.Cout, P.Cin, pl.Kp, u); });
  pl.u = packed.data();
  parallel_for(P.N * pl.blocks, threads, [&](int64_t b0, int64_t b1) {
    Scratch<T> vbuf(size_t(kPoints) * P.Cin * pl.TB), mbuf(size_t(kPoints) * pl.KC * pl.TB);
    for (int64_t b = b0; b < b1; ++b) run_block(pl, b / pl.blocks, b % pl.blocks, vbuf.p, mbuf.p);
  });
}

}  // namespace

void conv2d_forward_kernel(const Conv2dProblem& P, const float* x, const float* w, const float* bias, float* y,
                           int threads) {
  forward(P, x, w, bias, y, threads);
}

void conv2d_forward_kernel(const Conv2dProblem& P, const double* x, const double* w, const double* bias, double* y,
                           int threads) {
  forward(P, x, w, bias, y, threads);
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
