// Shared device helpers of genrt's CUDA kernels: storage <-> arithmetic conversions, status reporting.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>

#include "genrt_cuda.h"

namespace genrt {
namespace cuda {

template <typename T>
struct Arith {  // the type sums are kept in
  using type = float;
};
template <>
struct Arith<double> {
  using type = double;
};

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ double to_float(double v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __forceinline__ double from_float<double>(float v) { return v; }
__device__ __forceinline__ double from_arith(double v, double*) { return v; }
template <typename T>
__device__ __forceinline__ T from_arith(float v, T*) { return from_float<T>(v); }

// Records `message` as this thread's last failure and returns GENRT_CUDA_BAD_ARGUMENT.
int bad_argument(const std::string& message);
// GENRT_CUDA_OK, or the launch's CUDA error recorded with `what`.
int launch_status(const char* what);

// Calls f<T>() with T the storage type of `dtype`; a bad dtype is an argument error.
template <typename F>
int dispatch(int dtype, const char* what, F&& f) {
  switch (dtype) {
    case GENRT_CUDA_F32: return f(float());
    case GENRT_CUDA_F16: return f(__half());
    case GENRT_CUDA_BF16: return f(__nv_bfloat16());
    case GENRT_CUDA_F64: return f(double());
    default: return bad_argument(std::string(what) + ": dtype code " + std::to_string(dtype) + " is not one of f32, f16, bf16, f64");
  }
}

}  // namespace cuda
}  // namespace genrt
