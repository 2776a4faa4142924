// SPDX-License-Identifier: MIT
// bufpool:pool — the buffer pool: its interface, its state, and the declarations of the paths
// that bufpool:pool_ranges, bufpool:pool_regions, bufpool:pool_inspect and bufpool:pool_guards
// define.
module;
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <iterator>
#include <limits>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "build_flags.hpp"
export module bufpool:pool;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :contracts;
import :engine;
import :errors;
import :locks;
import :metadata;
import :map;
import :offset_map;
import :options;
import :regions;
import :slabs;
import :slice;
import :thread_caches;
import :types;

/// The core library (`import bufpool;`): the offset engine, buffer pools with RAII slices and
/// guards, their options, error codes and contract checks.
export namespace bufpool {

namespace detail {

// A guard the pool keeps for a slice destroyed while guarded.
struct parked_guard {
  virtual ~parked_guard() = default;
  virtual bool try_release() = 0;
};

template <class G>
struct parked_guard_of final : parked_guard {
  explicit parked_guard_of(G&& g) : guard(std::move(g)) {}
  bool try_release() override { return static_cast<bool>(guard.try_release()); }
  G guard;
};

struct parked_range {
  std::uint32_t node;
  meta_ptr<parked_guard> guard;
};

}  // namespace detail

/// A buffer pool: one space of offsets of type `Int`, backed by any number of
/// non-adjacent regions (each with a user `Extra` value), handing out RAII slices.
///
/// Thread safety: every member function may be called concurrently (with the default
/// `Mutex`); `local_buffer_pool` has no locking. The pool never reads or writes the
/// regions' memory.
///
/// Lifetime: the pool must not move (slices point to it). Destroying it while borrowed
/// slices are alive is a contract violation. Destroying it while any slice is guarded
/// frees nothing and reports the kept memory through the diagnostic handler; otherwise the
/// handle's `close_all` (or `close`) receives every region.
///
/// ```
/// bufpool::buffer_pool<> pool;
/// std::vector<std::byte> memory(1 << 20);
/// auto grow = pool.begin_expand(memory.size());
/// std::move(*grow).initialize(memory.data());
/// auto slice = pool.acquire(4096, 64, bufpool::optimal);  // 4 KiB at a 64-aligned offset
/// ```
template <offset_integer Int = std::uint32_t, class Extra = no_extra, class Handle = no_handle,
          class Mutex = adaptive_mutex>
class buffer_pool {
  static_assert(std::copy_constructible<Extra>, "a region's extra value must be copyable");
  static_assert(pool_handle<Handle, Int, Extra>,
                "Handle needs close(const mmap_entries<Int, Extra>&)");

 public:
  using integer = Int;                       ///< The offset integer.
  using mutex_type = Mutex;                  ///< The lock type (null_mutex: no locking).
  using extra_type = Extra;                  ///< The user's value kept with each region.
  using handle_type = Handle;                ///< What frees the regions' memory.
  using options_type = basic_options<Int>;   ///< The pool's options.
  using entry = mmap_entry<Int, Extra>;      ///< One initialized region.
  using entries = mmap_entries<Int, Extra>;  ///< What regions() returns and close() receives.
  using expansion = expansion_handle<buffer_pool>;  ///< What begin_expand() returns.
  /// A slice of this pool that can carry a guard of type `Guard`.
  template <slice_guard Guard = no_guard>
  using slice_type = basic_slice<buffer_pool, Guard>;
  using slice = basic_slice<buffer_pool, no_guard>;  ///< A slice that carries no guard.

  /// A pool with default options and no handle (the user frees the regions' memory).
  buffer_pool() : buffer_pool(options_type{}) {}

  /// A pool with the given options; invalid options are a contract violation.
  explicit buffer_pool(const options_type& options)
      : options_(checked(options)),
        metadata_(detail::metadata_or_default(options_.metadata)),
        engine_(limits_of(options_), metadata_) {
    if constexpr (checked_build) checked_id_ = detail::register_pool(this, checked_node_);
    if constexpr (can_cache)
      if (options_.slabs && options_.thread_caches)
        caches_.enable(this, &give_back_empty_spans, metadata_);
    if constexpr (can_cache) detail::enlist_for_fork(fork_locks_);
  }

