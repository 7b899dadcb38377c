// Transposed convolution on the GPU by the phase decomposition of the CPU kernel, as implicit GEMMs, with the
// fused epilogue y = act((y + bias) * scale + shift). The formula is csrc/core/conv_transpose2d.h's.
//
// The phase decomposition (conv_transpose2d_phases.h) makes each (group, phase) one GEMM
//
//   Y[(n, t, u), o] = sum over k = (c, a, b) of X[(n, t, u), k] * Wt[k, o]     K = Cin/groups * taps
//
// with X gathered from x on the fly (zero outside the image) and Wt read from w. Blocks are 64 pixels x 64
// channels, K in steps of 16, the next step's operands loaded into registers while the current one is multiplied.
// float16 / bfloat16 multiply on tensor cores (WMMA 16x16x16, float32 sums); float32 does so in TF32 only when the
// caller allows it, else on the FMA units in full precision; float64 on the FMA units. No cuDNN anywhere.
#include <mma.h>

#include "common.cuh"
#include "conv_transpose2d_phases.h"

namespace genrt {
namespace cuda {
namespace {

using namespace nvcuda;

constexpr int BM = 64, BN = 64, BK = 16, kThreads = 128;

// Smem types: what the GEMM's operands are stored as.
template <typename T, bool TF32>
struct Smem {
  using type = T;  // half / bfloat16 on tensor cores, float / double on the FMA units
};

template <typename A>
GENRT_HD A activate(A v, int activation, float slope) {
  switch (activation) {
    case 1: return v > A(0) ? v : A(0);
    case 2: return v > A(0) ? v : v * A(slope);
    case 3: return tanh(v);
    case 4: return A(1) / (A(1) + exp(-v));
    default: return v;
  }
}

template <typename T, bool TF32>
__global__ void __launch_bounds__(kThreads)
    conv_transpose2d_kernel(Problem p, const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
                            const T* __restrict__ scale, const T* __restrict__ shift, T* __restrict__ y) {
  using S = typename Smem<T, TF32>::type;
  using A = typename Arith<T>::type;
  constexpr bool kWmma = !std::is_same<T, double>::value && (TF32 || !std::is_same<T, float>::value);
  constexpr int LDA = BK + (sizeof(S) == 2 ? 8 : 4);  // As[m][k]
  constexpr int LDB = BN + (sizeof(S) == 2 ? 8 : 4);  // Bs[k][n]
  constexpr int LDC = BM + 4;                         // Cs[n][m]: a pixel run per channel, for coalesced stores
  // The operand tiles and the epilogue's sums are never live at once: one buffer holds both in turn.
  constexpr int kOperandBytes = (BM * LDA + BK * LDB) * int(sizeof(S)), kSumBytes = BN * LDC * int(sizeof(A));
  __shared__ __align__(32) unsigned char smem[kOperandBytes > kSumBytes ? kOperandBytes : kSumBytes];
  S* As = reinterpret_cast<S*>(smem);
  S* Bs = As + BM * LDA;  // BM * LDA * sizeof(S) is a multiple of 32 bytes
  A* Cs = reinterpret_cast<A*>(smem);

  const Phase f = phase_of(p, blockIdx.z);
  const int g = f.g, q = f.q, r = f.r, K = f.K;
  const int64_t Mq = f.M;
  const int64_t m0 = int64_t(blockIdx.x) * BM;
  const int o0 = blockIdx.y * BN;
  if (m0 >= Mq) return;  // this phase has fewer pixels than the largest one (uniform over the block)

  // Loader roles: thread -> one pixel row (A) and one channel column (B), 8 consecutive k each.
  const int tid = threadIdx.x;
  const int lm = tid % BM, lk = (tid / BM) * 8;
  const int64_t m = m0 + lm;
  const bool m_ok = m < Mq;
  int n = 0, t = 0, u = 0;
  if (m_ok) pixel_of(f, m, n, t, u);
  const T* xg = x + (int64_t(n) * p.groups + g) * p.Cig * p.H * p.W;
  const int o_load = o0 + lm;
  const bool o_ok = o_load < p.Cog;
  const int64_t khw = int64_t(p.kH) * p.kW;
  const T* wg = w + (int64_t(g) * p.Cig * p.Cog + o_load) * khw;

  S ra[8], rb[8];
  auto load = [&](int kt) {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const int k = kt + lk + e;
      A da = 0, db = 0;
      if (k < K) {
        int c, kh, kw, dih, diw;
        tap_of(p, f, k, c, kh, kw, dih, diw);
        const int ih = t + dih, iw = u + diw;
        if (m_ok && ih >= 0 && ih < p.H && iw >= 0 && iw < p.W)
          da = A(to_float(xg[(int64_t(c) * p.H + ih) * p.W + iw]));
        if (o_ok) db = A(to_float(wg[int64_t(c) * p.Cog * khw + kh * p.kW + kw]));
      }
      ra[e] = from_arith(da, static_cast<S*>(nullptr));
      rb[e] = from_arith(db, static_cast<S*>(nullptr));
    }
  };
  auto store = [&]() {
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      As[lm * LDA + lk + e] = ra[e];
      Bs[(lk + e) * LDB + lm] = rb[e];
    }
  };

