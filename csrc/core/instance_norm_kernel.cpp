// Instance normalization bodies, compiled once per instruction set (see simd.h).
//
// Per (n, c) plane of P = H x W contiguous values, two reads and one write:
// 1. statistics: the sums of d = x - pivot and of d^2, with the pivot the mean of a few samples spread over the
//    plane. Within a block of 64 vectors the sums run in T vectors (four of each, so the adds overlap), across
//    blocks in double, so a float32 plane of millions of values loses no more than a block's rounding.
//    mean = pivot + S / P, var = Q / P - (S / P)^2. The shift keeps the subtraction from cancelling; where the
//    pivot still lies far from the mean ((S / P)^2 > 16 var: a plane that is nearly constant but for a band the
//    samples hit), the sums are taken again about the mean just found.
// 2. y = (x - m) a + b [+ residual], m = mean rounded to T, a = scale rstd, b = bias - (mean - m) a, then the
//    ReLU; outputs
//    larger than a last-level cache are written with streaming stores.
#include <algorithm>
#include <cmath>
#include <cstdint>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "parallel.h"
#include "simd.h"

namespace genrt {
namespace GENRT_ISA_NS {
namespace {

constexpr int64_t kStreamBytes = 48 << 20;  // outputs larger than this are written with streaming stores

template <typename T>
void _shifted_sums(const T* p, int64_t n, T pivot, double& s_out, double& q_out) {
  using V = vec_t<T>;
  constexpr int64_t L = Vec<T>::size, kStep = 4 * L, kBlock = 16 * kStep;
  const V pv = splat<T>(pivot);
  double s = 0.0, q = 0.0;
  int64_t i = 0;
  while (n - i >= kStep) {
    const int64_t end = i + std::min<int64_t>(kBlock, (n - i) / kStep * kStep);
    V s0 = {}, s1 = {}, s2 = {}, s3 = {}, q0 = {}, q1 = {}, q2 = {}, q3 = {};
    for (; i < end; i += kStep) {
      const V d0 = load<T>(p + i) - pv, d1 = load<T>(p + i + L) - pv;
      const V d2 = load<T>(p + i + 2 * L) - pv, d3 = load<T>(p + i + 3 * L) - pv;
      s0 += d0;
      s1 += d1;
      s2 += d2;
      s3 += d3;
      q0 += d0 * d0;
      q1 += d1 * d1;
      q2 += d2 * d2;
      q3 += d3 * d3;
    }
    s += double(hsum<T>((s0 + s1) + (s2 + s3)));
    q += double(hsum<T>((q0 + q1) + (q2 + q3)));
  }
  for (; i < n; ++i) {
    const double d = double(p[i]) - double(pivot);
    s += d;
    q += d * d;
  }
  s_out = s;
  q_out = q;
}

template <typename T>
void _statistics(const T* p, int64_t n, double& mean, double& var) {
  constexpr int kSamples = 8;
  double pivot = 0.0;
  for (int k = 0; k < kSamples; ++k) pivot += double(p[n * k / kSamples]);
  pivot /= kSamples;
  for (int attempt = 0;; ++attempt) {
    double s, q;
    _shifted_sums<T>(p, n, T(pivot), s, q);
    const double shift = s / double(n);
    mean = double(T(pivot)) + shift;
    var = std::max(q / double(n) - shift * shift, 0.0);
    if (attempt == 1 || !(shift * shift > 16.0 * var)) return;  // NaN and inf: no second pass
    pivot = mean;
  }
}

// A store that bypasses the caches (x86-64; elsewhere a plain store). `p` must be aligned to the vector size.
template <typename T>
inline void _stream(T* p, vec_t<T> v) {
#if defined(__x86_64__) && GENRT_VEC_BYTES == 64
  if constexpr (sizeof(T) == 4) _mm512_stream_ps(reinterpret_cast<float*>(p), (__m512)v);
  else _mm512_stream_pd(reinterpret_cast<double*>(p), (__m512d)v);
#elif defined(__x86_64__) && GENRT_VEC_BYTES == 32
  if constexpr (sizeof(T) == 4) _mm256_stream_ps(reinterpret_cast<float*>(p), (__m256)v);
  else _mm256_stream_pd(reinterpret_cast<double*>(p), (__m256d)v);
#elif defined(__x86_64__)
  if constexpr (sizeof(T) == 4) _mm_stream_ps(reinterpret_cast<float*>(p), (__m128)v);
  else _mm_stream_pd(reinterpret_cast<double*>(p), (__m128d)v);
#else
  store<T>(p, v);
#endif
}

template <typename T, bool kRelu, bool kStream, bool kResidual>
void _normalize(const T* x, const T* r, int64_t n, T m, T a, T b, T* y) {
  using V = vec_t<T>;
  constexpr int64_t L = Vec<T>::size;
  const V mv = splat<T>(m), av = splat<T>(a), bv = splat<T>(b), zero = {};
  auto scalar = [&](int64_t i) {
    T v = (x[i] - m) * a + b;
    if (kResidual) v += r[i];
    y[i] = kRelu && v < T(0) ? T(0) : v;  // NaN compares false and is kept
  };
  int64_t i = 0;
  if (kStream)  // up to the first vector-aligned output
    for (; i < n && reinterpret_cast<uintptr_t>(y + i) % sizeof(V) != 0; ++i) scalar(i);
  for (; i + 2 * L <= n; i += 2 * L) {
    V v0 = (load<T>(x + i) - mv) * av + bv, v1 = (load<T>(x + i + L) - mv) * av + bv;
    if (kResidual) {
      v0 += load<T>(r + i);
      v1 += load<T>(r + i + L);
    }
    if (kRelu) {
      v0 = v0 < zero ? zero : v0;
      v1 = v1 < zero ? zero : v1;
    }
    if (kStream) {
      _stream<T>(y + i, v0);
      _stream<T>(y + i + L, v1);
    } else {
      store<T>(y + i, v0);
      store<T>(y + i + L, v1);
    }
  }
  for (; i < n; ++i) scalar(i);
#if defined(__x86_64__)
  if (kStream) _mm_sfence();  // streaming stores are weakly ordered: done before another thread reads y
#endif
}

template <typename T>
void _instance_norm(const T* x, int64_t planes, int64_t P, const double* scale, const double* bias,
                    const T* residual, T* out, double epsilon, bool relu, int threads, const double* stats) {
  // Small tensors are not worth waking the pool for.
  if (double(planes) * double(P) < 32768.0) threads = 1;
  // An output larger than a last-level cache will not be in cache for its reader anyway: write it past the caches,
  // which saves reading each line before writing it (a third of the traffic of the write).
  const bool stream = double(planes) * double(P) * sizeof(T) > double(kStreamBytes);
  parallel_for(planes, threads, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const T* xp = x + k * P;
      double mean, var;
      if (stats)
        mean = stats[2 * k], var = stats[2 * k + 1];
      else
        _statistics<T>(xp, P, mean, var);
      const double a = scale[k] / std::sqrt(var + epsilon);
      // y = (x - m) a + b with m the mean rounded to T: x - m is exact near the mean, and what the rounding
      // dropped goes into b, so a plane whose mean is far larger than its spread keeps its digits.
      const T m = T(mean), ta = T(a), tb = T(bias[k] - (mean - double(m)) * a);
      const T* rp = residual ? residual + k * P : nullptr;
      T* yp = out + k * P;
      const int variant = (relu ? 1 : 0) | (stream ? 2 : 0) | (rp ? 4 : 0);
      switch (variant) {
        case 0: _normalize<T, false, false, false>(xp, rp, P, m, ta, tb, yp); break;
        case 1: _normalize<T, true, false, false>(xp, rp, P, m, ta, tb, yp); break;
        case 2: _normalize<T, false, true, false>(xp, rp, P, m, ta, tb, yp); break;
        case 3: _normalize<T, true, true, false>(xp, rp, P, m, ta, tb, yp); break;
        case 4: _normalize<T, false, false, true>(xp, rp, P, m, ta, tb, yp); break;
        case 5: _normalize<T, true, false, true>(xp, rp, P, m, ta, tb, yp); break;
        case 6: _normalize<T, false, true, true>(xp, rp, P, m, ta, tb, yp); break;
        default: _normalize<T, true, true, true>(xp, rp, P, m, ta, tb, yp); break;
      }
    }
  });
}

}  // namespace

void instance_norm_stats_kernel(const float* x, int64_t planes, int64_t plane_size, double* stats, int threads) {
  if (double(planes) * double(plane_size) < 32768.0) threads = 1;
  parallel_for(planes, threads, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k)
      _statistics<float>(x + k * plane_size, plane_size, stats[2 * k], stats[2 * k + 1]);
  });
}

void instance_norm_kernel(const float* x, int64_t planes, int64_t plane_size, const double* scale,
                          const double* bias, const float* residual, float* out, double epsilon, bool relu,
                          int threads, const double* stats) {
  _instance_norm<float>(x, planes, plane_size, scale, bias, residual, out, epsilon, relu, threads, stats);
}

void instance_norm_kernel(const double* x, int64_t planes, int64_t plane_size, const double* scale,
                          const double* bias, const double* residual, double* out, double epsilon, bool relu,
                          int threads, const double* stats) {
  _instance_norm<double>(x, planes, plane_size, scale, bias, residual, out, epsilon, relu, threads, stats);
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
