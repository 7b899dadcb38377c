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
  int64_t tile_words() const { return MT * Kb; }
  int64_t mtile_words() const { return KB * kH * kW * tile_words(); }
};

// NM weight tiles from u (the second mtile_words() on) x NN input tiles of 16 pixels from `rows` (the task's
// buffer at this output row and first pixel): the float32 result tiles into out[(i * 2 + j) * 256].
template <int NM, int NN>
inline void tiles(const Plan& pl, const uint32_t* rows, const uint32_t* u, float* out) {
  const int64_t kH = pl.kH, kW = pl.kW, tw = pl.tile_words(), mw = pl.mtile_words();
  const int64_t rw = pl.row_words, block = pl.Kb * pl.pair_words;
  const long bstride = long(4 * pl.pair_words), astride = long(4 * pl.Kb);
  const int64_t* off = pl.off;
  GENRT_TILE_ZERO(0);
  if constexpr (NN == 2) GENRT_TILE_ZERO(1);
  if constexpr (NM == 2) GENRT_TILE_ZERO(2);
  if constexpr (NM == 2 && NN == 2) GENRT_TILE_ZERO(3);
  for (int64_t kb = 0; kb < pl.KB; ++kb)
    for (int64_t kh = 0; kh < kH; ++kh)
      for (int64_t kw = 0; kw < kW; ++kw, u += tw) {
        const uint32_t* b = rows + kb * block + kh * rw + off[kw];
        GENRT_TILE_LOAD(6, b, bstride);
        GENRT_TILE_LOAD(4, u, astride);
        GENRT_TILE_DPBF16PS(0, 4, 6);
        if constexpr (NN == 2) {
          GENRT_TILE_LOAD(7, b + kTile, bstride);
          GENRT_TILE_DPBF16PS(1, 4, 7);
        }
        if constexpr (NM == 2) {
          GENRT_TILE_LOAD(5, u + mw, astride);
          GENRT_TILE_DPBF16PS(2, 5, 6);
          if constexpr (NN == 2) GENRT_TILE_DPBF16PS(3, 5, 7);
        }
      }
  constexpr long kOut = 4 * kTile;  // result rows are 16 floats apart
  GENRT_TILE_STORE(0, out, kOut);
  if constexpr (NN == 2) GENRT_TILE_STORE(1, out + 256, kOut);
  if constexpr (NM == 2) GENRT_TILE_STORE(2, out + 512, kOut);
  if constexpr (NM == 2 && NN == 2) GENRT_TILE_STORE(3, out + 768, kOut);
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
      if (l + L <= width) {
        store(dst + l, v);
      } else {
        alignas(64) float tmp[L];
        store(tmp, v);
        for (int64_t i = 0; i < width - l; ++i) dst[l + i] = tmp[i];
      }
    }
  }
}

template <int NM>
inline void run_rows(const Plan& pl, const uint32_t* buf, int64_t n, int64_t oh0, int64_t oh1, int64_t mt,
                     float* out) {
  const uint32_t* u = pl.u + mt * pl.mtile_words();
  for (int64_t oh = oh0; oh < oh1; ++oh) {
    const uint32_t* rows = buf + (oh - oh0) * pl.sh * pl.row_words;
    for (int64_t ow = 0; ow < pl.Wo; ow += 2 * kTile) {
      const int NN = pl.Wo - ow > kTile ? 2 : 1;
      if (NN == 2)
        tiles<NM, 2>(pl, rows + ow, u, out);
      else
        tiles<NM, 1>(pl, rows + ow, u, out);
      for (int i = 0; i < NM; ++i)
        for (int j = 0; j < NN; ++j)
          epilogue(pl, out + (i * 2 + j) * 256, n, (mt + i) * pl.MT, oh, ow + j * kTile,
                   pl.Wo - ow - j * kTile < kTile ? pl.Wo - ow - j * kTile : kTile);
    }
  }
}

}  // namespace conv2d_amx
}  // namespace GENRT_ISA_NS
}  // namespace genrt
