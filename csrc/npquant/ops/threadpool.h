// A small persistent thread pool: parallel_for over independent tasks.
// One parallel region runs at a time; a call that finds the pool busy (another
// Python thread is inside a kernel) runs its tasks on the calling thread, so
// concurrent calls are safe and never deadlock.
#pragma once

#include <cstddef>
#include <functional>

namespace npq {

void set_num_threads(int n);  // n >= 1
int get_num_threads();

// Calls fn(task) for task in [0, ntasks), spread over the pool's threads.
// Exceptions thrown by fn are rethrown (the first one) on the calling thread.
void parallel_for(size_t ntasks, const std::function<void(size_t)>& fn);

}  // namespace npq
