// Checked entry point of conv2d; the kernel bodies are in conv2d_kernel.cpp (Winograd, 3x3 stride 1) and
// conv2d_direct_kernel.cpp (direct implicit GEMM, every other kernel size and stride), and in bfloat16
// conv2d_winograd_bf16_kernel.cpp (3x3 stride 1), conv2d_bf16_kernel.cpp (every shape) and conv2d_amx_kernel.cpp
// (every shape, on AMX tiles).
#include "conv2d.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu_isa.h"
#include "instance_norm.h"  // plane_statistics
#include "parallel.h"

#define GENRT_CONV2D_DECLS                                                                                  \
  void conv2d_forward_kernel(const ::genrt::Conv2dProblem& P, const float* x, const float* w,              \
                             const float* bias, float* y, int threads);                                     \
  void conv2d_forward_kernel(const ::genrt::Conv2dProblem& P, const double* x, const double* w,            \
                             const double* bias, double* y, int threads);                                  \
  void conv2d_direct_kernel(const ::genrt::Conv2dProblem& P, const float* x, const float* w, const float* bias, \
                            float* y, int threads);                                                          \
  void conv2d_direct_kernel(const ::genrt::Conv2dProblem& P, const double* x, const double* w,                \
                            const double* bias, double* y, int threads);
GENRT_DECLARE_ISA_KERNELS(GENRT_CONV2D_DECLS)
#define GENRT_CONV2D_BF16_DECLS                                                                                 \
  void conv2d_bf16_kernel(const ::genrt::Conv2dProblem& P, const float* x, const float* w, const float* bias, \
                          float* y, int threads);                                                          \
  void conv2d_winograd_bf16_kernel(const ::genrt::Conv2dProblem& P, const float* x, const float* w,            \
                                   const float* bias, float* y, int threads);
GENRT_DECLARE_ISA_BF16_KERNELS(GENRT_CONV2D_BF16_DECLS)
#define GENRT_CONV2D_AMX_DECLS                                                                                 \
  void conv2d_amx_kernel(const ::genrt::Conv2dProblem& P, const float* x, const float* w, const float* bias, \
                         float* y, int threads);
GENRT_DECLARE_ISA_AMX_KERNELS(GENRT_CONV2D_AMX_DECLS)

