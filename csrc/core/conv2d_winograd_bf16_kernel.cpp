// conv2d in bfloat16 for 3x3 stride 1: Winograd's F(2x2, 3x3) (Lavin & Gray 2016) with the 16 transformed-domain
// GEMMs on bfloat16 pairs (VDPBF16PS at avx512bf16, emulated elsewhere), float32 sums, float32 in and out.
//
//   input  V = B^T d B   (d: a 4x4 input tile; B^T rows (1 0 -1 0) (0 1 1 0) (0 -1 1 0) (0 1 0 -1): only adds)
//   weight U = G g G^T   (G rows (1 0 0) (1/2 1/2 1/2) (1/2 -1/2 1/2) (0 0 1); float64, then rounded, cached)
//   output Y = A^T M A   (A^T rows (1 1 1 0) (0 1 -1 -1)), M[xi][k] = sum_c U[xi][k][c] V[xi][c]: 16 multiplications
//   per 2x2 output tile and input channel instead of 36.
//
// Why F(2x2) and not float32's F(4x4): V and U are rounded to bfloat16, and the rounding error grows with the
// transforms' entries. Simulated on a 64-channel layer of post-ReLU activations, the output against float64 is
// 70.7 dB for direct bfloat16, 67.6 dB for F(2x2) and 51.8 dB for F(4x4) (whose error would add up over a network
// past the 45 dB that precision="auto" asks for).
//
// Work is cut into blocks of TB tiles (NV vectors of L horizontally adjacent tiles, each vector from one tile row),
// one block per task: the input transform of the block's tiles for every channel pair into V (16, C_in / 2, TB) as
// bfloat16 pairs (channel 2 c2 in the low half), then per chunk of KC output channels the 16 GEMMs
// (KC x C_in / 2 pairs) x (pairs x TB) with an MR x NV register tile into M (16, KC, TB) in float32, then the output
// transform of that chunk with bias and activation, writing only the parts of tiles inside the output.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "conv2d.h"
#include "conv2d_common.h"
#include "parallel.h"
#include "simd.h"

#define GENRT_CONV2D_WBF16_STR2(x) #x
#define GENRT_CONV2D_WBF16_STR(x) GENRT_CONV2D_WBF16_STR2(x)

