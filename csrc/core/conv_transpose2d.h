// Transposed 2-D convolution (the gradient of conv2d with respect to its input), with a fused epilogue.
//
//   y[n, g*Cog + o, oh, ow] = sum_{c in group g} sum_{kh, kw} x[n, c, ih, iw] w[c, o, kh, kw]
//                             over oh = ih*sh - ph + kh*dh, ow = iw*sw - pw + kw*dw
//   H_out = (H - 1) sh - 2 ph + dh (kH - 1) + oph + 1, likewise W_out
//
// exactly as torch.nn.functional.conv_transpose2d and ONNX ConvTranspose (NCHW; weight (C_in, C_out/groups, kH,
// kW)). The epilogue runs on each output tile while it is in registers or cache: y = act((y + bias[c]) *
// scale[c] + shift[c]), act one of none, relu, leaky_relu(negative_slope), tanh, sigmoid. Any of bias, scale and
// shift may be absent (data == nullptr). With precision bf16 (float32 operands, groups 1) the products of
// bfloat16-rounded inputs and weights are summed in float32 (conv_transpose2d_bf16_kernel.cpp): VDPBF16PS on
// AVX512-BF16, the same rounding emulated in float32 elsewhere.
#pragma once

#include <string>

#include "common.h"
#include "weight_cache.h"

namespace genrt {

enum class Activation { none = 0, relu = 1, leaky_relu = 2, tanh = 3, sigmoid = 4 };

// Parses "none"/"relu"/"leaky_relu"/"tanh"/"sigmoid"; throws genrt::Error naming `activation` otherwise.
Activation parse_activation(const std::string& name);

// f32: exact float32 (float64 stays float64). bf16: float32 operands rounded to bfloat16, their products summed in
// float32 (conv2d and conv_transpose2d).
enum class Precision { f32 = 0, bf16 = 1 };

// Parses "f32"/"float32" (or empty) and "bf16"/"bfloat16"; throws genrt::Error naming `precision` otherwise.
Precision parse_precision(const std::string& name);

struct ConvTranspose2dParams {
  int64_t stride[2] = {1, 1};
  int64_t padding[2] = {0, 0};
  int64_t output_padding[2] = {0, 0};
  int64_t dilation[2] = {1, 1};
  int64_t groups = 1;
  Activation activation = Activation::none;
  double negative_slope = 0.01;
  Precision precision = Precision::f32;  // bf16: float32 operands only, groups 1, kH up to 16
};

// Output shape (N, C_out, H_out, W_out) after validating x, w and params (bias/scale/shift are checked by the
// forward call). Throws genrt::Error naming the offending argument.
void conv_transpose2d_output_shape(const TensorRef& x, const TensorRef& w, const ConvTranspose2dParams& p,
                                   int64_t out_shape[4]);

// x: (N, C_in, H, W); w: (C_in, C_out/groups, kH, kW); bias/scale/shift: (C_out,) or data == nullptr; any
// strides (non-contiguous operands are packed first). out: C-contiguous (N, C_out, H_out, W_out), x's dtype.
// cache: optional; when given, the weights' packed layouts are kept in it and reused by later calls, which must
// pass the same w values and params (see weight_cache.h). Without one, each call packs what it needs.
void conv_transpose2d_forward(const TensorRef& x, const TensorRef& w, const TensorRef& bias,
                              const TensorRef& scale, const TensorRef& shift, const TensorRef& out,
                              const ConvTranspose2dParams& p, int threads, WeightCache* cache = nullptr);

// Shape and options handed to the per-ISA kernels (all operands contiguous).
struct ConvTranspose2dProblem {
  int64_t N, Cin, H, W, Cout, kH, kW, Ho, Wo;
  int64_t sh, sw, ph, pw, dh, dw, groups;
  int activation;
  double slope;
  // Algorithm: 0 chosen by shape; 1 column GEMM, 2 packed phase GEMM, 3 direct phase GEMM, 4 flat phase GEMM
  // (4 only where it applies, else chosen by shape). Forced by GENRT_CONV_TRANSPOSE_ALGO=col|packed|direct|flat,
  // for tests and benchmarks; every algorithm computes the same result.
  int algo = 0;
  WeightCache* cache = nullptr;  // packed weights kept across calls, or nullptr (pack per call)
};

}  // namespace genrt
