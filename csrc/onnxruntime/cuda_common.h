// Shared pieces of genrt's CUDA execution-provider kernels in the ORT library (built into genrt._ort_ops_cuda
// only). The kernels themselves are the extern "C" launchers of csrc/cuda/: this side reads ORT's tensors and
// stream, nvcc never sees ORT's headers.
#pragma once

#include "../cuda/genrt_cuda.h"
#include "ort_common.h"

namespace genrt {
namespace ort {

constexpr const char* kCudaProvider = "CUDAExecutionProvider";

// The launcher's dtype code of an ORT element type, or -1.
inline int cuda_dtype(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return GENRT_CUDA_F32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return GENRT_CUDA_F16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return GENRT_CUDA_BF16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return GENRT_CUDA_F64;
    default: return -1;
  }
}

// Throws the launcher's failure as genrt::Error (argument errors) or std::runtime_error (CUDA errors).
inline void check_cuda(int status) {
  if (status == GENRT_CUDA_OK) return;
  if (status == GENRT_CUDA_BAD_ARGUMENT) throw_value(genrt_cuda_error_string());
  throw std::runtime_error(genrt_cuda_error_string());
}

// The element types each CUDA op is registered for.
#define GENRT_CUDA_ORT_TYPES(X)                    \
  X(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, f32)      \
  X(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16, f16)    \
  X(ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16, bf16)

}  // namespace ort
}  // namespace genrt
