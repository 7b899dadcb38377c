// Minibatch discrimination (Salimans et al. 2016, "Improved Techniques for Training GANs", section 3.2).
//
//   forward:  o[i, b] = sum_{j != i} exp(-||M[i, b, :] - M[j, b, :]||_1)       M: (N, B, C) -> o: (N, B)
//   backward: dM[i, b, c] = -sum_{j != i} (g[i, b] + g[j, b]) e_ij sign(M[i, b, c] - M[j, b, c])
//
// The self term j == i is excluded, as in the paper's released code. Work is O(N^2 B C); extra memory is one
// packed copy of M (B, C, N) and O(N B) accumulators, never the (N, N, B, C) broadcast. Each pair (i, j) is
// visited once and its contribution added to both rows.
#pragma once

#include "common.h"

namespace genrt {

// m: (N, B, C) float32/float64, any strides. out: (N, B) C-contiguous, same dtype.
void minibatch_discrimination_forward(const TensorRef& m, const TensorRef& out, int threads);

// grad_out: (N, B) any strides. grad_m: (N, B, C) C-contiguous. All the dtype of m.
void minibatch_discrimination_backward(const TensorRef& m, const TensorRef& grad_out, const TensorRef& grad_m,
                                       int threads);

}  // namespace genrt