  /// A pool that owns `handle`, which frees the regions when the pool is destroyed.
  buffer_pool(const options_type& options, Handle handle) : buffer_pool(options) {
    handle_.emplace(std::move(handle));
  }

  buffer_pool(const buffer_pool&) = delete;
  buffer_pool& operator=(const buffer_pool&) = delete;

  ~buffer_pool();

  /// The options in effect: the defaults if the given ones were invalid (and the violation
  /// handler returned).
  [[nodiscard]] const options_type& options() const noexcept { return options_; }

  /// Reserves the next `size` offsets for a new region and returns the handle that
  /// initializes it. The range is pending (invisible to acquire) until then, and is given
  /// back if the handle is destroyed uninitialized. The lock is not held while the caller
  /// allocates the backing memory.
  /// Errors: invalid_size (0), out_of_offset_space (no span of that size is left),
  /// pool_closed.
  [[nodiscard]] std::expected<expansion, errc> begin_expand(std::uint64_t size);

  /// Acquires a slice of `size` bytes whose offset is a multiple of `alignment` (raised to
  /// the minimum alignment), borrowing the pool (the pool must outlive it). Without a
  /// strategy: good_fit, O(1) and tight; optimal is the exact best fit.
  ///
  /// Errors: invalid_size, invalid_alignment, alignment_too_big, too_large,
  /// out_of_memory (optimal: only when no free range can hold the aligned request;
  /// good_fit: only when none holds it plus `alignment - min_alignment`),
  /// invalid_argument / occupied / out_of_range / arithmetic_overflow (fixed), pool_closed.
  /// Complexity: O(1) for good_fit, O(log n) in the number of free ranges for the others.
  template <slice_guard Guard = no_guard>
  [[nodiscard]] std::expected<slice_type<Guard>, errc> acquire(std::uint64_t size,
                                                               std::uint64_t alignment = 1,
                                                               strategy how = good_fit) {
    auto r = acquire_range(size, alignment, how);
    if (!r) return std::unexpected(r.error());
    borrowed_.fetch_add(1, std::memory_order_relaxed);
    return slice_type<Guard>(this, pool_ref::borrowed, {}, *r);
  }

  /// As acquire(), but the slice holds `pool` (a shared_ptr to this pool, possibly an
  /// aliasing one into an object that contains it) and keeps the pool alive.
  template <slice_guard Guard = no_guard>
  [[nodiscard]] static std::expected<slice_type<Guard>, errc> acquire_shared(
      const std::shared_ptr<buffer_pool>& pool, std::uint64_t size, std::uint64_t alignment = 1,
      strategy how = good_fit) {
    auto r = pool->acquire_range(size, alignment, how);
    if (!r) return std::unexpected(r.error());
    return slice_type<Guard>(pool.get(), pool_ref::shared, pool, *r);
  }

  /// As acquire(), but the slice holds a weak reference: if the pool is destroyed first,
  /// the slice reports it (pool_is_alive()), refuses data access and frees nothing.
  template <slice_guard Guard = no_guard>
  [[nodiscard]] static std::expected<slice_type<Guard>, errc> acquire_weak(
      const std::shared_ptr<buffer_pool>& pool, std::uint64_t size, std::uint64_t alignment = 1,
      strategy how = good_fit) {
    auto r = pool->acquire_range(size, alignment, how);
    if (!r) return std::unexpected(r.error());
    return slice_type<Guard>(pool.get(), pool_ref::weak, pool, *r);
  }

  /// Acquires a range without an owning slice, as acquire() does; the caller gives it back
  /// with release_raw(). Raw ranges count as live slices (try_close() refuses while any is
  /// alive); they do not outlive the pool (its destruction frees their memory with the
  /// rest). Same errors and complexity as acquire().
  [[nodiscard, gnu::always_inline]] std::expected<raw_range<Int>, errc> acquire_raw(
      std::uint64_t size, std::uint64_t alignment = 1, strategy how = good_fit) {
    if (options_.slabs && how.kind == strategy_kind::greedy)
      if (auto slot = acquire_slot<false>(size, alignment)) return *slot;
    return acquire_raw_slow(size, alignment, how);
  }

