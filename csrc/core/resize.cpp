// Checked entry point of resize; the taps are planned here (per output row and column: the clamped input indices and
// their weights), the filtering is in resize_kernel.cpp (compiled per instruction set).
#include "resize.h"

#include <cmath>
#include <vector>

#include "cpu_isa.h"

#define GENRT_RESIZE_DECLS                                                                                         \
  void resize_kernel(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int64_t Ho, int64_t Wo,      \
                     int taps, const int64_t* iy, const float* wy, const int64_t* ix, const float* wx, int threads);
GENRT_DECLARE_ISA_KERNELS(GENRT_RESIZE_DECLS)

namespace genrt {
namespace {

// Nearest mode's input index for output index o (before clamping): the coordinate in float32, as ONNX Runtime's
// Resize computes it, rounded by p.nearest.
int64_t nearest(const ResizeParams& p, int64_t in, int64_t out, float scale, int64_t o) {
  const float of = float(o);
  float x = 0.0f;
  switch (p.coordinates) {
    case ResizeCoordinates::half_pixel:
      x = (of + 0.5f) / scale - 0.5f;
      break;
    case ResizeCoordinates::pytorch_half_pixel:
      x = out > 1 ? (of + 0.5f) / scale - 0.5f : 0.0f;
      break;
    case ResizeCoordinates::align_corners:
      x = out > 1 ? of * float(in - 1) / float(out - 1) : 0.0f;
      break;
    case ResizeCoordinates::asymmetric:
      x = of / scale;
      break;
  }
  switch (p.nearest) {
    case ResizeNearest::round_prefer_floor:
      return x == float(int64_t(x)) + 0.5f ? int64_t(std::floor(x)) : int64_t(std::round(x));
    case ResizeNearest::round_prefer_ceil:
      return int64_t(std::round(x));
    case ResizeNearest::floor:
      return int64_t(std::floor(x));
    default:
      return int64_t(std::ceil(x));
  }
}

// Per output index o of a dimension of `in` -> `out` values: `taps` clamped input indices and weights, at o taps.
void plan(const ResizeParams& p, int64_t in, int64_t out, double scale, int taps, std::vector<int64_t>& index,
          std::vector<float>& weight) {
  index.resize(size_t(out * taps));
  weight.resize(size_t(out * taps));
  const double a = p.cubic_a;
  for (int64_t o = 0; o < out; ++o) {
    double x = 0.0;
    switch (p.coordinates) {
      case ResizeCoordinates::half_pixel:
        x = (double(o) + 0.5) / scale - 0.5;
        break;
      case ResizeCoordinates::pytorch_half_pixel:
        x = out > 1 ? (double(o) + 0.5) / scale - 0.5 : 0.0;
        break;
      case ResizeCoordinates::align_corners:
        x = out > 1 ? double(o) * double(in - 1) / double(out - 1) : 0.0;
        break;
      case ResizeCoordinates::asymmetric:
        x = double(o) / scale;
        break;
    }
    if (p.mode == ResizeMode::nearest) {
      index[size_t(o)] = std::min<int64_t>(std::max<int64_t>(nearest(p, in, out, float(scale), o), 0), in - 1);
      weight[size_t(o)] = 1.0f;
      continue;
    }
    const double f = std::floor(x), t = x - f;
    double w[4];
    if (p.mode == ResizeMode::linear) {
      w[0] = 1.0 - t;
      w[1] = t;
    } else {  // Keys: |d| <= 1: (a + 2)|d|^3 - (a + 3)|d|^2 + 1; 1 < |d| < 2: a|d|^3 - 5a|d|^2 + 8a|d| - 4a
      const double d[4] = {1.0 + t, t, 1.0 - t, 2.0 - t};
      for (int k = 0; k < 4; ++k)
        w[k] = d[k] <= 1.0 ? ((a + 2.0) * d[k] - (a + 3.0)) * d[k] * d[k] + 1.0
                           : ((a * d[k] - 5.0 * a) * d[k] + 8.0 * a) * d[k] - 4.0 * a;
    }
    const int64_t first = int64_t(f) - (taps == 4 ? 1 : 0);
    for (int k = 0; k < taps; ++k) {
      index[size_t(o * taps + k)] = std::min<int64_t>(std::max<int64_t>(first + k, 0), in - 1);
      weight[size_t(o * taps + k)] = float(w[k]);
    }
  }
}

}  // namespace

ResizeMode parse_resize_mode(const std::string& name) {
  if (name == "linear") return ResizeMode::linear;
  if (name == "cubic") return ResizeMode::cubic;
  if (name == "nearest") return ResizeMode::nearest;
  throw_value("mode: expected 'linear', 'cubic' or 'nearest', got '" + name + "'");
}

ResizeNearest parse_resize_nearest(const std::string& name) {
  if (name == "round_prefer_floor") return ResizeNearest::round_prefer_floor;
  if (name == "round_prefer_ceil") return ResizeNearest::round_prefer_ceil;
  if (name == "floor") return ResizeNearest::floor;
  if (name == "ceil") return ResizeNearest::ceil;
  throw_value("nearest_mode: expected round_prefer_floor, round_prefer_ceil, floor or ceil, got '" + name + "'");
}

ResizeCoordinates parse_resize_coordinates(const std::string& name) {
  if (name == "half_pixel") return ResizeCoordinates::half_pixel;
  if (name == "pytorch_half_pixel") return ResizeCoordinates::pytorch_half_pixel;
  if (name == "align_corners") return ResizeCoordinates::align_corners;
  if (name == "asymmetric") return ResizeCoordinates::asymmetric;
  throw_value("coordinate_transformation_mode: expected half_pixel, pytorch_half_pixel, align_corners or "
              "asymmetric, got '" + name + "'");
}

void resize_output_shape(const TensorRef& x, const ResizeParams& p, int64_t out_shape[4]) {
  check_ndim(x, 4, "x of shape (N, C, H, W)");
  if (x.dtype != DType::f32)
    throw Error(Error::Kind::dtype, std::string(x.name) + ": expected float32, got " + dtype_name(x.dtype));
  for (int d = 1; d < 4; ++d) check_nonempty(x, d, d == 1 ? "channel count C" : "spatial size");
  const double scales[2] = {p.scale_h, p.scale_w};
  out_shape[0] = x.size(0);
  out_shape[1] = x.size(1);
  for (int i = 0; i < 2; ++i) {
    if (!(scales[i] > 0.0) || !std::isfinite(scales[i]))
      throw_value("scales: expected positive finite scales for H and W, got " + std::to_string(scales[i]));
    const double size = std::floor(double(x.size(2 + i)) * scales[i]);
    if (size < 1.0 || size > double(int64_t(1) << 31))
      throw_value("scales: the output's " + std::string(i ? "width" : "height") + " would be " +
                  std::to_string(size) + " (input " + x.shape_str() + ", scale " + std::to_string(scales[i]) + ")");
    out_shape[2 + i] = int64_t(size);
  }
}

void resize_forward(const TensorRef& x, const TensorRef& out, const ResizeParams& p, int threads) {
  int64_t shape[4];
  resize_output_shape(x, p, shape);
  check_ndim(out, 4, "out of shape (N, C, Ho, Wo)");
  for (int d = 0; d < 4; ++d)
    if (out.size(d) != shape[d]) throw_shape("out: expected shape (" + std::to_string(shape[0]) + ", " +
                                             std::to_string(shape[1]) + ", " + std::to_string(shape[2]) + ", " +
                                             std::to_string(shape[3]) + "), got " + out.shape_str());
  if (shape[0] == 0) return;
  const int taps = p.mode == ResizeMode::cubic ? 4 : p.mode == ResizeMode::linear ? 2 : 1;
  std::vector<int64_t> iy, ix;
  std::vector<float> wy, wx;
  plan(p, x.size(2), shape[2], p.scale_h, taps, iy, wy);
  plan(p, x.size(3), shape[3], p.scale_w, taps, ix, wx);
  std::vector<float> packed;
  const float* xp = contiguous<float>(x, packed);
  GENRT_DISPATCH(resize_kernel, xp, static_cast<float*>(out.data), shape[0] * shape[1], x.size(2), x.size(3),
                 shape[2], shape[3], taps, iy.data(), wy.data(), ix.data(), wx.data(), threads);
}

}  // namespace genrt
