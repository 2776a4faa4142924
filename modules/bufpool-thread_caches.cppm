// SPDX-License-Identifier: MIT
// bufpool:thread_caches — a pool's per-thread caches of slabs: the set the pool talks to, the
// registry it shares with its threads, and the thread-locals that find a thread's cache.
module;
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
export module bufpool:thread_caches;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :engine;
import :intrusive_list;
import :locks;
import :metadata;
import :options;
import :regions;
import :slabs;

export namespace bufpool {

namespace detail {

struct cache_registry_base;
struct held_list;

// Thread caches (options `thread_caches`): each thread that takes slots from a pool has
// slabs of its own there, behind a lock biased towards that thread (see cache_lock) that
// only the pool's operations over every slab ever contend for. thread_cache_set (below) is
// what a pool holds; these are the parts that do not depend on the pool's types.
struct cache_base {
  explicit cache_base(cache_registry_base& r) noexcept : registry(&r) {}
  cache_base(const cache_base&) = delete;
  cache_base& operator=(const cache_base&) = delete;
  cache_lock lock;        // taken before the pool's lock, never after
  bool attached = false;  // held by a live thread (else the next thread to come takes it)
  cache_registry_base* const registry;  // its pool's
  // Its place in the list of the thread that holds it (null `holder`: in none), under
  // held_caches_mutex.
  held_list* holder = nullptr;
  list_links<cache_base> held_links;
};

// A pool's caches: what a thread that exits reaches its pool through. It lives as long as
// the pool, which takes its caches out of every thread's list before it goes (pool_gone()).
struct cache_registry_base {
  std::mutex mutex;       // attach, detach, operations over every cache, the pool's end
  std::uint64_t uid = 0;  // unique over the process's life, never 0
  cache_registry_base() = default;
  cache_registry_base(const cache_registry_base&) = delete;
  cache_registry_base& operator=(const cache_registry_base&) = delete;
  virtual ~cache_registry_base() = default;
  // The thread holding `cache` exits (mutex held, the pool alive): its empty slabs go back.
  virtual void detach(cache_base& cache) noexcept = 0;
};

inline std::atomic<std::uint64_t> next_registry_uid{1};

// The lock of every thread's list of held caches, process-wide so that a pool's end can
// take its caches out of the lists of threads that are still alive. Nothing is waited for
// while it is held (a thread that exits only tries a registry's mutex under it): a pool's
// records may come from another pool with thread caches, whose attach and lookup take this
// lock under the first pool's locks. Around fork() it is taken after every pool's locks
// (fork.cpp). Constant-initialized and trivially destroyed, like the fork list's.
inline constinit adaptive_mutex held_caches_mutex;

// One thread's held caches, linked through the caches themselves (no allocation).
struct held_list {
  intrusive_list<cache_base, &cache_base::held_links> caches;
  // Under held_caches_mutex.
  void push(cache_base& c) noexcept {
    c.holder = this;
    caches.push_front(c);
  }
  // Takes `c` out of its holder's list. Under held_caches_mutex.
  static void unlink(cache_base& c) noexcept {
    c.holder->caches.erase(c);
    c.holder = nullptr;
  }
};

// The caches this thread used last, and the list of those it holds: trivially destructible
// and constant-initialized, so every acquisition and release reaches them without the check
// and call that a thread_local with a destructor costs on each use, and they stay readable
// while the thread's other thread_locals are destroyed. An entry is used only when its uid
// is that of the live pool asking, and uids are never reused: an entry of a pool that is
// gone is never matched.
struct last_caches {
  struct entry {
    std::uint64_t uid = 0;        // its registry's uid (never 0)
    cache_base* cache = nullptr;  // null: the thread holds no cache of that pool
    // The cache of another thread that this thread last released a slot into, or null
    // (see thread_cache_set::release_in_recent()).
    cache_base* recent_other = nullptr;
  };
  static constexpr std::size_t size = 4;
  entry recent[size] = {};  // most recent first
  held_list held;           // every cache the thread holds
  bool exited = false;      // the thread is exiting: it attaches no cache any more

