// The tile loops of conv_transpose2d_amx_kernel.cpp (see there): one output row of up to 2 weight tiles (32 output
// channels), on plain values only, so that the same code also builds freestanding for scripts/bochs_amx
// (tests/test_amx_bochs.py).
#pragma once

#include <cstdint>

#include "amx_tiles.h"
#include "conv_transpose2d_epilogue.h"
#include "simd.h"

namespace genrt {
namespace GENRT_ISA_NS {
namespace conv_transpose2d_amx {

constexpr int kTile = 16;  // j per input tile, output channels and pairs per weight tile
constexpr int L = Vec<float>::size;
using F = vec_t<float>;

struct Plan {
  int64_t Cout, Ho, Wo, kH, kW, sw;
  conv_transpose2d_detail::Epilogue<float> ep;
  int64_t Kb, KB;              // pairs per weight tile, pair blocks
  int64_t MT, mtiles;          // output channels per weight tile, weight tiles (C_out rounded up to MT)
  int64_t Wb, pair_words;      // words per buffer row, per pair (conv_transpose2d_rows.h's TransposedRows)
  const uint32_t* u;           // packed weights, [mtiles][KB][kH][kW][MT][Kb] words
  float* y;                    // (N, C_out, H_out, W_out)
  int64_t tile_words() const { return MT * Kb; }
  int64_t mtile_words() const { return KB * kH * kW * tile_words(); }
};

// The taps of one output row: nr buffer rows r[] with kernel rows kh[], and per column phase q its n[q] column taps
// (buffer word off[q][s] of j = 0, kernel column kw[q][s]) and its J[q] outputs.
struct Taps {
  int nr;
  const int64_t* r;
  const int64_t* kh;
  const int64_t* const* off;
  const int64_t* const* kw;
  const int64_t* n;
  const int64_t* J;
};

template <int NM, int NN>
inline void zero_results() {
  GENRT_TILE_ZERO(0);
  if constexpr (NN == 2) GENRT_TILE_ZERO(1);
  if constexpr (NM == 2) GENRT_TILE_ZERO(2);
  if constexpr (NM == 2 && NN == 2) GENRT_TILE_ZERO(3);
}
template <int NM, int NN>
inline void store_results(float* out) {  // tile (i, j) at out + (2 i + j) 256
  constexpr long kOut = 4 * kTile;
  GENRT_TILE_STORE(0, out, kOut);
  if constexpr (NN == 2) GENRT_TILE_STORE(1, out + 256, kOut);
  if constexpr (NM == 2) GENRT_TILE_STORE(2, out + 512, kOut);
  if constexpr (NM == 2 && NN == 2) GENRT_TILE_STORE(3, out + 768, kOut);
}

// Result columns C .. C + NN += NM weight tiles x the 16 NN j from `rows` (the buffer at the first j) over phase q's
// taps, each weight tile loaded once.
template <int NM, int NN, int C>
inline void taps(const Plan& pl, const uint32_t* rows, const Taps& t, int64_t q, const uint32_t* u) {
  static_assert(NN == 1 || C == 0, "two result columns are columns 0 and 1");
  const int64_t tw = pl.tile_words(), mw = pl.mtile_words(), block = pl.Kb * pl.pair_words;
  const long bstride = long(4 * pl.pair_words), astride = long(4 * pl.Kb);
  const int64_t *off = t.off[q], *kw = t.kw[q], n = t.n[q];
  for (int64_t kb = 0; kb < pl.KB; ++kb)
    for (int i = 0; i < t.nr; ++i)
      for (int64_t s = 0; s < n; ++s) {
        const uint32_t* b = rows + kb * block + t.r[i] * pl.Wb + off[s];
        const uint32_t* a = u + ((kb * pl.kH + t.kh[i]) * pl.kW + kw[s]) * tw;
        amx::load<6 + C>(b, bstride);
        if constexpr (NN == 2) amx::load<7>(b + kTile, bstride);
        amx::load<4>(a, astride);
        amx::dpbf16ps<C, 4, 6 + C>();
        if constexpr (NN == 2) amx::dpbf16ps<1, 4, 7>();
        if constexpr (NM == 2) {
          amx::load<5>(a + mw, astride);
          amx::dpbf16ps<C + 2, 5, 6 + C>();
          if constexpr (NN == 2) amx::dpbf16ps<3, 5, 7>();
        }
      }
}

// One output row oh of image n, output channels from weight tile mt (NM tiles); buf: the task's input rows.
template <int NM>
inline void run_row(const Plan& pl, const uint32_t* buf, const Taps& t, int64_t n, int64_t oh, int64_t mt,
                    float* out) {
  const uint32_t* u = pl.u + mt * pl.mtile_words();
  const int64_t c0 = mt * pl.MT, plane = pl.Ho * pl.Wo;
  float* yrow = pl.y + ((n * pl.Cout + c0) * pl.Ho + oh) * pl.Wo;
  const int64_t m_end0 = pl.Cout - c0 < pl.MT ? pl.Cout - c0 : pl.MT;
  if (pl.sw == 2) {  // both phases of the same j: result columns 0 and 1, interleaved on the way out
    for (int64_t j0 = 0; j0 < t.J[0]; j0 += kTile) {
      zero_results<NM, 2>();
      taps<NM, 1, 0>(pl, buf + j0, t, 0, u);
      taps<NM, 1, 1>(pl, buf + j0, t, 1, u);
      store_results<NM, 2>(out);
      const int64_t width = pl.Wo - 2 * j0 < 2 * kTile ? pl.Wo - 2 * j0 : 2 * kTile;
      for (int i = 0; i < NM; ++i) {
        const int64_t m_end = i ? (pl.Cout - c0 - pl.MT < pl.MT ? pl.Cout - c0 - pl.MT : pl.MT) : m_end0;
        for (int64_t m = 0; m < m_end; ++m) {
          const int64_t c = c0 + i * pl.MT + m;
          float* dst = yrow + (i * pl.MT + m) * plane + 2 * j0;
          const float* t0 = out + (2 * i) * 256 + m * kTile;
          const float* t1 = t0 + 256;
          for (int64_t l = 0; l < kTile; l += L)
            if (!conv_transpose2d_detail::store_interleaved(dst + 2 * l, pl.ep.apply(load(t0 + l), c),
                                                            pl.ep.apply(load(t1 + l), c), width - 2 * l))
              break;
        }
      }
    }
    return;
  }
  for (int64_t q = 0; q < pl.sw; ++q)
    for (int64_t j0 = 0; j0 < t.J[q]; j0 += 2 * kTile) {
      const int NN = t.J[q] - j0 > kTile ? 2 : 1;
      if (NN == 2) {
        zero_results<NM, 2>();
        taps<NM, 2, 0>(pl, buf + j0, t, q, u);
        store_results<NM, 2>(out);
      } else {
        zero_results<NM, 1>();
        taps<NM, 1, 0>(pl, buf + j0, t, q, u);
        store_results<NM, 1>(out);
      }
      for (int i = 0; i < NM; ++i) {
        const int64_t m_end = i ? (pl.Cout - c0 - pl.MT < pl.MT ? pl.Cout - c0 - pl.MT : pl.MT) : m_end0;
        for (int j = 0; j < NN; ++j) {
          const int64_t jb = j0 + j * kTile, count = t.J[q] - jb < kTile ? t.J[q] - jb : kTile;
          for (int64_t m = 0; m < m_end; ++m) {
            const int64_t c = c0 + i * pl.MT + m;
            float* dst = yrow + (i * pl.MT + m) * plane;
            const float* tile = out + (2 * i + j) * 256 + m * kTile;
            for (int64_t l = 0; l < count; l += L) {
              alignas(64) float tmp[L];
              store(tmp, pl.ep.apply(load(tile + l), c));
              const int64_t e_end = count - l < L ? count - l : L;
              if (pl.sw == 1 && e_end == L)
                store(dst + jb + l, load(tmp));
              else
                for (int64_t e = 0; e < e_end; ++e) dst[q + pl.sw * (jb + l + e)] = tmp[e];
            }
          }
        }
      }
    }
}

}  // namespace conv_transpose2d_amx
}  // namespace GENRT_ISA_NS
}  // namespace genrt