namespace genrt {
namespace {

enum class Bf16Algo { automatic, winograd, direct, amx };

// GENRT_CONV2D_BF16_ALGO=auto|winograd|direct|amx, read per call: auto takes the AMX tiles at the amx level, else
// Winograd F(2x2) for 3x3 stride 1 and the direct kernel for the rest; amx below the amx level runs the tile kernel
// on emulated tiles (slow; for tests); winograd applies to 3x3 stride 1 only and falls back to direct elsewhere.
Bf16Algo bf16_algo() {
  const char* env = std::getenv("GENRT_CONV2D_BF16_ALGO");
  if (!env || !*env || !std::strcmp(env, "auto")) return Bf16Algo::automatic;
  if (!std::strcmp(env, "winograd")) return Bf16Algo::winograd;
  if (!std::strcmp(env, "direct")) return Bf16Algo::direct;
  if (!std::strcmp(env, "amx")) return Bf16Algo::amx;
  throw_value(std::string("GENRT_CONV2D_BF16_ALGO: expected auto, winograd, direct or amx, got '") + env + "'");
}

std::string pads_str(const int64_t p[4]) {
  return "(" + std::to_string(p[0]) + ", " + std::to_string(p[1]) + ", " + std::to_string(p[2]) + ", " +
         std::to_string(p[3]) + ")";
}

// x' = a x + b [then ReLU] per plane of `size` values (Conv2dParams::input_affine), into `store`; returns its data.
template <typename T>
const T* affine_copy(const T* x, const float* ab, bool relu, int64_t planes, int64_t size, std::vector<T>& store) {
  std::vector<T> out(size_t(planes * size));
  for (int64_t k = 0; k < planes; ++k) {
    const T a = T(ab[2 * k]), b = T(ab[2 * k + 1]);
    const T* src = x + k * size;
    T* dst = out.data() + k * size;
    for (int64_t i = 0; i < size; ++i) {
      const T v = src[i] * a + b;
      dst[i] = relu && v < T(0) ? T(0) : v;
    }
  }
  store.swap(out);
  return store.data();
}

// The kernel for P: bf16 (float32 only) with algorithm `algo`, or float32/float64 (automatic). (GENRT_DISPATCH
// returns from the function it is in.)
template <typename T>
void compute(const Conv2dProblem& P, Bf16Algo algo, bool winograd, const T* xd, const T* wd, const T* bd, T* y,
             int threads) {
  if constexpr (std::is_same_v<T, float>) {
    if (algo == Bf16Algo::amx) GENRT_DISPATCH_AMX(conv2d_amx_kernel, P, xd, wd, bd, y, threads);
    if (algo == Bf16Algo::winograd && winograd)
      GENRT_DISPATCH_BF16(conv2d_winograd_bf16_kernel, P, xd, wd, bd, y, threads);
    if (algo == Bf16Algo::direct || algo == Bf16Algo::winograd)
      GENRT_DISPATCH_BF16(conv2d_bf16_kernel, P, xd, wd, bd, y, threads);
  }
  if (winograd)
    GENRT_DISPATCH(conv2d_forward_kernel, P, xd, wd, bd, y, threads);
  else
    GENRT_DISPATCH(conv2d_direct_kernel, P, xd, wd, bd, y, threads);
}

// x, or with parts (conv2d_concat_forward), the concatenation of parts along channels, x then only its shape.
template <typename T>
void run(const TensorRef& x, const TensorRef& w, const TensorRef& bias, const TensorRef& out, const Conv2dParams& p,
         int threads, WeightCache* cache, const std::vector<TensorRef>* parts = nullptr) {
  Conv2dProblem P;
  P.N = x.size(0);
  P.Cin = x.size(1);
  P.H = x.size(2);
  P.W = x.size(3);
  P.Cout = out.size(1);
  P.Ho = out.size(2);
  P.Wo = out.size(3);
  P.kH = w.size(2);
  P.kW = w.size(3);
  P.sh = p.stride[0];
  P.sw = p.stride[1];
  for (int i = 0; i < 4; ++i) P.pad[i] = p.padding[i];
  P.mode = int(p.padding_mode);
  P.activation = int(p.activation);
  P.slope = p.negative_slope;
  P.cache = cache;
  P.out_stats = p.output_stats;
  if (P.N == 0) return;
  const bool bf16 = p.precision == Precision::bf16, winograd = P.kH == 3 && P.kW == 3 && P.sh == 1 && P.sw == 1;
  Bf16Algo algo = bf16 ? bf16_algo() : Bf16Algo::automatic;  // the environment is read for bf16 calls only
  if (algo == Bf16Algo::automatic && bf16) algo = active_isa() == Isa::amx ? Bf16Algo::amx : Bf16Algo::winograd;
  // The bfloat16 direct and AMX kernels convert their input rows themselves (PairRows), so they read a concatenation's
  // inputs and apply an input affine where the data is.
  const bool pair_rows = bf16 && (algo == Bf16Algo::amx || algo == Bf16Algo::direct || !winograd);
  std::vector<T> xs, ws, bs;
  std::vector<std::vector<T>> packed(parts ? parts->size() : 0);  // non-contiguous parts, packed
  std::vector<const float*> planes;
  const T* xd = nullptr;
  if (!parts) {
    xd = contiguous<T>(x, xs);
  } else {
    std::vector<const T*> data;
    for (size_t i = 0; i < parts->size(); ++i) data.push_back(contiguous<T>((*parts)[i], packed[i]));
    const int64_t plane = P.H * P.W;
    if (pair_rows) {
      if constexpr (std::is_same_v<T, float>) {
        for (int64_t n = 0; n < P.N; ++n)
          for (size_t i = 0; i < parts->size(); ++i)
            for (int64_t c = 0; c < (*parts)[i].size(1); ++c)
              planes.push_back(data[i] + (n * (*parts)[i].size(1) + c) * plane);
        P.in_planes = planes.data();
        xd = data[0];
      }
    } else {
      xs.resize(size_t(P.N * P.Cin * plane));
      T* dst = xs.data();
      for (int64_t n = 0; n < P.N; ++n)
        for (size_t i = 0; i < parts->size(); ++i) {
          const int64_t count = (*parts)[i].size(1) * plane;
          std::copy(data[i] + n * count, data[i] + (n + 1) * count, dst);
          dst += count;
        }
      xd = xs.data();
    }
  }
  const T* wd = contiguous<T>(w, ws);
  const T* bd = bias.data ? contiguous<T>(bias, bs) : nullptr;
  if (p.input_affine) {
    if (pair_rows) {
      P.in_affine = p.input_affine;  // applied as the input rows are converted
      P.in_act = int(p.input_relu ? Activation::relu : Activation::none);
    } else {
      xd = affine_copy(xd, p.input_affine, p.input_relu, P.N * P.Cin, P.H * P.W, xs);
    }
  }
  T* y = static_cast<T*>(out.data);
  const bool tiles = std::is_same_v<T, float> && bf16 && algo == Bf16Algo::amx;  // adds and sums as it stores
  if (tiles) P.residual = static_cast<const float*>(p.residual);
  compute<T>(P, algo, winograd, xd, wd, bd, y, threads);
  if (p.residual && !tiles) {
    const T* r = static_cast<const T*>(p.residual);
    parallel_for(P.N * P.Cout, threads, [&](int64_t k0, int64_t k1) {
      for (int64_t i = k0 * P.Ho * P.Wo; i < k1 * P.Ho * P.Wo; ++i) y[i] += r[i];
    });
  }
  if constexpr (std::is_same_v<T, float>)
    if (p.output_stats && !tiles) plane_statistics(y, P.N * P.Cout, P.Ho * P.Wo, p.output_stats, threads);
}

}  // namespace

PaddingMode parse_padding_mode(const std::string& name) {
  if (name == "zeros" || name == "constant" || name.empty()) return PaddingMode::zeros;
  if (name == "reflect") return PaddingMode::reflect;
  if (name == "edge" || name == "replicate") return PaddingMode::edge;
  throw_value("padding_mode: expected one of zeros, reflect, edge, got '" + name + "'");
}

void conv2d_output_shape(const TensorRef& x, const TensorRef& w, const Conv2dParams& p, int64_t out_shape[4]) {
  check_ndim(x, 4, "x of shape (N, C_in, H, W)");
  check_ndim(w, 4, "weight of shape (C_out, C_in, kH, kW)");
  check_float(x);
  check_float(w);
  check_same_dtype(x, w);
  for (int d = 1; d < 4; ++d) check_nonempty(x, d, d == 1 ? "channel count C_in" : "spatial size");
  check_nonempty(w, 0, "channel count C_out");
  const int64_t kh = w.size(2), kw = w.size(3);
  if (kh < 1 || kh > kMaxKernel || kw < 1 || kw > kMaxKernel)
    throw_shape("weight: expected a kernel of 1x1 to " + std::to_string(kMaxKernel) + "x" +
                std::to_string(kMaxKernel) + ", shape (C_out, C_in, kH, kW), got " + w.shape_str());
  if (w.size(1) != x.size(1))
    throw_shape("weight: expected " + std::to_string(x.size(1)) + " input channels in dim 1 (C_in of x " +
                x.shape_str() + "; groups are not supported), got weight of shape " + w.shape_str());
  for (int i = 0; i < 2; ++i)
    if (p.stride[i] < 1 || p.stride[i] > kMaxStride)
      throw_value("stride: expected (sh, sw) each in 1.." + std::to_string(kMaxStride) + ", got (" +
                  std::to_string(p.stride[0]) + ", " + std::to_string(p.stride[1]) + ")");
  for (int i = 0; i < 4; ++i) {
    const int64_t k = i % 2 ? kw : kh;
    if (p.padding[i] < 0 || p.padding[i] > k - 1)
      throw_value("padding: expected (top, left, bottom, right) with top, bottom in 0.." + std::to_string(kh - 1) +
                  " and left, right in 0.." + std::to_string(kw - 1) + " (kernel " + std::to_string(kh) + "x" +
                  std::to_string(kw) + "), got " + pads_str(p.padding));
  }
  if (p.padding_mode == PaddingMode::reflect)
    for (int i = 0; i < 4; ++i) {
      const int64_t size = x.size(2 + i % 2);
      if (p.padding[i] >= size)
        throw_value("padding: reflect padding must be smaller than the padded dimension (" +
                    std::string(i % 2 ? "W = " : "H = ") + std::to_string(size) + " of x " + x.shape_str() +
                    "), got " + pads_str(p.padding));
    }
  if (p.activation != Activation::none && p.activation != Activation::relu && p.activation != Activation::leaky_relu)
    throw_value("activation: conv2d supports none, relu or leaky_relu");
  if (p.activation == Activation::leaky_relu && !std::isfinite(p.negative_slope))
    throw_value("negative_slope: expected a finite number, got " + std::to_string(p.negative_slope));
  if (p.precision == Precision::bf16 && x.dtype != DType::f32)
    throw_value("precision: bf16 takes float32 operands, got " + std::string(dtype_name(x.dtype)));
  if (p.input_affine && x.dtype != DType::f32)
    throw_value("input affine: takes float32 operands, got " + std::string(dtype_name(x.dtype)));
  if (p.output_stats && x.dtype != DType::f32)
    throw_value("output statistics: take float32 operands, got " + std::string(dtype_name(x.dtype)));
  const int64_t hp = x.size(2) + p.padding[0] + p.padding[2], wp = x.size(3) + p.padding[1] + p.padding[3];
  if (hp < kh || wp < kw)
    throw_shape("padding: output size must be positive, but x " + x.shape_str() + " padded by " +
                pads_str(p.padding) + " is smaller than the " + std::to_string(kh) + "x" + std::to_string(kw) +
                " kernel");
  const int64_t ho = (hp - kh) / p.stride[0] + 1, wo = (wp - kw) / p.stride[1] + 1;
  out_shape[0] = x.size(0);
  out_shape[1] = w.size(0);
  out_shape[2] = ho;
  out_shape[3] = wo;
  checked_mul(checked_mul(out_shape[0], out_shape[1], "output"), checked_mul(ho, wo, "output"), "output");
  checked_mul(checked_mul(x.size(0), x.size(1), "x"), checked_mul(x.size(2), x.size(3), "x"), "x");
  checked_mul(checked_mul(w.size(0), w.size(1), "weight"), 36 + kh * kw, "weight");
}

namespace {

// conv2d_forward's checks of the operands beyond conv2d_output_shape's: bias and out.
void check(const TensorRef& x, const TensorRef& w, const TensorRef& bias, const TensorRef& out,
           const Conv2dParams& p) {
  int64_t shape[4];
  conv2d_output_shape(x, w, p, shape);
  if (bias.data) {
    check_same_dtype(x, bias);
    if (bias.ndim != 1 || bias.sizes[0] != shape[1])
      throw_shape(std::string(bias.name) + ": expected shape (" + std::to_string(shape[1]) +
                  ",) (one value per output channel), got " + bias.shape_str());
  }
  check_same_dtype(x, out);
  for (int d = 0; d < 4; ++d)
    if (out.ndim != 4 || out.size(d) != shape[d])
      throw_shape(std::string(out.name) + ": expected shape (" + std::to_string(shape[0]) + ", " +
                  std::to_string(shape[1]) + ", " + std::to_string(shape[2]) + ", " + std::to_string(shape[3]) +
                  "), got " + out.shape_str());
  check_contiguous_output(out);
}

}  // namespace

void conv2d_forward(const TensorRef& x, const TensorRef& w, const TensorRef& bias, const TensorRef& out,
                    const Conv2dParams& p, int threads, WeightCache* cache) {
  check(x, w, bias, out, p);
  if (x.dtype == DType::f32)
    run<float>(x, w, bias, out, p, threads, cache);
  else
    run<double>(x, w, bias, out, p, threads, cache);
}

namespace {

// The concatenation of xs along channels as a shape-only TensorRef (sizes and strides held in `dims`), after checking
// the parts agree.
TensorRef concat_shape(const std::vector<TensorRef>& xs, int64_t dims[8]) {
  if (xs.empty()) throw_value("x: expected at least one input to concatenate");
  int64_t channels = 0;
  for (const TensorRef& t : xs) {
    check_ndim(t, 4, "of shape (N, C_i, H, W)");
    check_float(t);
    check_same_dtype(xs[0], t);
    if (t.size(0) != xs[0].size(0) || t.size(2) != xs[0].size(2) || t.size(3) != xs[0].size(3))
      throw_shape(std::string(t.name) + ": expected the N, H and W of the first input " + xs[0].shape_str() +
                  " (inputs are concatenated along channels), got " + t.shape_str());
    channels += t.size(1);
  }
  int64_t* sizes = dims;
  int64_t* strides = dims + 4;
  sizes[0] = xs[0].size(0), sizes[1] = channels, sizes[2] = xs[0].size(2), sizes[3] = xs[0].size(3);
  strides[3] = 1, strides[2] = sizes[3], strides[1] = sizes[2] * sizes[3], strides[0] = sizes[1] * strides[1];
  return {"x", xs[0].data, xs[0].dtype, 4, sizes, strides};
}

}  // namespace

void conv2d_concat_output_shape(const std::vector<TensorRef>& xs, const TensorRef& w, const Conv2dParams& p,
                                int64_t out_shape[4]) {
  int64_t dims[8];
  conv2d_output_shape(concat_shape(xs, dims), w, p, out_shape);
}

void conv2d_concat_forward(const std::vector<TensorRef>& xs, const TensorRef& w, const TensorRef& bias,
                           const TensorRef& out, const Conv2dParams& p, int threads, WeightCache* cache) {
  if (p.input_affine) throw_value("input affine: not with a concatenation");
  int64_t dims[8];
  const TensorRef x = concat_shape(xs, dims);
  if (xs.size() == 1) return conv2d_forward(xs[0], w, bias, out, p, threads, cache);
  check(x, w, bias, out, p);
  if (x.dtype == DType::f32)
    run<float>(x, w, bias, out, p, threads, cache, &xs);
  else
    run<double>(x, w, bias, out, p, threads, cache, &xs);
}

}  // namespace genrt
