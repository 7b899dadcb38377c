// The ops of genrt's ORT custom-op library; each file adds its op(s) to the "genrt" domain.
#pragma once

#include "../core/conv_transpose2d.h"
#include "ort_common.h"

namespace genrt {
namespace ort {

void add_conv(Ort::CustomOpDomain& domain);
void add_conv_transpose(Ort::CustomOpDomain& domain);
void add_instance_norm(Ort::CustomOpDomain& domain);
void add_fill_sweeps(Ort::CustomOpDomain& domain);
void add_resize(Ort::CustomOpDomain& domain);
void add_minibatch_discrimination(Ort::CustomOpDomain& domain);
#ifdef GENRT_WITH_CUDA
void add_cuda_conv_transpose(Ort::CustomOpDomain& domain);  // CUDA execution-provider kernels
void add_cuda_minibatch_discrimination(Ort::CustomOpDomain& domain);
#endif

// The inputs and outputs of genrt.ConvTranspose (X, W, optional B, scale, shift -> Y) and of
// genrt.MinibatchDiscrimination (M -> out), all of one element type: shared by the CPU and CUDA ops, which add
// CreateKernelV2 (and the CUDA ones GetExecutionProviderType).
template <typename Op, typename Kernel, ONNXTensorElementDataType Type>
struct ConvTransposeSchema : Ort::CustomOpBase<Op, Kernel, true> {
  const char* GetName() const { return "ConvTranspose"; }
  size_t GetInputTypeCount() const { return 5; }
  ONNXTensorElementDataType GetInputType(size_t) const { return Type; }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return required_first(index, 2);
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return Type; }
};

template <typename Op, typename Kernel, ONNXTensorElementDataType Type>
struct MinibatchDiscriminationSchema : Ort::CustomOpBase<Op, Kernel, true> {
  const char* GetName() const { return "MinibatchDiscrimination"; }
  size_t GetInputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetInputType(size_t) const { return Type; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return Type; }
};

// genrt.ConvTranspose's attributes (ONNX ConvTranspose's plus activation and alpha), shared by the CPU and CUDA
// kernels.
ConvTranspose2dParams conv_transpose_attributes(const OrtKernelInfo* info);

}  // namespace ort
}  // namespace genrt
