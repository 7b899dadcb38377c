// Bochs payload for tests/test_amx_bochs.py: runs conv2d_amx.h's tile loops (the instructions, GENRT_AMX_TILES)
// on one image whose input rows and packed weights the test wrote (case.h, data.S), and prints the output's float32
// bits in hex, 16 per line.
#include <stdint.h>

#include "case.h"  // CASE_*: the geometry
#include "conv2d_amx.h"
#include "payload.h"

extern "C" const uint32_t case_buf[];  // PairRows of the whole image
extern "C" const uint32_t case_u[];    // packed weights
extern "C" const float case_bias[];
extern "C" const int64_t case_off[];

static float y[CASE_COUT * CASE_HO * CASE_WO];

extern "C" void payload_main(void) {
  namespace amx = genrt::isa_amx::amx;
  namespace conv = genrt::isa_amx::conv2d_amx;
  const conv::Plan pl{CASE_COUT, CASE_HO, CASE_WO, CASE_KH, CASE_KW, CASE_SH, CASE_RELU != 0, 0.0f, CASE_KB_PAIRS,
                      CASE_KBLOCKS, CASE_MT, CASE_MTILES, CASE_ROW_WORDS, CASE_PAIR_WORDS, case_off, case_u,
                      CASE_BIAS ? case_bias : nullptr, y};
  alignas(64) static float out[4 * 256];
  alignas(64) static float acc[CASE_HO * ((CASE_WO + 31) / 32) * 1024];  // run_rows' partial sums, where it chunks
  amx::load_config(amx::gemm_config(int(pl.MT), int(pl.Kb)));
  for (int64_t mt = 0; mt < pl.mtiles; mt += 2) {
    if (mt + 1 < pl.mtiles)
      conv::run_rows<2>(pl, case_buf, 0, 0, pl.Ho, mt, out, acc);
    else
      conv::run_rows<1>(pl, case_buf, 0, 0, pl.Ho, mt, out, acc);
  }
  amx::release();
  e9_hex32_lines(reinterpret_cast<const uint32_t*>(y), CASE_COUT * CASE_HO * CASE_WO);
}
