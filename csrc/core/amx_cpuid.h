// Whether the CPU has AMX-TILE and AMX-BF16 and the OS has enabled their state in XCR0 (cpu_isa.cpp then asks Linux
// for the tile data). Header-only and freestanding, so tests/test_amx_bochs.py also runs it on Bochs's emulated
// Sapphire Rapids.
#pragma once

#if defined(__x86_64__)
#include <cpuid.h>

namespace genrt {

inline bool amx_cpu_ready() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !((c >> 27) & 1)) return false;  // OSXSAVE: xgetbv is allowed
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  if (!((d >> 22) & 1) || !((d >> 24) & 1)) return false;  // AMX-BF16, AMX-TILE
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 0x60000u) == 0x60000u;  // XTILECFG and XTILEDATA
}

}  // namespace genrt
#endif