namespace genrt {
namespace GENRT_ISA_NS {
namespace {

using conv2d_detail::bf16_bits;
using conv2d_detail::ColumnSpan;
using conv2d_detail::dot2;
using conv2d_detail::pack_pair;
using conv2d_detail::even_lanes;
using conv2d_detail::F;
using conv2d_detail::I;
using conv2d_detail::odd_lanes;
using conv2d_detail::PackedWeights;
using conv2d_detail::Scratch;
using conv2d_detail::shift_in;
using conv2d_detail::source_index;
using conv2d_detail::zip_high;
using conv2d_detail::zip_low;

constexpr int L = Vec<float>::size;
#if GENRT_VEC_BYTES >= 64
constexpr int MR = 8, NV = 3;
#else
constexpr int MR = 4, NV = 2;
#endif
constexpr int kPoints = 16;        // 4x4 transformed positions per tile
constexpr int64_t kTargetKC = 64;  // output channels per chunk

// U = G g G^T for every (k, c), in float64, rounded to bfloat16 and packed as [xi][k / MR][c / 2][k % MR] pairs
// (rows k >= K and an odd C's last partner zero).
void pack_weights(const float* w, int64_t K, int64_t C, int64_t C2, int64_t Kp, uint32_t* u) {
  static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  std::memset(u, 0, size_t(kPoints * Kp * C2) * 4);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) {
      const float* g = w + (k * C + c) * 9;
      double gg[4][3];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 3; ++j) gg[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
          const double t = gg[i][0] * G[j][0] + gg[i][1] * G[j][1] + gg[i][2] * G[j][2];
          uint32_t& slot = u[(int64_t(i * 4 + j) * Kp + k / MR * MR) * C2 + c / 2 * MR + k % MR];
          slot |= bf16_bits(float(t)) << (c % 2 ? 16 : 0);
        }
    }
}

// B^T on four vectors.
inline void bt4(const F d[4], F t[4]) {
  t[0] = d[0] - d[2];
  t[1] = d[1] + d[2];
  t[2] = d[2] - d[1];
  t[3] = d[1] - d[3];
}

// A^T on four vectors.
inline void at4(const F m[4], F o[2]) {
  o[0] = m[0] + m[1] + m[2];
  o[1] = m[1] - m[2] - m[3];
}

struct Plan {
  const Conv2dProblem& P;
  const float* x;
  const uint32_t* u;
  const float* bias;
  float* y;
  int64_t C2, th, tw, twp;  // channel pairs, tile rows, tiles per row, rounded up to whole vectors
  int64_t TB, blocks;       // tiles per block, blocks per image
  int64_t Kp, KC;           // output channels rounded up to MR, per chunk
  const int64_t* cols;      // per padded column (2 twp + 2 L of them): the input column it reads, or -1 for a zero
  const ColumnSpan* spans;  // per L of those columns: how a vector of them is read
};

// The 16 transformed vectors of L tiles (tile row ti, tiles tj0 ..) of channel c of image n.
void transform(const Plan& pl, int64_t n, int64_t c, int64_t ti, int64_t tj0, F t[4][4]) {
  constexpr auto seq = std::make_index_sequence<L>{};
  const Conv2dProblem& P = pl.P;
  const int64_t H = P.H, W = P.W, Hp = H + P.pad[0] + P.pad[2];
  const float* xc = pl.x + (n * P.Cin + c) * H * W;
  F rows[4][4];
  for (int r = 0; r < 4; ++r) {
    const int64_t pr = 2 * ti + r;
    const int64_t sr = pr < Hp ? source_index(pr - P.pad[0], H, P.mode) : -1;
    F d[4];
    if (sr < 0 || c >= P.Cin) {
      for (int s = 0; s < 4; ++s) d[s] = F{};
    } else {
      // Padded columns 2 tj0 .. 2 tj0 + 2 L + 2 (pl.cols: the input column each reads), as planned in pl.spans.
      const float* row = xc + sr * W;
      const int64_t* cl = pl.cols + 2 * tj0;
      const ColumnSpan* sp = pl.spans + 2 * tj0 / L;
      const F a = sp[0].read(row, cl), b = sp[1].read(row, cl + L);
      F n2{}, n3{};
      n2[0] = cl[2 * L] >= 0 ? row[cl[2 * L]] : 0.0f;
      n3[0] = cl[2 * L + 1] >= 0 ? row[cl[2 * L + 1]] : 0.0f;
      d[0] = even_lanes(a, b, seq);  // x[2 l]
      d[1] = odd_lanes(a, b, seq);   // x[2 l + 1]
      d[2] = shift_in(d[0], n2, seq);
      d[3] = shift_in(d[1], n3, seq);
    }
    bt4(d, rows[r]);
  }
  for (int j = 0; j < 4; ++j) {
    const F col[4] = {rows[0][j], rows[1][j], rows[2][j], rows[3][j]};
    F o[4];
    bt4(col, o);
    for (int i = 0; i < 4; ++i) t[i][j] = o[i];
  }
}

// V[xi][c2][0..TB) for the block's tiles.
void input_transform(const Plan& pl, int64_t n, int64_t blk, uint32_t* __restrict vbuf) {
  const int64_t TB = pl.TB;
  for (int64_t q = 0; q < TB / L; ++q) {
    const int64_t p = blk * TB + q * L, ti = p / pl.twp, tj0 = p % pl.twp;
    uint32_t* vq = vbuf + q * L;
    if (ti >= pl.th) {  // past the last tile row: zeros (the GEMM still reads them)
      for (int64_t r = 0; r < kPoints * pl.C2; ++r) std::memset(vq + r * TB, 0, sizeof(I));
      continue;
    }
    for (int64_t c2 = 0; c2 < pl.C2; ++c2) {
      F lo[4][4], hi[4][4];
      transform(pl, n, 2 * c2, ti, tj0, lo);
      transform(pl, n, 2 * c2 + 1, ti, tj0, hi);
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
          const I w = pack_pair(lo[i][j], hi[i][j]);
          std::memcpy(vq + ((i * 4 + j) * pl.C2 + c2) * TB, &w, sizeof(w));
        }
    }
  }
}

