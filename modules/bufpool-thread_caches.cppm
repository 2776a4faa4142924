// SPDX-License-Identifier: MIT
// bufpool:thread_caches — a pool's per-thread caches of slabs: the set the pool talks to, the
// registry it shares with its threads, and the thread-locals that find a thread's cache.
module;
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>
export module bufpool:thread_caches;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :engine;
import :locks;
import :options;
import :regions;
import :slabs;

export namespace bufpool {

namespace detail {

// Thread caches (options `thread_caches`): each thread that takes slots from a pool has
// slabs of its own there, behind a lock biased towards that thread (see cache_lock) that
// only the pool's operations over every slab ever contend for. thread_cache_set (below) is
// what a pool holds; these are the parts that do not depend on the pool's types.
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

// A pool's thread caches: created with the pool when its options ask for them (else the set
// is empty and enabled() is false). The pool reaches a cache only through this class: the
// calling thread's own (attached on first use), another thread's for a release that crosses
// threads, or all of them, locked, for the operations over the whole pool.
template <offset_integer Int, class Extra>
class thread_cache_set {
 public:
  using region = region_info<Int, Extra>;

  // One thread's slabs in the pool, with copies of the regions they are in, so that the
  // thread finds its slots by address without the pool's lock.
  struct cache : cache_base {
    detail::slabs slabs;
    std::vector<std::optional<region>> regions;  // by id
    address_index by_address;
    // Notes region `id` (a no-op if known). Strong guarantee.
    void add_region(const region& r, std::uint32_t id) {
      if (id < regions.size() && regions[id]) return;
      by_address.reserve_one();
      if (regions.size() <= id) regions.resize(id + 1);
      regions[id].emplace(r);
      by_address.insert(reinterpret_cast<std::uintptr_t>(r.base), id);
    }
  };

  // Gives the empty spans of `slabs` back to `pool`, taking the pool's lock: what happens to
  // a cache whose thread exits while the pool lives.
  using give_back_empty_spans = void (*)(void* pool, detail::slabs& slabs) noexcept;

  thread_cache_set() = default;
  thread_cache_set(const thread_cache_set&) = delete;
  thread_cache_set& operator=(const thread_cache_set&) = delete;

  // Turns the caches on for `pool`. Called once, from the pool's constructor.
  void enable(void* pool, give_back_empty_spans give_back) {
    registry_ = std::make_shared<registry>();
    registry_->pool = pool;
    registry_->give_back = give_back;
    registry_->uid = next_registry_uid.fetch_add(1, std::memory_order_relaxed);
  }
  [[nodiscard]] inline bool enabled() const noexcept { return registry_ != nullptr; }

  // The pool is being destroyed: threads that exit from now on leave it alone.
  void pool_gone() noexcept {
    if (registry_ == nullptr) return;
    std::scoped_lock lock(registry_->mutex);
    registry_->pool_alive = false;
  }

  // The calling thread's cache, or null if it has none (enabled() only).
  [[gnu::always_inline]] inline cache* held() const noexcept {
    const auto& last = this_thread_last;
    if (last.uid == registry_->uid) return static_cast<cache*>(last.cache);
    return find_held();
  }
  // The calling thread's cache, attached on first use; null if the thread is exiting or out
  // of memory (the caller then takes the pool's own slabs). enabled() only.
  [[gnu::always_inline]] inline cache* held_or_attach() noexcept {
    if (cache* mine = held()) return mine;
    return attach();
  }

  // Calls release(cache, span, region, offset) under the calling thread's cache's lock if
  // that cache holds the slot at `pointer`; nothing otherwise. enabled() only.
  template <class F>
  [[gnu::always_inline]] inline std::optional<bool> release_own(const void* pointer,
                                                                F&& release) noexcept {
    cache* const mine = held();
    if (mine == nullptr) return std::nullopt;
    owner_scope cache_lock(mine->lock);
    const auto address = reinterpret_cast<std::uintptr_t>(pointer);
    if (const auto hit = mine->slabs.find_hinted(address))
      return release(*mine, hit->span, hit->region, hit->offset);
    const auto at = mine->by_address.locate(mine->regions, pointer);
    if (!at) return std::nullopt;
    const std::uint32_t s = mine->slabs.find(at->offset, at->region);
    if (s == no_index) return std::nullopt;
    mine->slabs.note_hint(address, s);
    return release(*mine, s, at->region, at->offset);
  }

