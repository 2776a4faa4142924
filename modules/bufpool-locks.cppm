// SPDX-License-Identifier: MIT
// bufpool:locks — the locks of pools and thread caches: null, adaptive (spin then sleep) and the
// biased cache lock.
module;
#include <atomic>
#include <cstdint>
export module bufpool:locks;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :intrusive_list;

export namespace bufpool {

namespace detail {
// The CPU's spin-wait hint, in a loop that waits for a lock.
inline void spin_pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}
}  // namespace detail

/// A lock that does nothing: for pools used by one thread only (`local_buffer_pool`).
struct null_mutex {
  /// Does nothing.
  constexpr void lock() noexcept {}
  /// Does nothing.
  constexpr void unlock() noexcept {}
  /// Always succeeds.
  constexpr bool try_lock() noexcept { return true; }
};

/// The default lock of `buffer_pool`: one atomic word. An uncontended lock() and unlock()
/// are one atomic exchange each (a std::mutex makes more atomic operations); a contended lock()
/// spins for a short while (with the CPU's spin-wait hint) before it sleeps in
/// std::atomic::wait. The pool's critical sections are short and constant (a slab slot is a
/// few dozen instructions), so the holder is usually done before a sleep would even start.
// (In a module, a member function defined in its class is not implicitly inline: `inline`
// lets the importers inline lock() and unlock() instead of calling them.)
class adaptive_mutex {
 public:
  /// Spins up to 1000 times while the lock is held, then sleeps until it is released.
  inline void lock() noexcept {
    std::uint32_t seen = free;
    if (!state_.compare_exchange_strong(seen, held, std::memory_order_acquire,
                                        std::memory_order_relaxed)) [[unlikely]]
      wait_for_lock();
  }
  /// Releases the lock, waking one sleeper if there may be any.
  inline void unlock() noexcept {
    if (state_.exchange(free, std::memory_order_release) == contended) [[unlikely]]
      state_.notify_one();
  }
  /// Takes the lock if it is free.
  inline bool try_lock() noexcept {
    std::uint32_t seen = free;
    return state_.compare_exchange_strong(seen, held, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }

 private:
  static constexpr std::uint32_t free = 0;
  static constexpr std::uint32_t held = 1;
  static constexpr std::uint32_t contended = 2;  // held, and a thread may sleep on it
  // Out of line, so that an uncontended lock() is a few instructions where it is used.
  [[gnu::noinline]] void wait_for_lock() noexcept {
    std::uint32_t seen = free;
    for (int i = 0; i < 1000; ++i) {
      detail::spin_pause();
      seen = state_.load(std::memory_order_relaxed);
      if (seen == free && state_.compare_exchange_weak(seen, held, std::memory_order_acquire,
                                                       std::memory_order_relaxed))
        return;
    }
    // From here on the word says "held, maybe with sleepers", so unlock() wakes one.
    seen = state_.exchange(contended, std::memory_order_acquire);
    while (seen != free) {
      state_.wait(contended, std::memory_order_relaxed);
      seen = state_.exchange(contended, std::memory_order_acquire);
    }
  }
  alignas(64) std::atomic<std::uint32_t> state_{free};  // a cache line of its own
};

namespace detail {

// The mutex of a cache_lock: released with a plain store, so that taking and releasing it
// costs one atomic read-modify-write, where adaptive_mutex's unlock() needs a second one to
// learn whether it must wake a sleeper. No thread sleeps on it in the kernel: a waiter spins,
// then yields, then naps (wait_for_lock()). A cache's lock is held for a slot operation by its
// owner or a releasing thread, or by a pool-wide operation (stats(), trim(), ...), so waits
// are short or rare.
class spin_mutex {
 public:
  inline void lock() noexcept {
    if (held_.exchange(true, std::memory_order_acquire)) [[unlikely]]
      wait_for_lock();
  }
  inline bool try_lock() noexcept { return !held_.exchange(true, std::memory_order_acquire); }
  inline void unlock() noexcept { held_.store(false, std::memory_order_release); }

 private:
  [[gnu::noinline]] void wait_for_lock() noexcept;
  alignas(64) std::atomic<bool> held_{false};  // a cache line of its own
};

// Whether heavy_barrier() works in this process (Linux membarrier, registered on first
// call); false in ThreadSanitizer builds, which cannot see the order it makes.
bool heavy_barrier_available() noexcept;
// Makes every running thread of the process pass a full memory barrier before it returns
// (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)). Only when heavy_barrier_available().
void heavy_barrier() noexcept;

// The lock of a thread cache, biased towards the thread that holds the cache (its owner):
// the owner enters with a store and a load, no atomic read-modify-write, so its
// acquisitions and releases do not wait for its own pending stores to drain. Any other
// thread (a release of one of the cache's slots elsewhere, an operation over the whole
// pool) takes the mutex, revokes the owner's fast path, makes a heavy barrier and waits
// for the owner to leave. This is Dekker's exclusion with asymmetric fences: the CPU may
// reorder the owner's store of owner_in_ after its load of revoked_, but the heavy barrier
// orders every running thread between the other thread's store of revoked_ and its load
// of owner_in_, so at least one of the two sees the other's store.
// A heavy barrier costs far more than an owner entry saves (it interrupts every running
// thread): once other threads have entered 64 times, and more than once per 4096 owner
// entries, the bias ends for good and the owner takes the mutex too, as every thread does
// where the heavy barrier is unavailable (revoked_ then stays set: see unlock()).
class cache_lock {
 public:
  cache_lock() noexcept : biased_(heavy_barrier_available()) {}