// m[i][0..NV L) = sum over pairs of u[c2][i] . v[c2][0..NV L) for i < MR.
inline void micro_kernel(const uint32_t* __restrict u, const uint32_t* __restrict v, int64_t C2, int64_t ldv,
                         float* __restrict m, int64_t ldm) {
  F acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = F{};
  for (int64_t c2 = 0; c2 < C2; ++c2, u += MR) {
    I b[NV];
    for (int j = 0; j < NV; ++j) std::memcpy(&b[j], v + c2 * ldv + j * L, sizeof(I));
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NV; ++j) dot2(acc[i][j], b[j], u[i]);
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) store(m + i * ldm + j * L, acc[i][j]);
}

// Output channels [k0, k1) of the block from M (16, KC, TB), with bias and activation; cropped to the output.
void output_transform(const Plan& pl, int64_t n, int64_t blk, int64_t k0, int64_t k1, const float* __restrict mbuf) {
  constexpr auto seq = std::make_index_sequence<L>{};
  const Conv2dProblem& P = pl.P;
  const int64_t Ho = P.Ho, Wo = P.Wo, TB = pl.TB, KC = pl.KC;
  const float slope = float(P.slope);
  for (int64_t k = k0; k < k1; ++k) {
    const F b = splat(pl.bias ? pl.bias[k] : 0.0f);
    float* yk = pl.y + (n * P.Cout + k) * Ho * Wo;
    const float* mk = mbuf + (k - k0) * TB;
    for (int64_t q = 0; q < TB / L; ++q) {
      const int64_t p = blk * TB + q * L, ti = p / pl.twp, tj0 = p % pl.twp;
      if (ti >= pl.th) break;
      F tmp[4][2];
      for (int i = 0; i < 4; ++i) {
        F m[4];
        for (int j = 0; j < 4; ++j) m[j] = load(mk + (i * 4 + j) * KC * TB + q * L);
        at4(m, tmp[i]);
      }
      const int64_t width = std::min<int64_t>(2 * L, Wo - 2 * tj0);
      F out[2][2];  // out[r][s]: output row r, column 2 l + s of each tile l
      for (int s = 0; s < 2; ++s) {
        const F col[4] = {tmp[0][s], tmp[1][s], tmp[2][s], tmp[3][s]};
        F o[2];
        at4(col, o);
        out[0][s] = o[0];
        out[1][s] = o[1];
      }
      for (int r = 0; r < 2 && 2 * ti + r < Ho; ++r) {
        F o[2] = {out[r][0], out[r][1]};
        for (int s = 0; s < 2; ++s) {
          o[s] += b;
          o[s] = conv2d_activate(o[s], P.activation, slope);
        }
        const F row[2] = {zip_low(o[0], o[1], seq), zip_high(o[0], o[1], seq)};
        float* dst = yk + (2 * ti + r) * Wo + 2 * tj0;
        if (width == 2 * L) {
          store(dst, row[0]);
          store(dst + L, row[1]);
        } else {  // the last tiles of a row: crop
          alignas(64) float buf[2 * L];
          store(buf, row[0]);
          store(buf + L, row[1]);
          for (int64_t j = 0; j < width; ++j) dst[j] = buf[j];
        }
      }
    }
  }
}

