// fill_sweeps: checked entry point; the per-plane body is in fill_sweeps_kernel.cpp (compiled per instruction set).
#include "fill_sweeps.h"

#include <cstring>
#include <vector>

#include "cpu_isa.h"

#define GENRT_FILL_SWEEPS_DECLS                                                                                   \
  void fill_sweeps_kernel(const float* v, const float* a, const float* w, float* y, int64_t N, int64_t C,        \
                          int64_t H, int64_t W, int64_t k, bool a_batch, bool a_channels,                        \
                          const ::genrt::FillSweepsParams& p, int threads);
GENRT_DECLARE_ISA_KERNELS(GENRT_FILL_SWEEPS_DECLS)

namespace genrt {
namespace {

void check_f32(const TensorRef& t, const char* layout) {
  check_ndim(t, 4, layout);
  if (t.dtype != DType::f32)
    throw Error(Error::Kind::dtype, std::string(t.name) + ": expected float32, got " + dtype_name(t.dtype));
}

}  // namespace

FillSweepMode parse_fill_sweep_mode(const std::string& name) {
  if (name == "replace") return FillSweepMode::replace;
  if (name == "relax") return FillSweepMode::relax;
  throw_value("mode: expected 'replace' or 'relax', got '" + name + "'");
}

void fill_sweeps_forward(const TensorRef& x, const TensorRef& v, const TensorRef& a, const TensorRef& w,
                         const TensorRef& out, const FillSweepsParams& p, int threads) {
  check_f32(x, "(N, C, H, W)");
  check_f32(v, "(N, C, H, W)");
  check_f32(a, "(N | 1, C | 1, H, W)");
  check_f32(w, "(C, 1, k, k)");
  check_f32(out, "(N, C, H, W)");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  for (int d = 0; d < 4; ++d)
    if (v.size(d) != x.size(d) || out.size(d) != x.size(d))
      throw_shape(std::string(v.size(d) != x.size(d) ? v.name : out.name) + ": expected X's shape " + x.shape_str() +
                  ", got " + (v.size(d) != x.size(d) ? v.shape_str() : out.shape_str()));
  if ((a.size(0) != N && a.size(0) != 1) || (a.size(1) != C && a.size(1) != 1) || a.size(2) != H || a.size(3) != W)
    throw_shape(std::string(a.name) + ": expected (N | 1, C | 1, H, W) with X's " + x.shape_str() + ", got " +
                a.shape_str());
  const int64_t k = w.size(2);
  if (w.size(0) != C || w.size(1) != 1 || w.size(3) != k || k % 2 == 0 || k > 15)
    throw_shape(std::string(w.name) + ": expected (C, 1, k, k) with C = " + std::to_string(C) +
                " and k odd, 1..15, got " + w.shape_str());
  if (p.count < 0) throw_value("count: expected a non-negative number of sweeps, got " + std::to_string(p.count));
  check_contiguous_output(out);
  if (N == 0 || C == 0 || H == 0 || W == 0) return;
  std::vector<float> xs, vs, as, ws;
  const float* xd = contiguous<float>(x, xs);
  const float* vd = contiguous<float>(v, vs);
  const float* ad = contiguous<float>(a, as);
  const float* wd = contiguous<float>(w, ws);
  float* y = static_cast<float*>(out.data);
  if (y != xd) std::memmove(y, xd, size_t(N * C * H * W) * sizeof(float));
  GENRT_DISPATCH(fill_sweeps_kernel, vd, ad, wd, y, N, C, H, W, k, a.size(0) != 1, a.size(1) != 1, p, threads);
}

}  // namespace genrt
