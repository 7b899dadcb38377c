// Bochs payload for tests/test_amx_bochs.py: amx_cpu_ready() (csrc/core/amx_cpuid.h) on the emulated Sapphire
// Rapids, with the tile state enabled in XCR0 (as the boot code leaves it) and with it cleared.
#include <stdint.h>

#include "amx_cpuid.h"
#include "payload.h"

static void set_xcr0(uint64_t v) {
  __asm__ volatile("xsetbv" ::"c"(0), "a"(uint32_t(v)), "d"(uint32_t(v >> 32)));
}
static uint64_t get_xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

extern "C" void payload_main(void) {
  const uint64_t xcr0 = get_xcr0();
  e9_puts(genrt::amx_cpu_ready() ? "enabled 1\n" : "enabled 0\n");
  set_xcr0(xcr0 & ~uint64_t(0x60000));  // no XTILECFG / XTILEDATA
  e9_puts(genrt::amx_cpu_ready() ? "disabled 1\n" : "disabled 0\n");
  set_xcr0(xcr0);
}
