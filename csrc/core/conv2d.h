// 2-D convolution (any kernel size kH x kW up to kMaxKernel, strides up to kMaxStride) with the padding done
// inside the kernel and a fused epilogue.
//
//   y[n, o, oh, ow] = act(bias[o] + sum_c sum_{kh < kH, kw < kW} xp[n, c, oh sh + kh, ow sw + kw] w[o, c, kh, kw])
//   xp = x padded by (top, left, bottom, right), top/bottom in 0..kH-1 and left/right in 0..kW-1, with zeros,
//   reflect (mirror without repeating the edge) or edge (replicate) values;
//   H_out = (H + top + bottom - kH) / sh + 1, W_out = (W + left + right - kW) / sw + 1
//
// exactly as ONNX Pad(mode) followed by Conv(pads 0, strides), or torch F.pad(mode) + F.conv2d (NCHW; weight
// (C_out, C_in, kH, kW); groups 1, dilation 1). act is none, relu or leaky_relu(negative_slope). Two algorithms in
// float32 (and float64), chosen by shape:
// - 3x3 stride 1: Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray 2016, conv2d_kernel.cpp): 36
//   multiplications per 4x4 output tile and input channel instead of 144;
// - everything else: a direct implicit GEMM (conv2d_direct_kernel.cpp).
// With precision bf16 (float32 operands only), inputs and weights are rounded to bfloat16 and the products summed in
// float32: on a CPU with AMX (isa amx) every shape as a direct implicit GEMM on the tiles (conv2d_amx_kernel.cpp);
// elsewhere 3x3 stride 1 as Winograd F(2x2, 3x3) (conv2d_winograd_bf16_kernel.cpp; F(4x4)'s transforms would
// multiply bfloat16's rounding error) and every other shape as a direct implicit GEMM (conv2d_bf16_kernel.cpp):
// VDPBF16PS on AVX512-BF16, the same rounding emulated in float32 elsewhere. GENRT_CONV2D_BF16_ALGO forces one
// (conv2d.cpp).
#pragma once

#include <string>
#include <vector>

#include "common.h"
#include "conv_transpose2d.h"  // Activation, Precision and their parsers
#include "weight_cache.h"

namespace genrt {

enum class PaddingMode { zeros = 0, reflect = 1, edge = 2 };

// Parses "zeros"/"constant", "reflect", "edge"/"replicate"; throws genrt::Error naming `padding_mode` otherwise.
PaddingMode parse_padding_mode(const std::string& name);

constexpr int64_t kMaxKernel = 16;  // kH, kW up to this
constexpr int64_t kMaxStride = 8;   // sh, sw up to this

struct Conv2dParams {
  int64_t padding[4] = {0, 0, 0, 0};  // top, left, bottom, right
  int64_t stride[2] = {1, 1};         // sh, sw
  PaddingMode padding_mode = PaddingMode::zeros;
  Activation activation = Activation::none;  // none, relu or leaky_relu
  double negative_slope = 0.01;              // leaky_relu's slope for negative inputs
  Precision precision = Precision::f32;      // bf16: float32 operands rounded to bfloat16, float32 sums
  // Optional, float32 operands only: an affine map per (image, input channel) applied to x before the padding,
  // x' = a x + b, then a ReLU where input_relu: N x C_in pairs (a, b), C-contiguous. An instance norm folded into
  // the convolution that reads it (genrt/runtime/fuse_norms.py): the bfloat16 direct and AMX kernels apply it as
  // they convert their input rows, the others to a copy of x first.
  const float* input_affine = nullptr;
  bool input_relu = false;
  // Optional, float32 only: each output plane's mean and population variance, N x C_out pairs (mean, var), the
  // statistics an instance norm reading y needs (genrt/runtime/fuse_norms.py hands them on, so that the norm reads y
  // once). The AMX kernel sums them as it writes its result tiles; the other paths read y once more afterwards.
  double* output_stats = nullptr;
  // Optional: added to the output after the activation, y = act(conv + bias) + residual (a residual block's skip
  // connection): x's dtype, y's shape, C-contiguous. The AMX kernel adds it as it stores; the other paths after.
  const void* residual = nullptr;
};

// Output shape (N, C_out, H_out, W_out) after validating x, w and params (bias is checked by the forward call).
// Throws genrt::Error naming the offending argument.
void conv2d_output_shape(const TensorRef& x, const TensorRef& w, const Conv2dParams& p, int64_t out_shape[4]);

// x: (N, C_in, H, W); w: (C_out, C_in, kH, kW); bias: (C_out,) or data == nullptr; any strides (non-contiguous
// operands are packed first). out: C-contiguous (N, C_out, H_out, W_out), x's dtype. cache: optional; when given,
// the transformed (or packed) weights are kept in it and reused by later calls, which must pass the same w values (see
// weight_cache.h). Without one, each call transforms the weights.
void conv2d_forward(const TensorRef& x, const TensorRef& w, const TensorRef& bias, const TensorRef& out,
                    const Conv2dParams& p, int threads, WeightCache* cache = nullptr);

// The same convolution over the channel concatenation of xs (ONNX Concat(axis 1) -> Conv, torch.cat(xs, 1) then
// conv2d) without writing the concatenation: with precision bf16 the direct and AMX kernels convert each input
// channel's rows from where they are; the other paths copy the concatenation first. Each xs[i]: (N, C_i, H, W), the
// same N, H, W and dtype, any strides; w: (C_out, sum of C_i, kH, kW). No input affine.
void conv2d_concat_forward(const std::vector<TensorRef>& xs, const TensorRef& w, const TensorRef& bias,
                           const TensorRef& out, const Conv2dParams& p, int threads, WeightCache* cache = nullptr);

// Its output shape, after checking that the parts agree and conv2d_output_shape's checks of the concatenation.
void conv2d_concat_output_shape(const std::vector<TensorRef>& xs, const TensorRef& w, const Conv2dParams& p,
                                int64_t out_shape[4]);

// Shape and options handed to the per-ISA kernels (all operands contiguous).
struct Conv2dProblem {
  int64_t N, Cin, H, W, Cout, Ho, Wo;
  int64_t kH = 3, kW = 3, sh = 1, sw = 1;
  int64_t pad[4];  // top, left, bottom, right
  int mode;        // PaddingMode
  int activation;  // Activation: none, relu or leaky_relu (conv2d_activate)
  double slope = 0;  // leaky_relu's negative slope
  WeightCache* cache = nullptr;
  const float* in_affine = nullptr;  // Conv2dParams::input_affine, for the kernels that apply it (PairRows)
  int in_act = 0;                    // Activation: none or relu, after in_affine
  double* out_stats = nullptr;       // Conv2dParams::output_stats, for the kernel that sums them (conv2d_amx_kernel)
  // Per (image, input channel), its H x W plane, where x is a concatenation's inputs (conv2d_concat_forward; read by
  // PairRows, the bfloat16 direct and AMX kernels' input); null: x.
  const float* const* in_planes = nullptr;
  const float* residual = nullptr;  // Conv2dParams::residual, for the kernel that adds it (conv2d_amx_kernel)
};

}  // namespace genrt
