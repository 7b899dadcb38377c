// Minibatch discrimination on the GPU (Salimans et al. 2016, section 3.2), the formula of
// csrc/core/minibatch_discrimination.h:
//
//   forward:  o[i, b] = sum_{j != i} exp(-||M[i, b, :] - M[j, b, :]||_1)
//   backward: dM[i, b, c] = -sum_{j != i} (g[i, b] + g[j, b]) e_ij sign(M[i, b, c] - M[j, b, c])
//
// One thread per row i and one block row per b (grid: N / 128 x B). The rows j stream through shared memory in
// tiles, converted to the arithmetic type once per tile, so extra memory is O(N B): never the N x N x B x C
// broadcast. Every thread visits all j, so each pair is computed twice -- on the GPU that costs less than the
// atomics a visit-once scheme would need. float16 / bfloat16 are stored as such and summed in float32.
#include <algorithm>

#include "common.cuh"

namespace genrt {
namespace cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kTileBytes = 32768;  // shared memory for the j tile

// Own row in registers: CR >= C, unrolled. CR == 0: C is large, read the own row through the L1 cache.
template <typename T, int CR>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const T* __restrict__ m, T* __restrict__ out, int N, int B, int C, int tile) {
  using A = typename Arith<T>::type;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* tj = reinterpret_cast<A*>(smem_raw);  // (tile, C)
  const int b = blockIdx.y;
  const int i = blockIdx.x * kThreads + threadIdx.x;
  const bool active = i < N;
  const T* mi = m + (int64_t(i) * B + b) * C;
  A own[CR > 0 ? CR : 1];
  if (CR > 0) {
#pragma unroll
    for (int c = 0; c < (CR > 0 ? CR : 1); ++c) own[c] = active && c < C ? A(to_float(mi[c])) : A(0);
  }
  A acc = 0;
  for (int j0 = 0; j0 < N; j0 += tile) {
    const int jn = min(tile, N - j0);
    __syncthreads();
    for (int e = threadIdx.x; e < jn * C; e += kThreads) {
      const int jj = e / C, c = e - jj * C;
      tj[e] = A(to_float(m[(int64_t(j0 + jj) * B + b) * C + c]));
    }
    __syncthreads();
    if (!active) continue;
    for (int jj = 0; jj < jn; ++jj) {
      const A* row = tj + jj * C;
      A d = 0;
      if (CR > 0) {
#pragma unroll
        for (int c = 0; c < (CR > 0 ? CR : 1); ++c)
          if (c < C) d += fabs(own[c] - row[c]);
      } else {
        for (int c = 0; c < C; ++c) d += fabs(A(to_float(__ldg(mi + c))) - row[c]);
      }
      acc += (j0 + jj == i) ? A(0) : exp(-d);
    }
  }
  if (active) out[int64_t(i) * B + b] = from_arith(acc, static_cast<T*>(nullptr));
}

// Accumulates dM for the columns [c0, c0 + CR) of row i (CR per pass; the launcher makes ceil(C / CR) passes when
// C > CR, each recomputing the distances).
template <typename T, int CR>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* __restrict__ m, const T* __restrict__ g, T* __restrict__ grad, int N, int B, int C,
                    int tile, int c0) {
  using A = typename Arith<T>::type;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* tj = reinterpret_cast<A*>(smem_raw);  // (tile, C)
  A* gj = tj + tile * C;                   // (tile,)
  const int b = blockIdx.y;
  const int i = blockIdx.x * kThreads + threadIdx.x;
  const bool active = i < N;
  const T* mi = m + (int64_t(i) * B + b) * C;
  const A gi = active ? A(to_float(g[int64_t(i) * B + b])) : A(0);
  A own[CR], acc[CR];
#pragma unroll
  for (int c = 0; c < CR; ++c) {
    own[c] = active && c0 + c < C ? A(to_float(mi[c0 + c])) : A(0);
    acc[c] = 0;
  }
  for (int j0 = 0; j0 < N; j0 += tile) {
    const int jn = min(tile, N - j0);
    __syncthreads();
    for (int e = threadIdx.x; e < jn * C; e += kThreads) {
      const int jj = e / C, c = e - jj * C;
      tj[e] = A(to_float(m[(int64_t(j0 + jj) * B + b) * C + c]));
    }
    for (int jj = threadIdx.x; jj < jn; jj += kThreads) gj[jj] = A(to_float(g[int64_t(j0 + jj) * B + b]));
    __syncthreads();
    if (!active) continue;
    for (int jj = 0; jj < jn; ++jj) {
      if (j0 + jj == i) continue;
      const A* row = tj + jj * C;
      A d = 0;
      if (C <= CR) {
#pragma unroll
        for (int c = 0; c < CR; ++c)
          if (c < C) d += fabs(own[c] - row[c]);
      } else {
        for (int c = 0; c < C; ++c) d += fabs(A(to_float(__ldg(mi + c))) - row[c]);
      }
      const A wgt = (gi + gj[jj]) * exp(-d);
#pragma unroll
      for (int c = 0; c < CR; ++c) {
        const A diff = own[c] - row[c0 + c < C ? c0 + c : 0];
        acc[c] -= wgt * A((diff > A(0)) - (diff < A(0)));
      }
    }
  }
  if (active) {
    T* gi_out = grad + (int64_t(i) * B + b) * C;
#pragma unroll
    for (int c = 0; c < CR; ++c)
      if (c0 + c < C) gi_out[c0 + c] = from_arith(acc[c], static_cast<T*>(nullptr));
  }
}

