// SPDX-License-Identifier: MIT
// bufpool:thread_caches — per-thread caches of slabs: the registry a pool shares with its threads,
// and the thread-locals.
module;
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>
export module bufpool:thread_caches;

import :locks;
import :slabs;

export namespace bufpool {

namespace detail {

// Thread caches (options `thread_caches`): each thread that takes slots from a pool has
// slabs of its own there, behind a lock biased towards that thread (see cache_lock) that
// only the pool's operations over every slab ever contend for. The pool's part is in
// buffer_pool; these are the type-independent parts.
struct cache_base {
  cache_lock lock;        // taken before the pool's lock, never after
  bool attached = false;  // held by a live thread (else the next thread to come takes it)
};

// A pool's caches, shared with the threads that hold one of them, so that a thread that
// exits after the pool is gone finds out instead of touching it.
struct cache_registry_base {
  std::mutex mutex;        // attach, detach, operations over every cache, the pool's end
  bool pool_alive = true;  // false once the pool is destroyed
  std::uint64_t uid = 0;   // unique over the process's life, never 0
  cache_registry_base() = default;
  cache_registry_base(const cache_registry_base&) = delete;
  cache_registry_base& operator=(const cache_registry_base&) = delete;
  virtual ~cache_registry_base() = default;
  // The thread holding `cache` exits (mutex held, the pool alive): its empty slabs go back.
  virtual void detach(cache_base& cache) noexcept = 0;
};

inline std::atomic<std::uint64_t> next_registry_uid{1};

// The cache this thread used last, apart from the list below: trivially destructible and
// constant-initialized, so every acquisition and release reaches it without the check and
// call that a thread_local with a destructor costs on each use, and it stays readable
// while the thread's other thread_locals are destroyed.
struct last_cache {
  std::uint64_t uid = 0;  // its registry's uid (never 0)
  cache_base* cache = nullptr;
  bool exited = false;  // the list below is gone
};

inline constinit thread_local last_cache this_thread_last{};

// The caches this thread holds.
struct thread_caches_held {
  std::vector<std::pair<std::shared_ptr<cache_registry_base>, cache_base*>> held;
  thread_caches_held() = default;
  thread_caches_held(const thread_caches_held&) = delete;
  thread_caches_held& operator=(const thread_caches_held&) = delete;
  ~thread_caches_held() {
    this_thread_last = {0, nullptr, true};
    for (auto& [registry, cache] : held) {
      std::scoped_lock lock(registry->mutex);
      if (registry->pool_alive) registry->detach(*cache);
      cache->attached = false;
    }
  }
};

inline thread_local thread_caches_held this_thread_caches;

}  // namespace detail

}  // namespace bufpool
