/* AMX / AVX512-BF16 smoke payload; check_smoke.py recomputes the results.
 *   amx <m> <n> <hex>   C = A(16x32 bf16) * B(32x16 bf16), TILEZERO + TDPBF16PS
 *   dp <j> <hex>        sum_t VDPBF16PS(A row t, B pair-row t), t = 0..3
 *   daz <hex> <hex>     denormal probes through TDPBF16PS and VDPBF16PS
 * Inputs come from a 64-bit LCG (seed 1): bf16 = sign | exp in [123, 130] |
 * 7 random mantissa bits; A row-major, then B[k][n] row-major. */
#include <immintrin.h>
#include "payload.h"

static uint64_t lcg = 1;
static uint16_t next_bf16(void) {
  lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
  uint32_t r = (uint32_t)(lcg >> 40);
  return (uint16_t)(((r & 1) << 15) | ((123 + ((r >> 1) & 7)) << 7) | ((r >> 4) & 0x7f));
}

static uint16_t A[16][32] __attribute__((aligned(64)));
static uint16_t Bp[16][32] __attribute__((aligned(64)));  /* VNNI: Bp[k/2][2n + k%2] */
static float C[16][16] __attribute__((aligned(64)));

struct tilecfg {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} __attribute__((packed, aligned(64)));

static void put_float(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  e9_hex32(u);
}

void payload_main(void) {
  for (int m = 0; m < 16; ++m)
    for (int k = 0; k < 32; ++k) A[m][k] = next_bf16();
  for (int k = 0; k < 32; ++k)
    for (int n = 0; n < 16; ++n) Bp[k / 2][2 * n + k % 2] = next_bf16();

  uint64_t t0 = rdtsc64();
  struct tilecfg cfg = {.palette = 1};
  for (int t = 0; t < 3; ++t) cfg.colsb[t] = 64, cfg.rows[t] = 16;
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_loadd(1, A, 64);
  _tile_loadd(2, Bp, 64);
  _tile_dpbf16ps(0, 1, 2);
  _tile_stored(0, C, 64);
  uint64_t t1 = rdtsc64();

  /* denormal probe: bf16 0x0001 (2^-133) * 2^100, DAZ gives 0 */
  static uint16_t dA[16][32] __attribute__((aligned(64)));
  static uint16_t dB[16][32] __attribute__((aligned(64)));
  static float dC[16][16] __attribute__((aligned(64)));
  dA[0][0] = 0x0001;
  dB[0][0] = (uint16_t)((127 + 100) << 7);
  _tile_zero(0);
  _tile_loadd(1, dA, 64);
  _tile_loadd(2, dB, 64);
  _tile_dpbf16ps(0, 1, 2);
  _tile_stored(0, dC, 64);
  _tile_release();

  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 16; ++n) {
      e9_puts("amx "); e9_dec(m); e9_putc(' '); e9_dec(n); e9_putc(' ');
      put_float(C[m][n]); e9_putc('\n');
    }

  __m512 acc = _mm512_setzero_ps();
  for (int t = 0; t < 4; ++t)
    acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_load_si512(A[t]),
                           (__m512bh)_mm512_load_si512(Bp[t]));
  float out[16] __attribute__((aligned(64)));
  _mm512_store_ps(out, acc);
  for (int j = 0; j < 16; ++j) {
    e9_puts("dp "); e9_dec(j); e9_putc(' '); put_float(out[j]); e9_putc('\n');
  }

  __m512 dacc = _mm512_dpbf16_ps(_mm512_setzero_ps(), (__m512bh)_mm512_load_si512(dA[0]),
                                 (__m512bh)_mm512_load_si512(dB[0]));
  _mm512_store_ps(out, dacc);
  e9_puts("daz "); put_float(dC[0][0]); e9_putc(' '); put_float(out[0]); e9_putc('\n');
  e9_puts("ticks "); e9_dec(t1 - t0); e9_putc('\n');
}