  // Makes uid's entry, with `cache`, the most recent (keeping its recent_other).
  void remember(std::uint64_t uid, cache_base* cache) noexcept {
    std::size_t i = 0;
    while (i + 1 < size && recent[i].uid != uid) ++i;
    entry e = recent[i].uid == uid ? recent[i] : entry{uid};
    e.cache = cache;
    for (; i > 0; --i) recent[i] = recent[i - 1];
    recent[0] = e;
  }
};

inline constinit thread_local last_caches this_thread_last{};

// Waits a little before the next try: a thread that exits waiting for a registry's mutex.
inline void back_off(unsigned tries) noexcept {
  if (tries < 16)
    std::this_thread::yield();
  else
    std::this_thread::sleep_for(std::chrono::microseconds(50));
}

// The thread exits: every cache it holds is detached and left to the next thread to come.
// Each is taken out of the list under held_caches_mutex with its registry's mutex already
// held (only tried: see held_caches_mutex), so that a pool ending meanwhile either takes it
// out first or waits for this thread on that mutex.
inline void detach_held_caches() noexcept {
  last_caches& me = this_thread_last;
  me.exited = true;
  for (auto& e : me.recent) e = {};
  for (unsigned tries = 0;;) {
    held_caches_mutex.lock();
    cache_base* const c = me.held.caches.first;
    if (c == nullptr) {
      held_caches_mutex.unlock();
      return;
    }
    cache_registry_base& registry = *c->registry;
    if (!registry.mutex.try_lock()) {
      held_caches_mutex.unlock();
      back_off(tries++);
      continue;
    }
    held_list::unlink(*c);
    held_caches_mutex.unlock();
    tries = 0;
    registry.detach(*c);
    c->attached = false;
    registry.mutex.unlock();
  }
}

// Destroyed at the thread's exit, once the thread has attached a cache.
struct thread_caches_exit {
  bool armed = false;
  thread_caches_exit() = default;
  thread_caches_exit(const thread_caches_exit&) = delete;
  thread_caches_exit& operator=(const thread_caches_exit&) = delete;
  ~thread_caches_exit() {
    if (armed) detach_held_caches();
  }
};

inline thread_local thread_caches_exit this_thread_caches;

// A pool's thread caches: created with the pool when its options ask for them (else the set
// is empty and enabled() is false). The pool reaches a cache only through this class: the
// calling thread's own (attached on first use), another thread's for a release that crosses
// threads, or all of them, locked, for the operations over the whole pool.
template <offset_integer Int, class Extra>
class thread_cache_set {
 public:
  using region = region_info<Int, Extra>;

  // One thread's slabs in the pool, with copies of the regions they are in, so that the
  // thread finds its slots by address or by offset without the pool's lock.
  struct cache : cache_base {
    cache(cache_registry_base& r, std::pmr::memory_resource* metadata) noexcept
        : cache_base(r),
          slabs(metadata),
          regions(metadata),
          by_address(metadata),
          by_offset(metadata) {}
    detail::slabs slabs;
    meta_vector<std::optional<region>> regions;  // by id
    address_index by_address;
    offset_index by_offset;
    // Notes region `id` (a no-op if known). Strong guarantee.
    void add_region(const region& r, std::uint32_t id) {
      if (id < regions.size() && regions[id]) return;
      by_address.reserve_one();
      by_offset.reserve_one();
      if (regions.size() <= id) regions.resize(id + 1);
      regions[id].emplace(r);
      by_address.insert(reinterpret_cast<std::uintptr_t>(r.base), id);
      by_offset.insert(r.offset, id);
    }
  };

  // Gives the empty spans of `slabs` back to `pool`, taking the pool's lock: what happens to
  // a cache whose thread exits while the pool lives.
  using give_back_empty_spans = void (*)(void* pool, detail::slabs& slabs) noexcept;

  thread_cache_set() = default;
  thread_cache_set(const thread_cache_set&) = delete;
  thread_cache_set& operator=(const thread_cache_set&) = delete;

  // Turns the caches on for `pool`, whose records come from `metadata` (the global heap if
  // null). Called once, from the pool's constructor. Allocates nothing: the caches and their
  // records are made as threads attach.
  void enable(void* pool, give_back_empty_spans give_back,
              std::pmr::memory_resource* metadata) noexcept {
    registry_.emplace(pool, give_back, metadata_or_default(metadata));
  }
  [[nodiscard]] inline bool enabled() const noexcept { return registry_.has_value(); }