  // The owner. Returns whether it entered without the mutex (give it to owner_unlock()).
  [[gnu::always_inline]] inline bool owner_lock() noexcept {
    if (biased_.load(std::memory_order_relaxed)) [[likely]] {
      owner_in_.store(true, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the heavy barrier's other half
      if (!revoked_.load(std::memory_order_acquire)) [[likely]] {
        owner_entries_.store(owner_entries_.load(std::memory_order_relaxed) + 1,
                             std::memory_order_relaxed);
        return true;
      }
      owner_in_.store(false, std::memory_order_release);
    }
    mutex_.lock();
    return false;
  }
  [[gnu::always_inline]] inline void owner_unlock(bool fast) noexcept {
    if (fast)
      owner_in_.store(false, std::memory_order_release);
    else
      mutex_.unlock();
  }

  // Any other thread. Several caches can share one heavy barrier: begin_lock() each, one
  // heavy_barrier() if any of them returned true, then finish_lock() each.
  inline void lock() noexcept {
    if (begin_lock()) heavy_barrier();
    finish_lock();
  }
  inline void unlock() noexcept {
    // Once the bias has ended, the owner's fast path stays revoked for good: an owner that
    // read "biased" before the end and was preempted before it stored owner_in_ must find
    // the path closed, as later lockers neither revoke it nor wait for the owner.
    if (biased_.load(std::memory_order_relaxed)) revoked_.store(false, std::memory_order_release);
    mutex_.unlock();
  }
  // Takes the mutex and revokes the owner's fast path; true if a heavy barrier must follow.
  inline bool begin_lock() noexcept {
    mutex_.lock();
    if (!biased_.load(std::memory_order_relaxed)) return false;
    ++other_entries_;  // under the mutex
    if (other_entries_ > 64 &&
        other_entries_ * 4096 > owner_entries_.load(std::memory_order_relaxed))
      biased_.store(false, std::memory_order_relaxed);  // published by the barrier
    revoked_.store(true, std::memory_order_relaxed);
    return true;
  }
  // Whether the owner may still enter without the mutex, and whether its fast path is
  // closed (while another thread holds the lock, and for good once the bias has ended).
  [[nodiscard]] bool biased() const noexcept { return biased_.load(std::memory_order_relaxed); }
  [[nodiscard]] bool owner_path_revoked() const noexcept {
    return revoked_.load(std::memory_order_acquire);
  }
  // Waits until the owner is out of its fast path (after the heavy barrier).
  inline void finish_lock() noexcept {
    while (owner_in_.load(std::memory_order_acquire)) wait_for_owner();
  }

 private:
  [[gnu::noinline]] static void wait_for_owner() noexcept;

  spin_mutex mutex_;
  std::atomic<bool> biased_;
  std::atomic<bool> owner_in_{false};            // written by the owner only
  std::atomic<bool> revoked_{false};             // written under mutex_ only
  std::atomic<std::uint64_t> owner_entries_{0};  // written by the owner only
  std::uint64_t other_entries_ = 0;              // under mutex_
};

// fork() and the pools' locks. A child has only the thread that forked: a lock that another
// thread held at that instant would stay held for good, and a thread-cache owner that was
// inside its fast path would never leave it. So every thread-safe pool enlists here, and
// around fork() the process takes the locks of every enlisted pool (newest pool first, so a
// pool whose growth allocates from an older one is locked before that one) and releases
// them in both the parent and the child. pthread_atfork installs that once, when the first
// pool enlists.
class fork_lockable {
 public:
  // Takes every lock of the pool, waiting out the threads inside it.
  virtual void lock_for_fork() noexcept = 0;
  // Releases what lock_for_fork() took (in the parent, and in the child, as its only thread).
  virtual void unlock_after_fork() noexcept = 0;

 protected:
  fork_lockable() = default;
  fork_lockable(const fork_lockable&) = delete;
  fork_lockable& operator=(const fork_lockable&) = delete;
  ~fork_lockable() = default;

 private:
  friend struct fork_list;
  // The list of enlisted pools (newest first), under its own mutex.
  list_links<fork_lockable> links_;
};
// Adds `pool` to the list (it must stay there until delisted), and removes it. Neither
// allocates.
void enlist_for_fork(fork_lockable& pool) noexcept;
void delist_for_fork(fork_lockable& pool) noexcept;

// The owner's side of a cache_lock, as a scope.
class owner_scope {
 public:
  [[gnu::always_inline]] inline explicit owner_scope(cache_lock& l) noexcept
      : lock_(l), fast_(l.owner_lock()) {}
  [[gnu::always_inline]] inline ~owner_scope() { lock_.owner_unlock(fast_); }
  owner_scope(const owner_scope&) = delete;
  owner_scope& operator=(const owner_scope&) = delete;

 private:
  cache_lock& lock_;
  bool fast_;
};

}  // namespace detail

}  // namespace bufpool

#pragma GCC visibility pop