  /// Gives back the raw range that starts at `offset`. O(1) expected, plus the release.
  /// An offset that does not start a live raw range of this pool (released twice, a
  /// slice's range, another pool's, inside a range) is a contract violation: nothing
  /// changes and the result is false if the handler returns.
  ///
  /// An offset carries no pool identity: another pool's offset that happens to start a live
  /// raw range of this pool releases that range, undetected. Keep each offset with its pool,
  /// or release by pointer, which is checked against this pool's regions.
  bool release_raw(std::uint64_t offset) noexcept {
    return release_raw_offset(offset, nullptr, raw_rules);
  }

  /// As release_raw(offset), and `size` and `alignment` must be those given to
  /// acquire_raw: a mismatch is a contract violation and nothing changes.
  bool release_raw(std::uint64_t offset, std::uint64_t size, std::uint64_t alignment) noexcept {
    const raw_request request{size, alignment};
    return release_raw_offset(offset, &request, raw_rules);
  }

  /// Gives back the raw range whose memory starts at `pointer`: its region is found by
  /// address in O(log regions), never by reading the memory. Same contract as above.
  [[gnu::always_inline]] bool release_raw(const void* pointer) noexcept {
    return release_raw_pointer(pointer, nullptr, raw_rules);
  }

  /// As release_raw(pointer), checking `size` and `alignment` as release_raw(offset, size,
  /// alignment) does.
  [[gnu::always_inline]] bool release_raw(const void* pointer, std::uint64_t size,
                                          std::uint64_t alignment) noexcept {
    const raw_request request{size, alignment};
    return release_raw_pointer(pointer, &request, raw_rules);
  }

  /// As release_raw(pointer, size, alignment), reporting a violation with `rules`: for an
  /// adapter, whose users know its function (deallocate) and not release_raw.
  [[gnu::always_inline]] bool release_raw(const void* pointer, std::uint64_t size,
                                          std::uint64_t alignment,
                                          const detail::release_rules& rules) noexcept {
    const raw_request request{size, alignment};
    return release_raw_pointer(pointer, &request, rules);
  }

  /// The live raw range whose memory starts at `pointer`, with the size it was acquired
  /// (or last resized) with. not_live if there is none. O(log regions) + O(1).
  [[nodiscard]] std::expected<raw_range<Int>, errc> raw_at(const void* pointer) const;

  /// Grows or shrinks the raw range at `offset` in place to `size` bytes (its offset and
  /// pointer stay): growing takes the start of the next range if that range is free and in
  /// the same region; shrinking gives the tail back. The range's recorded size becomes
  /// `size`. Returns the new capacity. Errors, with nothing changed: invalid_size,
  /// too_large, out_of_memory (no room after the range); an offset that does not start a
  /// live raw range is a contract violation (not_live if the handler returns).
  /// O(log n).
  [[nodiscard]] std::expected<Int, errc> resize_raw(std::uint64_t offset, std::uint64_t size) {
    return with_all_locked([&] { return resize_raw_locked(offset, size); });
  }

  /// As resize_raw(offset, size), for the raw range whose memory starts at `pointer`.
  [[nodiscard]] std::expected<Int, errc> resize_raw(const void* pointer, std::uint64_t size);

  /// Adds a region of at least `min_bytes` through the pool's handle (which must model
  /// growing_handle), and returns its id. Growth is serialized: one grow() at a time.
  /// Errors: those of the handle (a system error from mmap, ftruncate, ...), or a pool
  /// error as a std::error_code (errc::pool_closed, errc::out_of_offset_space, ...).
  std::expected<std::uint32_t, std::error_code> grow(std::uint64_t min_bytes)
    requires growing_handle<Handle, buffer_pool>
  {
    std::scoped_lock serial(grow_mutex_);
    Handle* h = nullptr;
    {
      std::scoped_lock lock(mutex_);
      if (closed_ || !handle_) return std::unexpected(make_error_code(errc::pool_closed));
      h = &*handle_;
    }
    return h->grow(*this, min_bytes);
  }

