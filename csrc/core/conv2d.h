// 3x3 stride-1 2-D convolution with the padding done inside the kernel and a fused epilogue.
//
//   y[n, o, oh, ow] = act(bias[o] + sum_c sum_{kh, kw < 3} xp[n, c, oh + kh, ow + kw] w[o, c, kh, kw])
//   xp = x padded by (top, left, bottom, right), each 0..2, with zeros, reflect (mirror without repeating the
//   edge) or edge (replicate) values; H_out = H + top + bottom - 2, W_out = W + left + right - 2
//
// exactly as ONNX Pad(mode) followed by Conv(pads 0), or torch F.pad(mode) + F.conv2d (NCHW; weight (C_out, C_in,
// 3, 3); groups 1, dilation 1). act is none or relu. Computed with Winograd's minimal filtering F(4x4, 3x3) (Lavin
// & Gray 2016): 36 multiplications per 4x4 output tile and input channel instead of 144.
#pragma once

#include <string>

#include "common.h"
#include "conv_transpose2d.h"  // Activation, parse_activation
#include "weight_cache.h"

namespace genrt {

enum class PaddingMode { zeros = 0, reflect = 1, edge = 2 };

// Parses "zeros"/"constant", "reflect", "edge"/"replicate"; throws genrt::Error naming `padding_mode` otherwise.
PaddingMode parse_padding_mode(const std::string& name);

struct Conv2dParams {
  int64_t padding[4] = {0, 0, 0, 0};  // top, left, bottom, right
  PaddingMode padding_mode = PaddingMode::zeros;
  Activation activation = Activation::none;  // none or relu
};

// Output shape (N, C_out, H_out, W_out) after validating x, w and params (bias is checked by the forward call).
// Throws genrt::Error naming the offending argument.
void conv2d_output_shape(const TensorRef& x, const TensorRef& w, const Conv2dParams& p, int64_t out_shape[4]);

// x: (N, C_in, H, W); w: (C_out, C_in, 3, 3); bias: (C_out,) or data == nullptr; any strides (non-contiguous
// operands are packed first). out: C-contiguous (N, C_out, H_out, W_out), x's dtype. cache: optional; when given,
// the transformed weights are kept in it and reused by later calls, which must pass the same w values (see
// weight_cache.h). Without one, each call transforms the weights.
void conv2d_forward(const TensorRef& x, const TensorRef& w, const TensorRef& bias, const TensorRef& out,
                    const Conv2dParams& p, int threads, WeightCache* cache = nullptr);

// Shape and options handed to the per-ISA kernels (all operands contiguous).
struct Conv2dProblem {
  int64_t N, Cin, H, W, Cout, Ho, Wo;
  int64_t pad[4];  // top, left, bottom, right
  int mode;        // PaddingMode
  int activation;  // Activation: none or relu
  WeightCache* cache = nullptr;
};

}  // namespace genrt
