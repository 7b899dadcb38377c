// Shared definitions for genrt's framework-free kernels: the error type every checked entry point throws,
// and small argument-checking helpers whose messages name the argument, the expected and the actual value.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace genrt {

// Thrown by checked entry points. `kind` tells the bindings which GenrtError subclass to raise.
class Error : public std::runtime_error {
 public:
  enum class Kind { shape, dtype, value };
  Error(Kind kind, const std::string& msg) : std::runtime_error(msg), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

[[noreturn]] inline void throw_shape(const std::string& msg) { throw Error(Error::Kind::shape, msg); }
[[noreturn]] inline void throw_value(const std::string& msg) { throw Error(Error::Kind::value, msg); }

// Checked multiplication of sizes: a shape whose element count overflows int64 is rejected, not wrapped.
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) throw_value(std::string(what) + ": size overflows int64");
  return r;
}

}  // namespace genrt

namespace genrt {

enum class DType { f32, f64, other };

inline const char* dtype_name(DType t) { return t == DType::f32 ? "float32" : t == DType::f64 ? "float64" : "other"; }

// A borrowed view of an array: what every front end (numpy, torch, ONNX Runtime) hands a checked entry point.
// Strides are in elements and may be zero or negative (broadcast or flipped views).
struct TensorRef {
  const char* name;  // argument name used in error messages
  void* data;
  DType dtype;
  int ndim;
  const int64_t* sizes;
  const int64_t* strides;

  int64_t size(int d) const { return sizes[d]; }
  int64_t stride(int d) const { return strides[d]; }
  std::string shape_str() const {
    std::string s = "(";
    for (int d = 0; d < ndim; ++d) s += (d ? ", " : "") + std::to_string(sizes[d]);
    return s + (ndim == 1 ? ",)" : ")");
  }
};

inline void check_ndim(const TensorRef& t, int ndim, const char* layout) {
  if (t.ndim != ndim)
    throw_shape(std::string(t.name) + ": expected a " + std::to_string(ndim) + "-D array " + layout + ", got " +
                std::to_string(t.ndim) + "-D with shape " + t.shape_str());
}

inline void check_float(const TensorRef& t) {
  if (t.dtype == DType::other)
    throw Error(Error::Kind::dtype, std::string(t.name) + ": expected float32 or float64, got another dtype");
}

inline void check_same_dtype(const TensorRef& a, const TensorRef& b) {
  if (a.dtype != b.dtype)
    throw Error(Error::Kind::dtype, std::string(b.name) + ": expected dtype " + dtype_name(a.dtype) + " (that of " +
                                        a.name + "), got " + dtype_name(b.dtype));
}

inline void check_nonempty(const TensorRef& t, int d, const char* what) {
  if (t.sizes[d] < 1)
    throw_shape(std::string(t.name) + ": " + what + " (dim " + std::to_string(d) + ") must be >= 1, got shape " +
                t.shape_str());
}

inline void check_contiguous_output(const TensorRef& t) {
  int64_t expect = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    if (t.sizes[d] > 1 && t.strides[d] != expect)
      throw_value(std::string(t.name) + ": output must be C-contiguous");
    expect *= t.sizes[d];
  }
}

// Whether t is C-contiguous (size-1 axes may have any stride).
inline bool is_contiguous(const TensorRef& t) {
  int64_t expect = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    if (t.sizes[d] > 1 && t.strides[d] != expect) return false;
    expect *= t.sizes[d];
  }
  return true;
}

// A C-contiguous copy of t (any rank <= 4) when it is not contiguous already; returns the data to use.
template <typename T>
inline const T* contiguous(const TensorRef& t, std::vector<T>& store) {
  if (is_contiguous(t)) return static_cast<const T*>(t.data);
  int64_t s[4] = {1, 1, 1, 1}, st[4] = {0, 0, 0, 0};
  const int off = 4 - t.ndim;
  for (int d = 0; d < t.ndim; ++d) {
    s[off + d] = t.sizes[d];
    st[off + d] = t.strides[d];
  }
  store.resize(size_t(s[0] * s[1] * s[2] * s[3]));
  const T* src = static_cast<const T*>(t.data);
  T* dst = store.data();
  for (int64_t a = 0; a < s[0]; ++a)
    for (int64_t b = 0; b < s[1]; ++b)
      for (int64_t c = 0; c < s[2]; ++c) {
        const T* row = src + a * st[0] + b * st[1] + c * st[2];
        for (int64_t d = 0; d < s[3]; ++d) *dst++ = row[d * st[3]];
      }
  return store.data();
}

}  // namespace genrt
