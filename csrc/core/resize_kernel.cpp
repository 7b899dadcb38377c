// resize's filtering (see resize.h), compiled once per instruction set. Tasks are (plane, block of output rows): the
// input rows the block's taps read are filtered along W into a scratch (one row per input row, the taps' products
// summed in tap order), then each output row is the weighted sum of its taps' scratch rows, vector by vector.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "parallel.h"
#include "simd.h"

namespace genrt {
namespace GENRT_ISA_NS {

void resize_kernel(const float* x, float* y, int64_t planes, int64_t H, int64_t W, int64_t Ho, int64_t Wo, int taps,
                   const int64_t* iy, const float* wy, const int64_t* ix, const float* wx, int threads) {
  using F = vec_t<float>;
  constexpr int64_t L = Vec<float>::size, kRows = 32;  // output rows per task
  const int64_t blocks = (Ho + kRows - 1) / kRows;
  parallel_for(planes * blocks, threads, [&](int64_t b0, int64_t b1) {
    std::vector<float> tmp;
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t plane = b / blocks, oh0 = b % blocks * kRows, oh1 = std::min(Ho, oh0 + kRows);
      int64_t lo = H, hi = -1;  // the input rows the block reads
      for (int64_t i = oh0 * taps; i < oh1 * taps; ++i) lo = std::min(lo, iy[i]), hi = std::max(hi, iy[i]);
      tmp.resize(size_t((hi - lo + 1) * Wo));
      const float* xp = x + plane * H * W;
      for (int64_t r = lo; r <= hi; ++r) {
        const float* src = xp + r * W;
        float* dst = tmp.data() + (r - lo) * Wo;
        if (taps == 4)
          for (int64_t o = 0; o < Wo; ++o) {
            const int64_t* i = ix + 4 * o;
            const float* w = wx + 4 * o;
            dst[o] = ((src[i[0]] * w[0] + src[i[1]] * w[1]) + src[i[2]] * w[2]) + src[i[3]] * w[3];
          }
        else if (taps == 2)
          for (int64_t o = 0; o < Wo; ++o) dst[o] = src[ix[2 * o]] * wx[2 * o] + src[ix[2 * o + 1]] * wx[2 * o + 1];
        else  // nearest: a copy
          for (int64_t o = 0; o < Wo; ++o) dst[o] = src[ix[o]];
      }
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        float* out = y + (plane * Ho + oh) * Wo;
        const float* rows[4];
        F w[4];
        for (int k = 0; k < taps; ++k) {
          rows[k] = tmp.data() + (iy[oh * taps + k] - lo) * Wo;
          w[k] = splat(wy[oh * taps + k]);
        }
        int64_t o = 0;
        for (; o + L <= Wo; o += L) {
          F v = load(rows[0] + o) * w[0];
          for (int k = 1; k < taps; ++k) v = v + load(rows[k] + o) * w[k];
          store(out + o, v);
        }
        for (; o < Wo; ++o) {
          float v = rows[0][o] * wy[oh * taps];
          for (int k = 1; k < taps; ++k) v = v + rows[k][o] * wy[oh * taps + k];
          out[o] = v;
        }
      }
    }
  });
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
