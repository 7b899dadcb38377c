// Shared pieces of genrt's ONNX Runtime custom-op library (domain "genrt").
//
// Built only where the ORT headers exist (see ARCHITECTURE.md, decision 4). The library does not link
// libonnxruntime: RegisterCustomOps receives the OrtApiBase of whatever onnxruntime (>= 1.21) loads it and
// initialises the C++ wrapper from it (ORT_API_MANUAL_INIT).
#pragma once

#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/common.h"
#include "../core/parallel.h"

namespace genrt {
namespace ort {

// Runs genrt's parallel_for chunks on ORT's intra-op thread pool, so the kernel neither oversubscribes the
// cores nor ignores the session's thread setting.
class OrtExecutor : public Executor {
 public:
  explicit OrtExecutor(OrtKernelContext* ctx) : ctx_(ctx) {}
  void run(int64_t count, const std::function<void(int64_t)>& fn) override {
    struct Data {
      const std::function<void(int64_t)>* fn;
      std::mutex mutex;
      std::exception_ptr error;
    } data{&fn, {}, {}};
    // Exceptions must not cross ORT's thread pool: keep the first and rethrow it on this thread.
    auto call = [](void* user, size_t task) {
      auto* d = static_cast<Data*>(user);
      try {
        (*d->fn)(int64_t(task));
      } catch (...) {
        std::lock_guard<std::mutex> lk(d->mutex);
        if (!d->error) d->error = std::current_exception();
      }
    };
    Ort::ThrowOnError(Ort::GetApi().KernelContext_ParallelFor(ctx_, call, size_t(count), 0, &data));
    if (data.error) std::rethrow_exception(data.error);
  }

 private:
  OrtKernelContext* ctx_;
};

// The shape of an ORT value and a TensorRef over it (strides: dense row-major).
struct OrtTensor {
  std::vector<int64_t> sizes, strides;
  TensorRef ref;

  OrtTensor(const char* name, void* data, ONNXTensorElementDataType type, std::vector<int64_t> shape)
      : sizes(std::move(shape)), strides(sizes.size()) {
    int64_t s = 1;
    for (int d = int(sizes.size()) - 1; d >= 0; --d) {
      strides[d] = s;
      s *= sizes[d];
    }
    const DType dtype = type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT    ? DType::f32
                        : type == ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE ? DType::f64
                                                                       : DType::other;
    ref = {name, data, dtype, int(sizes.size()), sizes.data(), strides.data()};
  }
};

inline OrtTensor input_tensor(Ort::KernelContext& ctx, size_t index, const char* name) {
  Ort::ConstValue v = ctx.GetInput(index);
  auto info = v.GetTensorTypeAndShapeInfo();
  return OrtTensor(name, const_cast<void*>(v.GetTensorRawData()), info.GetElementType(), info.GetShape());
}

inline bool has_input(Ort::KernelContext& ctx, size_t index) {
  return index < ctx.GetInputCount() && static_cast<const OrtValue*>(ctx.GetInput(index)) != nullptr;
}

inline OrtTensor output_tensor(Ort::KernelContext& ctx, size_t index, const char* name,
                               ONNXTensorElementDataType type, const std::vector<int64_t>& shape) {
  Ort::UnownedValue v = ctx.GetOutput(index, shape);
  return OrtTensor(name, v.GetTensorMutableRawData(), type, shape);
}

// An op's inputs or outputs: the first `required` required, the rest optional.
inline OrtCustomOpInputOutputCharacteristic required_first(size_t index, size_t required) {
  return index < required ? OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_REQUIRED
                          : OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_OPTIONAL;
}

inline bool has_output(Ort::KernelContext& ctx, size_t index) { return index < ctx.GetOutputCount(); }

// Optional input `index`, per-plane statistics: (N, C, 2) float64, each plane's (mean, variance) (genrt.Conv's output
// S, conv2d.h's output_stats); null where absent.
inline const double* stats_input(Ort::KernelContext& ctx, size_t index, int64_t N, int64_t C) {
  if (!has_input(ctx, index)) return nullptr;
  OrtTensor s = input_tensor(ctx, index, "stats");
  if (s.ref.dtype != DType::f64 || s.ref.ndim != 3 || s.sizes[0] != N || s.sizes[1] != C || s.sizes[2] != 2)
    throw_shape("stats: expected float64 of shape (" + std::to_string(N) + ", " + std::to_string(C) +
                ", 2) (X's N and C), got " + s.ref.shape_str());
  return static_cast<const double*>(s.ref.data);
}

// Optional integer attribute; `fallback` when absent.
inline int64_t int_attribute(const OrtKernelInfo* info, const char* name, int64_t fallback) {
  int64_t value = 0;
  OrtStatus* status = Ort::GetApi().KernelInfoGetAttribute_int64(info, name, &value);
  if (status) {
    Ort::GetApi().ReleaseStatus(status);
    return fallback;
  }
  return value;
}

// Whether input `index` is a constant initializer (its values fixed for the session's lifetime), so a kernel may
// keep data derived from it across Compute calls.
inline bool constant_input(const OrtKernelInfo* info, size_t index) {
  int is_constant = 0;
  const OrtValue* value = nullptr;
  OrtStatus* status = Ort::GetApi().KernelInfoGetConstantInput_tensor(info, index, &is_constant, &value);
  if (status) {
    Ort::GetApi().ReleaseStatus(status);
    return false;
  }
  return is_constant != 0;
}

// Converts exceptions from a kernel into an OrtStatus (ORT reports it as a failed Run, with the message).
template <typename F>
OrtStatus* guarded(F&& f) {
  try {
    f();
    return nullptr;
  } catch (const Error& e) {
    return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, e.what());
  } catch (const Ort::Exception& e) {
    return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
  }
}

}  // namespace ort
}  // namespace genrt
