// Checked entry point of conv_transpose2d; the kernel bodies are in conv_transpose2d_kernel.cpp (float32 and
// float64), conv_transpose2d_bf16_kernel.cpp (precision bf16) and conv_transpose2d_amx_kernel.cpp (precision bf16 on
// AMX tiles).
#include "conv_transpose2d.h"

#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu_isa.h"

#define GENRT_CT2D_DECLS                                                                                    \
  void conv_transpose2d_forward_kernel(const ::genrt::ConvTranspose2dProblem& P, const float* x,           \
                                       const float* w, const float* bias, const float* scale,              \
                                       const float* shift, float* y, int threads);                         \
  void conv_transpose2d_forward_kernel(const ::genrt::ConvTranspose2dProblem& P, const double* x,          \
                                       const double* w, const double* bias, const double* scale,           \
                                       const double* shift, double* y, int threads);
GENRT_DECLARE_ISA_KERNELS(GENRT_CT2D_DECLS)
#define GENRT_CT2D_BF16_DECLS                                                                               \
  void conv_transpose2d_bf16_kernel(const ::genrt::ConvTranspose2dProblem& P, const float* x, const float* w, \
                                    const float* bias, const float* scale, const float* shift, float* y,      \
                                    int threads);
GENRT_DECLARE_ISA_BF16_KERNELS(GENRT_CT2D_BF16_DECLS)
#define GENRT_CT2D_AMX_DECLS                                                                                 \
  void conv_transpose2d_amx_kernel(const ::genrt::ConvTranspose2dProblem& P, const float* x, const float* w, \
                                   const float* bias, const float* scale, const float* shift, float* y,      \
                                   int threads);
GENRT_DECLARE_ISA_AMX_KERNELS(GENRT_CT2D_AMX_DECLS)

