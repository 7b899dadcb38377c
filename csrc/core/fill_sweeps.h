// Jacobi sweeps of a hole fill, in one call: the inner loop of the smooth fills that genrt's inpainters compute in
// their graphs (training/context_encoder.py's harmonic_fill and biharmonic_fill, exported as four or eight ONNX
// nodes per sweep: some 5,700 small nodes in inpaint-photos, whose per-node cost was most of a window's time).
//
//   y = x; count times:  s = depthwise_conv(edge_pad(y, r), w)       (w: (C, 1, k, k), k = 2 r + 1)
//                        replace: y = v + a * s
//                        relax:   y = v + a * (y + damping * (s / divisor - y))
//
// v holds the known pixels' values (zero in the hole) and a the unknown share (1 in the hole, 0 where known), as the
// graph's multigrid level has them; a broadcasts over the batch and channels where it has one of them. Each step is
// the float32 operation the graph's node does, in the graph's order; the stencil's sum may be ordered differently
// from ONNX Runtime's Conv, and a multiply may be fused with the add after it (bundled inpainters: within 6e-7).
#pragma once

#include <string>

#include "common.h"

namespace genrt {

enum class FillSweepMode { replace = 0, relax = 1 };

// Parses "replace" or "relax"; throws genrt::Error naming `mode` otherwise.
FillSweepMode parse_fill_sweep_mode(const std::string& name);

struct FillSweepsParams {
  int64_t count = 1;
  FillSweepMode mode = FillSweepMode::replace;
  float divisor = 1.0f;  // relax only
  float damping = 1.0f;  // relax only
};

// x, v: (N, C, H, W) float32; a: (N | 1, C | 1, H, W) float32; w: (C, 1, k, k) float32, k odd, 1..15; any strides.
// out: C-contiguous (N, C, H, W) float32 (it may be x). count >= 0.
void fill_sweeps_forward(const TensorRef& x, const TensorRef& v, const TensorRef& a, const TensorRef& w,
                         const TensorRef& out, const FillSweepsParams& p, int threads);

}  // namespace genrt
