// Minibatch discrimination kernel bodies, compiled once per instruction set (see simd.h).
//
// M is first packed to (B, C, Np): for one kernel b, the C coordinates of all N samples lie in C rows, so the
// distances from sample i to samples j..j+W-1 are W-wide vector operations, and exp runs on whole vectors.
// Np = N rounded up to the vector width plus one vector, zero padded, so every load below stays in bounds; lanes
// past N (and the lane j == i) are masked to zero.
//
// Two schedules, chosen by how the B kernels divide among the threads:
//   symmetric: one task per kernel b; each pair (i, j > i) is computed once and credited to both rows.
//   rows:      one task per (b, i); row i sums over all j != i. Twice the arithmetic, but it keeps every
//              thread busy when B is smaller than the thread count.
#include <algorithm>
#include <vector>

#include "parallel.h"
#include "simd.h"

namespace genrt {
namespace GENRT_ISA_NS {
namespace {

template <typename T>
constexpr int W = Vec<T>::size;

template <typename T>
struct Layout {
  int64_t N, B, C, Np;
  explicit Layout(const int64_t* sizes)
      : N(sizes[0]), B(sizes[1]), C(sizes[2]), Np((sizes[0] + W<T> - 1) / W<T> * W<T> + W<T>) {}
};

// Small problems are not worth waking the pool for.
int effective_threads(const int64_t* sizes, int threads) {
  const double work = double(sizes[0]) * double(sizes[0]) * double(sizes[1]) * double(sizes[2]);
  return work < 65536.0 ? 1 : std::max(threads, 1);
}

bool use_symmetric(int64_t B, int threads) {
  const int64_t per_thread = (B + threads - 1) / threads;  // kernels on the busiest thread
  return per_thread * threads <= 2 * B;                   // symmetric does half the work of the row schedule
}

template <typename T>
void pack_m(const T* m, const int64_t* strides, const Layout<T>& L, T* dst, int threads) {
  parallel_for(L.B, threads, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t c = 0; c < L.C; ++c) {
        T* row = dst + (b * L.C + c) * L.Np;
        const T* src = m + b * strides[1] + c * strides[2];
        for (int64_t j = 0; j < L.N; ++j) row[j] = src[j * strides[0]];
        std::fill(row + L.N, row + L.Np, T(0));
      }
  });
}

template <typename T>
void pack_g(const T* g, const int64_t* strides, const Layout<T>& L, T* dst) {
  for (int64_t b = 0; b < L.B; ++b) {
    T* row = dst + b * L.Np;
    for (int64_t j = 0; j < L.N; ++j) row[j] = g[j * strides[0] + b * strides[1]];
    std::fill(row + L.N, row + L.Np, T(0));
  }
}

template <typename T>
inline ivec_t<T> lane_index() {
  ivec_t<T> idx{};
  for (int k = 0; k < W<T>; ++k) idx[k] = k;
  return idx;
}

// e_ij for j in [j, j + W): exp(-||x_i - x_j||_1), lanes j >= N or j == i set to zero.
template <typename T>
inline vec_t<T> pair_weights(const T* x, const Layout<T>& L, int64_t i, int64_t j) {
  using V = vec_t<T>;
  using I = ivec_t<T>;
  V d = splat<T>(0);
  for (int64_t c = 0; c < L.C; ++c) d += vabs<T>(load<T>(x + c * L.Np + j) - x[c * L.Np + i]);
  V e = vexp_nonpos<T>(-d);
  if (j + W<T> > L.N || (j <= i && i < j + W<T>)) {
    using E = decltype(I{}[0] + 0);
    const I idx = lane_index<T>() + E(j);
    const I keep = (idx < E(L.N)) & (idx != E(i));
    e = (V)((I)e & keep);
  }
  return e;
}

// Sum of e_ij over j in [j0, N); if o is given, e_ij is also added to o[j].
template <typename T>
T forward_row(const T* x, const Layout<T>& L, int64_t i, int64_t j0, T* o) {
  vec_t<T> acc = splat<T>(0);
  for (int64_t j = j0; j < L.N; j += W<T>) {
    const vec_t<T> e = pair_weights(x, L, i, j);
    acc += e;
    if (o) store<T>(o + j, load<T>(o + j) + e);
  }
  return hsum<T>(acc);
}

// Row i's share of dM over j in [j0, N): returns -sum_j w_ij s_ij per coordinate in gi[c], where
// w_ij = (g_i + g_j) e_ij and s_ij = sign(x_i - x_j). If G is given, w_ij s_ij is added to G[c, j].
template <typename T>
void backward_row(const T* x, const T* g, const Layout<T>& L, int64_t i, int64_t j0, T* G, vec_t<T>* local,
                  T* gi) {
  using V = vec_t<T>;
  for (int64_t c = 0; c < L.C; ++c) local[c] = splat<T>(0);
  for (int64_t j = j0; j < L.N; j += W<T>) {
    const V w = (load<T>(g + j) + g[i]) * pair_weights(x, L, i, j);
    for (int64_t c = 0; c < L.C; ++c) {
      const V ws = w * vsign<T>(x[c * L.Np + i] - load<T>(x + c * L.Np + j));
      local[c] += ws;
      if (G) store<T>(G + c * L.Np + j, load<T>(G + c * L.Np + j) + ws);
    }
  }
  for (int64_t c = 0; c < L.C; ++c) gi[c] = -hsum<T>(local[c]);
}

template <typename T>
void forward_impl(const T* m, const int64_t* sizes, const int64_t* strides, T* out, int threads) {
  const Layout<T> L(sizes);
  if (L.N == 0 || L.B == 0) return;
  threads = effective_threads(sizes, threads);
  std::vector<T> packed(size_t(L.B * L.C * L.Np));  // (B, C, Np)
  pack_m(m, strides, L, packed.data(), threads);
  if (use_symmetric(L.B, threads)) {
    parallel_for(L.B, threads, [&](int64_t b0, int64_t b1) {
      std::vector<T> o(size_t(L.Np));
      for (int64_t b = b0; b < b1; ++b) {
        const T* x = packed.data() + b * L.C * L.Np;
        std::fill(o.begin(), o.end(), T(0));
        for (int64_t i = 0; i < L.N; ++i) o[i] += forward_row(x, L, i, i + 1, o.data());
        for (int64_t i = 0; i < L.N; ++i) out[i * L.B + b] = o[i];
      }
    });
  } else {
    parallel_for(L.B * L.N, threads, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / L.N, i = r % L.N;
        out[i * L.B + b] = forward_row<T>(packed.data() + b * L.C * L.Np, L, i, 0, nullptr);
      }
    });
  }
}

