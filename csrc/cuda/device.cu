// Device queries and the per-thread status text of genrt's CUDA launchers.
#include "common.cuh"

namespace genrt {
namespace cuda {
namespace {
thread_local std::string last_error;
}

int bad_argument(const std::string& message) {
  last_error = message;
  return GENRT_CUDA_BAD_ARGUMENT;
}

int launch_status(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return GENRT_CUDA_OK;
  last_error = std::string(what) + ": CUDA error " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
  return int(err);
}

}  // namespace cuda
}  // namespace genrt

extern "C" int genrt_cuda_device_count(void) {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the sticky-free error, report none
    return 0;
  }
  return count;
}

extern "C" const char* genrt_cuda_error_string(void) { return genrt::cuda::last_error.c_str(); }
