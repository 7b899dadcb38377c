// genrt._C: numpy bindings of the framework-free kernels.
//
// Arrays are borrowed zero-copy with their strides; the GIL is released while a kernel runs. Argument errors
// thrown by the kernels (genrt::Error) become genrt.errors.ShapeError / DTypeError / ArgumentError, so no
// input reaches Python as a SystemError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <vector>

#include "../core/common.h"
#include "../core/conv2d.h"
#include "../core/conv_transpose2d.h"
#include "../core/cpu_isa.h"
#include "../core/instance_norm.h"
#include "../core/minibatch_discrimination.h"
#include "../core/parallel.h"

namespace py = pybind11;

namespace {

// Owns the shape and element strides of one borrowed numpy array.
struct Arg {
  py::array array;
  std::vector<int64_t> sizes, strides;
  genrt::TensorRef ref;

  Arg(const char* name, py::handle obj) {
    if (!py::isinstance<py::array>(obj))
      throw genrt::Error(genrt::Error::Kind::dtype,
                         std::string(name) + ": expected a numpy.ndarray, got " + std::string(py::str(obj.get_type().attr("__name__"))));
    array = py::reinterpret_borrow<py::array>(obj);
    // Non-native byte order (e.g. '>f4' read from a file) is converted rather than refused.
    if (array.dtype().kind() == 'f' && !array.dtype().attr("isnative").cast<bool>())
      array = array.attr("astype")(array.dtype().attr("newbyteorder")("="));
    genrt::DType dtype = genrt::DType::other;
    if (array.dtype().equal(py::dtype::of<float>()))
      dtype = genrt::DType::f32;
    else if (array.dtype().equal(py::dtype::of<double>()))
      dtype = genrt::DType::f64;
    if (dtype == genrt::DType::other)
      throw genrt::Error(genrt::Error::Kind::dtype, std::string(name) + ": expected float32 or float64, got " +
                                                        std::string(py::str(array.dtype())));
    // Byte strides that are not a multiple of the item size (views of structured arrays) get a copy.
    bool aligned = true;
    for (py::ssize_t d = 0; d < array.ndim(); ++d) aligned &= array.strides(d) % array.itemsize() == 0;
    if (!aligned) array = py::array::ensure(array, py::array::c_style);
    for (py::ssize_t d = 0; d < array.ndim(); ++d) {
      sizes.push_back(array.shape(d));
      strides.push_back(array.strides(d) / array.itemsize());
    }
    ref = {name, const_cast<void*>(array.data()), dtype, int(array.ndim()), sizes.data(), strides.data()};
  }
};

// A fresh C-contiguous output of the given shape and dtype.
struct Out {
  py::array array;
  std::vector<int64_t> sizes, strides;
  genrt::TensorRef ref;

