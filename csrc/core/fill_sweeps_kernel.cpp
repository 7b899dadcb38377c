// fill_sweeps kernel body, compiled once per instruction set (see simd.h): the sweeps of one (H, W) plane at a time,
// each output row a sum of the stencil's nonzero taps over rows of an edge-padded copy, L columns per vector.
#include <algorithm>
#include <cstring>
#include <vector>

#include "fill_sweeps.h"
#include "parallel.h"
#include "simd.h"

namespace genrt {
namespace GENRT_ISA_NS {
namespace {

using V = vec_t<float>;
constexpr int L = Vec<float>::size;

struct Tap {
  int64_t offset;  // into the padded plane, from the output pixel's top-left tap
  float weight;
};

// One row of the update: y[j] = v + a * s (replace) or v + a * (y + damping * (s / divisor - y)) (relax), where y
// is the row of the previous sweep (the padded copy's interior) and s the stencil's sum.
template <bool Relax>
inline void row(const float* __restrict pad, const Tap* taps, int ntaps, const float* __restrict old,
                const float* __restrict v, const float* __restrict a, float* __restrict y, int64_t W, float divisor,
                float damping) {
  int64_t j = 0;
  for (; j + L <= W; j += L) {
    V s = V{};
    for (int t = 0; t < ntaps; ++t) s += taps[t].weight * load(pad + taps[t].offset + j);
    V out;
    if constexpr (Relax) {
      const V u = s / divisor, o = load(old + j);
      out = load(v + j) + load(a + j) * (o + damping * (u - o));
    } else {
      out = load(v + j) + load(a + j) * s;
    }
    store(y + j, out);
  }
  for (; j < W; ++j) {
    float s = 0.0f;
    for (int t = 0; t < ntaps; ++t) s += taps[t].weight * pad[taps[t].offset + j];
    if constexpr (Relax)
      y[j] = v[j] + a[j] * (old[j] + damping * (s / divisor - old[j]));
    else
      y[j] = v[j] + a[j] * s;
  }
}

void sweep_plane(float* y, const float* v, const float* a, const float* w, int64_t H, int64_t W, int64_t r,
                 const FillSweepsParams& p, float* pad) {
  const int64_t k = 2 * r + 1, PW = W + 2 * r;
  Tap taps[15 * 15];
  int ntaps = 0;
  for (int64_t di = 0; di < k; ++di)
    for (int64_t dj = 0; dj < k; ++dj)
      if (w[di * k + dj] != 0.0f)  // the 13-point stencil's 12 zeros of 25 (a NaN weight is kept)
        taps[ntaps++] = {di * PW + dj, w[di * k + dj]};
  for (int64_t it = 0; it < p.count; ++it) {
    for (int64_t i = 0; i < H + 2 * r; ++i) {  // edge padding: rows and columns clamped into the plane
      const float* src = y + std::clamp<int64_t>(i - r, 0, H - 1) * W;
      float* dst = pad + i * PW;
      for (int64_t j = 0; j < r; ++j) dst[j] = src[0];
      std::memcpy(dst + r, src, size_t(W) * sizeof(float));
      for (int64_t j = 0; j < r; ++j) dst[r + W + j] = src[W - 1];
    }
    for (int64_t i = 0; i < H; ++i) {
      const float* prow = pad + i * PW;
      const float* old = pad + (i + r) * PW + r;
      if (p.mode == FillSweepMode::relax)
        row<true>(prow, taps, ntaps, old, v + i * W, a + i * W, y + i * W, W, p.divisor, p.damping);
      else
        row<false>(prow, taps, ntaps, old, v + i * W, a + i * W, y + i * W, W, p.divisor, p.damping);
    }
  }
}

}  // namespace

void fill_sweeps_kernel(const float* v, const float* a, const float* w, float* y, int64_t N, int64_t C, int64_t H,
                        int64_t W, int64_t k, bool a_batch, bool a_channels, const FillSweepsParams& p, int threads) {
  const int64_t plane = H * W, r = k / 2;
  const int64_t work = N * C * plane * std::max<int64_t>(p.count, 1) * k * k;
  parallel_for(N * C, work > (1 << 20) ? threads : 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> pad(static_cast<size_t>((H + 2 * r) * (W + 2 * r)));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n = b / C, c = b % C;
      const float* ap = a + ((a_batch ? n : 0) * (a_channels ? C : 1) + (a_channels ? c : 0)) * plane;
      sweep_plane(y + b * plane, v + b * plane, ap, w + c * k * k, H, W, r, p, pad.data());
    }
  });
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
