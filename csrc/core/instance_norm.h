// Instance normalization (Ulyanov et al. 2016) with a per-sample affine and an optional ReLU, in one pass per plane.
//
//   y[n, c] = act((x[n, c] - mean[n, c]) / sqrt(var[n, c] + eps) * scale[n, c] + bias[n, c] [+ residual[n, c]])
//
// mean and var (the population variance) over the H x W plane of x[n, c]. scale and bias are per channel (C,)
// (ONNX InstanceNormalization, torch's affine InstanceNorm2d) or per sample and channel (N, C) (a conditional
// instance norm whose affine comes from a style vector, Dumoulin et al. 2017); either may be absent (1 and 0).
// residual, optional, is added before the activation (a residual block's skip connection). act is none or relu.
// Each plane is read twice (statistics, then the normalized write), once more only where its mean is far from the
// first pass's pivot (see instance_norm_kernel.cpp); threads share the N x C planes.
#pragma once

#include "common.h"
#include "conv_transpose2d.h"  // Activation, parse_activation

namespace genrt {

// x: (N, C, H, W) float32/float64, any strides (a non-contiguous x is packed first). scale, bias: data == nullptr
// (absent), or x's dtype with C elements ((C,), (1, C) or (1, C, 1, 1)) or N x C elements ((N, C) or
// (N, C, 1, 1)), any strides. residual: data == nullptr (absent) or x's shape and dtype, any strides (zero strides
// broadcast). out: C-contiguous (N, C, H, W), x's dtype; it may alias a contiguous x or residual.
// activation: none or relu. epsilon >= 0. stats: null, or each plane's (mean, variance) already known, N x C pairs
// (plane_statistics' layout, e.g. conv2d's output statistics): x is then read once.
void instance_norm_forward(const TensorRef& x, const TensorRef& scale, const TensorRef& bias,
                           const TensorRef& residual, const TensorRef& out, double epsilon, Activation activation,
                           int threads, const double* stats = nullptr);

// The same normalization as an affine map per plane, for a consumer that applies it itself (genrt.Conv's input
// affine, conv2d.h): out (N, C, 2) float32, C-contiguous, (a, b) per plane with a = scale / sqrt(var + eps) and
// b = bias - mean a, so that a x + b is the normalized x. x: (N, C, H, W) float32, any strides; scale, bias as above.
// stats: as for instance_norm_forward (x is then not read).
void instance_norm_affine(const TensorRef& x, const TensorRef& scale, const TensorRef& bias, const TensorRef& out,
                          double epsilon, int threads, const double* stats = nullptr);

// Each plane's mean and population variance, the way the normalization computes them: x holds `planes` contiguous
// planes of `size` float32 values; stats gets (mean, variance) per plane, 2 planes doubles.
void plane_statistics(const float* x, int64_t planes, int64_t size, double* stats, int threads);

}  // namespace genrt