  // Calls release(cache, span) under the lock of the cache (any thread's) whose slabs hold
  // `offset` of `region`; nothing if none does. Asks the calling thread's own cache first
  // (its owner's path), then the cache `owner` (from owner_of(), may be null or stale: each
  // answer is checked against the cache's own slabs), then every other: O(1) unless the
  // offset is no live slot.
  template <class F>
  std::optional<bool> release_in_any(std::uint64_t offset, std::uint32_t region, cache* owner,
                                     F&& release) noexcept {
    if (registry_ == nullptr) return std::nullopt;
    cache* const mine = held();
    if (mine != nullptr) {
      owner_scope cache_lock(mine->lock);
      if (const std::uint32_t s = mine->slabs.find(offset, region); s != no_index)
        return release(*mine, s);
    }
    if (owner != nullptr && owner != mine) {
      std::scoped_lock cache_lock(owner->lock);
      if (const std::uint32_t s = owner->slabs.find(offset, region); s != no_index)
        return release(*owner, s);
    }
    std::scoped_lock registry_lock(registry_->mutex);
    for (const auto& c : registry_->caches) {
      if (c.get() == mine || c.get() == owner) continue;  // asked above
      std::scoped_lock cache_lock(c->lock);
      if (const std::uint32_t s = c->slabs.find(offset, region); s != no_index)
        return release(*c, s);
    }
    return std::nullopt;
  }

  // Notes that `owner` holds the span [offset, offset + bytes) of region `id` (at
  // region_offset in the pool), for owner_of(). Under the pool's lock. A span that is given
  // back leaves its note behind: owner_of() is a hint. Strong guarantee (std::bad_alloc).
  void note_owner(cache& owner, std::uint32_t id, std::uint64_t region_offset,
                  std::uint64_t region_size, std::uint64_t offset, std::uint64_t bytes) {
    if (owners_.size() <= id) owners_.resize(id + 1);
    auto& chunks = owners_[id];
    if (chunks.empty())
      chunks.resize(((region_size - 1) >> owner_cell_log2 >> owner_chunk_log2) + 1);
    const std::uint64_t first = (offset - region_offset) >> owner_cell_log2;
    const std::uint64_t last = (offset - region_offset + bytes - 1) >> owner_cell_log2;
    for (std::uint64_t k = first >> owner_chunk_log2; k <= last >> owner_chunk_log2; ++k)
      if (!chunks[k]) chunks[k] = std::make_unique<cache*[]>(std::size_t{1} << owner_chunk_log2);
    for (std::uint64_t k = first; k <= last; ++k)
      chunks[k >> owner_chunk_log2][k & ((std::uint64_t{1} << owner_chunk_log2) - 1)] = &owner;
  }
  // The cache last noted for `offset` of region `id` (at region_offset), or null. Under the
  // pool's lock. O(1).
  [[nodiscard]] cache* owner_of(std::uint32_t id, std::uint64_t region_offset,
                                std::uint64_t offset) const noexcept {
    if (id >= owners_.size()) return nullptr;
    const std::uint64_t k = (offset - region_offset) >> owner_cell_log2;
    const auto& chunks = owners_[id];
    if ((k >> owner_chunk_log2) >= chunks.size() || !chunks[k >> owner_chunk_log2]) return nullptr;
    return chunks[k >> owner_chunk_log2][k & ((std::uint64_t{1} << owner_chunk_log2) - 1)];
  }

  // Calls f(cache) for every cache (with every lock held: see with_all_locked()).
  template <class F>
  void for_each(F&& f) const {
    if (registry_ != nullptr)
      for (const auto& c : registry_->caches) f(*c);
  }

  // Runs f() with every lock taken (see lock_all()).
  template <class Mutex, class F>
  decltype(auto) with_all_locked(Mutex& pool_mutex, F&& f) const {
    const all_locked taken = lock_all(pool_mutex);
    struct unlock_at_end {
      const thread_cache_set& set;
      Mutex& pool_mutex;
      all_locked taken;
      ~unlock_at_end() { set.unlock_all(pool_mutex, taken); }
    } end{*this, pool_mutex, taken};
    return f();
  }

  // How lock_all() took the calling thread's own cache, for unlock_all().
  struct all_locked {
    cache* own = nullptr;  // the calling thread's cache, taken through its owner's path
    bool own_fast = false;
  };

