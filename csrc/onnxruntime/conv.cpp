// genrt.Conv: [Pad(mode)] -> Conv(kH x kW, strides) [-> Relu | LeakyRelu] [-> Mul(c)] [-> Add(R)] in one node, with
// genrt's conv2d kernel (Winograd for 3x3 stride 1, a direct implicit GEMM otherwise).
//
// Inputs: X (N, C_in, H, W), W (C_out, C_in, kH, kW), optional B (C_out), optional A (N, C_in, 2) float32: an
// affine map (a, b) per input plane, x' = a x + b [then ReLU: input_activation "relu"] before the padding, a
// genrt.InstanceNormAffine's output (genrt.load folds an instance norm into the convolution that reads it, with
// precision bf16 only: genrt/runtime/fuse_norms.py); optional R, Y's shape: added to Y after the activation (a
// residual block's skip connection).
// Attributes: pads [top, left, bottom, right] (top, bottom up to kH - 1; left, right up to kW - 1), strides [sh, sw]
// (default 1, 1), padding_mode ("zeros", "reflect", "edge": ONNX Pad's constant-0 / reflect / edge), activation
// ("none", "relu", "leaky_relu"), alpha (leaky_relu's slope, default 0.01), precision ("f32", the default, or
// "bf16": float32 operands rounded to bfloat16, float32 sums) and threads.
// Outputs: Y (N, C_out, H_out, W_out), optional S (N, C_out, 2) float64, each output plane's (mean, variance),
// float32 only: for an instance norm reading Y (genrt.InstanceNorm's and genrt.InstanceNormAffine's stats input;
// genrt.load adds it where the AMX kernel sums them as it writes Y).
// genrt.load writes these nodes in place of such chains where the kernel measured faster (a Mul by a constant
// scalar folded into W and B; genrt/runtime/fuse.py).
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

// The attributes genrt.Conv and genrt.ConcatConv share: pads, strides, padding_mode, activation, alpha, precision,
// threads.
void read_attributes(const OrtKernelInfo* raw, Conv2dParams& params, int& threads) {
  Ort::ConstKernelInfo info(raw);
  std::vector<int64_t> pads{0, 0, 0, 0};
  try {
    pads = info.GetAttributes<int64_t>("pads");
  } catch (const Ort::Exception&) {
  }
  if (pads.size() != 4) throw_value("pads: expected [top, left, bottom, right]");
  for (int i = 0; i < 4; ++i) params.padding[i] = pads[i];
  std::vector<int64_t> strides{1, 1};
  try {
    strides = info.GetAttributes<int64_t>("strides");
  } catch (const Ort::Exception&) {
  }
  if (strides.size() != 2) throw_value("strides: expected [sh, sw]");
  params.stride[0] = strides[0];
  params.stride[1] = strides[1];
  params.padding_mode = parse_padding_mode(string_attribute(info, "padding_mode", "zeros"));
  params.activation = parse_activation(string_attribute(info, "activation", "none"));
  try {
    params.negative_slope = info.GetAttribute<float>("alpha");
  } catch (const Ort::Exception&) {
  }
  params.precision = parse_precision(string_attribute(info, "precision", "f32"));
  threads = int(int_attribute(raw, "threads", hardware_threads()));
}

// Input `index`, a residual added to the output (Conv2dParams::residual): Y's shape and X's dtype; held in `held`.
const void* residual_input(Ort::KernelContext& ctx, size_t index, const int64_t shape[4], DType dtype,
                           std::unique_ptr<OrtTensor>& held) {
  held = std::make_unique<OrtTensor>(input_tensor(ctx, index, "R"));
  const OrtTensor& r = *held;
  if (r.ref.dtype != dtype || r.ref.ndim != 4 || r.sizes[0] != shape[0] || r.sizes[1] != shape[1] ||
      r.sizes[2] != shape[2] || r.sizes[3] != shape[3])
    throw_shape("R: expected Y's shape (" + std::to_string(shape[0]) + ", " + std::to_string(shape[1]) + ", " +
                std::to_string(shape[2]) + ", " + std::to_string(shape[3]) + ") and X's dtype, got " +
                r.ref.shape_str());
  return r.ref.data;
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
      std::unique_ptr<OrtTensor> r;
      if (has_input(ctx, 4)) p.residual = residual_input(ctx, 4, shape, x.ref.dtype, r);
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
      auto k = std::make_unique<ConvKernel>();
      read_attributes(raw, k->params, k->threads);
      const std::string input_activation = string_attribute(Ort::ConstKernelInfo(raw), "input_activation", "none");
      if (input_activation != "none" && input_activation != "relu")
        throw_value("input_activation: expected none or relu, got '" + input_activation + "'");
      k->params.input_relu = input_activation == "relu";
      if (constant_input(raw, 1)) k->cache = std::make_unique<WeightCache>();
      *kernel = k.release();
    });
  }
  const char* GetName() const { return "Conv"; }
  size_t GetInputTypeCount() const { return 5; }
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