  /// Allocates the pool's own records ahead, for `ranges` more acquisitions (slices or raw
  /// ranges, or regions), so that those calls cannot fail with std::bad_alloc: for paths
  /// that must not allocate, and for adapters that must not fail after growing the pool.
  /// One exception: an `optimal` or `greedy` request at a larger alignment than any before
  /// adds that alignment level to the engine's size index, which may allocate.
  /// Releases never allocate. Strong guarantee.
  void reserve_metadata(std::size_t ranges) {
    std::scoped_lock lock(mutex_);
    engine_.reserve_nodes(2 * ranges);
    raw_.reserve(ranges);
  }

  /// Flushes the size-class cache: ranges that `greedy` acquisitions gave back, kept for
  /// the next `greedy` request of their size class, are coalesced into the free-range
  /// indexes. Statistics, map() and validate() already count them as free (merged with
  /// their free neighbours); trim() changes only where later requests land. The pool also
  /// flushes on its own when the cache holds too much, before an `optimal` or `fixed`
  /// request, and when a request finds no other room. O(C log n) for C cached ranges (at
  /// most engine::max_cached_ranges). Also gives back every empty slab (option `slabs`),
  /// the pool's own and every thread cache's.
  void trim() noexcept {
    with_all_locked([this] {
      drop_empty_slabs();
      engine_.trim();
    });
  }

  /// Retries the guards of slices destroyed while guarded; ranges whose guard releases
  /// become free. Guards are asked without the pool's lock held. Returns how many ranges
  /// were freed. Also run by acquire() when it would otherwise fail for lack of space.
  ///
  /// One collect() runs at a time: a call made while another is asking guards (from
  /// another thread, or from a guard's try_release()) returns 0. Out of memory, nothing
  /// changes and std::bad_alloc propagates.
  std::size_t collect();

  /// Slices that carry a guard, parked ones included. O(1).
  [[nodiscard]] std::size_t active_guard_count() const noexcept { return guarded_.load(); }

  /// Totals over the pool. O(log n + C + T), C = ranges in the size-class cache (see
  /// engine), T = thread caches (option `thread_caches`).
  [[nodiscard]] pool_stats stats() const {
    return with_all_locked([this] { return stats_locked(); });
  }

  /// Totals of each initialized region, in initialization order. O(regions), times the
  /// number of slabs when the option `slabs` is on.
  [[nodiscard]] std::vector<region_stats> region_statistics() const;

  /// The ranges of region `id` in offset order (for pictures and tests). O(ranges).
  [[nodiscard]] std::vector<range_view> region_ranges(std::size_t id) const {
    std::scoped_lock lock(mutex_);
    return engine_.ranges(static_cast<std::uint32_t>(id));
  }

  /// A snapshot of the whole pool for pictures and tools: every region's ranges with their
  /// state (free, used, guarded, parked, spare), the pending expansions and the statistics.
  /// O(ranges). See to_json() and to_svg().
  [[nodiscard]] pool_map map() const;
  /// map() as JSON (see to_json).
  [[nodiscard]] std::string dump_json() const { return to_json(map()); }
  /// map() as an SVG picture (see to_svg).
  [[nodiscard]] std::string dump_svg() const { return to_svg(map()); }

  /// Every initialized region with its pointer and extra value.
  [[nodiscard]] entries regions() const {
    std::scoped_lock lock(mutex_);
    return make_entries();
  }

  /// Checks every invariant of the engine and the pool's counters; never touches pool
  /// memory. O(ranges).
  [[nodiscard]] std::expected<void, std::string> validate() const {
    return with_all_locked([this] { return validate_locked(); });
  }

