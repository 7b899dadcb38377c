// The phase decomposition of csrc/cuda/conv_transpose2d.cu as host-and-device functions, so the index arithmetic
// the GPU kernel runs is also run -- and tested against torch -- on machines without a GPU
// (genrt_cuda_conv_transpose2d_emulate).
//
// Output pixels are split by phase (q, r) = (oh mod sh, ow mod sw). Within a phase the taps reaching a pixel are
// fixed: kh = kh0 + a * (sh / gcd(sh, dh)), and the t-th pixel row of the phase (oh = q + t sh) reads input row
// ih = t + (q + ph - kh dh) / sh, an exact division. So each (group, phase) is one GEMM of
// M = N * Hq * Wq pixels, Cout/groups channels and K = Cin/groups * taps_h * taps_w.
#pragma once

#include <stdint.h>

#ifdef __CUDACC__
#define GENRT_HD __host__ __device__ __forceinline__
#else
#define GENRT_HD inline
#endif

namespace genrt {
namespace cuda {

struct Problem {
  int N, Cig, H, W, Cog, kH, kW, Ho, Wo, sh, sw, ph, pw, dh, dw, groups, step_h, step_w;
  int activation;
  float slope;
};

// The taps of one phase in one dimension: first tap k0, count, and the numerator base of the input offset.
struct Taps {
  int k0, count, base, step;
};

GENRT_HD Taps phase_taps(int q, int pad, int stride, int dil, int ksize, int step) {
  Taps t{0, 0, q + pad, step};
  for (int k = 0; k < step && k < ksize; ++k) {
    if ((((k * dil - q - pad) % stride) + stride) % stride == 0) {
      t.k0 = k;
      t.count = (ksize - 1 - k) / step + 1;
      return t;
    }
  }
  return t;
}

// Pixels of phase q along an output axis of `size` with this stride.
GENRT_HD int phase_size(int q, int size, int stride) { return q < size ? (size - q + stride - 1) / stride : 0; }

// One (group, phase) GEMM: its shape and taps.
struct Phase {
  int g, q, r, Hq, Wq;
  int64_t M;
  int K;
  Taps th, tw;
};

GENRT_HD Phase phase_of(const Problem& p, int z) {
  Phase f;
  const int phases = p.sh * p.sw;
  f.g = z / phases;
  f.q = (z % phases) / p.sw;
  f.r = (z % phases) % p.sw;
  f.Hq = phase_size(f.q, p.Ho, p.sh);
  f.Wq = phase_size(f.r, p.Wo, p.sw);
  f.M = int64_t(p.N) * f.Hq * f.Wq;
  f.th = phase_taps(f.q, p.ph, p.sh, p.dh, p.kH, p.step_h);
  f.tw = phase_taps(f.r, p.pw, p.sw, p.dw, p.kW, p.step_w);
  f.K = p.Cig * f.th.count * f.tw.count;
  return f;
}

// Pixel m of a phase -> (n, t, u): image, pixel row and column within the phase.
GENRT_HD void pixel_of(const Phase& f, int64_t m, int& n, int& t, int& u) {
  n = int(m / (int64_t(f.Hq) * f.Wq));
  const int rem = int(m - int64_t(n) * f.Hq * f.Wq);
  t = rem / f.Wq;
  u = rem - t * f.Wq;
}

// Reduction index k -> input channel c (within the group), tap (kh, kw) and the input offsets added to (t, u).
GENRT_HD void tap_of(const Problem& p, const Phase& f, int k, int& c, int& kh, int& kw, int& dih, int& diw) {
  const int taps = f.th.count * f.tw.count;
  c = k / taps;
  const int ab = k - c * taps;
  const int a = ab / f.tw.count, b = ab - a * f.tw.count;
  kh = f.th.k0 + a * f.th.step;
  kw = f.tw.k0 + b * f.tw.step;
  dih = (f.th.base - kh * p.dh) / p.sh;
  diw = (f.tw.base - kw * p.dw) / p.sw;
}

}  // namespace cuda
}  // namespace genrt
