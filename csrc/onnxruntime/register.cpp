// Entry point ONNX Runtime calls when it loads the library (SessionOptions.register_custom_ops_library).
#include "ort_ops.h"

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                                                             const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (!api) {
    // Older than the headers genrt was built with: say so instead of crashing.
    return nullptr;
  }
  Ort::InitApi(api);
  return genrt::ort::guarded([&] {
    // One domain object for the process: ORT keeps pointers to it for the sessions' lifetime.
    static Ort::CustomOpDomain* domain = [] {
      auto* d = new Ort::CustomOpDomain("genrt");
      genrt::ort::add_conv(*d);
      genrt::ort::add_conv_transpose(*d);
      genrt::ort::add_instance_norm(*d);
      genrt::ort::add_fill_sweeps(*d);
      genrt::ort::add_resize(*d);
      genrt::ort::add_minibatch_discrimination(*d);
#ifdef GENRT_WITH_CUDA
      genrt::ort::add_cuda_conv_transpose(*d);
      genrt::ort::add_cuda_minibatch_discrimination(*d);
#endif
      return d;
    }();
    Ort::UnownedSessionOptions(options).Add(*domain);
  });
}
