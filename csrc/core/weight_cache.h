// Packed copies of one constant weight tensor, kept across calls.
//
// A kernel that rearranges its weights for its inner loop (genrt's transposed convolution packs them into
// register-tile panels) pays for that on every call unless the packing is kept. A caller that will pass the
// same weight values many times (an ONNX Runtime node whose weights are initializers, a module in eval mode)
// owns one WeightCache per weight tensor and hands it to every call; the kernel stores each packed layout it
// needs under a key naming that layout, built on first use.
//
// The caller's promise: every call made with a cache passes the same weight values. Thread-safe: concurrent
// first uses of a key wait for its one build; later lookups only take the lock to find the entry.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace genrt {

class WeightCache {
 public:
  // The buffer stored under `key` (`bytes` long, 64-byte aligned), filled by `fill(buffer)` on first use. A key
  // must always be asked for with the same size (it names the layout); a mismatch throws genrt::Error.
  void* get(const std::string& key, size_t bytes, const std::function<void(void*)>& fill);
  // Bytes held by all entries.
  size_t bytes() const;
  // Number of layouts built so far.
  size_t entries() const;

 private:
  struct Entry {
    std::unique_ptr<unsigned char[]> store;
    void* data = nullptr;
    size_t bytes = 0;
  };
  mutable std::mutex mu_;
  std::map<std::string, Entry> entries_;
};

}  // namespace genrt
