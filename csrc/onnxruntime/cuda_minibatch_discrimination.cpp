// genrt.MinibatchDiscrimination on ORT's CUDA execution provider: M (N, B, C) -> (N, B), run by
// csrc/cuda/minibatch_discrimination.cu on the session's compute stream. The `threads` attribute is ignored.
#include "cuda_common.h"
#include "ort_ops.h"

namespace genrt {
namespace ort {
namespace {

struct CudaMbdKernel {
  OrtStatus* ComputeV2(OrtKernelContext* context) {
    return guarded([&] {
      Ort::KernelContext ctx(context);
      Ort::ConstValue m = ctx.GetInput(0);
      const auto info = m.GetTensorTypeAndShapeInfo();
      const auto shape = info.GetShape();
      if (shape.size() != 3) throw_shape("M: expected a 3-D tensor of shape (N, B, C), got " +
                                         std::to_string(shape.size()) + "-D");
      Ort::UnownedValue out = ctx.GetOutput(0, {shape[0], shape[1]});
      if (shape[0] * shape[1] == 0) return;
      check_cuda(genrt_cuda_minibatch_discrimination_forward(m.GetTensorRawData(), out.GetTensorMutableRawData(),
                                                             shape[0], shape[1], shape[2],
                                                             cuda_dtype(info.GetElementType()),
                                                             ctx.GetGPUComputeStream()));
    });
  }
};

template <ONNXTensorElementDataType Type>
struct CudaMbdOp : MinibatchDiscriminationSchema<CudaMbdOp<Type>, CudaMbdKernel, Type> {
  OrtStatus* CreateKernelV2(const OrtApi&, const OrtKernelInfo*, void** kernel) const {
    return guarded([&] { *kernel = new CudaMbdKernel{}; });
  }
  const char* GetExecutionProviderType() const { return kCudaProvider; }
};

}  // namespace

void add_cuda_minibatch_discrimination(Ort::CustomOpDomain& domain) {
#define GENRT_ADD(type, suffix)              \
  static CudaMbdOp<type> op_##suffix;        \
  domain.Add(&op_##suffix);
  GENRT_CUDA_ORT_TYPES(GENRT_ADD)
#undef GENRT_ADD
}

}  // namespace ort
}  // namespace genrt
