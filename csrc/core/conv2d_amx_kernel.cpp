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
// Two other forms keep the tiles full where one side is small, at stride 1 (the first and last layers of image
// networks, 3 channels against 32-64, 9x9 kernels):
// - taps in K, for few input channels (pairs < kW): an input tile's K rows are one pair's kW column taps, each
//   row the one before shifted by one word (a tile load with a 4-byte stride), so K = kW, not the 2 pairs of C_in = 3;
//   weights as [C_out / 16][pair][kH][16 channels][kW taps];
// - taps in M, for few output channels: weight tile rows are (channel, column tap) pairs, and the taps are summed
//   after the tiles, shifted (conv2d_amx.h's taps_in_m_row); weights as [rows / 16][pair block][kH][16 rows][Kb].
//
// Built for the amx level (GENRT_AMX_TILES, the instructions) and for every other level with amx_tiles.h's
// emulation, which runs the same code everywhere (GENRT_CONV2D_BF16_ALGO=amx; the tests).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "conv2d.h"
#include "instance_norm.h"  // plane_statistics
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
using conv2d_detail::Scratch;

namespace {

enum class Form { standard, taps_in_k, taps_in_m };

// The form with the fewest TDPBF16PS per 16 pixels (the tile loads follow them): standard mtiles KB kH kW, taps in K
// mtiles C2 kH, taps in M ceil(C_out kW / 16) KB kH (plus its shifted sums: counted as a quarter more).
Form choose_form(const Conv2dProblem& P) {
  if (P.sw != 1 || P.kW == 1) return Form::standard;
  const amx::WeightTiles wt(P.Cin, P.Cout, P.kH * P.kW);
  const int64_t C2 = (P.Cin + 1) / 2, standard = wt.mtiles * wt.KB * P.kW;
  const int64_t by_k = wt.mtiles * C2, by_m = (P.Cout * P.kW + kTile - 1) / kTile * wt.KB * 5 / 4;
  if (by_k < standard && by_k <= by_m) return Form::taps_in_k;
  if (by_m < standard) return Form::taps_in_m;
  return Form::standard;
}

// P.out_stats from the tasks' sums (part: per (image, row block of RB rows), per channel, (pivot p, sum S of
// d = y - p, sum Q of d^2)): each task's mean p + S / n and sum of squared deviations Q - S^2 / n, combined exactly
// (Chan et al. 1979). A plane where some task's pivot lay far from that task's mean ((S / n)^2 > 16 var, as
// instance_norm_kernel.cpp) is read again from y; without sums (taps in M), every plane.
void output_statistics(const Conv2dProblem& P, const float* y, const double* part, int64_t RB, int threads) {
  const int64_t size = P.Ho * P.Wo, row_blocks = (P.Ho + RB - 1) / RB;
  if (!part) return plane_statistics(y, P.N * P.Cout, size, P.out_stats, threads);
  std::vector<int64_t> again;
  std::vector<double> mean(static_cast<size_t>(row_blocks)), m2(mean.size());
  for (int64_t k = 0; k < P.N * P.Cout; ++k) {
    const int64_t n = k / P.Cout, c = k % P.Cout;
    double total = 0, sum = 0, squares = 0;
    bool far = false;
    for (int64_t b = 0; b < row_blocks; ++b) {
      const double* t = part + ((n * row_blocks + b) * P.Cout + c) * 3;
      const double count = double((std::min(P.Ho, (b + 1) * RB) - b * RB) * P.Wo), shift = t[1] / count;
      mean[size_t(b)] = t[0] + shift;
      m2[size_t(b)] = std::max(t[2] - t[1] * shift, 0.0);
      far = far || shift * shift * count > 16.0 * m2[size_t(b)];  // NaN and inf compare false
      sum += mean[size_t(b)] * count;
      total += count;
    }
    const double mu = sum / total;
    for (int64_t b = 0; b < row_blocks; ++b) {
      const double count = double((std::min(P.Ho, (b + 1) * RB) - b * RB) * P.Wo), dm = mean[size_t(b)] - mu;
      squares += m2[size_t(b)] + count * dm * dm;
    }
    P.out_stats[2 * k] = mu;
    P.out_stats[2 * k + 1] = squares / total;
    if (far) again.push_back(k);
  }
  parallel_for(int64_t(again.size()), threads, [&](int64_t b0, int64_t b1) {
    for (int64_t i = b0; i < b1; ++i)
      plane_statistics(y + again[size_t(i)] * size, 1, size, P.out_stats + 2 * again[size_t(i)], 1);
  });
}

}  // namespace

