#include "cpu_isa.h"

#include <atomic>
#include <cstdlib>

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "amx_cpuid.h"
#include "common.h"

namespace genrt {
namespace {

// AMX-TILE and AMX-BF16 in CPUID, the tile state in XCR0, and Linux's permission for this process to use the tile
// data (XFEATURE_XTILEDATA, asked for with arch_prctl(ARCH_REQ_XCOMP_PERM); kernels before 5.16 refuse it, and
// then genrt stays at avx512bf16). Asked once; the permission covers every thread of the process.
bool amx_usable() {
#if defined(__linux__) && defined(__x86_64__)
  static const bool usable = [] {
    if (!amx_cpu_ready()) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
#else
  return false;
#endif
}

bool cpu_has(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::baseline:
      return true;
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("fma");
    case Isa::avx512bf16:
      return cpu_has(Isa::avx512) && __builtin_cpu_supports("avx512bf16");
    case Isa::amx:
      return cpu_has(Isa::avx512bf16) && amx_usable();
  }
  return false;
#else
  return isa == Isa::baseline;
#endif
}

Isa parse(const std::string& name, bool* ok) {
  *ok = true;
  if (name == "baseline") return Isa::baseline;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  if (name == "avx512bf16") return Isa::avx512bf16;
  if (name == "amx") return Isa::amx;
  *ok = false;
  return Isa::baseline;
}

Isa best() {
  Isa chosen = Isa::baseline;
  for (Isa isa : {Isa::avx2, Isa::avx512, Isa::avx512bf16, Isa::amx})
    if (isa_supported(isa)) chosen = isa;
  if (const char* env = std::getenv("GENRT_ISA")) {
    bool ok;
    const Isa wanted = parse(env, &ok);
    // An unusable request falls back to the best set rather than crashing at import.
    if (ok && isa_supported(wanted)) chosen = wanted;
  }
  return chosen;
}

std::atomic<int>& current() {
  static std::atomic<int> isa{int(best())};
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::avx512bf16:
      return "avx512bf16";
    case Isa::amx:
      return "amx";
    default:
      return "baseline";
  }
}

bool isa_compiled(Isa isa) {
  switch (isa) {
    case Isa::baseline:
      return true;
    case Isa::avx2:
      return GENRT_WITH_AVX2 != 0;
    case Isa::avx512:
      return GENRT_WITH_AVX512 != 0;
    case Isa::avx512bf16:
      return GENRT_WITH_AVX512BF16 != 0;
    case Isa::amx:
      return GENRT_WITH_AMX != 0;
  }
  return false;
}

bool isa_supported(Isa isa) { return isa_compiled(isa) && cpu_has(isa); }

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512, Isa::avx512bf16, Isa::amx})
    if (isa_supported(isa)) out.push_back(isa_name(isa));
  return out;
}

Isa active_isa() { return Isa(current().load(std::memory_order_relaxed)); }

void set_isa(const std::string& name) {
  bool ok;
  const Isa isa = parse(name, &ok);
  if (!ok) throw_value("isa: expected one of 'baseline', 'avx2', 'avx512', 'avx512bf16', 'amx', got '" + name + "'");
  if (!isa_supported(isa))
    throw_value("isa: '" + name + "' is not " + (isa_compiled(isa) ? "supported by this CPU" : "compiled into this build"));
  current().store(int(isa));
}

}  // namespace genrt
