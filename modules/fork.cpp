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
  static constinit inline intrusive_list<fork_lockable, &fork_lockable::links_>
      pools;  // newest first
  static constinit inline std::once_flag handlers_installed;

  // The lock of the threads' lists of held caches comes last: whoever holds it waits for
  // nothing, while a pool's locks may be held by a thread that waits for it (see
  // held_caches_mutex).
  static void prepare() noexcept {
    mutex.lock();
    for (fork_lockable* p = pools.first; p != nullptr; p = pools.next(*p)) p->lock_for_fork();
    held_caches_mutex.lock();
  }
  static void release() noexcept {
    held_caches_mutex.unlock();
    for (fork_lockable* p = pools.first; p != nullptr; p = pools.next(*p)) p->unlock_after_fork();
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
  fork_list::pools.push_front(pool);
}

void delist_for_fork(fork_lockable& pool) noexcept {
  std::scoped_lock lock(fork_list::mutex);
  fork_list::pools.erase(pool);
}

}  // namespace bufpool::detail