void run_block(const Plan& pl, int64_t n, int64_t blk, uint32_t* vbuf, float* mbuf) {
  constexpr int NL = NV * L;
  const int64_t C2 = pl.C2, TB = pl.TB, Kp = pl.Kp, KC = pl.KC;
  input_transform(pl, n, blk, vbuf);
  for (int64_t kc = 0; kc < Kp; kc += KC) {
    const int64_t kn = std::min(KC, Kp - kc);
    for (int xi = 0; xi < kPoints; ++xi) {
      const uint32_t* vx = vbuf + xi * C2 * TB;
      float* mx = mbuf + xi * KC * TB;
      for (int64_t kb = 0; kb < kn; kb += MR) {
        const uint32_t* up = pl.u + (xi * Kp + kc + kb) * C2;
        for (int64_t nb = 0; nb < TB; nb += NL) micro_kernel(up, vx + nb, C2, TB, mx + kb * TB + nb, TB);
      }
    }
    output_transform(pl, n, blk, kc, std::min(kc + kn, pl.P.Cout), mbuf);
  }
}

}  // namespace

void conv2d_winograd_bf16_kernel(const Conv2dProblem& P, const float* x, const float* w, const float* bias, float* y,
                                 int threads) {
  constexpr int NL = NV * L;
  Plan pl{P, x, nullptr, bias, y, (P.Cin + 1) / 2, 0, 0, 0, 0, 0, 0, 0, nullptr, nullptr};
  pl.th = (P.Ho + 1) / 2;
  pl.tw = (P.Wo + 1) / 2;
  pl.twp = (pl.tw + L - 1) / L * L;
  const int64_t Wp = P.W + P.pad[1] + P.pad[3];
  std::vector<int64_t> cols(size_t(2 * pl.twp + 2 * L));
  for (int64_t pc = 0; pc < int64_t(cols.size()); ++pc)
    cols[size_t(pc)] = pc < Wp ? source_index(pc - P.pad[1], P.W, P.mode) : -1;
  std::vector<ColumnSpan> spans;
  for (int64_t pc = 0; pc < 2 * pl.twp; pc += L) spans.emplace_back(cols.data() + pc, P.W);
  pl.cols = cols.data();
  pl.spans = spans.data();
  pl.Kp = (P.Cout + MR - 1) / MR * MR;
  pl.KC = std::min(pl.Kp, std::max<int64_t>(MR, kTargetKC / MR * MR));
  // About 64 tiles per block, a whole number of register tiles; halved (down to one register tile) while the images
  // give fewer than two blocks per thread.
  int64_t sub = std::max(1, 64 / NL);
  const int64_t tiles = pl.th * pl.twp;
  auto blocks_of = [&](int64_t s) { return (tiles + s * NL - 1) / (s * NL); };
  while (sub > 1 && P.N * blocks_of(sub) < 2 * int64_t(threads)) sub /= 2;
  pl.TB = sub * NL;
  pl.blocks = blocks_of(sub);

  const std::string key = std::string("conv2d/winograd23-bf16/" GENRT_CONV2D_WBF16_STR(GENRT_ISA_NS) "/mr") +
                          std::to_string(MR);
  const PackedWeights<uint32_t> packed(P.cache, key, size_t(kPoints) * size_t(pl.Kp) * size_t(pl.C2),
                                       [&](uint32_t* u) { pack_weights(w, P.Cout, P.Cin, pl.C2, pl.Kp, u); });
  pl.u = packed.data();
  parallel_for(P.N * pl.blocks, threads, [&](int64_t b0, int64_t b1) {
    Scratch<uint32_t> vbuf(size_t(kPoints) * pl.C2 * pl.TB);
    Scratch<float> mbuf(size_t(kPoints) * pl.KC * pl.TB);
    for (int64_t b = b0; b < b1; ++b) run_block(pl, b / pl.blocks, b % pl.blocks, vbuf.p, mbuf.p);
  });
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
