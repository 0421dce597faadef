#include "threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace npq {

namespace {

// Before sleeping on a condition variable, a worker that finished a region
// (and the caller waiting for the workers) spin for up to this long: back-to-
// back regions (the dynamic Linear's min/max pass, then its GEMM) then start
// without a futex wake-up, which on a busy machine can cost a whole time slice.
constexpr auto kSpin = std::chrono::microseconds(100);

// tests/native/threadpool_stress.cc builds this file with NPQ_THREADPOOL_STRESS:
// short sleeps where a slow thread (qemu, a loaded machine) widens the windows
// between starting workers and publishing a region, and between a worker
// seeing a region and working on it.
inline void stress_pause() {
#if defined(NPQ_THREADPOOL_STRESS)
  std::this_thread::sleep_for(std::chrono::microseconds(NPQ_THREADPOOL_STRESS));
#endif
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// Spins until done() or kSpin has passed; returns done().
template <class Done>
bool spin_until(const Done& done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (unsigned i = 1;; ++i) {
    if (done()) return true;
    cpu_relax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() > deadline) return done();
  }
}

class Pool {
 public:
  Pool() {
    unsigned hw = std::thread::hardware_concurrency();
    threads_ = static_cast<int>(hw == 0 ? 1 : hw);
  }
  ~Pool() { stop_workers(); }

  void set_threads(int n) {
    std::lock_guard<std::mutex> region(region_);  // wait for a running region
    stop_workers();
    threads_ = n;
  }
  int threads() const { return threads_.load(); }

  void run(size_t ntasks, const std::function<void(size_t)>& fn) {
    std::unique_lock<std::mutex> region(region_, std::try_to_lock);
    const size_t helpers = std::min<size_t>(static_cast<size_t>(threads_.load()) - 1, ntasks - 1);
    if (!region.owns_lock() || helpers == 0) {
      for (size_t t = 0; t < ntasks; ++t) fn(t);
      return;
    }
    start_workers();
    stress_pause();
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = &fn;
      ntasks_ = ntasks;
      next_.store(0);
      finished_.store(0);
      wanted_.store(helpers);
      error_ = nullptr;
      ++generation_;
      entry_.store(region_tag(generation_.load()), std::memory_order_release);
    }
    cv_.notify_all();
    work();
    // Every task is taken. Close the region: a helper that has not joined yet
    // (still asleep, or waiting for a core the scheduler gave to another
    // process) stays out, so this call waits only for tasks that are running,
    // never for a thread to be scheduled.
    const size_t joined = entry_.fetch_or(kClosed, std::memory_order_acq_rel) & kCountMask;
    spin_until([&] { return finished_.load(std::memory_order_acquire) == joined; });
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return finished_.load() == joined; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work() {
    for (;;) {
      const size_t t = next_.fetch_add(1);
      if (t >= ntasks_) return;
      try {
        (*fn_)(t);
      } catch (...) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!error_) error_ = std::current_exception();
        next_.store(ntasks_);
      }
    }
  }

  // entry_ packs the region's tag (low 32 bits of its generation) in the high
  // half, kClosed, and the number of helpers that joined it in the low bits.
  static constexpr uint64_t kClosed = uint64_t{1} << 31;
  static constexpr uint64_t kCountMask = kClosed - 1;
  static uint64_t region_tag(uint64_t generation) { return (generation & 0xffffffffu) << 32; }

  // A helper joins the region of generation `gen` if it is still that region,
  // still open, and short of helpers. Joining and closing are one atomic word,
  // so the caller knows exactly which helpers will touch fn_.
  bool try_join(uint64_t gen) {
    uint64_t e = entry_.load(std::memory_order_acquire);
    for (;;) {
      if ((e & ~(kClosed | kCountMask)) != region_tag(gen) || (e & kClosed) ||
          (e & kCountMask) >= wanted_.load())
        return false;
      if (entry_.compare_exchange_weak(e, e + 1, std::memory_order_acq_rel, std::memory_order_acquire))
        return true;
    }
  }

  // seen: the generation when the worker was started, so that a worker started
  // after set_threads restarted the pool does not take the last region (long
  // over) for a new one; try_join would refuse it anyway, as it refuses a
  // worker that wakes after the region closed.
  void worker_loop(uint64_t seen) {
    for (;;) {
      spin_until([&] { return stop_.load() || generation_.load() != seen; });
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      stress_pause();
      if (!try_join(seen)) continue;
      stress_pause();
      work();
      {
        std::lock_guard<std::mutex> lk(mu_);
        finished_.fetch_add(1, std::memory_order_release);
      }
      done_cv_.notify_one();
    }
  }

  // Called by run() holding region_, so generation_ is stable here.
  void start_workers() {
    const size_t want = static_cast<size_t>(threads_.load()) - 1;
    const uint64_t now = generation_.load();
    while (workers_.size() < want) {
      workers_.emplace_back([this, now] { worker_loop(now); });
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
  }

  std::mutex region_;  // one parallel region at a time
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(size_t)>* fn_ = nullptr;
  size_t ntasks_ = 0;
  std::atomic<size_t> next_{0};
  // Written under mu_; atomic so that spinning threads may read them without it.
  std::atomic<uint64_t> entry_{0};     // region tag | kClosed | helpers joined
  std::atomic<size_t> finished_{0};    // joined helpers done with this region
  std::atomic<size_t> wanted_{0};      // at most this many helpers may join
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
  std::atomic<int> threads_;  // read by callers without the region lock
};

Pool& pool() {
  // Leaked on purpose: joining threads during static destruction at process
  // exit can deadlock when the interpreter tears down.
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

void set_num_threads(int n) { pool().set_threads(n < 1 ? 1 : n); }
int get_num_threads() { return pool().threads(); }

void parallel_for(size_t ntasks, const std::function<void(size_t)>& fn) {
  if (ntasks == 0) return;
  pool().run(ntasks, fn);
}

}  // namespace npq
