// Checked entry points of minibatch discrimination; the bodies are in minibatch_discrimination_kernel.cpp.
#include "minibatch_discrimination.h"

#include "cpu_isa.h"

#define GENRT_MBD_DECLS                                                                                       \
  void minibatch_discrimination_forward_kernel(const float* m, const int64_t* sizes, const int64_t* strides,  \
                                               float* out, int threads);                                      \
  void minibatch_discrimination_forward_kernel(const double* m, const int64_t* sizes, const int64_t* strides, \
                                               double* out, int threads);                                     \
  void minibatch_discrimination_backward_kernel(const float* m, const int64_t* sizes, const int64_t* strides, \
                                                const float* g, const int64_t* g_strides, float* grad_m,      \
                                                int threads);                                                 \
  void minibatch_discrimination_backward_kernel(const double* m, const int64_t* sizes,                        \
                                                const int64_t* strides, const double* g,                      \
                                                const int64_t* g_strides, double* grad_m, int threads);
GENRT_DECLARE_ISA_KERNELS(GENRT_MBD_DECLS)

namespace genrt {
namespace {

void check_m(const TensorRef& m) {
  check_ndim(m, 3, "M of shape (N, B, C)");
  check_float(m);
  check_nonempty(m, 2, "kernel dimension C");
  checked_mul(checked_mul(m.size(0), m.size(0), m.name), checked_mul(m.size(1), m.size(2), m.name), m.name);
}

void check_result(const TensorRef& m, const TensorRef& t, int ndim) {
  check_same_dtype(m, t);
  for (int d = 0; d < ndim; ++d)
    if (t.ndim != ndim || t.size(d) != m.size(d))
      throw_shape(std::string(t.name) + ": expected shape matching " + m.name + " " + m.shape_str() + ", got " +
                  t.shape_str());
}

template <typename T>
void forward(const TensorRef& m, const TensorRef& out, int threads) {
  GENRT_DISPATCH(minibatch_discrimination_forward_kernel, static_cast<const T*>(m.data), m.sizes, m.strides,
                 static_cast<T*>(out.data), threads);
}

template <typename T>
void backward(const TensorRef& m, const TensorRef& g, const TensorRef& gm, int threads) {
  GENRT_DISPATCH(minibatch_discrimination_backward_kernel, static_cast<const T*>(m.data), m.sizes, m.strides,
                 static_cast<const T*>(g.data), g.strides, static_cast<T*>(gm.data), threads);
}

}  // namespace

void minibatch_discrimination_forward(const TensorRef& m, const TensorRef& out, int threads) {
  check_m(m);
  check_result(m, out, 2);
  check_contiguous_output(out);
  if (m.dtype == DType::f32)
    forward<float>(m, out, threads);
  else
    forward<double>(m, out, threads);
}

void minibatch_discrimination_backward(const TensorRef& m, const TensorRef& grad_out, const TensorRef& grad_m,
                                       int threads) {
  check_m(m);
  check_ndim(grad_out, 2, "of shape (N, B)");
  check_result(m, grad_out, 2);
  check_result(m, grad_m, 3);
  check_contiguous_output(grad_m);
  if (m.dtype == DType::f32)
    backward<float>(m, grad_out, grad_m, threads);
  else
    backward<double>(m, grad_out, grad_m, threads);
}

}  // namespace genrt
