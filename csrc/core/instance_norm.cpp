// Checked entry point of instance normalization; the per-plane bodies are in instance_norm_kernel.cpp.
#include "instance_norm.h"

#include <cmath>
#include <vector>

#include "cpu_isa.h"

#define GENRT_INSTANCE_NORM_DECLS                                                                                  \
  void instance_norm_kernel(const float* x, int64_t planes, int64_t plane_size, const double* scale,              \
                            const double* bias, const float* residual, float* out, double epsilon, bool relu,      \
                            int threads, const double* stats);                                                     \
  void instance_norm_kernel(const double* x, int64_t planes, int64_t plane_size, const double* scale,             \
                            const double* bias, const double* residual, double* out, double epsilon, bool relu,    \
                            int threads, const double* stats);                                                     \
  void instance_norm_stats_kernel(const float* x, int64_t planes, int64_t plane_size, double* stats, int threads);
GENRT_DECLARE_ISA_KERNELS(GENRT_INSTANCE_NORM_DECLS)

namespace genrt {
namespace {

// The affine vector `t` as N x C values in double: 1 or 0 (`fill`) where absent, a per-channel vector repeated over
// the batch, or a per-sample one. Accepted layouts: C or N x C elements as (C,), (1 | N, C), (1 | N, C, 1, 1).
template <typename T>
std::vector<double> _affine(const TensorRef& t, int64_t N, int64_t C, double fill) {
  std::vector<double> out(size_t(N * C), fill);
  if (t.data == nullptr) return out;
  const std::string expect = std::string(t.name) + ": expected (C,), (N, C), (1, C), (N, C, 1, 1) or (1, C, 1, 1) with N = " +
                             std::to_string(N) + ", C = " + std::to_string(C) + ", got ";
  int64_t n_size = 1, n_stride = 0, c_stride = 0;
  if (t.ndim == 1 && t.size(0) == C) {
    c_stride = t.stride(0);
  } else if ((t.ndim == 2 || (t.ndim == 4 && t.size(2) == 1 && t.size(3) == 1)) && t.size(1) == C &&
             (t.size(0) == 1 || t.size(0) == N)) {
    n_size = t.size(0);
    n_stride = n_size == 1 ? 0 : t.stride(0);
    c_stride = t.stride(1);
  } else {
    throw_shape(expect + t.shape_str());
  }
  const T* p = static_cast<const T*>(t.data);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c) out[size_t(n * C + c)] = double(p[(n_size == 1 ? 0 : n * n_stride) + c * c_stride]);
  return out;
}

template <typename T>
void _forward(const TensorRef& x, const TensorRef& scale, const TensorRef& bias, const TensorRef& residual,
              const TensorRef& out, double epsilon, bool relu, int threads, const double* stats) {
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const std::vector<double> s = _affine<T>(scale, N, C, 1.0), b = _affine<T>(bias, N, C, 0.0);
  std::vector<T> packed, packed_residual;
  const T* xp = contiguous<T>(x, packed);
  const T* rp = residual.data == nullptr ? nullptr : contiguous<T>(residual, packed_residual);
  GENRT_DISPATCH(instance_norm_kernel, xp, N * C, HW, s.data(), b.data(), rp, static_cast<T*>(out.data), epsilon,
                 relu, threads, stats);
}

// The checks instance_norm_forward and instance_norm_affine share: x 4-D, scale and bias of x's dtype, epsilon and
// threads in range.
void _check_args(const TensorRef& x, const TensorRef& scale, const TensorRef& bias, double epsilon, int threads) {
  check_ndim(x, 4, "x of shape (N, C, H, W)");
  check_float(x);
  for (const TensorRef* t : {&scale, &bias})
    if (t->data != nullptr) check_same_dtype(x, *t);
  checked_mul(checked_mul(x.size(0), x.size(1), x.name), checked_mul(x.size(2), x.size(3), x.name), x.name);
  if (!(epsilon >= 0.0) || !std::isfinite(epsilon))
    throw_value("epsilon: expected a finite value >= 0, got " + std::to_string(epsilon));
  if (threads < 1) throw_value("threads: expected >= 1, got " + std::to_string(threads));
}

}  // namespace

void instance_norm_forward(const TensorRef& x, const TensorRef& scale, const TensorRef& bias,
                           const TensorRef& residual, const TensorRef& out, double epsilon, Activation activation,
                           int threads, const double* stats) {
  _check_args(x, scale, bias, epsilon, threads);
  if (residual.data != nullptr) check_same_dtype(x, residual);
  check_same_dtype(x, out);
  for (const TensorRef* t : {&residual, &out})
    if (t->data != nullptr && (t->ndim != 4 || t->size(0) != x.size(0) || t->size(1) != x.size(1) ||
                               t->size(2) != x.size(2) || t->size(3) != x.size(3)))
      throw_shape(std::string(t->name) + ": expected shape " + x.shape_str() + " (that of " + x.name + "), got " +
                  t->shape_str());
  check_contiguous_output(out);
  if (activation != Activation::none && activation != Activation::relu)
    throw_value("activation: expected none or relu");
  if (x.size(0) * x.size(1) * x.size(2) * x.size(3) == 0) return;
  const bool relu = activation == Activation::relu;
  if (x.dtype == DType::f32)
    _forward<float>(x, scale, bias, residual, out, epsilon, relu, threads, stats);
  else
    _forward<double>(x, scale, bias, residual, out, epsilon, relu, threads, stats);
}

void instance_norm_affine(const TensorRef& x, const TensorRef& scale, const TensorRef& bias, const TensorRef& out,
                          double epsilon, int threads, const double* stats) {
  _check_args(x, scale, bias, epsilon, threads);
  if (x.dtype != DType::f32)
    throw Error(Error::Kind::dtype, std::string(x.name) + ": expected float32, got " + dtype_name(x.dtype));
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  if (out.ndim != 3 || out.size(0) != N || out.size(1) != C || out.size(2) != 2 || out.dtype != DType::f32)
    throw_shape(std::string(out.name) + ": expected float32 of shape (" + std::to_string(N) + ", " +
                std::to_string(C) + ", 2), got " + out.shape_str());
  check_contiguous_output(out);
  if (N * C == 0) return;
  if (HW == 0) throw_shape(std::string(x.name) + ": expected planes of at least one value, got " + x.shape_str());
  const std::vector<double> s = _affine<float>(scale, N, C, 1.0), b = _affine<float>(bias, N, C, 0.0);
  std::vector<double> computed;
  if (!stats) {
    std::vector<float> packed;
    computed.resize(size_t(2 * N * C));
    plane_statistics(contiguous<float>(x, packed), N * C, HW, computed.data(), threads);
    stats = computed.data();
  }
  float* ab = static_cast<float*>(out.data);
  for (size_t k = 0; k < size_t(N * C); ++k) {
    const double a = s[k] / std::sqrt(stats[2 * k + 1] + epsilon);
    ab[2 * k] = float(a);
    ab[2 * k + 1] = float(b[k] - stats[2 * k] * a);
  }
}

// (GENRT_DISPATCH returns from the function it is in.)
void plane_statistics(const float* x, int64_t planes, int64_t size, double* stats, int threads) {
  GENRT_DISPATCH(instance_norm_stats_kernel, x, planes, size, stats, threads);
}

}  // namespace genrt