  /// Closes the pool: refused (in_use) while any slice is alive or guarded, because the
  /// memory is about to be handed back. On success acquisitions and expansions fail with
  /// pool_closed from now on, and the caller receives the handle and every region.
  [[nodiscard]] std::expected<closed_pool<Int, Extra, Handle>, close_error> try_close();

  /// Empties the pool for the next round of an arena loop: every raw range is forgotten
  /// (its memory is free again), every region is closed as destruction closes it (the
  /// handle is given them all) and removed, and the pool is left as a new one with the same
  /// options and handle, except that it keeps the capacity of its records (range nodes,
  /// free-range indexes, slab and thread-cache records, the raw ranges' map): refilled the
  /// same way, it allocates no record. Thread caches stay with their threads, emptied. The
  /// handle is called after the pool's locks are released, so it may use the pool.
  /// Errors, with nothing changed: pool_closed; in_use while a slice (not a raw range) is
  /// alive, guarded or parked, or an expansion is pending. O(regions + records kept).
  [[nodiscard]] std::expected<void, errc> clear();

  /// Whether try_close() has succeeded.
  [[nodiscard]] bool is_closed() const {
    std::scoped_lock lock(mutex_);
    return closed_;
  }

 private:
  template <class P>
  friend class expansion_handle;

  static constexpr bool can_cache = !std::is_same_v<Mutex, null_mutex>;

  using cache = typename detail::thread_cache_set<Int, Extra>::cache;

  // What becomes of a thread cache's empty spans when its thread exits.
  static void give_back_empty_spans(void* pool, detail::slabs& slabs) noexcept {
    auto& self = *static_cast<buffer_pool*>(pool);
    std::scoped_lock lock(self.mutex_);
    slabs.drop_empty([&](std::uint32_t node) { self.engine_.release(node); });
  }

  template <class P, slice_guard G>
  friend class basic_slice;

  struct range {
    std::uint32_t node;
    Int offset;
    Int size;  // as requested
    Int capacity;
    const detail::region_info<Int, Extra>* region;
  };

  static const options_type& checked(const options_type& o) {
    static const options_type fallback{};
    return detail::expects(o.valid(),
                           "pool options: sizes must be 1 <= min <= max, alignments powers of "
                           "two with min <= max")
               ? o
               : fallback;
  }

  static engine_limits limits_of(const options_type& o) noexcept {
    return {std::numeric_limits<Int>::max(), o.min_size, o.max_size, o.min_alignment,
            o.max_alignment};
  }

  // ---- engine ranges: slices and raw ranges (defined in bufpool:pool_ranges) -------------

  // An engine range for a slice (or, with `raw`, a raw range recorded in raw_). Out of room,
  // it makes some (make_room) before it reports out_of_memory.
  std::expected<range, errc> acquire_range(std::uint64_t size, std::uint64_t alignment,
                                           strategy how, bool raw = false);

  // The ways of making room for a request, in the order acquire_range() tries them: collect
  // parked ranges, give back the empty spans slab classes keep, grow (option auto_expand).
  static constexpr unsigned room_ways = 3;
  // Tries way `way` (no lock held); true if it may have made room.
  bool make_room(unsigned way, std::uint64_t size, std::uint64_t alignment);

  bool can_grow() const noexcept;

  std::expected<Int, errc> resize(std::uint32_t node, std::uint64_t size);

  std::expected<Int, errc> resize_locked(std::uint32_t node, std::uint64_t size);

  std::expected<Int, errc> resize_raw_locked(std::uint64_t offset, std::uint64_t size);

  void release(std::uint32_t node) noexcept;

  // Gives a live range back to the engine, poisoning it first (lock held). False (and
  // nothing changes) if `node` is not live.
  bool release_locked(std::uint32_t node) noexcept;

  const detail::region_info<Int, Extra>& region_of(std::uint64_t offset) const noexcept {
    return *regions_[engine_.region_of(offset)];
  }