  // Takes every lock, in order: the registry's, every cache's, then `pool_mutex`; only
  // `pool_mutex` when the caches are off. The calling thread's own cache is taken as its
  // owner takes it, and the others' owners are revoked with one heavy barrier for all of
  // them (none when the caller is the only thread with a cache).
  template <class Mutex>
  all_locked lock_all(Mutex& pool_mutex) const {
    all_locked taken;
    if (registry_ != nullptr) {
      registry_->mutex.lock();
      taken.own = held();
      bool barrier = false;
      for (const auto& c : registry_->caches)
        if (c.get() != taken.own) barrier |= c->lock.begin_lock();
      if (taken.own != nullptr) taken.own_fast = taken.own->lock.owner_lock();
      if (barrier) heavy_barrier();
      for (const auto& c : registry_->caches)
        if (c.get() != taken.own) c->lock.finish_lock();
    }
    pool_mutex.lock();
    return taken;
  }
  // Releases what lock_all() took.
  template <class Mutex>
  void unlock_all(Mutex& pool_mutex, const all_locked& taken) const noexcept {
    pool_mutex.unlock();
    if (registry_ == nullptr) return;
    for (const auto& c : registry_->caches)
      if (c.get() != taken.own) c->lock.unlock();
    if (taken.own != nullptr) taken.own->lock.owner_unlock(taken.own_fast);
    registry_->mutex.unlock();
  }

 private:
  struct registry final : cache_registry_base {
    void* pool = nullptr;
    give_back_empty_spans give_back = nullptr;
    std::vector<std::unique_ptr<cache>> caches;  // only ever grows
    void detach(cache_base& c) noexcept override {
      auto& mine = static_cast<cache&>(c);
      owner_scope cache_lock(mine.lock);  // the exiting thread is the owner
      give_back(pool, mine.slabs);
    }
  };

  [[gnu::noinline]] cache* find_held() const noexcept {
    auto& last = this_thread_last;
    if (last.exited) return nullptr;  // its list is gone
    for (const auto& [r, c] : this_thread_caches.held)
      if (r.get() == registry_.get()) {
        last = {registry_->uid, c, false};
        return static_cast<cache*>(c);
      }
    return nullptr;
  }

  [[gnu::noinline]] cache* attach() noexcept {
    if (this_thread_last.exited) return nullptr;
    auto& held = this_thread_caches;
    try {
      std::erase_if(held.held, [](const auto& h) {  // caches of pools that are gone
        std::scoped_lock lock(h.first->mutex);
        return !h.first->pool_alive;
      });
      held.held.reserve(held.held.size() + 1);
      cache* mine = nullptr;
      {
        std::scoped_lock lock(registry_->mutex);
        for (const auto& c : registry_->caches)
          if (!c->attached) {
            mine = c.get();
            break;
          }
        if (mine == nullptr) {
          registry_->caches.reserve(registry_->caches.size() + 1);
          registry_->caches.push_back(std::make_unique<cache>());
          mine = registry_->caches.back().get();
        }
        mine->attached = true;
      }
      held.held.emplace_back(registry_, mine);
      this_thread_last = {registry_->uid, mine, false};
      return mine;
    } catch (...) {
      return nullptr;
    }
  }

  std::shared_ptr<registry> registry_;  // null while the caches are off
  // By region id, then by 4 KiB cell of the region (in chunks of 1024 cells, made when a span
  // first needs them): the cache that last took a span there (see note_owner()).
  static constexpr unsigned owner_cell_log2 = 12;
  static constexpr unsigned owner_chunk_log2 = 10;
  std::vector<std::vector<std::unique_ptr<cache*[]>>> owners_;
};

// Every lock of one pool, for fork() (see fork_lockable): `grow` first, as grow() takes it
// before the others, then the caches' and the pool's (thread_cache_set::lock_all()).
template <class CacheSet, class Mutex>
class pool_fork_locks final : public fork_lockable {
 public:
  pool_fork_locks(Mutex& grow, Mutex& pool, const CacheSet& caches) noexcept
      : grow_(grow), pool_(pool), caches_(caches) {}
  void lock_for_fork() noexcept override {
    grow_.lock();
    taken_ = caches_.lock_all(pool_);
  }
  void unlock_after_fork() noexcept override {
    caches_.unlock_all(pool_, taken_);
    grow_.unlock();
  }

 private:
  Mutex& grow_;
  Mutex& pool_;
  const CacheSet& caches_;
  typename CacheSet::all_locked taken_;
};
// What a pool without locks has instead.
struct no_fork_locks {
  template <class... Locks>
  explicit no_fork_locks(Locks&...) noexcept {}
};

}  // namespace detail

}  // namespace bufpool

#pragma GCC visibility pop
