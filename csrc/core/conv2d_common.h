// Helpers shared by conv2d's kernel files (conv2d_kernel.cpp, conv2d_direct_kernel.cpp, conv2d_bf16_kernel.cpp),
// compiled into each one's instruction-set namespace.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <new>

#include "conv2d.h"
#include "simd.h"

namespace genrt {
namespace GENRT_ISA_NS {
namespace conv2d_detail {

// 64-byte aligned scratch, freed on scope exit.
template <typename T>
struct Scratch {
  T* p;
  explicit Scratch(size_t n)
      : p(n ? static_cast<T*>(std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64)) : nullptr) {
    if (n && !p) throw std::bad_alloc();
  }
  ~Scratch() { std::free(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// The index in [0, n) that padded position i (an index into the unpadded axis, possibly outside it) reads, or -1
// for a zero.
inline int64_t source_index(int64_t i, int64_t n, int mode) {
  if (i >= 0 && i < n) return i;
  if (mode == int(PaddingMode::zeros)) return -1;
  if (mode == int(PaddingMode::reflect)) return i < 0 ? -i : 2 * (n - 1) - i;
  return i < 0 ? 0 : n - 1;
}

}  // namespace conv2d_detail
}  // namespace GENRT_ISA_NS
}  // namespace genrt
