// conv_transpose2d in bfloat16 on Intel AMX tiles (TDPBF16PS): float32 in and out, bfloat16-rounded inputs and
// weights, the products summed in float32, with conv_transpose2d's fused epilogue (bias, scale, shift, activation).
//
// The phase decomposition of conv_transpose2d_bf16_kernel.cpp (conv_transpose2d_rows.h: each output column phase q
// is a small convolution over the input, no zero of the upsampling multiplied) as a direct implicit GEMM on tiles:
// a 16 x 16 float32 result tile holds 16 consecutive j (outputs q + sw j) of 16 output channels, summed over the
// pair blocks, the output row's kernel rows and the phase's kernel columns; each weight tile (16 channels x 16
// pairs) is 1 KiB of [C_out / 16][pair block][kH][kW][16][16] words, packed once (WeightCache). Where sw is 2 (every
// upsampling layer genrt ships) the two result columns are the two phases of the same j, interleaved in registers on
// the way out, so each output row segment of 32 is stored whole; otherwise they are 32 consecutive j of one phase.
// Up to 2 weight tiles (32 output channels) share each input tile.
//
// Built for the amx level (GENRT_AMX_TILES, the instructions) and for every other level with amx_tiles.h's
// emulation (GENRT_CONV_TRANSPOSE_BF16_ALGO=amx; the tests); the tile loops are conv_transpose2d_amx.h's, which the
// tests also run on the instructions under Bochs.
#include <algorithm>
#include <string>
#include <vector>

#include "amx_weights.h"
#include "conv_transpose2d.h"
#include "conv_transpose2d_amx.h"
#include "conv_transpose2d_rows.h"

#define GENRT_CT2D_AMX_STR2(x) #x
#define GENRT_CT2D_AMX_STR(x) GENRT_CT2D_AMX_STR2(x)

namespace genrt {
namespace GENRT_ISA_NS {

using conv_transpose2d_amx::kTile;
using conv_transpose2d_amx::Plan;
using conv_transpose2d_amx::Taps;
using conv_transpose2d_detail::Epilogue;
using conv_transpose2d_detail::RowTaps;
using conv_transpose2d_detail::TransposedRows;

void conv_transpose2d_amx_kernel(const ConvTranspose2dProblem& P, const float* x, const float* w, const float* bias,
                                 const float* scale, const float* shift, float* y, int threads) {
  const amx::WeightTiles wt(P.Cin, P.Cout, P.kH * P.kW);
  TransposedRows in(P, x, wt.KB * wt.Kb, 2 * kTile);  // a tile pair reads up to 32 j
  const int64_t RB = in.rows_per_task(wt.pairs(), threads);
  in.set_rows(RB);
  const int64_t MG = wt.group(P.N * ((P.Ho + RB - 1) / RB), threads);
  const int64_t khw = P.kH * P.kW;
  const auto packed = wt.pack(P.cache, "conv_transpose2d/amx/" GENRT_CT2D_AMX_STR(GENRT_ISA_NS), P.Cin, P.Cout,
                              [&](int64_t k, int64_t c, int64_t t) { return w[(c * P.Cout + k) * khw + t]; });
  const Plan pl{P.Cout, P.Ho, P.Wo, P.kH, P.kW, P.sw, Epilogue<float>{bias, scale, shift, P.activation, float(P.slope)},
                wt.Kb, wt.KB, wt.MT, wt.mtiles, in.Wb, in.pair_words(), packed.data(), y};

  std::vector<const int64_t*> offs, kws;
  std::vector<int64_t> counts;
  for (int64_t q = 0; q < P.sw; ++q) {
    offs.push_back(in.off[size_t(q)].data());
    kws.push_back(in.kw[size_t(q)].data());
    counts.push_back(int64_t(in.kw[size_t(q)].size()));
  }
  in.for_each_task(RB, wt.groups(MG), threads, [&](int64_t g, int64_t n, int64_t oh0, int64_t oh1, int64_t ih0,
                                                   const uint32_t* buf) {
    alignas(64) float out[4 * 256];  // the result tiles
    wt.each_pair(g, MG, [&](int64_t mt, bool both) {
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        const RowTaps rt = in.row_taps(oh, ih0);
        const Taps t{rt.n, rt.r, rt.kh, offs.data(), kws.data(), counts.data(), in.J.data()};
        if (both)
          conv_transpose2d_amx::run_row<2>(pl, buf, t, n, oh, mt, out);
        else
          conv_transpose2d_amx::run_row<1>(pl, buf, t, n, oh, mt, out);
      }
    });
  });
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