void conv2d_amx_kernel(const Conv2dProblem& P, const float* x, const float* w, const float* bias, float* y,
                       int threads) {
  const Form form = choose_form(P);
  const int64_t khw = P.kH * P.kW, C2 = (P.Cin + 1) / 2, s = P.sw;
  // Weight tiles: taps in K packs "channels" 2 kw + e (pair kw of the tile's K) and taps (pair p, kh); taps in M packs
  // "output channels" c kW + kw.
  const amx::WeightTiles wt = form == Form::taps_in_k   ? amx::WeightTiles(2 * P.kW, P.Cout, C2 * P.kH)
                              : form == Form::taps_in_m ? amx::WeightTiles(P.Cin, P.Cout * P.kW, P.kH)
                                                        : amx::WeightTiles(P.Cin, P.Cout, khw);
  // An input tile reads 16 pixels from any output column below Wo rounded up to 16, at up to (kW - 1) / s on.
  const int64_t Wph = ((P.Wo + kTile - 1) / kTile * kTile + (P.kW - 1) / s + kTile - 1) / kTile * kTile;
  PairRows in(P, x, form == Form::taps_in_k ? C2 : wt.KB * wt.Kb, Wph);
  const int64_t RB = rows_per_task(in, threads);
  in.rows = (RB - 1) * P.sh + P.kH;
  const int64_t MG = form == Form::standard ? wt.group(P.N * ((P.Ho + RB - 1) / RB), threads) : wt.mtiles;
  const std::string key = std::string("conv2d/amx") +
                          (form == Form::taps_in_k ? "-taps-k/" : form == Form::taps_in_m ? "-taps-m/" : "/") +
                          GENRT_CONV2D_AMX_STR(GENRT_ISA_NS);
  const int64_t all_in = 2 * wt.KB * wt.Kb, all_out = wt.mtiles * wt.MT;  // every slot: at() says what is zero
  const auto packed = wt.pack(P.cache, key, all_in, all_out, [&](int64_t k, int64_t c, int64_t t) {
    if (form == Form::taps_in_k) {  // c = 2 kw + e, t = p kH + kh: input channel 2 p + e
      const int64_t ci = 2 * (t / P.kH) + c % 2;
      return k < P.Cout && ci < P.Cin ? w[((k * P.Cin + ci) * P.kH + t % P.kH) * P.kW + c / 2] : 0.0f;
    }
    if (form == Form::taps_in_m)  // k = co kW + kw, t = kh
      return k < P.Cout * P.kW && c < P.Cin ? w[((k / P.kW * P.Cin + c) * P.kH + t) * P.kW + k % P.kW] : 0.0f;
    return k < P.Cout && c < P.Cin ? w[(k * P.Cin + c) * khw + t] : 0.0f;
  });
  const int64_t zero = 0;
  const bool folded = form != Form::standard;  // the plan's kW is 1: taps in K or M
  Plan pl{P.Cout, P.Ho, P.Wo, P.kH, folded ? 1 : P.kW, P.sh, P.activation, float(P.slope), wt.Kb,
          form == Form::taps_in_k ? C2 : wt.KB, wt.MT, wt.mtiles, in.row_words(), in.pair_words(),
          folded ? &zero : in.off.data(), packed.data(), bias, y};
  pl.tap_rows = form == Form::taps_in_k;
  pl.res = P.residual;
  const char* chunks = std::getenv("GENRT_AMX_CHUNKS");
  pl.one_chunk = chunks && std::strcmp(chunks, "off") == 0;
  // taps in M: one output row's result rows, ld floats apart (an odd number of cache lines)
  const int64_t ld = ((Wph + kTile) / kTile | 1) * kTile;
  // Output statistics (standard and taps in K): per task (image, row block), each channel's pivot and sums of d and
  // d^2 (run_rows), combined below in a fixed order.
  const bool sums = P.out_stats && form != Form::taps_in_m;
  const int64_t row_blocks = (P.Ho + RB - 1) / RB;
  std::vector<double> part(sums ? size_t(P.N * row_blocks * P.Cout * 3) : 0);
  for_each_task(in, RB, wt.groups(MG), threads, [&](int64_t g, int64_t n, int64_t oh0, int64_t oh1,
                                                    const uint32_t* buf) {
    if (form == Form::taps_in_m) {
      Scratch<float> R(size_t(wt.mtiles * wt.MT * ld));
      const int64_t cols = conv2d_amx::taps_in_m_cols(pl, P.kW);  // the rest of each row, read and discarded: zero
      for (int64_t r = 0; r < wt.mtiles * wt.MT; ++r) std::memset(R.p + r * ld + cols, 0, size_t(ld - cols) * 4);
      amx::load_config(wt.config());
      for (int64_t oh = oh0; oh < oh1; ++oh)
        conv2d_amx::taps_in_m_row(pl, P.kW, buf + (oh - oh0) * P.sh * pl.row_words, R.p, ld, n, oh);
      amx::release();
      return;
    }
    alignas(64) float out[4 * 256];  // the result tiles
    Scratch<float> acc(size_t(conv2d_amx::acc_floats(pl, oh1 - oh0)));
    double* task_sums = sums ? part.data() + (n * row_blocks + oh0 / RB) * P.Cout * 3 : nullptr;
    wt.each_pair(g, MG, [&](int64_t mt, bool both) {
      if (both)
        conv2d_amx::run_rows<2>(pl, buf, n, oh0, oh1, mt, out, acc.p, task_sums);
      else
        conv2d_amx::run_rows<1>(pl, buf, n, oh0, oh1, mt, out, acc.p, task_sums);
    });
  });
  if (P.out_stats) output_statistics(P, y, sums ? part.data() : nullptr, RB, threads);
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
