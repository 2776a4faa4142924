// SPDX-License-Identifier: MIT
// The list of thread-safe pools whose locks fork() takes and releases (see fork_lockable).
module;
#include <pthread.h>
#include <cstdio>
#include <cstdlib>
#include <mutex>
module bufpool;

namespace bufpool::detail {

// Constant-initialized and trivially destroyed (an adaptive_mutex is one atomic word): no
// allocation, and usable by pools that static objects construct or destroy at any time.
struct fork_list {
  static constinit inline adaptive_mutex mutex;
  static constinit inline fork_lockable* newest = nullptr;
  static constinit inline std::once_flag handlers_installed;

  // The lock of the threads' lists of held caches comes last: whoever holds it waits for
  // nothing, while a pool's locks may be held by a thread that waits for it (see
  // held_caches_mutex).
  static void prepare() noexcept {
    mutex.lock();
    for (fork_lockable* p = newest; p != nullptr; p = p->older_) p->lock_for_fork();
    held_caches_mutex.lock();
  }
  static void release() noexcept {
    held_caches_mutex.unlock();
    for (fork_lockable* p = newest; p != nullptr; p = p->older_) p->unlock_after_fork();
    mutex.unlock();
  }
  static void install_handlers() noexcept {
    if (pthread_atfork(&prepare, &release, &release) != 0) {
      // Only ENOMEM: without the handlers a fork could leave a child's pool locked forever.
      std::fputs("bufpool: pthread_atfork failed; out of memory\n", stderr);
      std::abort();
    }
  }
};

void enlist_for_fork(fork_lockable& pool) noexcept {
  std::call_once(fork_list::handlers_installed, &fork_list::install_handlers);
  std::scoped_lock lock(fork_list::mutex);
  pool.older_ = fork_list::newest;
  pool.newer_ = nullptr;
  if (fork_list::newest != nullptr) fork_list::newest->newer_ = &pool;
  fork_list::newest = &pool;
}

void delist_for_fork(fork_lockable& pool) noexcept {
  std::scoped_lock lock(fork_list::mutex);
  if (pool.newer_ != nullptr)
    pool.newer_->older_ = pool.older_;
  else
    fork_list::newest = pool.older_;
  if (pool.older_ != nullptr) pool.older_->newer_ = pool.newer_;
  pool.newer_ = pool.older_ = nullptr;
}

}  // namespace bufpool::detail
