// genrt.ConvTranspose: ONNX ConvTranspose with genrt's kernel and a fused epilogue.
//
// Inputs: X (N, C_in, H, W), W (C_in, C_out/group, kH, kW), optional B, scale, shift (C_out) -- scale and shift
// are a folded BatchNormalization. Attributes as ONNX ConvTranspose (strides, pads [top, left, bottom, right]
// with top == bottom and left == right, output_padding, dilations, group) plus activation ("none", "relu",
// "leaky_relu", "tanh", "sigmoid"), alpha (leaky_relu's slope), precision ("f32", the default, or "bf16": float32
// operands rounded to bfloat16, float32 sums; CPU only) and threads. genrt.load writes these nodes in
// place of ConvTranspose [-> BatchNormalization] [-> activation] chains where the kernel measured faster.
#include "../core/conv_transpose2d.h"

#include "ort_ops.h"

namespace genrt {
namespace ort {
namespace {

std::vector<int64_t> ints(const Ort::ConstKernelInfo& info, const char* name, std::vector<int64_t> fallback) {
  try {
    return info.GetAttributes<int64_t>(name);
  } catch (const Ort::Exception&) {
    return fallback;
  }
}

void to_pair(const std::vector<int64_t>& v, const char* name, int64_t out[2]) {
  if (v.size() != 2) throw_value(std::string(name) + ": expected 2 values, got " + std::to_string(v.size()));
  out[0] = v[0];
  out[1] = v[1];
}

struct ConvTransposeKernel {
  ConvTranspose2dParams params;
  int threads = 1;
  // When W is a constant initializer: its packed layouts, built by the first Compute and reused (as ONNX
  // Runtime's own ConvTranspose prepacks its constant weights).
  std::unique_ptr<WeightCache> cache;

  OrtStatus* ComputeV2(OrtKernelContext* context) {
    return guarded([&] {
      Ort::KernelContext ctx(context);
      OrtTensor x = input_tensor(ctx, 0, "X"), w = input_tensor(ctx, 1, "W");
      const char* names[3] = {"B", "scale", "shift"};
      std::vector<std::unique_ptr<OrtTensor>> present;
      TensorRef optional[3];
      for (int i = 0; i < 3; ++i) {
        optional[i] = {names[i], nullptr, x.ref.dtype, 0, nullptr, nullptr};
        if (has_input(ctx, 2 + i)) {
          present.push_back(std::make_unique<OrtTensor>(input_tensor(ctx, 2 + i, names[i])));
          optional[i] = present.back()->ref;
        }
      }
      int64_t shape[4];
      conv_transpose2d_output_shape(x.ref, w.ref, params, shape);
      const auto type =
          x.ref.dtype == DType::f64 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
      OrtTensor y = output_tensor(ctx, 0, "Y", type, {shape[0], shape[1], shape[2], shape[3]});
      OrtExecutor executor(context);
      ScopedExecutor scope(&executor);
      conv_transpose2d_forward(x.ref, w.ref, optional[0], optional[1], optional[2], y.ref, params, threads,
                               cache.get());
    });
  }
};

template <ONNXTensorElementDataType Type>
struct ConvTransposeOp : ConvTransposeSchema<ConvTransposeOp<Type>, ConvTransposeKernel, Type> {
  OrtStatus* CreateKernelV2(const OrtApi&, const OrtKernelInfo* raw, void** kernel) const {
    return guarded([&] {
      auto k = std::make_unique<ConvTransposeKernel>();
      k->params = conv_transpose_attributes(raw);
      k->threads = int(int_attribute(raw, "threads", hardware_threads()));
      if (constant_input(raw, 1)) k->cache = std::make_unique<WeightCache>();
      *kernel = k.release();
    });
  }
};

}  // namespace

ConvTranspose2dParams conv_transpose_attributes(const OrtKernelInfo* raw) {
  Ort::ConstKernelInfo info(raw);
  ConvTranspose2dParams params;
  to_pair(ints(info, "strides", {1, 1}), "strides", params.stride);
  to_pair(ints(info, "output_padding", {0, 0}), "output_padding", params.output_padding);
  to_pair(ints(info, "dilations", {1, 1}), "dilations", params.dilation);
  const auto pads = ints(info, "pads", {0, 0, 0, 0});
  if (pads.size() != 4 || pads[0] != pads[2] || pads[1] != pads[3])
    throw_value("pads: expected [top, left, bottom, right] with top == bottom and left == right");
  params.padding[0] = pads[0];
  params.padding[1] = pads[1];
  params.groups = int_attribute(raw, "group", 1);
  std::string activation = "none";
  try {
    activation = info.GetAttribute<std::string>("activation");
  } catch (const Ort::Exception&) {
  }
  params.activation = parse_activation(activation);
  std::string precision = "f32";
  try {
    precision = info.GetAttribute<std::string>("precision");
  } catch (const Ort::Exception&) {
  }
  params.precision = parse_precision(precision);
  try {
    params.negative_slope = info.GetAttribute<float>("alpha");
  } catch (const Ort::Exception&) {
  }
  return params;
}

void add_conv_transpose(Ort::CustomOpDomain& domain) {
  static ConvTransposeOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> op_f32;
  static ConvTransposeOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE> op_f64;
  domain.Add(&op_f32);
  domain.Add(&op_f64);
}

}  // namespace ort
}  // namespace genrt
