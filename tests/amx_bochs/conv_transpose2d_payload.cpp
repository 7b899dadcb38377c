// Bochs payload for tests/test_amx_bochs.py: runs conv_transpose2d_amx.h's tile loops (the instructions,
// GENRT_AMX_TILES) on one image whose input rows, packed weights and column taps the test wrote (case.h, data.S),
// and prints the output's float32 bits in hex, 16 per line. The row taps are worked out here, as
// conv_transpose2d_rows.h does (the buffer holds every input row).
#include <stdint.h>

#include "case.h"  // CASE_*: the geometry
#include "conv_transpose2d_amx.h"
#include "payload.h"

extern "C" const uint32_t case_buf[];  // every input row as bfloat16 pairs
extern "C" const uint32_t case_u[];    // packed weights
extern "C" const float case_bias[], case_scale[], case_shift[];
extern "C" const int64_t case_off[], case_kw[];  // [sw][CASE_MAXTAPS]
extern "C" const int64_t case_n[], case_J[];     // [sw]

static float y[CASE_COUT * CASE_HO * CASE_WO];

extern "C" void payload_main(void) {
  namespace amx = genrt::isa_amx::amx;
  namespace ct = genrt::isa_amx::conv_transpose2d_amx;
  const genrt::isa_amx::conv_transpose2d_detail::Epilogue<float> ep{
      CASE_BIAS ? case_bias : nullptr, CASE_AFFINE ? case_scale : nullptr, CASE_AFFINE ? case_shift : nullptr,
      CASE_ACT, 0.2f};
  const ct::Plan pl{CASE_COUT, CASE_HO,      CASE_WO,      CASE_KH, CASE_KW,  CASE_SW,         ep, CASE_KB_PAIRS,
                    CASE_KBLOCKS, CASE_MT, CASE_MTILES, CASE_WB, CASE_PAIR_WORDS, case_u, y};
  const int64_t* offs[CASE_SW];
  const int64_t* kws[CASE_SW];
  for (int q = 0; q < CASE_SW; ++q) offs[q] = case_off + q * CASE_MAXTAPS, kws[q] = case_kw + q * CASE_MAXTAPS;
  alignas(64) static float out[4 * 256];
  amx::load_config(amx::gemm_config(int(pl.MT), int(pl.Kb)));
  for (int64_t mt = 0; mt < pl.mtiles; mt += 2)
    for (int64_t oh = 0; oh < pl.Ho; ++oh) {
      int64_t r[16], kh[16];
      int nr = 0;
      for (int64_t k = 0; k < CASE_KH; ++k) {
        const int64_t num = oh + CASE_PH - k * CASE_DH;
        if (((num % CASE_SH) + CASE_SH) % CASE_SH) continue;
        if (num < 0 || num / CASE_SH >= CASE_H) continue;
        r[nr] = num / CASE_SH, kh[nr++] = k;
      }
      const ct::Taps t{nr, r, kh, offs, kws, case_n, case_J};
      if (mt + 1 < pl.mtiles)
        ct::run_row<2>(pl, case_buf, t, 0, oh, mt, out);
      else
        ct::run_row<1>(pl, case_buf, t, 0, oh, mt, out);
    }
  amx::release();
  e9_hex32_lines(reinterpret_cast<const uint32_t*>(y), CASE_COUT * CASE_HO * CASE_WO);
}
