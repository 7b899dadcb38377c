// conv2d in bfloat16 on Intel AMX tiles (TDPBF16PS): float32 in and out, bfloat16-rounded inputs and weights, the
// products summed in float32. Every kernel size and stride, as a direct implicit GEMM:
//
//   y[co][oh][ow .. ow + 16] += sum over (pair block, kh, kw) of A (16 output channels x 16 input channel pairs, the
//   weights) times B (16 pairs x 16 output pixels, the input)
//
// so a 16 x 16 float32 result tile holds 16 consecutive output pixels of 16 output channels, one NCHW row segment
// per tile row. The input rows are conv2d_bf16_kernel.cpp's (conv2d_common.h's PairRows: padded, split into the
// stride's phases, rounded to bfloat16 and paired), which is exactly TDPBF16PS's layout for B: pair row k of a tile
// is 16 consecutive pixels' words, the rows one pair apart. Weights are packed once (kept in the WeightCache) as
// [C_out / 16][pair block][kH][kW][16 channels][16 pairs] words: each A tile is 1 KiB, contiguous.
//
// Register blocking: 2 x 2 result tiles (32 output channels x 32 pixels; tmm0-3), two weight tiles (tmm4-5) and two
// input tiles (tmm6-7), so each TDPBF16PS follows one tile load. Fewer than 16 pairs (C_in < 32) shrink K to the
// pairs there are; more are rounded up to a multiple of 16 with zero pairs; fewer than 16 output channels shrink
// the tiles' rows.
//
// Built for the amx level (GENRT_AMX_TILES, the instructions) and for every other level with amx_tiles.h's
// emulation, which runs the same code everywhere (GENRT_CONV2D_BF16_ALGO=amx; the tests).
#include <algorithm>
#include <cstring>
#include <string>

#include "conv2d.h"
#include "amx_weights.h"
#include "conv2d_amx.h"
#include "conv2d_common.h"

#define GENRT_CONV2D_AMX_STR2(x) #x
#define GENRT_CONV2D_AMX_STR(x) GENRT_CONV2D_AMX_STR2(x)

namespace genrt {
namespace GENRT_ISA_NS {

using conv2d_amx::kTile;
using conv2d_amx::Plan;
using conv2d_detail::for_each_task;
using conv2d_detail::PairRows;
using conv2d_detail::rows_per_task;

void conv2d_amx_kernel(const Conv2dProblem& P, const float* x, const float* w, const float* bias, float* y,
                       int threads) {
  const amx::WeightTiles wt(P.Cin, P.Cout, P.kH * P.kW);
  const int64_t s = P.sw;
  // An input tile reads 16 pixels from any output column below Wo rounded up to 16, at up to (kW - 1) / s on.
  const int64_t Wph = ((P.Wo + kTile - 1) / kTile * kTile + (P.kW - 1) / s + kTile - 1) / kTile * kTile;
  PairRows in(P, x, wt.KB * wt.Kb, Wph);
  const int64_t RB = rows_per_task(in, threads);
  in.rows = (RB - 1) * P.sh + P.kH;
  const int64_t MG = wt.group(P.N * ((P.Ho + RB - 1) / RB), threads);
  const int64_t khw = P.kH * P.kW;
  const auto packed = wt.pack(P.cache, "conv2d/amx/" GENRT_CONV2D_AMX_STR(GENRT_ISA_NS), P.Cin, P.Cout,
                              [&](int64_t k, int64_t c, int64_t t) { return w[(k * P.Cin + c) * khw + t]; });
  const Plan pl{P.Cout, P.Ho, P.Wo, P.kH, P.kW, P.sh, P.activation, float(P.slope), wt.Kb, wt.KB, wt.MT,
                wt.mtiles, in.row_words(), in.pair_words(), in.off.data(), packed.data(), bias, y};
  for_each_task(in, RB, wt.groups(MG), threads, [&](int64_t g, int64_t n, int64_t oh0, int64_t oh1,
                                                    const uint32_t* buf) {
    alignas(64) float out[4 * 256];  // the result tiles
    wt.each_pair(g, MG, [&](int64_t mt, bool both) {
      if (both)
        conv2d_amx::run_rows<2>(pl, buf, n, oh0, oh1, mt, out);
      else
        conv2d_amx::run_rows<1>(pl, buf, n, oh0, oh1, mt, out);
    });
  });
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
