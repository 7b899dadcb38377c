// genrt's CUDA kernels as extern "C" launchers: plain C types, device pointers, a cudaStream_t passed as void*.
//
// This header includes no CUDA header, so host code compiled by the C++ compiler (the pybind11 module
// genrt._cuda, the ONNX Runtime custom-op library) can call the kernels without nvcc, and nvcc never sees ONNX
// Runtime's headers. Every launcher checks its arguments, enqueues its work on `stream` and returns 0, or a
// non-zero status whose text genrt_cuda_error_string() gives (for the calling thread's last failure).
//
// dtype: GENRT_CUDA_F32, F16, BF16 or F64. Inputs and outputs are dense row-major (C-contiguous) in that dtype;
// arithmetic is float32 (float64 for F64) whatever the storage type.
#pragma once

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { GENRT_CUDA_F32 = 0, GENRT_CUDA_F16 = 1, GENRT_CUDA_BF16 = 2, GENRT_CUDA_F64 = 3 };
enum { GENRT_CUDA_OK = 0, GENRT_CUDA_BAD_ARGUMENT = -1 };

// GPUs the CUDA runtime sees; 0 where there is no driver or no device (never an error).
int genrt_cuda_device_count(void);

// The text of the last failure on this thread (argument errors name the argument).
const char* genrt_cuda_error_string(void);

// Minibatch discrimination (see csrc/core/minibatch_discrimination.h). m: (N, B, C); out: (N, B).
int genrt_cuda_minibatch_discrimination_forward(const void* m, void* out, int64_t N, int64_t B, int64_t C, int dtype,
                                                void* stream);
// grad_out: (N, B); grad_m: (N, B, C).
int genrt_cuda_minibatch_discrimination_backward(const void* m, const void* grad_out, void* grad_m, int64_t N,
                                                 int64_t B, int64_t C, int dtype, void* stream);

// Transposed convolution with the fused epilogue act((y + bias) * scale + shift) (see
// csrc/core/conv_transpose2d.h for the formula; activation codes as genrt::Activation).
typedef struct GenrtCudaConvTranspose2d {
  int64_t N, Cin, H, W;    // x: (N, Cin, H, W)
  int64_t Cout, kH, kW;    // w: (Cin, Cout / groups, kH, kW)
  int64_t Ho, Wo;          // y: (N, Cout, Ho, Wo); output_padding is implied by Ho and Wo
  int64_t sh, sw, ph, pw, dh, dw, groups;
  int activation;          // 0 none, 1 relu, 2 leaky_relu, 3 tanh, 4 sigmoid
  float negative_slope;
  int dtype;
  int allow_tf32;          // float32 only: use TF32 tensor cores (10-bit mantissa products, float32 sums)
} GenrtCudaConvTranspose2d;

// bias, scale, shift: (Cout,) in dtype, or NULL.
int genrt_cuda_conv_transpose2d_forward(const GenrtCudaConvTranspose2d* p, const void* x, const void* w,
                                        const void* bias, const void* scale, const void* shift, void* y,
                                        void* stream);

// The same computation on the host in float64, through the kernel's own phase and tap index functions
// (conv_transpose2d_phases.h), serially: how the GPU kernel's index arithmetic is tested where there is no GPU.
// Pointers are host memory; dtype and allow_tf32 are ignored.
int genrt_cuda_conv_transpose2d_emulate(const GenrtCudaConvTranspose2d* p, const double* x, const double* w,
                                        const double* bias, const double* scale, const double* shift, double* y);

#ifdef __cplusplus
}
#endif
