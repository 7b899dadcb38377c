#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif

namespace genrt {
namespace {

class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool();  // leaked on purpose: no join at static destruction time
    return *pool;
  }

  // Runs fn over [0, n) with `threads` participants. Returns false if the pool is busy (caller runs inline).
  bool run(int64_t n, int threads, const std::function<void(int64_t, int64_t)>& fn) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    ensure_workers(threads - 1);
    // Chunks: a few per thread so uneven chunks balance out.
    const int64_t chunks = std::min<int64_t>(n, int64_t(threads) * 4);
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = &fn;
      n_ = n;
      chunks_ = chunks;
      next_.store(0);
      pending_ = threads - 1;
      active_ = threads - 1;
      ++generation_;
    }
    cv_.notify_all();
    work();
    spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; });
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [&] { return pending_ == 0; });
    fn_ = nullptr;
    if (error_) {
      std::exception_ptr error = error_;
      error_ = nullptr;
      lk.unlock();
      std::rethrow_exception(error);
    }
    return true;
  }

  void reset_after_fork() {
    // Worker threads do not exist in the child; forget them (their objects are leaked, not joined).
    new (&busy_) std::mutex();
    new (&m_) std::mutex();
    new (&cv_) std::condition_variable();
    new (&done_cv_) std::condition_variable();
    workers_ = 0;
    fn_ = nullptr;
    pending_ = 0;
    active_ = 0;
  }

 private:
  Pool() = default;

  void ensure_workers(int count) {
    // Called with busy_ held and before the next generation starts, so a new worker waits for that one.
    while (workers_ < count) {
      const int index = workers_++;
      const uint64_t seen = generation_;
      std::thread([this, index, seen] { loop(index, seen); }).detach();
    }
  }

  // Spins (pausing) while !ready(), for at most GENRT_SPIN_US microseconds (default 50, 0: never): a region that
  // follows within that time (the next layer of a model, the next phase of a kernel) finds its workers awake,
  // instead of paying a futex wake-up (tens of microseconds) per region; the caller likewise catches the last
  // worker's finish. Short enough that idle workers leave the cores to others almost at once (ONNX Runtime's and
  // OpenMP's pools spin far longer).
  template <typename Ready>
  static void spin_until(const Ready& ready) {
    static const std::chrono::microseconds spin = [] {
      const char* env = std::getenv("GENRT_SPIN_US");
      const long us = env && *env ? std::strtol(env, nullptr, 10) : 50;
      return std::chrono::microseconds(std::clamp(us, 0L, 100000L));
    }();
    if (spin.count() == 0) return;
    const auto until = std::chrono::steady_clock::now() + spin;
    while (!ready()) {
      for (int i = 0; i < 64; ++i) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        asm volatile("yield");
#endif
      }
      if (std::chrono::steady_clock::now() > until) return;
    }
  }

  void loop(int index, uint64_t seen) {
    for (;;) {
      spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
      std::unique_lock<std::mutex> lk(m_);
      cv_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      const bool mine = index < active_;
      lk.unlock();
      if (!mine) continue;
      work();
      lk.lock();
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  void work() {
    for (;;) {
      const int64_t c = next_.fetch_add(1);
      if (c >= chunks_) return;
      const int64_t begin = n_ * c / chunks_, end = n_ * (c + 1) / chunks_;
      if (begin >= end) continue;
      try {
        (*fn_)(begin, end);
      } catch (...) {
        // The first failure (bad_alloc, say) is rethrown on the calling thread; the rest of the range is skipped.
        std::lock_guard<std::mutex> lk(m_);
        if (!error_) error_ = std::current_exception();
        next_.store(chunks_);
      }
    }
  }

  std::mutex busy_, m_;
  std::condition_variable cv_, done_cv_;
  int workers_ = 0;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> pending_{0};  // written under m_; read without it while spinning
  int active_ = 0;
  std::exception_ptr error_;
  std::atomic<uint64_t> generation_{0};  // likewise
};

#if defined(__linux__)
void child_after_fork() { Pool::get().reset_after_fork(); }
const int fork_handler_registered = [] {
  pthread_atfork(nullptr, nullptr, child_after_fork);
  return 1;
}();
#endif

}  // namespace

thread_local Executor* current_executor = nullptr;

ScopedExecutor::ScopedExecutor(Executor* executor) : previous_(current_executor) { current_executor = executor; }
ScopedExecutor::~ScopedExecutor() { current_executor = previous_; }

int hardware_threads() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

void parallel_for(int64_t n, int threads, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  threads = int(std::min<int64_t>(std::max(threads, 1), n));
  if (threads == 1) return fn(0, n);
  if (Executor* executor = current_executor) {
    const int64_t chunks = std::min<int64_t>(n, int64_t(threads) * 4);
    executor->run(chunks, [&](int64_t c) {
      const int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
      if (begin < end) fn(begin, end);
    });
    return;
  }
  if (!Pool::get().run(n, threads, fn)) fn(0, n);
}

}  // namespace genrt