  const int warp = tid / 32, wm = warp % 2, wn = warp / 2;  // WMMA: each warp a 32 x 32 quarter
  const int tm = tid % 16, tn = tid / 16;                     // FMA: each thread 4 pixels x 8 channels
  using FragC = wmma::fragment<wmma::accumulator, 16, 16, kWmma && TF32 ? 8 : 16, float>;
  [[maybe_unused]] FragC fc[2][2];
  A acc[4][8];
  if constexpr (kWmma) {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(fc[i][j], 0.f);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = 0;
  }

  load(0);
  for (int kt = 0; kt < K; kt += BK) {
    __syncthreads();
    store();
    __syncthreads();
    if (kt + BK < K) load(kt + BK);  // in flight while this step multiplies
    if constexpr (kWmma && TF32) {
#pragma unroll
      for (int kk = 0; kk < BK; kk += 8) {
        wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa[2];
        wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          wmma::load_matrix_sync(fa[i], As + (wm * 32 + i * 16) * LDA + kk, LDA);
          wmma::load_matrix_sync(fb[i], Bs + kk * LDB + wn * 32 + i * 16, LDB);
#pragma unroll
          for (int e = 0; e < fa[i].num_elements; ++e) fa[i].x[e] = wmma::__float_to_tf32(fa[i].x[e]);
#pragma unroll
          for (int e = 0; e < fb[i].num_elements; ++e) fb[i].x[e] = wmma::__float_to_tf32(fb[i].x[e]);
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(fc[i][j], fa[i], fb[j], fc[i][j]);
      }
    } else if constexpr (kWmma) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, S, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, S, wmma::row_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(fa[i], As + (wm * 32 + i * 16) * LDA, LDA);
        wmma::load_matrix_sync(fb[i], Bs + wn * 32 + i * 16, LDB);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(fc[i][j], fa[i], fb[j], fc[i][j]);
    } else {
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        A av[4], bv[8];
#pragma unroll
        for (int i = 0; i < 4; ++i) av[i] = A(As[(tm * 4 + i) * LDA + kk]);
#pragma unroll
        for (int j = 0; j < 8; ++j) bv[j] = A(Bs[kk * LDB + tn * 8 + j]);
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[i][j] += av[i] * bv[j];
      }
    }
  }

  // Epilogue: the block's sums through shared memory, then bias, folded BatchNorm and activation on the way out.
  __syncthreads();
  if constexpr (kWmma) {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(Cs + (wn * 32 + j * 16) * LDC + wm * 32 + i * 16, fc[i][j], LDC,
                                wmma::mem_col_major);
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) Cs[(tn * 8 + j) * LDC + tm * 4 + i] = acc[i][j];
  }
  __syncthreads();
  const int Cout = p.Cog * p.groups;
  for (int e = tid; e < BM * BN; e += kThreads) {
    const int mm = e % BM, nn = e / BM;
    const int64_t me = m0 + mm;
    const int o = o0 + nn;
    if (me >= Mq || o >= p.Cog) continue;
    int ne, te, ue;
    pixel_of(f, me, ne, te, ue);
    const int co = g * p.Cog + o;
    A v = Cs[nn * LDC + mm];
    if (bias) v += A(to_float(bias[co]));
    if (scale) v *= A(to_float(scale[co]));
    if (shift) v += A(to_float(shift[co]));
    v = activate(v, p.activation, p.slope);
    const int oh = q + te * p.sh, ow = r + ue * p.sw;
    y[((int64_t(ne) * Cout + co) * p.Ho + oh) * p.Wo + ow] = from_arith(v, static_cast<T*>(nullptr));
  }
}

