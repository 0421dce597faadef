// The thread pool under thread-count changes, with ops/threadpool.cc built with
// NPQ_THREADPOOL_STRESS (sleeps that widen its race windows, as a slow thread
// under qemu or on a loaded machine does). Every task of every region must run
// exactly once before parallel_for returns. Before the fix for workers started
// after set_num_threads (they took the previous region for a new one), this
// failed within a few hundred regions ("task 2 ran 0 times") or hung.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "npquant/ops/threadpool.h"

int main() {
  size_t regions = 0;
  for (int iter = 0; iter < 300; ++iter) {
    npq::set_num_threads(2 + iter % 2);
    for (int r = 0; r < 3; ++r, ++regions) {
      const size_t n = 2 + (iter + r) % 7;
      std::vector<std::atomic<int>> hits(n);
      npq::parallel_for(n, [&](size_t t) {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
        hits[t].fetch_add(1);
      });
      for (size_t t = 0; t < n; ++t)
        if (hits[t].load() != 1) {
          std::printf("FAIL: region %zu: task %zu ran %d times before parallel_for returned\n",
                      regions, t, hits[t].load());
          return 1;
        }
    }
  }
  // Tasks that take no time: the caller usually finishes every task and closes
  // the region while a helper is still between waking and joining, the race
  // the join/close word decides. A helper that joins late must not run a task
  // of the next region twice or count itself into it.
  npq::set_num_threads(3);
  for (int r = 0; r < 5000; ++r, ++regions) {
    const size_t n = 2 + r % 5;
    std::vector<std::atomic<int>> hits(n);
    npq::parallel_for(n, [&](size_t t) { hits[t].fetch_add(1); });
    for (size_t t = 0; t < n; ++t)
      if (hits[t].load() != 1) {
        std::printf("FAIL: region %zu (no-time tasks): task %zu ran %d times\n", regions, t, hits[t].load());
        return 1;
      }
  }
  std::printf("thread pool stress: %zu regions, every task ran once\n", regions);
  return 0;
}
