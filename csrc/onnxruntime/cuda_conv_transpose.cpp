// genrt.ConvTranspose on ORT's CUDA execution provider: the attributes and inputs of the CPU kernel
// (conv_transpose.cpp), run by csrc/cuda/conv_transpose2d.cu on the session's compute stream. Extra attribute
// allow_tf32 (int, default 0): float32 products on TF32 tensor cores.
#include "cuda_common.h"
#include "ort_ops.h"

namespace genrt {
namespace ort {
namespace {

struct CudaConvTransposeKernel {
  ConvTranspose2dParams params;
  bool allow_tf32 = false;

  OrtStatus* ComputeV2(OrtKernelContext* context) {
    return guarded([&] {
      Ort::KernelContext ctx(context);
      Ort::ConstValue xv = ctx.GetInput(0), wv = ctx.GetInput(1);
      const auto xi = xv.GetTensorTypeAndShapeInfo(), wi = wv.GetTensorTypeAndShapeInfo();
      const int dtype = cuda_dtype(xi.GetElementType());
      // Shapes are validated by the CPU op's rules, on refs that carry no data.
      OrtTensor x("X", nullptr, ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED, xi.GetShape());
      OrtTensor w("W", nullptr, ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED, wi.GetShape());
      int64_t shape[4];
      conv_transpose2d_output_shape(x.ref, w.ref, params, shape);
      const void* optional[3] = {nullptr, nullptr, nullptr};
      for (int i = 0; i < 3; ++i) {
        if (!has_input(ctx, 2 + i)) continue;
        Ort::ConstValue v = ctx.GetInput(2 + i);
        const auto shape_i = v.GetTensorTypeAndShapeInfo().GetShape();
        if (shape_i.size() != 1 || shape_i[0] != shape[1])
          throw_shape(std::string(i == 0 ? "B" : i == 1 ? "scale" : "shift") + ": expected shape (" +
                      std::to_string(shape[1]) + ",)");
        optional[i] = v.GetTensorRawData();
      }
      Ort::UnownedValue y = ctx.GetOutput(0, std::vector<int64_t>(shape, shape + 4));
      GenrtCudaConvTranspose2d p{};
      p.N = x.sizes[0], p.Cin = x.sizes[1], p.H = x.sizes[2], p.W = x.sizes[3];
      p.Cout = shape[1], p.kH = w.sizes[2], p.kW = w.sizes[3], p.Ho = shape[2], p.Wo = shape[3];
      p.sh = params.stride[0], p.sw = params.stride[1], p.ph = params.padding[0], p.pw = params.padding[1];
      p.dh = params.dilation[0], p.dw = params.dilation[1], p.groups = params.groups;
      p.activation = int(params.activation), p.negative_slope = float(params.negative_slope);
      p.dtype = dtype, p.allow_tf32 = allow_tf32;
      if (p.N * p.Cout * p.Ho * p.Wo == 0) return;
      check_cuda(genrt_cuda_conv_transpose2d_forward(&p, xv.GetTensorRawData(), wv.GetTensorRawData(), optional[0],
                                                     optional[1], optional[2], y.GetTensorMutableRawData(),
                                                     ctx.GetGPUComputeStream()));
    });
  }
};

template <ONNXTensorElementDataType Type>
struct CudaConvTransposeOp : ConvTransposeSchema<CudaConvTransposeOp<Type>, CudaConvTransposeKernel, Type> {
  OrtStatus* CreateKernelV2(const OrtApi&, const OrtKernelInfo* raw, void** kernel) const {
    return guarded([&] {
      auto k = std::make_unique<CudaConvTransposeKernel>();
      k->params = conv_transpose_attributes(raw);
      k->allow_tf32 = int_attribute(raw, "allow_tf32", 0) != 0;
      *kernel = k.release();
    });
  }
  const char* GetExecutionProviderType() const { return kCudaProvider; }
};

}  // namespace

void add_cuda_conv_transpose(Ort::CustomOpDomain& domain) {
#define GENRT_ADD(type, suffix)                      \
  static CudaConvTransposeOp<type> op_##suffix;      \
  domain.Add(&op_##suffix);
  GENRT_CUDA_ORT_TYPES(GENRT_ADD)
#undef GENRT_ADD
}

}  // namespace ort
}  // namespace genrt