  Out(const char* name, genrt::DType dtype, std::vector<int64_t> shape) : sizes(std::move(shape)) {
    std::vector<py::ssize_t> pyshape(sizes.begin(), sizes.end());
    array = dtype == genrt::DType::f32 ? py::array(py::array_t<float>(pyshape)) : py::array(py::array_t<double>(pyshape));
    strides.resize(sizes.size());
    int64_t s = 1;
    for (int d = int(sizes.size()) - 1; d >= 0; --d) {
      strides[d] = s;
      s *= sizes[d];
    }
    ref = {name, array.mutable_data(), dtype, int(sizes.size()), sizes.data(), strides.data()};
  }
};

int resolve_threads(int threads) { return threads > 0 ? threads : genrt::hardware_threads(); }

py::array mbd_forward(py::handle m_obj, int threads) {
  Arg m("M", m_obj);
  genrt::check_ndim(m.ref, 3, "M of shape (N, B, C)");
  Out out("out", m.ref.dtype, {m.sizes[0], m.sizes[1]});
  {
    py::gil_scoped_release nogil;
    genrt::minibatch_discrimination_forward(m.ref, out.ref, resolve_threads(threads));
  }
  return out.array;
}

py::array mbd_backward(py::handle m_obj, py::handle g_obj, int threads) {
  Arg m("M", m_obj), g("grad_out", g_obj);
  genrt::check_ndim(m.ref, 3, "M of shape (N, B, C)");
  Out grad("grad_M", m.ref.dtype, m.sizes);
  {
    py::gil_scoped_release nogil;
    genrt::minibatch_discrimination_backward(m.ref, g.ref, grad.ref, resolve_threads(threads));
  }
  return grad.array;
}

// A (height, width) pair from Python; genrt.kernels normalises single ints to pairs.
void to_pair(const std::vector<int64_t>& v, const char* name, int64_t out[2]) {
  if (v.size() != 2)
    throw genrt::Error(genrt::Error::Kind::value,
                       std::string(name) + ": expected 2 values (height, width), got " + std::to_string(v.size()));
  out[0] = v[0];
  out[1] = v[1];
}

py::array conv_transpose2d_forward(py::handle x_obj, py::handle w_obj, py::handle bias_obj, py::handle scale_obj,
                                   py::handle shift_obj, const std::vector<int64_t>& stride,
                                   const std::vector<int64_t>& padding, const std::vector<int64_t>& output_padding,
                                   const std::vector<int64_t>& dilation, int64_t groups,
                                   const std::string& activation, double negative_slope, int threads,
                                   genrt::WeightCache* cache, const std::string& precision) {
  Arg x("x", x_obj), w("weight", w_obj);
  genrt::ConvTranspose2dParams p;
  p.precision = genrt::parse_precision(precision);
  to_pair(stride, "stride", p.stride);
  to_pair(padding, "padding", p.padding);
  to_pair(output_padding, "output_padding", p.output_padding);
  to_pair(dilation, "dilation", p.dilation);
  p.groups = groups;
  p.activation = genrt::parse_activation(activation);
  p.negative_slope = negative_slope;
  // Optional per-channel vectors: None means absent.
  std::vector<std::unique_ptr<Arg>> opt;
  genrt::TensorRef none[3];
  const char* names[3] = {"bias", "scale", "shift"};
  py::handle objs[3] = {bias_obj, scale_obj, shift_obj};
  for (int i = 0; i < 3; ++i) {
    none[i] = {names[i], nullptr, x.ref.dtype, 0, nullptr, nullptr};
    if (!objs[i].is_none()) {
      opt.push_back(std::make_unique<Arg>(names[i], objs[i]));
      none[i] = opt.back()->ref;
    }
  }
  int64_t shape[4];
  genrt::conv_transpose2d_output_shape(x.ref, w.ref, p, shape);
  Out out("out", x.ref.dtype, {shape[0], shape[1], shape[2], shape[3]});
  {
    py::gil_scoped_release nogil;
    genrt::conv_transpose2d_forward(x.ref, w.ref, none[0], none[1], none[2], out.ref, p, resolve_threads(threads),
                                    cache);
  }
  return out.array;
}

py::array conv2d_forward(py::handle x_obj, py::handle w_obj, py::handle bias_obj, const std::vector<int64_t>& padding,
                         const std::string& padding_mode, const std::string& activation, int threads,
                         genrt::WeightCache* cache, const std::vector<int64_t>& stride,
                         const std::string& precision, double negative_slope) {
  Arg x("x", x_obj), w("weight", w_obj);
  genrt::Conv2dParams p;
  p.precision = genrt::parse_precision(precision);
  if (stride.size() != 2)
    throw genrt::Error(genrt::Error::Kind::value,
                       "stride: expected 2 values (sh, sw), got " + std::to_string(stride.size()));
  p.stride[0] = stride[0];
  p.stride[1] = stride[1];
  if (padding.size() != 4)
    throw genrt::Error(genrt::Error::Kind::value, "padding: expected 4 values (top, left, bottom, right), got " +
                                                      std::to_string(padding.size()));
  for (int i = 0; i < 4; ++i) p.padding[i] = padding[i];
  p.padding_mode = genrt::parse_padding_mode(padding_mode);
  p.activation = genrt::parse_activation(activation);
  p.negative_slope = negative_slope;
  std::unique_ptr<Arg> bias;
  genrt::TensorRef none{"bias", nullptr, x.ref.dtype, 0, nullptr, nullptr};
  if (!bias_obj.is_none()) bias = std::make_unique<Arg>("bias", bias_obj);
  int64_t shape[4];
  genrt::conv2d_output_shape(x.ref, w.ref, p, shape);
  Out out("out", x.ref.dtype, {shape[0], shape[1], shape[2], shape[3]});
  {
    py::gil_scoped_release nogil;
    genrt::conv2d_forward(x.ref, w.ref, bias ? bias->ref : none, out.ref, p, resolve_threads(threads), cache);
  }
  return out.array;
}

py::array instance_norm_forward(py::handle x_obj, py::handle scale_obj, py::handle bias_obj, double epsilon,
                                const std::string& activation, int threads, py::handle residual_obj) {
  Arg x("x", x_obj);
  genrt::check_ndim(x.ref, 4, "x of shape (N, C, H, W)");
  std::unique_ptr<Arg> affine[3];
  genrt::TensorRef refs[3] = {{"scale", nullptr, x.ref.dtype, 0, nullptr, nullptr},
                              {"bias", nullptr, x.ref.dtype, 0, nullptr, nullptr},
                              {"residual", nullptr, x.ref.dtype, 0, nullptr, nullptr}};
  py::handle objs[3] = {scale_obj, bias_obj, residual_obj};
  const char* names[3] = {"scale", "bias", "residual"};
  for (int i = 0; i < 3; ++i)
    if (!objs[i].is_none()) {
      affine[i] = std::make_unique<Arg>(names[i], objs[i]);
      refs[i] = affine[i]->ref;
    }
  const genrt::Activation act = genrt::parse_activation(activation);
  Out out("out", x.ref.dtype, x.sizes);
  {
    py::gil_scoped_release nogil;
    genrt::instance_norm_forward(x.ref, refs[0], refs[1], refs[2], out.ref, epsilon, act, resolve_threads(threads));
  }
  return out.array;
}

}  // namespace