  // Makes every region addressable again before its memory goes back to its owner.
  void unpoison_all() const noexcept {
    for (const auto& r : regions_) detail::unpoison(*r, r->offset, r->size);
  }
  // Gives the regions `all` to the handle (close_all, else close), if there is one.
  void close_regions(const entries& all) {
    if (!handle_) return;
    if constexpr (detail::has_close_all<Handle, entries>)
      handle_->close_all(all);
    else
      handle_->close(all);
  }

  // The size and alignment a release checks (none if the request is null). Each release
  // also carries the words of its violations (`rules`).
  struct raw_request {
    std::uint64_t size;
    std::uint64_t alignment;
  };

  static constexpr detail::release_rules raw_rules{
      "release_raw: the pointer is in none of this pool's regions",
      "release_raw: the offset does not start a live raw range of this pool (released twice, a "
      "slice's range, another pool's, or inside a range)",
      "release_raw: the size differs from the size the range was acquired with",
      "release_raw: the alignment differs from the alignment the range was acquired with"};
  static constexpr const char* not_raw_resize =
      "resize_raw: the offset does not start a live raw range of this pool";

  // ---- releases (defined in bufpool:pool_ranges) -----------------------------------------
  // The slot paths of acquire_raw() and release_raw() are inlined whole into their callers
  // ([[gnu::always_inline]] on each step, the rest out of line): a call per step, and a
  // result returned through memory, cost more than their instructions, because their
  // stores wait behind the caller's store misses into the memory it just got.
  // A slot of the calling thread's own slabs is freed under that cache's lock alone; any
  // other slot or raw range under the pool's lock; a slot of another thread's slabs (a
  // release on another thread than the acquisition) under that thread's cache lock, the
  // cache found through the owner the pool noted for the span (thread_cache_set::owner_of),
  // or without the pool's lock when the caller released into it last (release_in_recent).

  // A slot of the thread's cache or of the pool's slabs is freed inline where release_raw()
  // is called; a raw range of the engine and another thread's slot out of line.
  [[gnu::always_inline]] bool release_raw_pointer(const void* pointer, const raw_request* request,
                                                  const detail::release_rules& rules) noexcept;

  bool release_raw_offset(std::uint64_t offset, const raw_request* request,
                          const detail::release_rules& rules) noexcept;

  // Frees the pool's slot or raw range at `offset` (lock held); nothing, and nothing
  // reported, if the pool's own slabs and raw ranges have none there. A slot found is
  // noted as the hint for `address` (its memory), if not 0.
  [[gnu::always_inline]] std::optional<bool> release_pool_locked(
      std::uint64_t offset, const raw_request* request, const detail::release_rules& rules,
      std::uint32_t region, std::uintptr_t address = 0) noexcept;

  // The raw range of the engine at `offset` (lock held), as release_pool_locked().
  [[gnu::noinline]] std::optional<bool> release_raw_range_locked(
      std::uint64_t offset, const raw_request* request,
      const detail::release_rules& rules) noexcept;

  // A slot at `key` (a pointer or an offset) of the cache the calling thread released into
  // last (thread_cache_set::release_in_recent()). Out of line, and given only what the
  // release was given, so that the paths that do not come here pay nothing for it.
  template <class Key>
  [[gnu::noinline]] std::optional<bool> release_in_recent_cache(
      Key key, const raw_request* request, const detail::release_rules& rules) noexcept;

  // The cache that took the span holding `offset` of `region`, as last noted; null when the
  // caches are off or none did (the pool's lock held).
  cache* owner_of(std::uint64_t offset, std::uint32_t region) const noexcept;

  // Frees a slot of another thread's slabs (no lock held; the caller's own cache was asked
  // first), or reports that nothing of this pool starts at `offset`. `owner`: owner_of()'s
  // answer. O(1) for a live slot; O(threads that took slots) to report one that is not.
  [[gnu::noinline]] bool release_in_caches(std::uint64_t offset, std::uint32_t region, cache* owner,
                                           const raw_request* request,
                                           const detail::release_rules& rules) noexcept;

