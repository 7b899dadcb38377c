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

// Hardware threads usable by this process (sched affinity where available).
int hardware_threads();

}  // namespace genrt