int check(int64_t N, int64_t B, int64_t C, int64_t tile, const char* what) {
  if (N < 1 || B < 1 || C < 1)
    return bad_argument(std::string(what) + ": expected M of shape (N, B, C) with every size >= 1, got (" +
                        std::to_string(N) + ", " + std::to_string(B) + ", " + std::to_string(C) + ")");
  if (N > (int64_t(1) << 30) || B > 65535 || N * B * C > (int64_t(1) << 40))
    return bad_argument(std::string(what) + ": M is too large for the CUDA kernel (N <= 2^30, B <= 65535)");
  if (tile < 1)
    return bad_argument(std::string(what) + ": C = " + std::to_string(C) + " is too large for the CUDA kernel");
  return GENRT_CUDA_OK;
}

// Rows j per tile: `extra` values per row besides its C (the backward's g), at most 256 rows.
template <typename A>
int tile_rows(int64_t C, int extra) {
  return int(std::min<int64_t>(256, int64_t(kTileBytes / sizeof(A)) / (C + extra)));
}

}  // namespace
}  // namespace cuda
}  // namespace genrt

using namespace genrt::cuda;

extern "C" int genrt_cuda_minibatch_discrimination_forward(const void* m, void* out, int64_t N, int64_t B, int64_t C,
                                                           int dtype, void* stream) {
  const char* what = "minibatch_discrimination (CUDA)";
  return dispatch(dtype, what, [&](auto tag) {
    using T = decltype(tag);
    using A = typename Arith<T>::type;
    const int tile = tile_rows<A>(C, 0);
    if (int s = check(N, B, C, tile, what)) return s;
    const dim3 grid(unsigned((N + kThreads - 1) / kThreads), unsigned(B));
    const size_t smem = size_t(tile) * C * sizeof(A);
    auto s = static_cast<cudaStream_t>(stream);
    auto* pm = static_cast<const T*>(m);
    auto* po = static_cast<T*>(out);
    if (C <= 8)
      forward_kernel<T, 8><<<grid, kThreads, smem, s>>>(pm, po, int(N), int(B), int(C), tile);
    else if (C <= 32)
      forward_kernel<T, 32><<<grid, kThreads, smem, s>>>(pm, po, int(N), int(B), int(C), tile);
    else
      forward_kernel<T, 0><<<grid, kThreads, smem, s>>>(pm, po, int(N), int(B), int(C), tile);
    return launch_status(what);
  });
}

extern "C" int genrt_cuda_minibatch_discrimination_backward(const void* m, const void* grad_out, void* grad_m,
                                                            int64_t N, int64_t B, int64_t C, int dtype,
                                                            void* stream) {
  const char* what = "minibatch_discrimination_backward (CUDA)";
  return dispatch(dtype, what, [&](auto tag) {
    using T = decltype(tag);
    using A = typename Arith<T>::type;
    const int tile = tile_rows<A>(C, 1);
    if (int s = check(N, B, C, tile, what)) return s;
    const dim3 grid(unsigned((N + kThreads - 1) / kThreads), unsigned(B));
    const size_t smem = (size_t(tile) * C + tile) * sizeof(A);
    auto s = static_cast<cudaStream_t>(stream);
    auto* pm = static_cast<const T*>(m);
    auto* pg = static_cast<const T*>(grad_out);
    auto* pd = static_cast<T*>(grad_m);
    if (C <= 8) {
      backward_kernel<T, 8><<<grid, kThreads, smem, s>>>(pm, pg, pd, int(N), int(B), int(C), tile, 0);
    } else {
      for (int64_t c0 = 0; c0 < C; c0 += 32)
        backward_kernel<T, 32><<<grid, kThreads, smem, s>>>(pm, pg, pd, int(N), int(B), int(C), tile, int(c0));
    }
    return launch_status(what);
  });
}
