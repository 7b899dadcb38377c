// genrt.InstanceNorm: instance normalization with a per-channel or per-sample affine and an optional ReLU, in one
// node (genrt's instance_norm kernel).
//
// Inputs: X (N, C, H, W); optional scale and bias, each C values ((C,), (1, C, 1, 1)) or N x C ((N, C),
// (N, C, 1, 1)), X's type: ONNX InstanceNormalization's scale and B, or the (1, C, 1, 1) tensors a multi-style
// network computes from its style vector; optional residual, added before the activation (a residual block's skip
// connection): X's shape, or one that broadcasts to it (numpy rules); optional stats (N, C, 2) float64, each plane's
// (mean, variance) when its producer already summed them (genrt.Conv's output S), so X is read once. Attributes:
// epsilon (float, default 1e-5), activation ("none", "relu"), threads. genrt.load writes these nodes in place of
// InstanceNormalization [-> Relu] and of instance norms written out in elementary ops (genrt/runtime/fuse_norms.py).
#include "../core/instance_norm.h"

#include "ort_ops.h"

namespace genrt {
namespace ort {
namespace {

// The optional scale and bias inputs (1 and 2): absent ones as data == nullptr.
struct AffineInputs {
  std::unique_ptr<OrtTensor> held[2];
  TensorRef refs[2];

  AffineInputs(Ort::KernelContext& ctx, DType dtype)
      : refs{{"scale", nullptr, dtype, 0, nullptr, nullptr}, {"bias", nullptr, dtype, 0, nullptr, nullptr}} {
    const char* names[2] = {"scale", "bias"};
    for (int i = 0; i < 2; ++i)
      if (has_input(ctx, size_t(i + 1))) {
        held[i] = std::make_unique<OrtTensor>(input_tensor(ctx, size_t(i + 1), names[i]));
        refs[i] = held[i]->ref;
      }
  }
};

// The attributes both ops read: epsilon (default 1e-5) and threads.
void read_epsilon_threads(const OrtKernelInfo* raw, double& epsilon, int& threads) {
  try {
    epsilon = Ort::ConstKernelInfo(raw).GetAttribute<float>("epsilon");
  } catch (const Ort::Exception&) {
  }
  threads = int(int_attribute(raw, "threads", hardware_threads()));
}

struct InstanceNormKernel {
  double epsilon = 1e-5;
  Activation activation = Activation::none;
  int threads = 1;

  OrtStatus* ComputeV2(OrtKernelContext* context) {
    return guarded([&] {
      Ort::KernelContext ctx(context);
      OrtTensor x = input_tensor(ctx, 0, "X");
      check_ndim(x.ref, 4, "X of shape (N, C, H, W)");
      const AffineInputs affine(ctx, x.ref.dtype);
      const TensorRef* refs = affine.refs;
      // The residual as a view of X's shape: broadcast axes get stride 0 (the kernel packs such a view).
      std::unique_ptr<OrtTensor> res;
      int64_t res_strides[4] = {0, 0, 0, 0};
      TensorRef residual{"residual", nullptr, x.ref.dtype, 0, nullptr, nullptr};
      if (has_input(ctx, 3)) {
        res = std::make_unique<OrtTensor>(input_tensor(ctx, 3, "residual"));
        const int rank = res->ref.ndim, off = 4 - rank;
        if (rank > 4) throw_shape("residual: expected at most 4 dimensions, got " + res->ref.shape_str());
        for (int d = 0; d < 4; ++d) {
          const int64_t size = d < off ? 1 : res->sizes[d - off];
          if (size != x.sizes[d] && size != 1)
            throw_shape("residual: shape " + res->ref.shape_str() + " does not broadcast to X's " + x.ref.shape_str());
          res_strides[d] = size == 1 ? 0 : res->strides[d - off];
        }
        residual = {"residual", res->ref.data, res->ref.dtype, 4, x.sizes.data(), res_strides};
      }
      const auto type =
          x.ref.dtype == DType::f64 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
      OrtTensor y = output_tensor(ctx, 0, "Y", type, x.sizes);
      OrtExecutor executor(context);
      ScopedExecutor scope(&executor);
      const double* stats = stats_input(ctx, 4, x.sizes[0], x.sizes[1]);
      instance_norm_forward(x.ref, refs[0], refs[1], residual, y.ref, epsilon, activation, threads, stats);
    });
  }
};

template <ONNXTensorElementDataType Type>
struct InstanceNormOp : Ort::CustomOpBase<InstanceNormOp<Type>, InstanceNormKernel, true> {
  OrtStatus* CreateKernelV2(const OrtApi&, const OrtKernelInfo* raw, void** kernel) const {
    return guarded([&] {
      Ort::ConstKernelInfo info(raw);
      auto k = std::make_unique<InstanceNormKernel>();
      read_epsilon_threads(raw, k->epsilon, k->threads);
      std::string activation = "none";
      try {
        activation = info.GetAttribute<std::string>("activation");
      } catch (const Ort::Exception&) {
      }
      k->activation = parse_activation(activation);
      if (k->activation != Activation::none && k->activation != Activation::relu)
        throw_value("activation: expected none or relu, got " + activation);
      *kernel = k.release();
    });
  }
  const char* GetName() const { return "InstanceNorm"; }
  size_t GetInputTypeCount() const { return 5; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 4 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE : Type;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return required_first(index, 1);
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return Type; }
};

// genrt.InstanceNormAffine: the same statistics as an affine map, for a genrt.Conv that normalizes its input itself.
// Inputs: X (N, C, H, W) float32, optional scale and bias as above, optional stats as above (X is then not read).
// Output: A (N, C, 2) float32, per plane (a, b) with
// a x + b the normalized x. Attributes: epsilon, threads.
struct InstanceNormAffineKernel {
  double epsilon = 1e-5;
  int threads = 1;

  OrtStatus* ComputeV2(OrtKernelContext* context) {
    return guarded([&] {
      Ort::KernelContext ctx(context);
      OrtTensor x = input_tensor(ctx, 0, "X");
      check_ndim(x.ref, 4, "X of shape (N, C, H, W)");
      const AffineInputs affine(ctx, x.ref.dtype);
      const TensorRef* refs = affine.refs;
      OrtTensor a = output_tensor(ctx, 0, "A", ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, {x.sizes[0], x.sizes[1], 2});
      OrtExecutor executor(context);
      ScopedExecutor scope(&executor);
      const double* stats = stats_input(ctx, 3, x.sizes[0], x.sizes[1]);
      instance_norm_affine(x.ref, refs[0], refs[1], a.ref, epsilon, threads, stats);
    });
  }
};

struct InstanceNormAffineOp : Ort::CustomOpBase<InstanceNormAffineOp, InstanceNormAffineKernel, true> {
  OrtStatus* CreateKernelV2(const OrtApi&, const OrtKernelInfo* raw, void** kernel) const {
    return guarded([&] {
      auto k = std::make_unique<InstanceNormAffineKernel>();
      read_epsilon_threads(raw, k->epsilon, k->threads);
      *kernel = k.release();
    });
  }
  const char* GetName() const { return "InstanceNormAffine"; }
  size_t GetInputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 3 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t index) const {
    return required_first(index, 1);
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

void add_instance_norm(Ort::CustomOpDomain& domain) {
  static InstanceNormOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT> op_f32;
  static InstanceNormOp<ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE> op_f64;
  static InstanceNormAffineOp op_affine;
  domain.Add(&op_f32);
  domain.Add(&op_f64);
  domain.Add(&op_affine);
}

}  // namespace ort
}  // namespace genrt
