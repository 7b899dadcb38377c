// Standalone timing of AMX tile steps (benchmarks/bench_amx_steps.py builds and runs it): what one 2 x 2 step of
// conv2d_amx.h's tiles() costs with every tile load hitting L1, by the order of its loads and products, against the
// products alone; and what a tile load costs when its 64-byte rows straddle cache lines. One thread; prints
// nanoseconds per step, best of 5 runs of 200000 steps. Linux only: asks for the AMX tile state with arch_prctl.
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

struct alignas(64) Config {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};
#define LOAD(t, base) \
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"((const void*)(base)), "r"(64L) : "memory")
#define DP(c, a, b) __asm__ volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::: "memory")

int main() {
  if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) != 0) {
    std::puts("no AMX tile state on this CPU or kernel");
    return 1;
  }
  Config c;
  for (int t = 0; t < 8; ++t) c.rows[t] = 16, c.colsb[t] = 64;
  __asm__ volatile("ldtilecfg %0" ::"m"(c) : "memory");
  auto* buf = static_cast<uint32_t*>(std::aligned_alloc(4096, 1 << 20));
  for (int i = 0; i < (1 << 18); ++i) buf[i] = 0x3f803f80u;  // bfloat16 pairs of 1.0
  const char* names[] = {"products only (4 TDPBF16PS)", "each load just before its first product (2x2 step)",
                         "the step's 4 loads, then its 4 products (2x2 step)", "4 loads, rows on cache lines",
                         "4 loads, rows 16 bytes off cache lines"};
  for (int mode = 0; mode < 5; ++mode) {
    double best = 1e9;
    const int N = 200000;
    for (int r = 0; r < 5; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < N; ++i) {
        const uint32_t* a = buf + (i % 9) * 256;  // 9 taps' weight tiles, then the inputs: all in L1
        const uint32_t* b = buf + 8192 + (i % 9) * 512;
        const uint32_t* m = buf + (mode == 4 ? 4 : 0) + (i % 9) * 256;
        switch (mode) {
          case 0: DP(0, 4, 6); DP(1, 4, 7); DP(2, 5, 6); DP(3, 5, 7); break;
          case 1:
            LOAD(6, b); LOAD(4, a); DP(0, 4, 6); LOAD(7, b + 256); DP(1, 4, 7);
            LOAD(5, a + 4096); DP(2, 5, 6); DP(3, 5, 7);
            break;
          case 2:
            LOAD(4, a); LOAD(6, b); LOAD(7, b + 256); LOAD(5, a + 4096);
            DP(0, 4, 6); DP(1, 4, 7); DP(2, 5, 6); DP(3, 5, 7);
            break;
          default: LOAD(0, m); LOAD(1, m + 2560); LOAD(2, m + 5120); LOAD(3, m + 7680); break;
        }
      }
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("%-52s %6.1f ns\n", names[mode], best / N * 1e9);
  }
  __asm__ volatile("tilerelease" ::: "memory");
  std::free(buf);
  return 0;
}