// genrt.ConcatConv: Concat(axis 1) -> genrt.Conv in one node, the concatenation never written (conv2d.h's
// conv2d_concat_forward). Inputs: W (C_out, sum of C_i, kH, kW), B (C_out), with attribute residual 1 then R (as
// genrt.Conv's), then X_1 .. X_k (N, C_i, H, W), the inputs of the concatenation in order. Attributes: genrt.Conv's
// but input_activation, and residual (0 or 1). Output: Y. genrt.load writes
// it in place of a Concat whose only readers are bfloat16 genrt.Conv nodes (genrt/runtime/fuse_concat.py).
struct ConcatConvKernel {
  Conv2dParams params;
  int threads = 1;
  bool residual = false;  // input 2 is R, not the first X
  std::unique_ptr<WeightCache> cache;

  OrtStatus* ComputeV2(OrtKernelContext* context) {
    return guarded([&] {
      Ort::KernelContext ctx(context);
      OrtTensor w = input_tensor(ctx, 0, "W"), b = input_tensor(ctx, 1, "B");
      const size_t first = residual ? 3 : 2;  // the first X
      std::vector<OrtTensor> held;
      held.reserve(ctx.GetInputCount());
      std::vector<TensorRef> xs;
      for (size_t i = first; i < ctx.GetInputCount(); ++i)
        xs.push_back(held.emplace_back(input_tensor(ctx, i, "X")).ref);
      int64_t shape[4];
      conv2d_concat_output_shape(xs, w.ref, params, shape);
      Conv2dParams p = params;
      std::unique_ptr<OrtTensor> r;
      if (residual) p.residual = residual_input(ctx, 2, shape, xs[0].dtype, r);
      const auto type =
          w.ref.dtype == DType::f64 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
      OrtTensor y = output_tensor(ctx, 0, "Y", type, {shape[0], shape[1], shape[2], shape[3]});
      OrtExecutor executor(context);
      ScopedExecutor scope(&executor);
      conv2d_concat_forward(xs, w.ref, b.ref, y.ref, p, threads, cache.get());
    });
  }
};

template <ONNXTensorElementDataType Type>
struct ConcatConvOp : Ort::CustomOpBase<ConcatConvOp<Type>, ConcatConvKernel, true> {
  OrtStatus* CreateKernelV2(const OrtApi&, const OrtKernelInfo* raw, void** kernel) const {
    return guarded([&] {
      auto k = std::make_unique<ConcatConvKernel>();
      read_attributes(raw, k->params, k->threads);
      k->residual = int_attribute(raw, "residual", 0) != 0;
      if (constant_input(raw, 0)) k->cache = std::make_unique<WeightCache>();
      *kernel = k.release();
    });
  }
  const char* GetName() const { return "ConcatConv"; }
  size_t GetInputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetInputType(size_t) const { return Type; }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return index < 2 ? OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_REQUIRED
                     : OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_VARIADIC;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return Type; }
};

}  // namespace

void add_conv(Ort::CustomOpDomain& domain) {
  static ConvOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> op_f32;
  static ConvOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE> op_f64;
  static ConcatConvOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> concat_f32;
  static ConcatConvOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE> concat_f64;
  domain.Add(&op_f32);
  domain.Add(&op_f64);
  domain.Add(&concat_f32);
  domain.Add(&concat_f64);
}

}  // namespace ort
}  // namespace genrt