int64_t gcd(int64_t a, int64_t b) { return b == 0 ? a : gcd(b, a % b); }

std::string dims(const GenrtCudaConvTranspose2d& p) {
  auto s = [](int64_t v) { return std::to_string(v); };
  return "x (" + s(p.N) + ", " + s(p.Cin) + ", " + s(p.H) + ", " + s(p.W) + "), w (" + s(p.Cin) + ", " +
         s(p.groups ? p.Cout / p.groups : 0) + ", " + s(p.kH) + ", " + s(p.kW) + "), y (" + s(p.N) + ", " + s(p.Cout) +
         ", " + s(p.Ho) + ", " + s(p.Wo) + ")";
}

int check(const GenrtCudaConvTranspose2d& p, const char* what) {
  const std::string w = what;
  if (p.N < 1 || p.Cin < 1 || p.H < 1 || p.W < 1 || p.Cout < 1 || p.kH < 1 || p.kW < 1)
    return bad_argument(w + ": every size must be >= 1: " + dims(p));
  if (p.sh < 1 || p.sw < 1 || p.dh < 1 || p.dw < 1 || p.ph < 0 || p.pw < 0)
    return bad_argument(w + ": stride and dilation must be >= 1 and padding >= 0");
  if (p.groups < 1 || p.Cin % p.groups || p.Cout % p.groups)
    return bad_argument(w + ": groups = " + std::to_string(p.groups) + " must divide C_in and C_out: " + dims(p));
  const int64_t ho = (p.H - 1) * p.sh - 2 * p.ph + p.dh * (p.kH - 1) + 1;
  const int64_t wo = (p.W - 1) * p.sw - 2 * p.pw + p.dw * (p.kW - 1) + 1;
  if (p.Ho < 1 || p.Wo < 1 || p.Ho - ho < 0 || p.Ho - ho >= std::max(p.sh, p.dh) || p.Wo - wo < 0 ||
      p.Wo - wo >= std::max(p.sw, p.dw))
    return bad_argument(w + ": output size does not follow from the input, stride, padding and dilation "
                        "(output_padding must be < max(stride, dilation)): " + dims(p));
  if (p.activation < 0 || p.activation > 4) return bad_argument(w + ": activation code must be 0..4");
  const int64_t big = int64_t(1) << 31;
  if (p.N * p.Cin * p.H * p.W >= big * 8 || p.N * p.Cout * p.Ho * p.Wo >= big * 8 || p.sh * p.sw * p.groups > 65535 ||
      (p.Cout / p.groups + BN - 1) / BN > 65535 || p.Cin / p.groups * p.kH * p.kW >= big)
    return bad_argument(w + ": the problem is too large for the CUDA kernel: " + dims(p));
  return GENRT_CUDA_OK;
}

Problem make_problem(const GenrtCudaConvTranspose2d& d) {
  Problem p;
  p.N = int(d.N), p.Cig = int(d.Cin / d.groups), p.H = int(d.H), p.W = int(d.W), p.Cog = int(d.Cout / d.groups);
  p.kH = int(d.kH), p.kW = int(d.kW), p.Ho = int(d.Ho), p.Wo = int(d.Wo), p.sh = int(d.sh), p.sw = int(d.sw);
  p.ph = int(d.ph), p.pw = int(d.pw), p.dh = int(d.dh), p.dw = int(d.dw), p.groups = int(d.groups);
  p.step_h = int(d.sh / gcd(d.sh, d.dh)), p.step_w = int(d.sw / gcd(d.sw, d.dw));
  p.activation = d.activation, p.slope = d.negative_slope;
  return p;
}

}  // namespace
}  // namespace cuda
}  // namespace genrt