template <typename T>
void backward_impl(const T* m, const int64_t* sizes, const int64_t* strides, const T* g, const int64_t* g_strides,
                   T* grad_m, int threads) {
  const Layout<T> L(sizes);
  if (L.N == 0 || L.B == 0) return;
  threads = effective_threads(sizes, threads);
  std::vector<T> packed(size_t(L.B * L.C * L.Np)), packed_g(size_t(L.B * L.Np));
  pack_m(m, strides, L, packed.data(), threads);
  pack_g(g, g_strides, L, packed_g.data());
  auto dm = [&](int64_t i, int64_t b, int64_t c) -> T& { return grad_m[(i * L.B + b) * L.C + c]; };
  if (use_symmetric(L.B, threads)) {
    parallel_for(L.B, threads, [&](int64_t b0, int64_t b1) {
      std::vector<T> G(size_t(L.C * L.Np)), gi(size_t(L.C));
      std::vector<vec_t<T>> local(size_t(L.C));
      for (int64_t b = b0; b < b1; ++b) {
        const T* x = packed.data() + b * L.C * L.Np;
        std::fill(G.begin(), G.end(), T(0));
        for (int64_t i = 0; i < L.N; ++i) {
          backward_row(x, packed_g.data() + b * L.Np, L, i, i + 1, G.data(), local.data(), gi.data());
          for (int64_t c = 0; c < L.C; ++c) dm(i, b, c) = G[c * L.Np + i] + gi[c];
        }
      }
    });
  } else {
    parallel_for(L.B * L.N, threads, [&](int64_t r0, int64_t r1) {
      std::vector<T> gi(size_t(L.C));
      std::vector<vec_t<T>> local(size_t(L.C));
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / L.N, i = r % L.N;
        backward_row<T>(packed.data() + b * L.C * L.Np, packed_g.data() + b * L.Np, L, i, 0, nullptr,
                        local.data(), gi.data());
        for (int64_t c = 0; c < L.C; ++c) dm(i, b, c) = gi[c];
      }
    });
  }
}

}  // namespace

void minibatch_discrimination_forward_kernel(const float* m, const int64_t* sizes, const int64_t* strides,
                                             float* out, int threads) {
  forward_impl(m, sizes, strides, out, threads);
}
void minibatch_discrimination_forward_kernel(const double* m, const int64_t* sizes, const int64_t* strides,
                                             double* out, int threads) {
  forward_impl(m, sizes, strides, out, threads);
}
void minibatch_discrimination_backward_kernel(const float* m, const int64_t* sizes, const int64_t* strides,
                                              const float* g, const int64_t* g_strides, float* grad_m,
                                              int threads) {
  backward_impl(m, sizes, strides, g, g_strides, grad_m, threads);
}
void minibatch_discrimination_backward_kernel(const double* m, const int64_t* sizes, const int64_t* strides,
                                              const double* g, const int64_t* g_strides, double* grad_m,
                                              int threads) {
  backward_impl(m, sizes, strides, g, g_strides, grad_m, threads);
}

}  // namespace GENRT_ISA_NS
}  // namespace genrt
