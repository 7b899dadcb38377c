// genrt._cuda: the CUDA launchers of csrc/cuda/ for callers holding device pointers (genrt.ops on torch CUDA
// tensors, benchmarks). Pointers and the stream are integers (torch: tensor.data_ptr(), stream.cuda_stream); the
// work is enqueued on that stream and the call returns without waiting. Argument errors raise ValueError, CUDA
// errors RuntimeError; genrt.kernels turns them into genrt errors. Built only where nvcc is, separate from
// genrt._C, so a CPU-only install never needs it; it links the CUDA runtime statically and so imports on a
// machine with no driver, where device_count() is 0.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <vector>

#include "../cuda/genrt_cuda.h"

namespace py = pybind11;

namespace {

void* ptr(uintptr_t p) { return reinterpret_cast<void*>(p); }

using F64 = py::array_t<double, py::array::c_style | py::array::forcecast>;

const double* data_or_null(const py::object& a, std::vector<F64>& keep) {
  if (a.is_none()) return nullptr;
  keep.push_back(F64::ensure(a));
  return keep.back().data();
}

void check(int status) {
  if (status == GENRT_CUDA_OK) return;
  if (status == GENRT_CUDA_BAD_ARGUMENT) throw py::value_error(genrt_cuda_error_string());
  throw std::runtime_error(genrt_cuda_error_string());
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "genrt's CUDA kernels on device pointers (see csrc/cuda/genrt_cuda.h)";
  m.attr("F32") = int(GENRT_CUDA_F32);
  m.attr("F16") = int(GENRT_CUDA_F16);
  m.attr("BF16") = int(GENRT_CUDA_BF16);
  m.attr("F64") = int(GENRT_CUDA_F64);
  m.def("device_count", &genrt_cuda_device_count, "GPUs the CUDA runtime sees (0 without a driver or device)");
  m.def(
      "minibatch_discrimination_forward",
      [](uintptr_t m_, uintptr_t out, int64_t N, int64_t B, int64_t C, int dtype, uintptr_t stream) {
        py::gil_scoped_release release;
        check(genrt_cuda_minibatch_discrimination_forward(ptr(m_), ptr(out), N, B, C, dtype, ptr(stream)));
      },
      py::arg("m"), py::arg("out"), py::arg("N"), py::arg("B"), py::arg("C"), py::arg("dtype"), py::arg("stream"));
  m.def(
      "minibatch_discrimination_backward",
      [](uintptr_t m_, uintptr_t grad_out, uintptr_t grad_m, int64_t N, int64_t B, int64_t C, int dtype,
         uintptr_t stream) {
        py::gil_scoped_release release;
        check(genrt_cuda_minibatch_discrimination_backward(ptr(m_), ptr(grad_out), ptr(grad_m), N, B, C, dtype,
                                                           ptr(stream)));
      },
      py::arg("m"), py::arg("grad_out"), py::arg("grad_m"), py::arg("N"), py::arg("B"), py::arg("C"),
      py::arg("dtype"), py::arg("stream"));
  m.def(
      "conv_transpose2d_forward",
      [](uintptr_t x, uintptr_t w, uintptr_t bias, uintptr_t scale, uintptr_t shift, uintptr_t y, py::tuple x_shape,
         int64_t Cout, int64_t kH, int64_t kW, int64_t Ho, int64_t Wo, py::tuple stride, py::tuple padding,
         py::tuple dilation, int64_t groups, int activation, float negative_slope, int dtype, bool allow_tf32,
         uintptr_t stream) {
        if (x_shape.size() != 4 || stride.size() != 2 || padding.size() != 2 || dilation.size() != 2)
          throw py::value_error("conv_transpose2d (CUDA): x_shape needs 4 values; stride, padding, dilation 2");
        GenrtCudaConvTranspose2d p{};
        p.N = x_shape[0].cast<int64_t>(), p.Cin = x_shape[1].cast<int64_t>();
        p.H = x_shape[2].cast<int64_t>(), p.W = x_shape[3].cast<int64_t>();
        p.Cout = Cout, p.kH = kH, p.kW = kW, p.Ho = Ho, p.Wo = Wo;
        p.sh = stride[0].cast<int64_t>(), p.sw = stride[1].cast<int64_t>();
        p.ph = padding[0].cast<int64_t>(), p.pw = padding[1].cast<int64_t>();
        p.dh = dilation[0].cast<int64_t>(), p.dw = dilation[1].cast<int64_t>();
        p.groups = groups, p.activation = activation, p.negative_slope = negative_slope, p.dtype = dtype;
        p.allow_tf32 = allow_tf32;
        py::gil_scoped_release release;
        check(genrt_cuda_conv_transpose2d_forward(&p, ptr(x), ptr(w), ptr(bias), ptr(scale), ptr(shift), ptr(y),
                                                  ptr(stream)));
      },
      py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("scale"), py::arg("shift"), py::arg("y"),
      py::arg("x_shape"), py::arg("Cout"), py::arg("kH"), py::arg("kW"), py::arg("Ho"), py::arg("Wo"),
      py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("activation"),
      py::arg("negative_slope"), py::arg("dtype"), py::arg("allow_tf32"), py::arg("stream"));
  m.def(
      "conv_transpose2d_emulate",
      [](F64 x, F64 w, py::object bias, py::object scale, py::object shift, py::tuple stride, py::tuple padding,
         py::tuple output_padding, py::tuple dilation, int64_t groups, int activation, float negative_slope) {
        if (x.ndim() != 4 || w.ndim() != 4) throw py::value_error("conv_transpose2d_emulate: x and w must be 4-D");
        GenrtCudaConvTranspose2d p{};
        p.N = x.shape(0), p.Cin = x.shape(1), p.H = x.shape(2), p.W = x.shape(3);
        p.groups = groups, p.Cout = w.shape(1) * groups, p.kH = w.shape(2), p.kW = w.shape(3);
        p.sh = stride[0].cast<int64_t>(), p.sw = stride[1].cast<int64_t>();
        p.ph = padding[0].cast<int64_t>(), p.pw = padding[1].cast<int64_t>();
        p.dh = dilation[0].cast<int64_t>(), p.dw = dilation[1].cast<int64_t>();
        p.Ho = (p.H - 1) * p.sh - 2 * p.ph + p.dh * (p.kH - 1) + output_padding[0].cast<int64_t>() + 1;
        p.Wo = (p.W - 1) * p.sw - 2 * p.pw + p.dw * (p.kW - 1) + output_padding[1].cast<int64_t>() + 1;
        p.activation = activation, p.negative_slope = negative_slope, p.dtype = GENRT_CUDA_F64;
        if (w.shape(0) != p.Cin) throw py::value_error("conv_transpose2d_emulate: w.shape[0] must be C_in");
        if (p.Ho < 1 || p.Wo < 1) throw py::value_error("conv_transpose2d_emulate: empty output");
        std::vector<F64> keep;
        const double *b = data_or_null(bias, keep), *sc = data_or_null(scale, keep), *sh = data_or_null(shift, keep);
        F64 y({p.N, p.Cout, p.Ho, p.Wo});
        check(genrt_cuda_conv_transpose2d_emulate(&p, x.data(), w.data(), b, sc, sh, y.mutable_data()));
        return y;
      },
      py::arg("x"), py::arg("w"), py::arg("bias") = py::none(), py::arg("scale") = py::none(),
      py::arg("shift") = py::none(), py::arg("stride") = py::make_tuple(1, 1), py::arg("padding") = py::make_tuple(0, 0),
      py::arg("output_padding") = py::make_tuple(0, 0), py::arg("dilation") = py::make_tuple(1, 1),
      py::arg("groups") = 1, py::arg("activation") = 0, py::arg("negative_slope") = 0.01f,
      "The GPU kernel's index arithmetic on the host in float64 (tests where there is no GPU)");
}