namespace genrt {
namespace {

std::string pair_str(const int64_t v[2]) { return "(" + std::to_string(v[0]) + ", " + std::to_string(v[1]) + ")"; }

void check_channel_vector(const TensorRef& v, const TensorRef& x, int64_t cout) {
  if (!v.data) return;
  check_same_dtype(x, v);
  if (v.ndim != 1 || v.sizes[0] != cout)
    throw_shape(std::string(v.name) + ": expected shape (" + std::to_string(cout) + ",) (one value per output "
                "channel), got " + v.shape_str());
}

// GENRT_CONV_TRANSPOSE_BF16_ALGO=auto|direct|amx, read per call: auto takes the AMX tiles at the amx level and the
// VDPBF16PS phase kernel (direct) elsewhere; amx below the amx level runs the tile kernel on emulated tiles (slow;
// for tests).
bool bf16_on_tiles() {
  const char* env = std::getenv("GENRT_CONV_TRANSPOSE_BF16_ALGO");
  if (!env || !*env || !std::strcmp(env, "auto")) return active_isa() == Isa::amx;
  if (!std::strcmp(env, "direct")) return false;
  if (!std::strcmp(env, "amx")) return true;
  throw_value(std::string("GENRT_CONV_TRANSPOSE_BF16_ALGO: expected auto, direct or amx, got '") + env + "'");
}

int forced_algo() {
  const char* env = std::getenv("GENRT_CONV_TRANSPOSE_ALGO");
  if (!env || !*env || !std::strcmp(env, "auto")) return 0;
  const char* names[] = {"col", "packed", "direct", "flat"};
  for (int i = 0; i < 4; ++i)
    if (!std::strcmp(env, names[i])) return i + 1;
  throw_value(std::string("GENRT_CONV_TRANSPOSE_ALGO: expected auto, col, packed, direct or flat, got '") + env + "'");
}

template <typename T>
void run(const TensorRef& x, const TensorRef& w, const TensorRef& bias, const TensorRef& scale,
         const TensorRef& shift, const TensorRef& out, const ConvTranspose2dParams& p, int threads,
         WeightCache* cache) {
  ConvTranspose2dProblem P;
  P.N = x.size(0);
  P.Cin = x.size(1);
  P.H = x.size(2);
  P.W = x.size(3);
  P.Cout = out.size(1);
  P.kH = w.size(2);
  P.kW = w.size(3);
  P.Ho = out.size(2);
  P.Wo = out.size(3);
  P.sh = p.stride[0];
  P.sw = p.stride[1];
  P.ph = p.padding[0];
  P.pw = p.padding[1];
  P.dh = p.dilation[0];
  P.dw = p.dilation[1];
  P.groups = p.groups;
  P.activation = int(p.activation);
  P.slope = p.negative_slope;
  P.algo = forced_algo();
  P.cache = cache;
  if (P.N == 0) return;
  std::vector<T> xs, ws, bs, ss, hs;
  const T* xd = contiguous<T>(x, xs);
  const T* wd = contiguous<T>(w, ws);
  const T* bd = bias.data ? contiguous<T>(bias, bs) : nullptr;
  const T* sd = scale.data ? contiguous<T>(scale, ss) : nullptr;
  const T* hd = shift.data ? contiguous<T>(shift, hs) : nullptr;
  if constexpr (std::is_same_v<T, float>)
    if (p.precision == Precision::bf16) {
      if (bf16_on_tiles())
        GENRT_DISPATCH_AMX(conv_transpose2d_amx_kernel, P, xd, wd, bd, sd, hd, static_cast<T*>(out.data), threads);
      GENRT_DISPATCH_BF16(conv_transpose2d_bf16_kernel, P, xd, wd, bd, sd, hd, static_cast<T*>(out.data), threads);
    }
  GENRT_DISPATCH(conv_transpose2d_forward_kernel, P, xd, wd, bd, sd, hd, static_cast<T*>(out.data), threads);
}

}  // namespace

Activation parse_activation(const std::string& name) {
  if (name == "none" || name.empty()) return Activation::none;
  if (name == "relu") return Activation::relu;
  if (name == "leaky_relu") return Activation::leaky_relu;
  if (name == "tanh") return Activation::tanh;
  if (name == "sigmoid") return Activation::sigmoid;
  throw_value("activation: expected one of none, relu, leaky_relu, tanh, sigmoid, got '" + name + "'");
}

Precision parse_precision(const std::string& name) {
  if (name == "f32" || name == "float32" || name.empty()) return Precision::f32;
  if (name == "bf16" || name == "bfloat16") return Precision::bf16;
  throw_value("precision: expected 'f32' or 'bf16', got '" + name + "'");
}

void conv_transpose2d_output_shape(const TensorRef& x, const TensorRef& w, const ConvTranspose2dParams& p,
                                   int64_t out_shape[4]) {
  check_ndim(x, 4, "x of shape (N, C_in, H, W)");
  check_ndim(w, 4, "weight of shape (C_in, C_out/groups, kH, kW)");
  check_float(x);
  check_float(w);
  check_same_dtype(x, w);
  for (int d = 1; d < 4; ++d) check_nonempty(x, d, d == 1 ? "channel count C_in" : "spatial size");
  for (int d = 1; d < 4; ++d) check_nonempty(w, d, d == 1 ? "C_out/groups" : "kernel size");
  for (int d = 0; d < 2; ++d) {
    if (p.stride[d] < 1) throw_value("stride: expected positive values, got " + pair_str(p.stride));
    if (p.dilation[d] < 1) throw_value("dilation: expected positive values, got " + pair_str(p.dilation));
    if (p.padding[d] < 0) throw_value("padding: expected non-negative values, got " + pair_str(p.padding));
    if (p.output_padding[d] < 0)
      throw_value("output_padding: expected non-negative values, got " + pair_str(p.output_padding));
    const int64_t limit = p.stride[d] > p.dilation[d] ? p.stride[d] : p.dilation[d];
    if (p.output_padding[d] >= limit)
      throw_value("output_padding: must be smaller than either stride or dilation in each dimension (< " +
                  std::to_string(limit) + " in dim " + std::to_string(d) + "), got " + pair_str(p.output_padding));
  }
  if (p.groups < 1) throw_value("groups: expected a positive integer, got " + std::to_string(p.groups));
  if (x.size(1) % p.groups != 0)
    throw_value("groups: " + std::to_string(p.groups) + " does not divide the input channels C_in = " +
                std::to_string(x.size(1)) + " of x");
  if (w.size(0) != x.size(1))
    throw_shape("weight: expected " + std::to_string(x.size(1)) + " input channels in dim 0 (C_in of x " +
                x.shape_str() + "), got weight of shape " + w.shape_str());
  if (p.precision == Precision::bf16) {
    if (x.dtype != DType::f32)
      throw_value("precision: bf16 takes float32 operands, got " + std::string(dtype_name(x.dtype)));
    if (p.groups != 1) throw_value("precision: bf16 supports groups 1 only, got groups " + std::to_string(p.groups));
    if (w.size(2) > 16)
      throw_value("precision: bf16 supports kernels up to 16 rows high, got weight of shape " + w.shape_str());
  }
  if (p.activation == Activation::leaky_relu && !(p.negative_slope == p.negative_slope))
    throw_value("negative_slope: expected a number, got NaN");
  const int64_t cout = checked_mul(w.size(1), p.groups, "weight");
  int64_t spatial[2];
  for (int d = 0; d < 2; ++d) {
    const int64_t in = x.size(2 + d), k = w.size(2 + d);
    const int64_t span = checked_mul(in - 1, p.stride[d], "x") + checked_mul(p.dilation[d], k - 1, "dilation");
    spatial[d] = span - 2 * p.padding[d] + p.output_padding[d] + 1;
    if (spatial[d] < 1)
      throw_shape(std::string("padding: output size must be positive, but input ") + x.shape_str() + ", kernel " +
                  w.shape_str() + ", stride " + pair_str(p.stride) + ", padding " + pair_str(p.padding) +
                  ", output_padding " + pair_str(p.output_padding) + ", dilation " + pair_str(p.dilation) +
                  " give " + std::to_string(spatial[d]) + " in dim " + std::to_string(2 + d));
  }
  out_shape[0] = x.size(0);
  out_shape[1] = cout;
  out_shape[2] = spatial[0];
  out_shape[3] = spatial[1];
  checked_mul(checked_mul(out_shape[0], out_shape[1], "output"), checked_mul(spatial[0], spatial[1], "output"),
              "output");
  checked_mul(checked_mul(w.size(0), w.size(1), "weight"), checked_mul(w.size(2), w.size(3), "weight"), "weight");
}

void conv_transpose2d_forward(const TensorRef& x, const TensorRef& w, const TensorRef& bias,
                              const TensorRef& scale, const TensorRef& shift, const TensorRef& out,
                              const ConvTranspose2dParams& p, int threads, WeightCache* cache) {
  int64_t shape[4];
  conv_transpose2d_output_shape(x, w, p, shape);
  for (const TensorRef* v : {&bias, &scale, &shift}) check_channel_vector(*v, x, shape[1]);
  check_same_dtype(x, out);
  for (int d = 0; d < 4; ++d)
    if (out.ndim != 4 || out.size(d) != shape[d])
      throw_shape(std::string(out.name) + ": expected shape (" + std::to_string(shape[0]) + ", " +
                  std::to_string(shape[1]) + ", " + std::to_string(shape[2]) + ", " + std::to_string(shape[3]) +
                  "), got " + out.shape_str());
  check_contiguous_output(out);
  if (x.dtype == DType::f32)
    run<float>(x, w, bias, scale, shift, out, p, threads, cache);
  else
    run<double>(x, w, bias, scale, shift, out, p, threads, cache);
}

}  // namespace genrt