using namespace genrt::cuda;

// The kernel's index arithmetic on the host, one output at a time, in float64: every pixel of every (group, phase)
// GEMM, every reduction index k through the same phase_of / pixel_of / tap_of, the same epilogue. What it does not
// cover is the kernel's tiling, shared memory and tensor-core data movement.
extern "C" int genrt_cuda_conv_transpose2d_emulate(const GenrtCudaConvTranspose2d* pp, const double* x,
                                                   const double* w, const double* bias, const double* scale,
                                                   const double* shift, double* y) {
  const char* what = "conv_transpose2d (CUDA emulation)";
  if (!pp) return bad_argument(std::string(what) + ": no problem description");
  if (int s = check(*pp, what)) return s;
  const Problem p = make_problem(*pp);
  const int64_t khw = int64_t(p.kH) * p.kW, Cout = int64_t(p.Cog) * p.groups;
  for (int z = 0; z < p.sh * p.sw * p.groups; ++z) {
    const Phase f = phase_of(p, z);
    for (int64_t m = 0; m < f.M; ++m) {
      int n, t, u;
      pixel_of(f, m, n, t, u);
      for (int o = 0; o < p.Cog; ++o) {
        double acc = 0;
        for (int k = 0; k < f.K; ++k) {
          int c, kh, kw, dih, diw;
          tap_of(p, f, k, c, kh, kw, dih, diw);
          const int ih = t + dih, iw = u + diw;
          if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;
          const int64_t ci = int64_t(f.g) * p.Cig + c;
          acc += x[((int64_t(n) * p.groups * p.Cig + ci) * p.H + ih) * p.W + iw] *
                 w[(ci * p.Cog + o) * khw + kh * p.kW + kw];
        }
        const int64_t co = int64_t(f.g) * p.Cog + o;
        if (bias) acc += bias[co];
        if (scale) acc *= scale[co];
        if (shift) acc += shift[co];
        acc = activate(acc, p.activation, p.slope);
        y[((n * Cout + co) * p.Ho + f.q + int64_t(t) * p.sh) * p.Wo + f.r + int64_t(u) * p.sw] = acc;
      }
    }
  }
  return GENRT_CUDA_OK;
}

extern "C" int genrt_cuda_conv_transpose2d_forward(const GenrtCudaConvTranspose2d* pp, const void* x, const void* w,
                                                   const void* bias, const void* scale, const void* shift, void* y,
                                                   void* stream) {
  const char* what = "conv_transpose2d (CUDA)";
  if (!pp) return bad_argument(std::string(what) + ": no problem description");
  const GenrtCudaConvTranspose2d& d = *pp;
  if (int s = check(d, what)) return s;
  const Problem p = make_problem(d);
  const int64_t mq = d.N * ((d.Ho + d.sh - 1) / d.sh) * ((d.Wo + d.sw - 1) / d.sw);
  if ((mq + BM - 1) / BM >= (int64_t(1) << 31)) return bad_argument(std::string(what) + ": too many output pixels");
  const dim3 grid(unsigned((mq + BM - 1) / BM), unsigned((p.Cog + BN - 1) / BN), unsigned(d.sh * d.sw * d.groups));
  auto s = static_cast<cudaStream_t>(stream);
  return dispatch(d.dtype, what, [&](auto tag) {
    using T = decltype(tag);
    auto *px = static_cast<const T*>(x), *pw = static_cast<const T*>(w);
    auto *pb = static_cast<const T*>(bias), *ps = static_cast<const T*>(scale), *pt = static_cast<const T*>(shift);
    if constexpr (std::is_same<T, float>::value) {
      if (d.allow_tf32)
        conv_transpose2d_kernel<T, true><<<grid, kThreads, 0, s>>>(p, px, pw, pb, ps, pt, static_cast<T*>(y));
      else
        conv_transpose2d_kernel<T, false><<<grid, kThreads, 0, s>>>(p, px, pw, pb, ps, pt, static_cast<T*>(y));
    } else {
      conv_transpose2d_kernel<T, false><<<grid, kThreads, 0, s>>>(p, px, pw, pb, ps, pt, static_cast<T*>(y));
    }
    return launch_status(what);
  });
}
