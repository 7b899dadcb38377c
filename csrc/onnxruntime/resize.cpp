// genrt.Resize: ONNX Resize's linear, cubic and nearest modes on the two spatial dimensions (genrt's resize kernel).
//
// Input: X (N, C, H, W) float32. Output: Y (N, C, floor(H scales[0]), floor(W scales[1])). Attributes: scales
// (floats [h, w], required), mode ("linear" | "cubic" | "nearest"), coordinate_transformation_mode (half_pixel,
// pytorch_half_pixel, align_corners, asymmetric; default half_pixel), cubic_coeff_a (float, default -0.75),
// nearest_mode (round_prefer_floor, the default, round_prefer_ceil, floor, ceil), threads.
// genrt.load writes these nodes in place of the ONNX Resize nodes they compute (genrt/runtime/fuse_resize.py).
#include "../core/resize.h"

#include "ort_ops.h"

namespace genrt {
namespace ort {
namespace {

struct ResizeKernel {
  ResizeParams params;
  int threads = 1;

  OrtStatus* ComputeV2(OrtKernelContext* context) {
    return guarded([&] {
      Ort::KernelContext ctx(context);
      OrtTensor x = input_tensor(ctx, 0, "X");
      int64_t shape[4];
      resize_output_shape(x.ref, params, shape);
      OrtTensor y =
          output_tensor(ctx, 0, "Y", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, {shape[0], shape[1], shape[2], shape[3]});
      OrtExecutor executor(context);
      ScopedExecutor scope(&executor);
      resize_forward(x.ref, y.ref, params, threads);
    });
  }
};

struct ResizeOp : Ort::CustomOpBase<ResizeOp, ResizeKernel, true> {
  OrtStatus* CreateKernelV2(const OrtApi&, const OrtKernelInfo* raw, void** kernel) const {
    return guarded([&] {
      Ort::ConstKernelInfo info(raw);
      auto k = std::make_unique<ResizeKernel>();
      const std::vector<float> scales = info.GetAttributes<float>("scales");
      if (scales.size() != 2) throw_value("scales: expected [h, w], got " + std::to_string(scales.size()) + " values");
      k->params.scale_h = scales[0];
      k->params.scale_w = scales[1];
      try {
        k->params.mode = parse_resize_mode(info.GetAttribute<std::string>("mode"));
      } catch (const Ort::Exception&) {
      }
      try {
        k->params.coordinates =
            parse_resize_coordinates(info.GetAttribute<std::string>("coordinate_transformation_mode"));
      } catch (const Ort::Exception&) {
      }
      try {
        k->params.cubic_a = info.GetAttribute<float>("cubic_coeff_a");
      } catch (const Ort::Exception&) {
      }
      try {
        k->params.nearest = parse_resize_nearest(info.GetAttribute<std::string>("nearest_mode"));
      } catch (const Ort::Exception&) {
      }
      k->threads = int(int_attribute(raw, "threads", hardware_threads()));
      *kernel = k.release();
    });
  }
  const char* GetName() const { return "Resize"; }
  size_t GetInputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetInputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

void add_resize(Ort::CustomOpDomain& domain) {
  static ResizeOp op;
  domain.Add(&op);
}

}  // namespace ort
}  // namespace genrt
