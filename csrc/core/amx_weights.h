// What the AMX kernels (conv2d_amx_kernel.cpp, conv_transpose2d_amx_kernel.cpp) share besides their tile loops: the
// weight tiles' shape and packing, their split over tasks, and a task's run over pairs of weight tiles.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "amx_tiles.h"
#include "conv2d_common.h"

namespace genrt {
namespace GENRT_ISA_NS {
namespace amx {

// Weight tiles: Kb input-channel pairs each (all of C_in's pairs up to 16, else 16, the last block zero-padded) in KB
// blocks, MT output channels each (C_out up to 16) in mtiles tiles.
struct WeightTiles {
  int64_t Kb, KB, MT, mtiles, taps;

  WeightTiles(int64_t Cin, int64_t Cout, int64_t taps_) : taps(taps_) {
    const int64_t C2 = (Cin + 1) / 2;
    Kb = std::min<int64_t>(kRows, C2);
    KB = (C2 + Kb - 1) / Kb;
    MT = std::min<int64_t>(kRows, Cout);
    mtiles = (Cout + MT - 1) / MT;
  }
  int64_t tile_words() const { return MT * Kb; }
  int64_t mtile_words() const { return KB * taps * tile_words(); }
  int64_t pairs() const { return (mtiles + 1) / 2; }
  Config config() const { return gemm_config(int(MT), int(Kb)); }

  // Packed once (kept in `cache` under name/MT/Kb) as [mtiles][KB][taps][MT][Kb] words, each a bfloat16 pair (input
  // channel 2 c2 in the low half), so each tile is contiguous; channels past C_out and pairs past C_in zero.
  // at(k, c, t): the float32 weight of output channel k, input channel c, tap t.
  template <typename At>
  conv2d_detail::PackedWeights<uint32_t> pack(WeightCache* cache, const std::string& name, int64_t Cin, int64_t Cout,
                                              At at) const {
    auto fill = [&](uint32_t* u) {
      for (int64_t k = 0; k < mtiles * MT; ++k)
        for (int64_t c2 = 0; c2 < KB * Kb; ++c2)
          for (int64_t t = 0; t < taps; ++t) {
            uint32_t pair = 0;
            if (k < Cout && 2 * c2 < Cin) {
              pair = conv2d_detail::bf16_bits(at(k, 2 * c2, t));
              if (2 * c2 + 1 < Cin) pair |= conv2d_detail::bf16_bits(at(k, 2 * c2 + 1, t)) << 16;
            }
            u[(((k / MT * KB + c2 / Kb) * taps + t) * MT + k % MT) * Kb + c2 % Kb] = pair;
          }
    };
    const std::string key = name + "/mt" + std::to_string(MT) + "/kb" + std::to_string(Kb);
    return conv2d_detail::PackedWeights<uint32_t>(cache, key, size_t(mtiles * mtile_words()), fill);
  }

  // Tasks of (image, row block, group of `group` weight tiles): groups even-sized unless one holds them all, enough
  // of them that `tasks` (image, row block) pairs give each thread about 4.
  int64_t group(int64_t tasks, int threads) const {
    const int64_t want = std::clamp<int64_t>((4 * int64_t(threads) + tasks - 1) / tasks, 1, pairs());
    return (pairs() + want - 1) / want * 2;
  }
  int64_t groups(int64_t group) const { return (mtiles + group - 1) / group; }

  // Group g's weight tiles two at a time, f(mt, both) (both: mt + 1 is in the group too), with the tiles configured.
  template <typename F>
  void each_pair(int64_t g, int64_t group, F&& f) const {
    load_config(config());
    const int64_t end = std::min(mtiles, (g + 1) * group);
    for (int64_t mt = g * group; mt < end; mt += 2) f(mt, mt + 1 < end);
    release();
  }
};

}  // namespace amx
}  // namespace GENRT_ISA_NS
}  // namespace genrt