PYBIND11_MODULE(_C, mod) {
  mod.doc() = "genrt's compiled kernels (numpy in, numpy out). Use genrt.kernels rather than this module.";

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const genrt::Error& e) {
      const char* cls = e.kind() == genrt::Error::Kind::shape   ? "ShapeError"
                        : e.kind() == genrt::Error::Kind::dtype ? "DTypeError"
                                                                : "ArgumentError";
      py::object type = py::module_::import("genrt.errors").attr(cls);
      PyErr_SetString(type.ptr(), e.what());
    }
  });

  mod.def("minibatch_discrimination_forward", &mbd_forward, py::arg("M"), py::arg("threads") = 0,
          "o[i, b] = sum_{j != i} exp(-||M[i, b] - M[j, b]||_1); M (N, B, C) float32/float64 -> (N, B).");
  mod.def("minibatch_discrimination_backward", &mbd_backward, py::arg("M"), py::arg("grad_out"),
          py::arg("threads") = 0, "Gradient of minibatch_discrimination_forward with respect to M: (N, B, C).");

  py::class_<genrt::WeightCache>(mod, "WeightCache",
                                 "Packed layouts of one weight tensor, built on first use and kept (see "
                                 "genrt.kernels.PackedConvTranspose2d).")
      .def(py::init<>())
      .def_property_readonly("bytes", &genrt::WeightCache::bytes, "Bytes held by the packed layouts.")
      .def_property_readonly("entries", &genrt::WeightCache::entries, "Number of packed layouts built.");

  mod.def("conv_transpose2d_forward", &conv_transpose2d_forward, py::arg("x"), py::arg("weight"),
          py::arg("bias") = py::none(), py::arg("scale") = py::none(), py::arg("shift") = py::none(),
          py::arg("stride") = std::vector<int64_t>{1, 1}, py::arg("padding") = std::vector<int64_t>{0, 0},
          py::arg("output_padding") = std::vector<int64_t>{0, 0}, py::arg("dilation") = std::vector<int64_t>{1, 1},
          py::arg("groups") = 1, py::arg("activation") = "none", py::arg("negative_slope") = 0.01,
          py::arg("threads") = 0, py::arg("cache") = nullptr, py::arg("precision") = "f32",
          "Transposed 2-D convolution with fused bias, scale/shift and activation; x (N, C_in, H, W), weight "
          "(C_in, C_out/groups, kH, kW) -> (N, C_out, H_out, W_out). cache: a WeightCache that keeps the packed "
          "weights for later calls, which must pass the same weight values. precision: 'f32' or 'bf16' (float32 "
          "operands rounded to bfloat16, float32 sums; groups 1).");
  mod.def("conv2d_forward", &conv2d_forward, py::arg("x"), py::arg("weight"), py::arg("bias") = py::none(),
          py::arg("padding") = std::vector<int64_t>{0, 0, 0, 0}, py::arg("padding_mode") = "zeros",
          py::arg("activation") = "none", py::arg("threads") = 0, py::arg("cache") = nullptr,
          py::arg("stride") = std::vector<int64_t>{1, 1}, py::arg("precision") = "f32",
          py::arg("negative_slope") = 0.01,
          "2-D convolution (float32 3x3 stride 1: Winograd F(4x4, 3x3), other kernel sizes and strides direct; "
          "precision 'bf16': AMX tiles where the CPU has them, else Winograd F(2x2, 3x3) for 3x3 stride 1 and direct "
          "otherwise) with "
          "in-kernel padding (top, left, bottom, right; zeros/reflect/edge), fused bias and relu or leaky_relu "
          "(negative_slope); x (N, C_in, H, W), "
          "weight (C_out, C_in, kH, kW), stride (sh, sw) -> (N, C_out, (H + top + bottom - kH) / sh + 1, "
          "(W + left + right - kW) / sw + 1). cache: a WeightCache that keeps the transformed or packed weights.");
  mod.def("instance_norm_forward", &instance_norm_forward, py::arg("x"), py::arg("scale") = py::none(),
          py::arg("bias") = py::none(), py::arg("epsilon") = 1e-5, py::arg("activation") = "none",
          py::arg("threads") = 0, py::arg("residual") = py::none(),
          "Instance normalization: x (N, C, H, W) normalized per (n, c) plane over H, W, then * scale + bias "
          "(each None, C or N x C values), + residual (None or x's shape) and an optional relu -> (N, C, H, W).");
  mod.def("hardware_threads", &genrt::hardware_threads, "Hardware threads usable by this process.");
  mod.def("available_isas", &genrt::available_isas, "Instruction sets compiled in and supported by this CPU.");
  mod.def("active_isa", [] { return std::string(genrt::isa_name(genrt::active_isa())); });
  mod.def("set_isa", &genrt::set_isa, py::arg("name"), "Run the kernels with the named instruction set.");
}
