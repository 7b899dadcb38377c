// Portable SIMD vectors for the per-ISA kernel files (*_kernel.cpp).
//
// The build compiles every *_kernel.cpp once per instruction set (see setup.py): baseline (SSE2 on x86-64,
// NEON on aarch64), AVX2+FMA and AVX-512. GENRT_VEC_BYTES is the vector width of that compile and
// GENRT_ISA_NS the namespace its symbols go to. Kernels use GCC/Clang vector extensions, so the same source
// becomes zmm code under AVX-512 and xmm code on the baseline, with no intrinsics to keep in sync.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <utility>

#ifndef GENRT_VEC_BYTES
#define GENRT_VEC_BYTES 16
#endif
#ifndef GENRT_ISA_NS
#define GENRT_ISA_NS isa_baseline
#endif

namespace genrt {
namespace GENRT_ISA_NS {

template <typename T>
struct Vec;

template <>
struct Vec<float> {
  static constexpr int size = GENRT_VEC_BYTES / 4;
  typedef float type __attribute__((vector_size(GENRT_VEC_BYTES)));
  typedef int32_t itype __attribute__((vector_size(GENRT_VEC_BYTES)));
};

template <>
struct Vec<double> {
  static constexpr int size = GENRT_VEC_BYTES / 8;
  typedef double type __attribute__((vector_size(GENRT_VEC_BYTES)));
  typedef int64_t itype __attribute__((vector_size(GENRT_VEC_BYTES)));
};

template <typename T>
using vec_t = typename Vec<T>::type;
template <typename T>
using ivec_t = typename Vec<T>::itype;

template <typename T>
inline vec_t<T> load(const T* p) {
  vec_t<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
inline void store(T* p, vec_t<T> v) {
  std::memcpy(p, &v, sizeof(v));
}

// Broadcast. Written x - (+0.0), which is x for every x (-0.0 and NaN included), so the compiler folds it into a
// plain broadcast (often the memory operand of an FMA); 0.0 + x would not fold, since 0.0 + -0.0 is +0.0.
template <typename T>
inline vec_t<T> splat(T x) {
  return x - vec_t<T>{};
}

template <typename T>
inline T hsum(vec_t<T> v) {
  T s = 0;
  for (int k = 0; k < Vec<T>::size; ++k) s += v[k];
  return s;
}

template <typename T>
inline vec_t<T> vabs(vec_t<T> v) {
  return v < 0 ? -v : v;  // NaN compares false and is kept
}

// sign(v) with sign(0) = 0 and sign(NaN) = 0, as the derivative of |x| in PyTorch's autograd.
template <typename T>
inline vec_t<T> vsign(vec_t<T> v) {
  using I = ivec_t<T>;
  const vec_t<T> one = splat<T>(1), zero = splat<T>(0);
  const I pos = v > zero, neg = v < zero;
  return (vec_t<T>)(((I)one & pos) | ((I)(-one) & neg));
}

// exp(x) for x <= 0, the only range the kernels need (exp of minus a distance).
// Range reduction x = n ln2 + r, |r| <= ln2/2, then a Taylor polynomial: degree 7 reaches float precision
// (error term 0.35^8/8! ~ 5e-9), degree 13 reaches double precision (~4e-18), so float64 gradients check.
// Below the smallest normal exponent the result is flushed to +0; NaN propagates.
template <typename T>
inline vec_t<T> vexp_nonpos(vec_t<T> x);

template <>
inline vec_t<float> vexp_nonpos<float>(vec_t<float> x) {
  using V = vec_t<float>;
  using I = ivec_t<float>;
  const V lo = splat<float>(-87.0f);
  const I underflow = x < lo;
  V xc = x < lo ? lo : x;  // NaN compares false and is kept
  const V magic = splat<float>(12582912.0f);  // 1.5 * 2^23: adding and subtracting it rounds to nearest
  V n = (xc * 1.44269504088896341f + magic) - magic;
  V r = xc - n * 0.693359375f;  // ln2 split in a high part exact in float and a low part
  r = r - n * -2.12194440e-4f;
  V p = splat<float>(1.0f / 5040);
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const I ni = __builtin_convertvector(n, I);
  const I scale = (ni + 127) << 23;
  V y = p * (V)scale;
  return (V)((I)y & ~underflow);
}

template <>
inline vec_t<double> vexp_nonpos<double>(vec_t<double> x) {
  using V = vec_t<double>;
  using I = ivec_t<double>;
  const V lo = splat<double>(-708.0);
  const I underflow = x < lo;
  V xc = x < lo ? lo : x;
  const V magic = splat<double>(6755399441055744.0);  // 1.5 * 2^52
  V n = (xc * 1.4426950408889634074 + magic) - magic;
  V r = xc - n * 6.93147180369123816490e-01;  // fdlibm's ln2_hi / ln2_lo split
  r = r - n * 1.90821492927058770002e-10;
  V p = splat<double>(1.0 / 6227020800.0);  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const I ni = __builtin_convertvector(n, I);
  const I scale = (ni + 1023) << 52;
  V y = p * (V)scale;
  return (V)((I)y & ~underflow);
}

// Lane shuffles with indices built at compile time for this vector width (GCC >= 12 and clang).
template <typename V, std::size_t... I>
inline V even_lanes(V a, V b, std::index_sequence<I...>) {  // a0 a2 .. b0 b2 ..
  return __builtin_shufflevector(a, b, (2 * I)...);
}
template <typename V, std::size_t... I>
inline V odd_lanes(V a, V b, std::index_sequence<I...>) {  // a1 a3 .. b1 b3 ..
  return __builtin_shufflevector(a, b, (2 * I + 1)...);
}
template <typename V, std::size_t... I>
inline V shift_in(V a, V b, std::index_sequence<I...>) {  // a1 a2 .. a(L-1) b0
  return __builtin_shufflevector(a, b, (I + 1)...);
}
template <typename V, std::size_t... I>
inline V zip_low(V a, V b, std::index_sequence<I...>) {  // a0 b0 a1 b1 .. (first halves)
  return __builtin_shufflevector(a, b, (I % 2 * sizeof...(I) + I / 2)...);
}
template <typename V, std::size_t... I>
inline V zip_high(V a, V b, std::index_sequence<I...>) {  // second halves
  return __builtin_shufflevector(a, b, (I % 2 * sizeof...(I) + sizeof...(I) / 2 + I / 2)...);
}

// conv2d's fused activation on a vector: `act` is Activation's code (0 none, 1 relu, 2 leaky_relu with `slope`).
template <typename V, typename S>
inline V conv2d_activate(V v, int act, S slope) {
  if (act == 1) return v > 0 ? v : V{};
  if (act == 2) return v > 0 ? v : v * slope;
  return v;
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
