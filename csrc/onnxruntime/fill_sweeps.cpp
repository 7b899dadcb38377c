// genrt.FillSweeps: count Jacobi sweeps of a hole fill in one node (genrt's fill_sweeps kernel).
//
// Inputs: X (N, C, H, W), the fill to start from; V (N, C, H, W), the known values (zero in the hole); A (N | 1,
// C | 1, H, W), the unknown share (1 in the hole); W (C, 1, k, k), the depthwise stencil (k odd). Attributes:
// count (int, default 1), mode ("replace": y = V + A conv(edge_pad(y)); "relax": y = V + A (y + damping
// (conv(edge_pad(y)) / divisor - y))), divisor and damping (floats, default 1), threads. genrt.load writes these
// nodes in place of runs of the sweeps an inpainter's graph spells out in Pad, Conv, Div, Sub, Mul and Add nodes
// (genrt/runtime/fuse_sweeps.py).
#include "../core/fill_sweeps.h"

#include "ort_ops.h"

namespace genrt {
namespace ort {
namespace {

struct FillSweepsKernel {
  FillSweepsParams params;
  int threads = 1;

  OrtStatus* ComputeV2(OrtKernelContext* context) {
    return guarded([&] {
      Ort::KernelContext ctx(context);
      OrtTensor x = input_tensor(ctx, 0, "X"), v = input_tensor(ctx, 1, "V"), a = input_tensor(ctx, 2, "A"),
                w = input_tensor(ctx, 3, "W");
      check_ndim(x.ref, 4, "X of shape (N, C, H, W)");
      OrtTensor y = output_tensor(ctx, 0, "Y", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, x.sizes);
      OrtExecutor executor(context);
      ScopedExecutor scope(&executor);
      fill_sweeps_forward(x.ref, v.ref, a.ref, w.ref, y.ref, params, threads);
    });
  }
};

struct FillSweepsOp : Ort::CustomOpBase<FillSweepsOp, FillSweepsKernel, true> {
  OrtStatus* CreateKernelV2(const OrtApi&, const OrtKernelInfo* raw, void** kernel) const {
    return guarded([&] {
      Ort::ConstKernelInfo info(raw);
      auto k = std::make_unique<FillSweepsKernel>();
      k->params.count = int_attribute(raw, "count", 1);
      std::string mode = "replace";
      try {
        mode = info.GetAttribute<std::string>("mode");
      } catch (const Ort::Exception&) {
      }
      k->params.mode = parse_fill_sweep_mode(mode);
      for (auto [name, slot] : {std::pair{"divisor", &k->params.divisor}, std::pair{"damping", &k->params.damping}})
        try {
          *slot = info.GetAttribute<float>(name);
        } catch (const Ort::Exception&) {
        }
      k->threads = int(int_attribute(raw, "threads", hardware_threads()));
      *kernel = k.release();
    });
  }
  const char* GetName() const { return "FillSweeps"; }
  size_t GetInputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetInputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

void add_fill_sweeps(Ort::CustomOpDomain& domain) {
  static FillSweepsOp op;
  domain.Add(&op);
}

}  // namespace ort
}  // namespace genrt
