// Resize of the two spatial dimensions of an (N, C, H, W) float32 tensor, as ONNX Resize computes it in its linear
// and cubic modes (no antialias, exclude_outside 0): a separable filter whose taps read clamped input indices.
//
//   output size: Ho = floor(H scale_h), Wo = floor(W scale_w)
//   output pixel o -> input coordinate x by the coordinate transformation mode:
//     half_pixel:          (o + 0.5) / scale - 0.5
//     pytorch_half_pixel:  the same, 0 where the output has one pixel
//     align_corners:       o (in - 1) / (out - 1), 0 where the output has one pixel
//     asymmetric:          o / scale
//   linear: weights 1 - t, t at floor(x) and floor(x) + 1 (t = x - floor(x));
//   cubic: Keys' kernel with coefficient a (cubic_coeff_a, PyTorch's -0.75 by default) at floor(x) - 1 .. + 2;
//   nearest: the one input pixel x rounds to by nearest_mode (round_prefer_floor, round_prefer_ceil, floor, ceil),
//   x computed in float32 as ONNX Runtime does (so that ties fall the same way);
//   each tap's index clamped to 0 .. in - 1.
//
// genrt.load writes genrt.Resize nodes in place of the ONNX Resize nodes that are these (genrt/runtime/
// fuse_resize.py): ONNX Runtime's own cubic Resize took 176 of sr-x4's 276 ms at 256x256 -> 1024x1024 (BENCHMARKS.md).
#pragma once

#include <string>

#include "common.h"

namespace genrt {

enum class ResizeMode { linear = 0, cubic = 1, nearest = 2 };
enum class ResizeNearest { round_prefer_floor = 0, round_prefer_ceil = 1, floor = 2, ceil = 3 };
enum class ResizeCoordinates { half_pixel = 0, pytorch_half_pixel = 1, align_corners = 2, asymmetric = 3 };

// Parse the ONNX attribute values; throw genrt::Error naming the value otherwise.
ResizeMode parse_resize_mode(const std::string& name);
ResizeCoordinates parse_resize_coordinates(const std::string& name);
ResizeNearest parse_resize_nearest(const std::string& name);

struct ResizeParams {
  ResizeMode mode = ResizeMode::linear;
  ResizeCoordinates coordinates = ResizeCoordinates::half_pixel;
  float cubic_a = -0.75f;
  ResizeNearest nearest = ResizeNearest::round_prefer_floor;  // nearest mode's rounding
  double scale_h = 1.0, scale_w = 1.0;  // > 0
};

// Output (N, C, floor(H scale_h), floor(W scale_w)); throws genrt::Error where a size would be zero or too large.
void resize_output_shape(const TensorRef& x, const ResizeParams& p, int64_t out_shape[4]);

// x: (N, C, H, W) float32, any strides; out: C-contiguous float32 of resize_output_shape's shape.
void resize_forward(const TensorRef& x, const TensorRef& out, const ResizeParams& p, int threads);

}  // namespace genrt
