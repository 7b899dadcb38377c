// genrt.MinibatchDiscrimination: M (N, B, C) -> (N, B), float or double. Attribute `threads` (int, optional):
// the kernel's thread count, set by genrt.load from the session's intra-op threads (default: all CPUs).
#include "../core/minibatch_discrimination.h"

#include "ort_ops.h"

namespace genrt {
namespace ort {
namespace {

struct MbdKernel {
  int threads;

  OrtStatus* ComputeV2(OrtKernelContext* context) {
    return guarded([&] {
      Ort::KernelContext ctx(context);
      OrtTensor m = input_tensor(ctx, 0, "M");
      check_ndim(m.ref, 3, "M of shape (N, B, C)");
      const auto type = m.ref.dtype == DType::f64 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
      OrtTensor out = output_tensor(ctx, 0, "out", type, {m.sizes[0], m.sizes[1]});
      OrtExecutor executor(context);
      ScopedExecutor scope(&executor);
      minibatch_discrimination_forward(m.ref, out.ref, threads);
    });
  }
};

template <ONNXTensorElementDataType Type>
struct MbdOp : MinibatchDiscriminationSchema<MbdOp<Type>, MbdKernel, Type> {
  OrtStatus* CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return guarded([&] { *kernel = new MbdKernel{int(int_attribute(info, "threads", hardware_threads()))}; });
  }
};

}  // namespace

void add_minibatch_discrimination(Ort::CustomOpDomain& domain) {
  static MbdOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> op_f32;
  static MbdOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE> op_f64;
  domain.Add(&op_f32);
  domain.Add(&op_f64);
}

}  // namespace ort
}  // namespace genrt