  // Frees the slot at `offset` of span s of `slabs`: the pool's (owner null, the pool's
  // lock held) or thread cache `owner`'s (its lock held; the pool's is taken to give an
  // emptied span back). `region` may be no_index for the pool's own slabs.
  [[gnu::always_inline]] bool release_slot(detail::slabs& slabs, cache* owner, std::uint32_t s,
                                           std::uint32_t region, std::uint64_t offset,
                                           const raw_request* request,
                                           const detail::release_rules& rules) noexcept;

  // What a thread cache path (thread_cache_set::release_own, release_in_recent) calls with
  // the slot it found in cache `in`: release_slot() under that cache's lock, inlined whole.
  [[gnu::always_inline]] auto release_slot_in_cache(const raw_request* request,
                                                    const detail::release_rules& rules) noexcept {
    return [this, request, &rules](cache& in, std::uint32_t s, std::uint32_t region,
                                   std::uint64_t at) __attribute__((always_inline)) {
      return release_slot(in.slabs, &in, s, region, at, request, rules);
    };
  }

  // ---- slab acquisitions (defined in bufpool:pool_ranges) ---------------------------------

  // acquire_raw() when no span of the class has a free slot, or past the slabs: out of
  // line, so that acquire_raw() inlines only the slot path where it is called.
  [[gnu::noinline]] std::expected<raw_range<Int>, errc> acquire_raw_slow(std::uint64_t size,
                                                                         std::uint64_t alignment,
                                                                         strategy how);

  // A slab slot for a small greedy raw request, or nothing: the engine path then serves the
  // request or reports its error. With `Grow`, a class without a free slot gets a new span.
  // Never throws: out of memory for a new slab's records, the engine path is taken too (so
  // reserve_metadata() keeps its promise).
  template <bool Grow>
  [[gnu::always_inline]] std::optional<raw_range<Int>> acquire_slot(std::uint64_t size,
                                                                    std::uint64_t alignment);

  template <bool Grow>
  [[gnu::always_inline]] std::optional<raw_range<Int>> acquire_cached(cache& mine, unsigned c,
                                                                      std::uint64_t size,
                                                                      unsigned align_log2) noexcept;

  // Makes an engine range a new span of class c in `slabs` (the pool's lock held), noting
  // its region in `owner` (a thread cache whose lock is held, or null). False if there is
  // no room or no memory for the records; nothing changed then.
  bool add_span(detail::slabs& slabs, cache* owner, unsigned c) noexcept;

  static raw_range<Int> slot_range(const detail::region_info<Int, Extra>& region,
                                   const detail::slabs::slot& slot, std::uint64_t size) noexcept;

  // The pool's slab span holding `offset`, or no_index (lock held). O(1), plus O(log
  // regions) to find the region when `region` is no_index and the pool has spans.
  std::uint32_t span_of(std::uint64_t offset, std::uint32_t region = no_index) const noexcept;

  struct slab_at {
    const detail::slabs* slabs;
    std::uint32_t span;
  };
  // The slabs (the pool's or a thread cache's) with a span holding `offset`, or nothing
  // (every lock held: see with_all_locked).
  std::optional<slab_at> find_slab(std::uint64_t offset, std::uint32_t region) const noexcept;

  std::expected<Int, errc> resize_slot(const slab_at& at, std::uint64_t offset, std::uint64_t size);

  // ---- totals over every slab (defined in bufpool:pool_inspect) --------------------------

  [[nodiscard]] pool_stats stats_locked() const;

  std::expected<void, std::string> validate_locked() const;

  detail::slabs::totals slab_totals() const noexcept;

  static void add_totals(detail::slabs::totals& t, const detail::slabs::totals& more) noexcept;

  // A region's totals with its slabs' slots counted as ranges of their own.
  region_stats region_totals(std::uint32_t id) const noexcept;

  // Gives every empty span back to the engine, the pool's and every thread's (every lock
  // held).
  std::size_t drop_empty_slabs() noexcept;  // returns how many spans went back

  // The pool offset and region of an address inside one of the regions (lock held).
  // O(log regions).
  std::optional<detail::location> locate(const void* pointer) const noexcept {
    return by_address_.locate(regions_, pointer);
  }