  // The pool is being destroyed: its caches leave the lists of the threads that hold them,
  // after any of those threads that is exiting meanwhile is done with its own, so that no
  // thread reaches them any more.
  void pool_gone() noexcept {
    if (!registry_) return;
    {
      std::scoped_lock lock(held_caches_mutex);
      for (const auto& c : registry_->caches)
        if (c->holder != nullptr) held_list::unlink(*c);
    }
    std::scoped_lock lock(registry_->mutex);  // waits out a thread that detaches one of them
    for (const auto& c : registry_->caches) c->attached = false;
  }

  // The calling thread's cache, or null if it has none (enabled() only). The hit is one
  // comparison of uids, with no lock.
  [[gnu::always_inline]] inline cache* held() const noexcept {
    const auto& last = this_thread_last.recent[0];
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
  // that cache holds the slot at `key` (a pointer or a pool offset); nothing otherwise.
  // enabled() only.
  template <class Key, class F>
  [[gnu::always_inline]] inline std::optional<bool> release_own(Key key, F&& release) noexcept {
    cache* const mine = held();
    if (mine == nullptr) return std::nullopt;
    owner_scope cache_lock(mine->lock);
    const auto at = find_slot(*mine, key);
    if (!at) return std::nullopt;
    return release(*mine, at->span, at->region, at->offset);
  }

  // Whether release_in_recent() has a cache to ask: one of another thread that the calling
  // thread released a slot into last (release_own() asked first). enabled() only.
  [[gnu::always_inline]] inline bool has_recent_other() const noexcept {
    const auto& last = this_thread_last.recent[0];
    // (A cache this thread released into may have become its own since: release_own() asked.)
    return last.uid == registry_->uid && last.recent_other != nullptr &&
           last.recent_other != last.cache;
  }
  // As release_own(), in the cache that has_recent_other() names, under that cache's lock
  // alone: a thread that frees what another thread acquired (a consumer of one producer's
  // buffers) finds the next slot in the same cache, without the pool's lock. If that cache
  // does not hold the slot, it is forgotten and nothing happens.
  template <class Key, class F>
  std::optional<bool> release_in_recent(Key key, F&& release) noexcept {
    auto& last = this_thread_last.recent[0];
    auto& other = static_cast<cache&>(*last.recent_other);
    {
      std::scoped_lock cache_lock(other.lock);
      if (const auto at = find_slot(other, key))
        return release(other, at->span, at->region, at->offset);
    }
    last.recent_other = nullptr;
    return std::nullopt;
  }

  // Calls release(cache, span) under the lock of the cache of another thread whose slabs
  // hold `offset` of `region`; nothing if none does. The calling thread's own cache is not
  // asked: release_own() did. Asks the cache `owner` (from owner_of(), may be null or stale:
  // each answer is checked against the cache's own slabs), then every other: O(1) unless the
  // offset is no live slot. The cache found is remembered for release_in_recent().
  template <class F>
  std::optional<bool> release_in_any(std::uint64_t offset, std::uint32_t region, cache* owner,
                                     F&& release) noexcept {
    if (!registry_) return std::nullopt;
    cache* const mine = held();  // its lock is taken on its owner's path only
    if (owner != nullptr && owner != mine) {
      std::scoped_lock cache_lock(owner->lock);
      if (const std::uint32_t s = owner->slabs.find(offset, region); s != no_index) {
        remember_other(*owner);
        return release(*owner, s);
      }
    }
    std::scoped_lock registry_lock(registry_->mutex);
    for (const auto& c : registry_->caches) {
      if (c.get() == mine || c.get() == owner) continue;  // asked before
      std::scoped_lock cache_lock(c->lock);
      if (const std::uint32_t s = c->slabs.find(offset, region); s != no_index) {
        remember_other(*c);
        return release(*c, s);
      }
    }
    return std::nullopt;
  }

  // Notes that `owner` holds the span [offset, offset + bytes) of region `id` (at
  // region_offset in the pool), for owner_of(). Under the pool's lock. A span that is given
  // back leaves its note behind: owner_of() is a hint. Strong guarantee (std::bad_alloc).
  void note_owner(cache& owner, std::uint32_t id, std::uint64_t region_offset,
                  std::uint64_t region_size, std::uint64_t offset, std::uint64_t bytes) {
    auto& owners = registry_->owners;
    if (owners.size() <= id) owners.resize(id + 1);
    auto& chunks = owners[id];
    if (chunks.empty())
      chunks.resize(((region_size - 1) >> owner_cell_log2 >> owner_chunk_log2) + 1);
    const std::uint64_t first = (offset - region_offset) >> owner_cell_log2;
    const std::uint64_t last = (offset - region_offset + bytes - 1) >> owner_cell_log2;
    const std::uint64_t cells = ((region_size - 1) >> owner_cell_log2) + 1;
    for (std::uint64_t k = first >> owner_chunk_log2; k <= last >> owner_chunk_log2; ++k)
      if (!chunks[k])  // the last chunk holds only the region's cells
        chunks[k] = make_meta_array<cache*>(
            registry_->metadata,
            std::min(std::uint64_t{1} << owner_chunk_log2, cells - (k << owner_chunk_log2)));
    for (std::uint64_t k = first; k <= last; ++k)
      chunks[k >> owner_chunk_log2][k & ((std::uint64_t{1} << owner_chunk_log2) - 1)] = &owner;
  }
  // The cache last noted for `offset` of region `id` (at region_offset), or null. Under the
  // pool's lock. O(1).
  [[nodiscard]] cache* owner_of(std::uint32_t id, std::uint64_t region_offset,
                                std::uint64_t offset) const noexcept {
    const auto& owners = registry_->owners;
    if (id >= owners.size()) return nullptr;
    const std::uint64_t k = (offset - region_offset) >> owner_cell_log2;
    const auto& chunks = owners[id];
    if ((k >> owner_chunk_log2) >= chunks.size() || !chunks[k >> owner_chunk_log2]) return nullptr;
    return chunks[k >> owner_chunk_log2][k & ((std::uint64_t{1} << owner_chunk_log2) - 1)];
  }

  // Calls f(cache) for every cache (with every lock held: see with_all_locked()).
  template <class F>
  void for_each(F&& f) const {
    if (registry_)
      for (const auto& c : registry_->caches) f(*c);
  }

  // Empties every cache, whose slabs keep the capacity of their records (slabs::clear()),
  // and forgets the owners noted: the pool is being cleared (every lock held: see
  // with_all_locked()). The caches stay with the threads that hold them.
  void clear_all() noexcept {
    if (!registry_) return;
    for (const auto& c : registry_->caches) {
      c->slabs.clear();
      c->regions.clear();
      c->by_address.clear();
      c->by_offset.clear();
    }
    registry_->owners.clear();
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
    if (registry_) {
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
    if (!registry_) return;
    for (const auto& c : registry_->caches)
      if (c.get() != taken.own) c->lock.unlock();
    if (taken.own != nullptr) taken.own->lock.owner_unlock(taken.own_fast);
    registry_->mutex.unlock();
  }

 private:
  // By region id, then by 4 KiB cell of the region (in chunks of 1024 cells, made when a span
  // first needs them): the cache that last took a span there (see note_owner()).
  static constexpr unsigned owner_cell_log2 = 12;
  static constexpr unsigned owner_chunk_log2 = 10;

  // Finds the slot at `pointer` in cache c (its lock held), noting its span as c's hint
  // for that address.
  [[gnu::always_inline]] static inline std::optional<slabs::place> find_slot(
      cache& c, const void* pointer) noexcept {
    const auto address = reinterpret_cast<std::uintptr_t>(pointer);
    if (const auto hit = c.slabs.find_hinted(address)) return hit;
    const auto at = c.by_address.locate(c.regions, pointer);
    if (!at) return std::nullopt;
    const std::uint32_t s = c.slabs.find(at->offset, at->region);
    if (s == no_index) return std::nullopt;
    c.slabs.note_hint(address, s);
    return slabs::place{s, at->region, at->offset};
  }
  // Finds the slot at pool offset `offset` in cache c (its lock held).
  [[gnu::always_inline]] static inline std::optional<slabs::place> find_slot(
      cache& c, std::uint64_t offset) noexcept {
    const auto region = c.by_offset.locate(c.regions, offset);
    if (!region) return std::nullopt;
    const std::uint32_t s = c.slabs.find(offset, *region);
    if (s == no_index) return std::nullopt;
    return slabs::place{s, *region, offset};
  }

  // Notes `other`, a cache of another thread that holds a slot the calling thread releases,
  // for release_in_recent(). The thread's entry of this pool is the most recent: held()
  // made it so just before (or the thread is exiting, and keeps no entry).
  void remember_other(cache& other) const noexcept {
    auto& last = this_thread_last.recent[0];
    if (last.uid == registry_->uid) last.recent_other = &other;
  }

  struct registry final : cache_registry_base {
    registry(void* p, give_back_empty_spans g, std::pmr::memory_resource* m) noexcept
        : pool(p), give_back(g), metadata(m), caches(m), owners(m) {
      uid = next_registry_uid.fetch_add(1, std::memory_order_relaxed);
    }
    void* const pool;
    const give_back_empty_spans give_back;
    std::pmr::memory_resource* const metadata;            // every record below comes from it
    meta_vector<meta_ptr<cache>> caches;                  // only ever grows
    meta_vector<meta_vector<meta_array<cache*>>> owners;  // see note_owner()
    void detach(cache_base& c) noexcept override {
      auto& mine = static_cast<cache&>(c);
      owner_scope cache_lock(mine.lock);  // the exiting thread is the owner
      give_back(pool, mine.slabs);
    }
  };

  // held() missed: the thread's other recent caches, then its list (under the process-wide
  // lock, as a pool's end may take caches out of it). A miss is remembered too (a null
  // cache), so that a thread that only releases into the pool does not take that lock
  // again; only this thread's attach() puts a cache of the pool in its list, and it
  // replaces that entry.
  [[gnu::noinline]] cache* find_held() const noexcept {
    auto& last = this_thread_last;
    if (last.exited) return nullptr;  // its caches are detached
    const std::uint64_t uid = registry_->uid;
    for (std::size_t i = 1; i < last_caches::size; ++i)
      if (last.recent[i].uid == uid) {
        cache_base* const c = last.recent[i].cache;
        last.remember(uid, c);
        return static_cast<cache*>(c);
      }
    cache_base* found = nullptr;
    {
      std::scoped_lock lock(held_caches_mutex);
      for (cache_base* c = last.held.caches.first; c != nullptr; c = last.held.caches.next(*c))
        if (c->registry == &*registry_) {
          found = c;
          break;
        }
    }
    last.remember(uid, found);
    return static_cast<cache*>(found);
  }

  // Takes a cache no thread holds, or makes one, and puts it in the thread's list. The
  // records come from the pool's resource under the registry's mutex, never under
  // held_caches_mutex (the resource may be another pool with thread caches).
  [[gnu::noinline]] cache* attach() noexcept {
    auto& last = this_thread_last;
    if (last.exited) return nullptr;
    this_thread_caches.armed = true;  // detaches the thread's caches at its exit
    cache* mine = nullptr;
    try {
      std::scoped_lock lock(registry_->mutex);
      for (const auto& c : registry_->caches)
        if (!c->attached) {
          mine = c.get();
          break;
        }
      if (mine == nullptr) {
        registry_->caches.reserve(registry_->caches.size() + 1);
        registry_->caches.push_back(
            make_meta<cache>(registry_->metadata, *registry_, registry_->metadata));
        mine = registry_->caches.back().get();
      }
      mine->attached = true;
    } catch (...) {
      return nullptr;
    }
    {
      std::scoped_lock lock(held_caches_mutex);
      last.held.push(*mine);
    }
    last.remember(registry_->uid, mine);
    return mine;
  }

  // Empty while the caches are off. Mutable: operations over every cache that leave the
  // set as it is (stats(), ...) still take its mutex.
  mutable std::optional<registry> registry_;
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
