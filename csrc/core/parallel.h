// A small persistent thread pool shared by all kernels.
//
// Kernels call parallel_for(n, threads, fn): the range [0, n) is cut into chunks and fn(begin, end) runs on up
// to `threads` threads, the caller included. Workers are started lazily and kept, so a call costs a wake-up,
// not a thread creation. One parallel region runs at a time; a call made while the pool is busy (another thread
// of the application, or a nested call) runs inline on the calling thread, so concurrent callers stay correct.
// After fork() the child starts with an empty pool.
#pragma once

#include <cstdint>
#include <functional>

namespace genrt {

void parallel_for(int64_t n, int threads, const std::function<void(int64_t begin, int64_t end)>& fn);

// Runs `count` tasks fn(task) on a host's thread pool (ONNX Runtime's intra-op pool, say) instead of genrt's.
struct Executor {
  virtual ~Executor() = default;
  virtual void run(int64_t count, const std::function<void(int64_t task)>& fn) = 0;
};

// While alive, parallel_for on this thread hands its chunks to `executor`.
class ScopedExecutor {
 public:
  explicit ScopedExecutor(Executor* executor);
  ~ScopedExecutor();
  ScopedExecutor(const ScopedExecutor&) = delete;
  ScopedExecutor& operator=(const ScopedExecutor&) = delete;

 private:
  Executor* previous_;
};

// Hardware threads usable by this process (sched affinity where available).
int hardware_threads();

}  // namespace genrt
