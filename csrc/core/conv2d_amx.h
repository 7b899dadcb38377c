// The tile loops of conv2d_amx_kernel.cpp (see there): the 2 x 2 blocks of result tiles and the epilogue, on plain
// values only, so that the same code also builds freestanding for scripts/bochs_amx (the instructions run under the
// Bochs emulator in tests/test_amx_bochs.py, on any CPU).
#pragma once

#include <cstdint>

#include "amx_tiles.h"
#include "simd.h"

namespace genrt {
namespace GENRT_ISA_NS {
namespace conv2d_amx {

constexpr int kTile = 16;  // pixels per input tile, output channels and pairs per weight tile
constexpr int L = Vec<float>::size;
using F = vec_t<float>;

// One convolution's tile geometry and operands.
struct Plan {
  int64_t Cout, Ho, Wo, kH, kW, sh;
  int act;      // conv2d_activate's code
  float slope;  // and leaky_relu's slope
  int64_t Kb, KB;                   // pairs per weight tile, pair blocks
  int64_t MT, mtiles;               // output channels per weight tile, weight tiles (C_out rounded up to MT)
  int64_t row_words, pair_words;    // the input buffer's (conv2d_common.h's PairRows)
  const int64_t* off;               // per kw, the tap's offset in a buffer row (PairRows::off)
  const uint32_t* u;                // packed weights
  const float* bias;                // or null
  float* y;                         // (N, C_out, H_out, W_out)
  const float* res = nullptr;       // or y's shape: added after the activation (Conv2dProblem::residual)
  // An input tile's rows: 0 for one pair apart (pair_words; pair blocks Kb pairs apart), or 1 for one word apart,
  // one pair's column taps (the taps-in-K form below; pair blocks are then single pairs).
  int64_t tap_rows = 0;
  bool one_chunk = false;  // run_rows' pair blocks all in one chunk (GENRT_AMX_CHUNKS=off: the A/B of bench_amx.py)
  int64_t tile_words() const { return MT * Kb; }
  int64_t mtile_words() const { return KB * kH * kW * tile_words(); }
  long b_stride() const { return long(4 * (tap_rows ? 1 : pair_words)); }
  int64_t b_block() const { return tap_rows ? pair_words : Kb * pair_words; }
};

// NM weight tiles from u (the second mtile_words() on) x NN input tiles of 16 pixels from `rows` (the task's
// buffer at this output row and first pixel), over pair blocks kb0 .. kb1 (u at kb0's taps): the float32 result tile
// (i, j) to out + i di + j dj, its rows ld floats apart, added to the one at acc + i di + j dj where acc is not null
// (a sum over the earlier pair blocks). A 2 x 2 step whose loads all hit L1 takes 22-24 ns on the AMX Xeon, in this
// order or with each load just before its first product, against 19 ns for the four products alone; a tile load whose
// rows straddle cache lines costs 6x one whose rows lie on them (benchmarks/bench_amx_steps.py).
template <int NM, int NN>
inline void tiles(const Plan& pl, const uint32_t* rows, const uint32_t* u, float* out, int64_t ld = kTile,
                  int64_t di = 512, int64_t dj = 256, int64_t kb0 = 0, int64_t kb1 = -1,
                  const float* acc = nullptr) {
  const int64_t kH = pl.kH, kW = pl.kW, tw = pl.tile_words(), mw = pl.mtile_words();
  const int64_t rw = pl.row_words, block = pl.b_block();
  const long bstride = pl.b_stride(), astride = long(4 * pl.Kb), kOut = long(4 * ld);
  const int64_t* off = pl.off;
  if (kb1 < 0) kb1 = pl.KB;
  if (acc) {
    GENRT_TILE_LOAD(0, acc, kOut);
    if constexpr (NN == 2) GENRT_TILE_LOAD(1, acc + dj, kOut);
    if constexpr (NM == 2) GENRT_TILE_LOAD(2, acc + di, kOut);
    if constexpr (NM == 2 && NN == 2) GENRT_TILE_LOAD(3, acc + di + dj, kOut);
  } else {
    GENRT_TILE_ZERO(0);
    if constexpr (NN == 2) GENRT_TILE_ZERO(1);
    if constexpr (NM == 2) GENRT_TILE_ZERO(2);
    if constexpr (NM == 2 && NN == 2) GENRT_TILE_ZERO(3);
  }
  for (int64_t kb = kb0; kb < kb1; ++kb)
    for (int64_t kh = 0; kh < kH; ++kh)
      for (int64_t kw = 0; kw < kW; ++kw, u += tw) {
        const uint32_t* b = rows + kb * block + kh * rw + off[kw];
        GENRT_TILE_LOAD(4, u, astride);
        GENRT_TILE_LOAD(6, b, bstride);
        if constexpr (NN == 2) GENRT_TILE_LOAD(7, b + kTile, bstride);
        if constexpr (NM == 2) GENRT_TILE_LOAD(5, u + mw, astride);
        GENRT_TILE_DPBF16PS(0, 4, 6);
        if constexpr (NN == 2) GENRT_TILE_DPBF16PS(1, 4, 7);
        if constexpr (NM == 2) GENRT_TILE_DPBF16PS(2, 5, 6);
        if constexpr (NM == 2 && NN == 2) GENRT_TILE_DPBF16PS(3, 5, 7);
      }
  GENRT_TILE_STORE(0, out, kOut);
  if constexpr (NN == 2) GENRT_TILE_STORE(1, out + dj, kOut);
  if constexpr (NM == 2) GENRT_TILE_STORE(2, out + di, kOut);
  if constexpr (NM == 2 && NN == 2) GENRT_TILE_STORE(3, out + di + dj, kOut);
}

// The store of v to dst[l .. min(l + L, width)), an output row's values, plus the residual's where there is one.
inline void store_row(const Plan& pl, float* dst, int64_t l, int64_t width, F v) {
  const float* r = pl.res ? pl.res + (dst - pl.y) + l : nullptr;
  if (l + L <= width) {
    store(dst + l, r ? v + load(r) : v);
  } else {
    alignas(64) float tmp[L];
    store(tmp, v);
    for (int64_t i = 0; i < width - l; ++i) dst[l + i] = r ? tmp[i] + r[i] : tmp[i];
  }
}

// Bias, activation and the store of result tile rows: channel c0 + m, pixels ow .. ow + width of output row oh.
inline void epilogue(const Plan& pl, const float* tile, int64_t n, int64_t c0, int64_t oh, int64_t ow, int64_t width) {
  const int64_t m_end = pl.Cout - c0 < pl.MT ? pl.Cout - c0 : pl.MT;
  for (int64_t m = 0; m < m_end; ++m) {
    const F bv = splat(pl.bias ? pl.bias[c0 + m] : 0.0f);
    float* dst = pl.y + ((n * pl.Cout + c0 + m) * pl.Ho + oh) * pl.Wo + ow;
    for (int64_t l = 0; l < width; l += L) {
      F v = load(tile + m * kTile + l) + bv;
      v = conv2d_activate(v, pl.act, pl.slope);
      store_row(pl, dst, l, width, v);
    }
  }
}

// conv2d's output statistics of one output row of one channel, just written (in cache): the sums of d = y - t[0] and
// d^2 added to t[1] and t[2], with the pivot t[0] (a value of the plane: it keeps the sum of squares from cancelling)
// set to the row's first value where `first`.
inline void row_sums(const float* y, int64_t width, double* t, bool first) {
  if (first) t[0] = y[0];
  const float p = float(t[0]);
  const F pv = splat(p);
  F s0{}, s1{}, q0{}, q1{};
  int64_t l = 0;
  for (; l + 2 * L <= width; l += 2 * L) {
    const F d0 = load(y + l) - pv, d1 = load(y + l + L) - pv;
    s0 += d0, s1 += d1, q0 += d0 * d0, q1 += d1 * d1;
  }
  double s = double(hsum<float>(s0 + s1)), q = double(hsum<float>(q0 + q1));
  for (; l < width; ++l) s += double(y[l] - p), q += double(y[l] - p) * double(y[l] - p);
  t[1] += s;
  t[2] += q;
}

// 32-pixel blocks per output row (run_rows' 2 x 2 tile steps).
inline int64_t pixel_blocks(const Plan& pl) { return (pl.Wo + 2 * kTile - 1) / (2 * kTile); }
// Pair blocks per chunk of run_rows: as many as keep a pair of weight tiles' chunk (2 KiB per tap and block) within
// 24 KiB, half of L1, so that it stays there while the chunk runs over all of a task's pixels.
inline int64_t chunk_blocks(const Plan& pl) {
  if (pl.one_chunk) return pl.KB;
  const int64_t blocks = (24 << 10) / (8 * pl.kH * pl.kW * pl.tile_words());
  return blocks > 1 ? blocks : 1;
}
// Output rows per pass of run_rows: as many as keep the partial sums (4 KiB per 32-pixel block) within 128 KiB.
inline int64_t pass_rows(const Plan& pl) {
  const int64_t rows = 128 / (pixel_blocks(pl) * 4);
  return rows > 1 ? rows : 1;
}
// The floats of run_rows' partial sums for a task of `rows` output rows, or 0 where the pair blocks are one chunk.
inline int64_t acc_floats(const Plan& pl, int64_t rows) {
  if (rows > pass_rows(pl)) rows = pass_rows(pl);
  return chunk_blocks(pl) < pl.KB ? rows * pixel_blocks(pl) * 1024 : 0;
}

// Output rows oh0 .. oh1 of weight tiles mt .. mt + NM. part: null, or this task's output statistics, (pivot, sum of
// d, sum of d^2) per output channel (row_sums'), taken as each output row is written.
// The rows run in passes of pass_rows, and in each pass the pair blocks in chunks (chunk_blocks), each chunk over all
// the pass's 32-pixel blocks, their partial sums kept in acc between chunks (4 result tiles per block: acc_floats):
// a chunk's weights then stay in L1, where all of them (72 KiB per tile pair for 128 input channels at 3 x 3) would
// stream from L2 for every block (`bench_amx.py --chunks`: 128 -> 128 at 128 x 128 1.10x, RRDBNet's 64 -> 32 1.25x).
template <int NM>
inline void run_rows(const Plan& pl, const uint32_t* buf, int64_t n, int64_t oh0, int64_t oh1, int64_t mt,
                     float* out, float* acc, double* part = nullptr) {
  const int64_t chunk = chunk_blocks(pl), blocks = pixel_blocks(pl);
  const int64_t chunk_words = chunk * pl.kH * pl.kW * pl.tile_words(), pass = pass_rows(pl);
  for (int64_t r0 = oh0; r0 < oh1; r0 += pass) {
    const int64_t r1 = r0 + pass < oh1 ? r0 + pass : oh1;
    const uint32_t* u = pl.u + mt * pl.mtile_words();
    for (int64_t kb = 0; kb < pl.KB; kb += chunk, u += chunk_words) {
      const int64_t kb1 = kb + chunk < pl.KB ? kb + chunk : pl.KB;
      const bool last = kb1 == pl.KB;
      for (int64_t oh = r0; oh < r1; ++oh) {
        const uint32_t* rows = buf + (oh - oh0) * pl.sh * pl.row_words;
        for (int64_t ow = 0; ow < pl.Wo; ow += 2 * kTile) {
          const int NN = pl.Wo - ow > kTile ? 2 : 1;
          float* a = acc ? acc + ((oh - r0) * blocks + ow / (2 * kTile)) * 1024 : nullptr;  // null: one chunk
          float* dst = last ? out : a;
          const float* from = kb ? a : nullptr;
          if (NN == 2)
            tiles<NM, 2>(pl, rows + ow, u, dst, kTile, 512, 256, kb, kb1, from);
          else
            tiles<NM, 1>(pl, rows + ow, u, dst, kTile, 512, 256, kb, kb1, from);
          if (!last) continue;
          for (int i = 0; i < NM; ++i)
            for (int j = 0; j < NN; ++j)
              epilogue(pl, out + (i * 2 + j) * 256, n, (mt + i) * pl.MT, oh, ow + j * kTile,
                       pl.Wo - ow - j * kTile < kTile ? pl.Wo - ow - j * kTile : kTile);
        }
        if (part && last)
          for (int64_t c = mt * pl.MT; c < (mt + NM) * pl.MT && c < pl.Cout; ++c)
            row_sums(pl.y + ((n * pl.Cout + c) * pl.Ho + oh) * pl.Wo, pl.Wo, part + 3 * c, oh == oh0);
      }
    }
  }
}

// Taps in M, for few output channels at stride 1 (a network's last layer, C_out = 3): a weight tile row is a
// (channel c, column tap kw) pair, row c taps + kw, and the plan's own kW is 1, so the tiles sum over pair blocks and
// kernel rows only. Result row c taps + kw, column j holds channel c's sum for tap kw at buffer column j, and
// y[c][oh][ow] = sum over kw of R[c taps + kw][ow + kw]: one output row through R (rows ld floats apart, at least
// the buffer row's words plus 16), from `rows`, the task's buffer at this output row.
// The R columns the tiles write (the output reads up to Wo + taps - 1; past them, lanes it discards).
inline int64_t taps_in_m_cols(const Plan& pl, int64_t taps) { return (pl.Wo + taps - 1 + kTile - 1) / kTile * kTile; }

inline void taps_in_m_row(const Plan& pl, int64_t taps, const uint32_t* rows, float* R, int64_t ld, int64_t n,
                          int64_t oh) {
  const int64_t cols = taps_in_m_cols(pl, taps);
  for (int64_t mt = 0; mt < pl.mtiles; mt += 2) {
    const uint32_t* u = pl.u + mt * pl.mtile_words();
    float* r = R + mt * pl.MT * ld;
    const int64_t di = pl.MT * ld;
    for (int64_t col = 0; col < cols; col += 2 * kTile) {
      const bool both = mt + 1 < pl.mtiles, two = cols - col > kTile;
      if (both && two)
        tiles<2, 2>(pl, rows + col, u, r + col, ld, di, kTile);
      else if (both)
        tiles<2, 1>(pl, rows + col, u, r + col, ld, di, kTile);
      else if (two)
        tiles<1, 2>(pl, rows + col, u, r + col, ld, di, kTile);
      else
        tiles<1, 1>(pl, rows + col, u, r + col, ld, di, kTile);
    }
  }
  for (int64_t c = 0; c < pl.Cout; ++c) {
    const F bv = splat(pl.bias ? pl.bias[c] : 0.0f);
    const float* rc = R + c * taps * ld;
    float* dst = pl.y + ((n * pl.Cout + c) * pl.Ho + oh) * pl.Wo;
    for (int64_t l = 0; l < pl.Wo; l += L) {
      F v = bv;
      for (int64_t kw = 0; kw < taps; ++kw) v = v + load(rc + kw * ld + kw + l);
      v = conv2d_activate(v, pl.act, pl.slope);
      store_row(pl, dst, l, pl.Wo, v);
    }
  }
}

}  // namespace conv2d_amx
}  // namespace GENRT_ISA_NS
}  // namespace genrt
