// The fused epilogue of conv_transpose2d's kernel files (conv_transpose2d_kernel.cpp,
// conv_transpose2d_bf16_kernel.cpp, conv_transpose2d_amx_kernel.cpp), compiled into each one's instruction-set
// namespace: y = act((y + bias[c]) * scale[c] + shift[c]), act one of none, relu, leaky_relu, tanh, sigmoid.
#pragma once

#include <cstdint>
#include <cstring>

#include "simd.h"

namespace genrt {
namespace GENRT_ISA_NS {
namespace conv_transpose2d_detail {

// expm1(x) for x <= 0, accurate to a few ulp relative (so tanh of tiny values keeps full precision).
template <typename T>
inline vec_t<T> vexpm1_nonpos(vec_t<T> x);

template <>
inline vec_t<float> vexpm1_nonpos<float>(vec_t<float> x) {
  using V = vec_t<float>;
  using I = ivec_t<float>;
  const V lo = splat<float>(-87.0f);
  const I under = x < lo;
  V xc = x < lo ? lo : x;
  const V magic = splat<float>(12582912.0f);
  V n = (xc * 1.44269504088896341f + magic) - magic;
  V r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V p = splat<float>(1.0f / 40320);  // expm1(r) = r + r^2/2 + ... + r^8/8!
  p = p * r + 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r * r + r;
  const I ni = __builtin_convertvector(n, I);
  const V sc = (V)((ni + 127) << 23);
  V y = sc * p + (sc - 1.0f);
  return under ? splat<float>(-1.0f) : y;
}

template <>
inline vec_t<double> vexpm1_nonpos<double>(vec_t<double> x) {
  using V = vec_t<double>;
  using I = ivec_t<double>;
  const V lo = splat<double>(-708.0);
  const I under = x < lo;
  V xc = x < lo ? lo : x;
  const V magic = splat<double>(6755399441055744.0);
  V n = (xc * 1.4426950408889634074 + magic) - magic;
  V r = xc - n * 6.93147180369123816490e-01;
  r = r - n * 1.90821492927058770002e-10;
  V p = splat<double>(1.0 / 87178291200.0);  // r^14/14!
  p = p * r + 1.0 / 6227020800.0;
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
  p = p * r * r + r;
  const I ni = __builtin_convertvector(n, I);
  const V sc = (V)((ni + 1023) << 52);
  V y = sc * p + (sc - 1.0);
  return under ? splat<double>(-1.0) : y;
}

template <typename T>
inline vec_t<T> vtanh(vec_t<T> x) {
  using V = vec_t<T>;
  using I = ivec_t<T>;
  const V a = vabs<T>(x);
  const V em = vexpm1_nonpos<T>(a * T(-2));
  const V t = -em / (em + T(2));  // tanh|x| = -expm1(-2|x|) / (2 + expm1(-2|x|))
  using E = decltype(I{}[0] + 0);
  const I signbit = I{} + E(E(1) << (8 * sizeof(T) - 1));  // not splat(-0.0): 0.0 + -0.0 is +0.0
  return (V)(((I)t & ~signbit) | ((I)x & signbit));
}

template <typename T>
inline vec_t<T> vsigmoid(vec_t<T> x) {
  using V = vec_t<T>;
  const V e = vexp_nonpos<T>(-vabs<T>(x));  // exp(-|x|) <= 1: no overflow either way
  const V d = T(1) / (e + T(1));
  return x >= T(0) ? d : e * d;
}

template <typename T>
struct Epilogue {
  const T* bias;
  const T* scale;
  const T* shift;
  int act;
  T slope;

  // Per-channel affine part for channel c, then the activation.
  inline vec_t<T> apply(vec_t<T> v, int64_t c) const {
    if (bias) v += bias[c];
    if (scale) v *= scale[c];
    if (shift) v += shift[c];
    return activate(v);
  }
  inline vec_t<T> activate(vec_t<T> v) const {
    switch (act) {
      case 1:
        return v < T(0) ? splat<T>(0) : v;  // NaN kept
      case 2:
        return v > T(0) ? v : v * slope;
      case 3:
        return vtanh<T>(v);
      case 4:
        return vsigmoid<T>(v);
      default:
        return v;
    }
  }
  // In-place epilogue over a contiguous run of channel c.
  void run(T* p, int64_t len, int64_t c) const {
    int64_t i = 0;
    for (; i + Vec<T>::size <= len; i += Vec<T>::size) store<T>(p + i, apply(load<T>(p + i), c));
    if (i < len) {
      T tmp[Vec<T>::size] = {};
      std::memcpy(tmp, p + i, size_t(len - i) * sizeof(T));
      store<T>(tmp, apply(load<T>(tmp), c));
      std::memcpy(p + i, tmp, size_t(len - i) * sizeof(T));
    }
  }
};

// Stores a and b interleaved (a0 b0 a1 b1 ..: the two column phases of a stride-2 layer) to dst[0 .. min(2 L,
// width)); returns whether all 2 L fitted.
inline bool store_interleaved(float* dst, vec_t<float> a, vec_t<float> b, int64_t width) {
  constexpr int L = Vec<float>::size;
  const vec_t<float> half[2] = {zip_low(a, b, std::make_index_sequence<L>{}),
                                zip_high(a, b, std::make_index_sequence<L>{})};
  for (int h = 0; h < 2; ++h) {
    if ((h + 1) * L <= width) {
      store(dst + h * L, half[h]);
    } else {
      alignas(64) float tmp[L];
      store(tmp, half[h]);
      for (int64_t l = 0; h * L + l < width; ++l) dst[h * L + l] = tmp[l];
      return false;
    }
  }
  return true;
}

}  // namespace conv_transpose2d_detail
}  // namespace GENRT_ISA_NS
}  // namespace genrt
