// genrt.Conv: [Pad(mode)] -> Conv(kH x kW, strides) [-> Relu | LeakyRelu] in one node, with genrt's conv2d kernel
// (Winograd for 3x3 stride 1, a direct implicit GEMM otherwise).
//
// Inputs: X (N, C_in, H, W), W (C_out, C_in, kH, kW), optional B (C_out), optional A (N, C_in, 2) float32: an
// affine map (a, b) per input plane, x' = a x + b [then ReLU: input_activation "relu"] before the padding, a
// genrt.InstanceNormAffine's output (genrt.load folds an instance norm into the convolution that reads it, with
// precision bf16 only: genrt/runtime/fuse_norms.py). Attributes: pads [top, left, bottom,
// right] (top, bottom up to kH - 1; left, right up to kW - 1), strides [sh, sw] (default 1, 1), padding_mode
// ("zeros", "reflect", "edge": ONNX Pad's constant-0 / reflect / edge), activation ("none", "relu", "leaky_relu"),
// alpha (leaky_relu's slope, default 0.01), precision ("f32", the default, or "bf16": float32 operands rounded to
// bfloat16, float32 sums) and threads. Outputs: Y (N, C_out, H_out, W_out), optional S (N, C_out, 2) float64, each
// output plane's (mean, variance), float32 only: for an instance norm reading Y (genrt.InstanceNorm's and
// genrt.InstanceNormAffine's stats input; genrt.load adds it where the AMX kernel sums them as it writes Y).
// genrt.load writes these nodes in place of Pad -> Conv [-> Relu | LeakyRelu] chains where the kernel measured
// faster.
#include "../core/conv2d.h"

#include "ort_ops.h"

namespace genrt {
namespace ort {
namespace {

std::string string_attribute(const Ort::ConstKernelInfo& info, const char* name, const char* fallback) {
  try {
    return info.GetAttribute<std::string>(name);
  } catch (const Ort::Exception&) {
    return fallback;
  }
}

struct ConvKernel {
  Conv2dParams params;
  int threads = 1;
  // When W is a constant initializer: its Winograd transform or packing, built by the first Compute and reused.
  std::unique_ptr<WeightCache> cache;

  OrtStatus* ComputeV2(OrtKernelContext* context) {
    return guarded([&] {
      Ort::KernelContext ctx(context);
      OrtTensor x = input_tensor(ctx, 0, "X"), w = input_tensor(ctx, 1, "W");
      std::unique_ptr<OrtTensor> b;
      TensorRef bias{"B", nullptr, x.ref.dtype, 0, nullptr, nullptr};
      if (has_input(ctx, 2)) {
        b = std::make_unique<OrtTensor>(input_tensor(ctx, 2, "B"));
        bias = b->ref;
      }
      Conv2dParams p = params;
      if (has_input(ctx, 3)) {  // the input's affine map, (N, C_in, 2) float32
        OrtTensor a = input_tensor(ctx, 3, "A");
        if (a.ref.dtype != DType::f32 || a.ref.ndim != 3 || a.sizes[0] != x.sizes[0] || a.sizes[1] != x.sizes[1] ||
            a.sizes[2] != 2)
          throw_shape("A: expected float32 of shape (" + std::to_string(x.sizes[0]) + ", " +
                      std::to_string(x.sizes[1]) + ", 2) (X's N and C_in), got " + a.ref.shape_str());
        p.input_affine = static_cast<const float*>(a.ref.data);
      }
      int64_t shape[4];
      conv2d_output_shape(x.ref, w.ref, p, shape);
      const auto type =
          x.ref.dtype == DType::f64 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
      OrtTensor y = output_tensor(ctx, 0, "Y", type, {shape[0], shape[1], shape[2], shape[3]});
      std::unique_ptr<OrtTensor> s;
      if (has_output(ctx, 1)) {
        s = std::make_unique<OrtTensor>(
            output_tensor(ctx, 1, "S", ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE, {shape[0], shape[1], 2}));
        p.output_stats = static_cast<double*>(s->ref.data);
      }
      OrtExecutor executor(context);
      ScopedExecutor scope(&executor);
      conv2d_forward(x.ref, w.ref, bias, y.ref, p, threads, cache.get());
    });
  }
};

template <ONNXTensorElementDataType Type>
struct ConvOp : Ort::CustomOpBase<ConvOp<Type>, ConvKernel, true> {
  OrtStatus* CreateKernelV2(const OrtApi&, const OrtKernelInfo* raw, void** kernel) const {
    return guarded([&] {
      Ort::ConstKernelInfo info(raw);
      auto k = std::make_unique<ConvKernel>();
      std::vector<int64_t> pads{0, 0, 0, 0};
      try {
        pads = info.GetAttributes<int64_t>("pads");
      } catch (const Ort::Exception&) {
      }
      if (pads.size() != 4) throw_value("pads: expected [top, left, bottom, right]");
      for (int i = 0; i < 4; ++i) k->params.padding[i] = pads[i];
      std::vector<int64_t> strides{1, 1};
      try {
        strides = info.GetAttributes<int64_t>("strides");
      } catch (const Ort::Exception&) {
      }
      if (strides.size() != 2) throw_value("strides: expected [sh, sw]");
      k->params.stride[0] = strides[0];
      k->params.stride[1] = strides[1];
      k->params.padding_mode = parse_padding_mode(string_attribute(info, "padding_mode", "zeros"));
      k->params.activation = parse_activation(string_attribute(info, "activation", "none"));
      try {
        k->params.negative_slope = info.GetAttribute<float>("alpha");
      } catch (const Ort::Exception&) {
      }
      k->params.precision = parse_precision(string_attribute(info, "precision", "f32"));
      const std::string input_activation = string_attribute(info, "input_activation", "none");
      if (input_activation != "none" && input_activation != "relu")
        throw_value("input_activation: expected none or relu, got '" + input_activation + "'");
      k->params.input_relu = input_activation == "relu";
      k->threads = int(int_attribute(raw, "threads", hardware_threads()));
      if (constant_input(raw, 1)) k->cache = std::make_unique<WeightCache>();
      *kernel = k.release();
    });
  }
  const char* GetName() const { return "Conv"; }
  size_t GetInputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 3 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT : Type;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return required_first(index, 2);
  }
  size_t GetOutputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetOutputType(size_t index) const {
    return index == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE : Type;
  }
  OrtCustomOpInputOutputCharacteristic GetOutputCharacteristic(size_t index) const {
    return required_first(index, 1);
  }
};

}  // namespace

void add_conv(Ort::CustomOpDomain& domain) {
  static ConvOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> op_f32;
  static ConvOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE> op_f64;
  domain.Add(&op_f32);
  domain.Add(&op_f64);
}

}  // namespace ort
}  // namespace genrt