  // Runs f() with every lock taken, in order: the registry's, every thread cache's, the
  // pool's; with only the pool's when there are no thread caches.
  template <class F>
  decltype(auto) with_all_locked(F&& f) const {
    return caches_.with_all_locked(mutex_, std::forward<F>(f));
  }

  // ---- guards (defined in bufpool:pool_guards) -------------------------------------------

  // What the pool keeps with an engine range, in the engine's user word and bits: a raw
  // range's requested size (the word) and log2 of its alignment (raw_alignment_bits); a
  // slice's guard state, for map() (guarded_bit, parked_bit).
  static constexpr std::uint8_t raw_alignment_bits = 0x3f;
  static constexpr std::uint8_t guarded_bit = 0x40;
  static constexpr std::uint8_t parked_bit = 0x80;

  void mark_guarded(std::uint32_t node, bool guarded) noexcept;

  // Keeps a guarded range until collect() finds its guard released. Out of memory, the
  // range is never reused instead (its I/O may be in flight): it stays live and guarded.
  template <class G>
  void park(std::uint32_t node, G&& guard) noexcept;

  // ---- regions (publish() defined in bufpool:pool_regions) ------------------------------

  // Makes the reserved range [offset, offset + size) a region over `base` (see
  // expansion_handle::initialize()); cancels the reservation if the pool is closed or the
  // memory overlaps another region's. Strong guarantee (std::bad_alloc).
  std::expected<std::uint32_t, errc> publish(Int offset, Int size, std::byte* base,
                                             const Extra& extra, std::uintptr_t host_begin,
                                             std::uintptr_t host_end);

  void cancel(Int offset, Int size) noexcept {
    std::scoped_lock lock(mutex_);
    engine_.cancel(offset, size);
  }

  entries make_entries() const {
    entries out;
    out.reserve(regions_.size());
    for (const auto& r : regions_) out.push_back({r->offset, r->size, r->base, r->extra});
    return out;
  }

  options_type options_;
  // Requests of 1 .. small_slot_limit_ bytes at an alignment of at most 16 take their slab
  // class from a table (see slabs::table_limit).
  std::uint64_t small_slot_limit_ =
      detail::slabs::table_limit(options_.slabs, options_.min_size, options_.max_size,
                                 options_.min_alignment, options_.max_alignment);
  std::pmr::memory_resource* metadata_;  // where every record below comes from
  mutable Mutex mutex_;
  Mutex grow_mutex_;  // one grow() at a time
  engine engine_;
  detail::meta_vector<detail::meta_ptr<detail::region_info<Int, Extra>>> regions_{
      metadata_};  // by region id
  detail::address_index by_address_{metadata_};
  detail::offset_map raw_{metadata_};            // live raw ranges
  detail::slabs slabs_{metadata_};               // small greedy raw ranges (options_.slabs)
  detail::thread_cache_set<Int, Extra> caches_;  // options_.thread_caches
  detail::meta_vector<detail::parked_range> parked_{metadata_};
  std::optional<Handle> handle_;
  bool closed_ = false;
  bool collecting_ = false;  // a collect() is asking guards
  std::atomic<std::size_t> guarded_{0};
  std::atomic<std::size_t> borrowed_{0};
  std::uint64_t checked_id_ = 0;            // checked builds: this pool's id in the registry
  detail::pool_registration checked_node_;  // checked builds: its place there

  // Every lock of this pool, taken around fork() (none for a pool without locks).
  using fork_locks =
      std::conditional_t<can_cache,
                         detail::pool_fork_locks<detail::thread_cache_set<Int, Extra>, Mutex>,
                         detail::no_fork_locks>;
  [[no_unique_address]] fork_locks fork_locks_{grow_mutex_, mutex_, caches_};
};

/// A pool for one thread at a time: no locking.
template <offset_integer Int = std::uint32_t, class Extra = no_extra, class Handle = no_handle>
using local_buffer_pool = buffer_pool<Int, Extra, Handle, null_mutex>;

}  // namespace bufpool

#pragma GCC visibility pop
