// SPDX-License-Identifier: MIT
// The slow paths of thread caches' biased locks (see detail::cache_lock): the heavy barrier,
// and the waits for their mutex and for their owner.
module;
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BUFPOOL_TSAN 1
#endif
#endif
#if !defined(BUFPOOL_TSAN) && defined(__SANITIZE_THREAD__)
#define BUFPOOL_TSAN 1
#endif
module bufpool;

namespace bufpool::detail {

namespace {
#if defined(__linux__) && defined(SYS_membarrier) && !defined(BUFPOOL_TSAN)
long membarrier(int command) noexcept {
  return syscall(SYS_membarrier, command, 0U, 0);
}
#endif
}  // namespace

bool heavy_barrier_available() noexcept {
#if defined(__linux__) && defined(SYS_membarrier) && !defined(BUFPOOL_TSAN)
  static const bool available = [] {
    const long commands = membarrier(MEMBARRIER_CMD_QUERY);
    return commands > 0 && (commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0 &&
           membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
  }();
  return available;
#else
  return false;
#endif
}

void heavy_barrier() noexcept {
#if defined(__linux__) && defined(SYS_membarrier) && !defined(BUFPOOL_TSAN)
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
  // Registered when the first biased lock was made; once more, in case this process was
  // forked from the one that registered.
  if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
      membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
    return;
#endif
  // Without the barrier an owner could be inside with another thread.
  std::fputs("bufpool: membarrier failed after it was registered\n", stderr);
  std::abort();
}

void spin_mutex::wait_for_lock() noexcept {
  for (unsigned tries = 0;; ++tries) {
    if (tries < 64)
      for (int i = 0; i < 16; ++i) spin_pause();
    else if (tries < 256)
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    if (!held_.load(std::memory_order_relaxed) && !held_.exchange(true, std::memory_order_acquire))
      return;
  }
}

void cache_lock::wait_for_owner() noexcept {
  // The owner's fast path is a few dozen instructions, unless it was preempted inside.
  std::this_thread::yield();
}

}  // namespace bufpool::detail
