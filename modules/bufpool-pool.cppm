// SPDX-License-Identifier: MIT
// bufpool:pool — the buffer pool: regions, expansion, slices, guards, handles and closing.
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

import :contracts;
import :engine;
import :errors;
import :locks;
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
  std::unique_ptr<parked_guard> guard;
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
  template <class Guard = no_guard>
  using slice_type = basic_slice<buffer_pool, Guard>;
  using slice = basic_slice<buffer_pool, no_guard>;  ///< A slice that carries no guard.

  /// A pool with default options and no handle (the user frees the regions' memory).
  buffer_pool() : buffer_pool(options_type{}) {}

  /// A pool with the given options; invalid options are a contract violation.
  explicit buffer_pool(const options_type& options)
      : options_(checked(options)), engine_(limits_of(options_)) {
    if constexpr (checked_build) checked_id_ = detail::register_pool(this);
    if constexpr (can_cache) {
      if (options_.slabs && options_.thread_caches) {
        registry_ = std::make_shared<registry>();
        registry_->pool = this;
        registry_->uid = detail::next_registry_uid.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }

  /// A pool that owns `handle`, which frees the regions when the pool is destroyed.
  buffer_pool(const options_type& options, Handle handle) : buffer_pool(options) {
    handle_.emplace(std::move(handle));
  }

  buffer_pool(const buffer_pool&) = delete;
  buffer_pool& operator=(const buffer_pool&) = delete;

  ~buffer_pool() {
    if constexpr (checked_build) detail::unregister_pool(this);
    if (registry_ != nullptr) {  // threads that exit from now on leave the pool alone
      std::scoped_lock lock(registry_->mutex);
      registry_->pool_alive = false;
    }
    if (const std::size_t n = borrowed_.load(); n != 0) {
      const std::string rule = "borrowed slices outlive their pool: pool destroyed while " +
                               std::to_string(n) + " borrowed slice(s) are alive";
      detail::report_violation(rule.c_str());
    }
    detail::expects(engine_.stats().pending_bytes == 0,
                    "expansion handles must not outlive their pool: pool destroyed while an "
                    "expansion is pending");
    if (closed_) return;
    unpoison_all();
    if (const std::size_t g = guarded_.load(); g != 0) {
      const std::string msg = "pool destroyed while " + std::to_string(g) +
                              " slice(s) are guarded: its regions are not closed (memory kept)";
      detail::report_diagnostic(msg.c_str());
      return;
    }
    if (handle_) {
      const entries all = make_entries();
      if constexpr (detail::has_close_all<Handle, entries>)
        handle_->close_all(all);
      else
        handle_->close(all);
    }
  }

  /// The options in effect: the defaults if the given ones were invalid (and the violation
  /// handler returned).
  [[nodiscard]] const options_type& options() const noexcept { return options_; }

  /// Reserves the next `size` offsets for a new region and returns the handle that
  /// initializes it. The range is pending (invisible to acquire) until then, and is given
  /// back if the handle is destroyed uninitialized. The lock is not held while the caller
  /// allocates the backing memory.
  /// Errors: invalid_size (0), out_of_offset_space (no span of that size is left),
  /// pool_closed.
  [[nodiscard]] std::expected<expansion, errc> begin_expand(std::uint64_t size) {
    if (size > std::numeric_limits<Int>::max()) return std::unexpected(errc::out_of_offset_space);
    std::scoped_lock lock(mutex_);
    if (closed_) return std::unexpected(errc::pool_closed);
    auto offset = engine_.reserve(size);
    if (!offset) return std::unexpected(offset.error());
    return expansion(this, static_cast<Int>(*offset), static_cast<Int>(size));
  }

  /// Acquires a slice of `size` bytes whose offset is a multiple of `alignment` (raised to
  /// the minimum alignment), borrowing the pool (the pool must outlive it).
  ///
  /// Errors: invalid_size, invalid_alignment, alignment_too_big, too_large,
  /// out_of_memory (optimal: only when no free range can hold the aligned request),
  /// invalid_argument / occupied / out_of_range / arithmetic_overflow (fixed), pool_closed.
  /// Complexity: O(log n) in the number of free ranges, for every strategy and alignment.
  template <class Guard = no_guard>
  [[nodiscard]] std::expected<slice_type<Guard>, errc> acquire(std::uint64_t size,
                                                               std::uint64_t alignment = 1,
                                                               strategy how = optimal) {
    auto r = acquire_range(size, alignment, how);
    if (!r) return std::unexpected(r.error());
    borrowed_.fetch_add(1, std::memory_order_relaxed);
    return slice_type<Guard>(this, pool_ref::borrowed, {}, *r);
  }

  /// As acquire(), but the slice holds `pool` (a shared_ptr to this pool, possibly an
  /// aliasing one into an object that contains it) and keeps the pool alive.
  template <class Guard = no_guard>
  [[nodiscard]] static std::expected<slice_type<Guard>, errc> acquire_shared(
      const std::shared_ptr<buffer_pool>& pool, std::uint64_t size, std::uint64_t alignment = 1,
      strategy how = optimal) {
    auto r = pool->acquire_range(size, alignment, how);
    if (!r) return std::unexpected(r.error());
    return slice_type<Guard>(pool.get(), pool_ref::shared, pool, *r);
  }

  /// As acquire(), but the slice holds a weak reference: if the pool is destroyed first,
  /// the slice reports it (pool_is_alive()), refuses data access and frees nothing.
  template <class Guard = no_guard>
  [[nodiscard]] static std::expected<slice_type<Guard>, errc> acquire_weak(
      const std::shared_ptr<buffer_pool>& pool, std::uint64_t size, std::uint64_t alignment = 1,
      strategy how = optimal) {
    auto r = pool->acquire_range(size, alignment, how);
    if (!r) return std::unexpected(r.error());
    return slice_type<Guard>(pool.get(), pool_ref::weak, pool, *r);
  }

  /// Acquires a range without an owning slice, as acquire() does; the caller gives it back
  /// with release_raw(). Raw ranges count as live slices (try_close() refuses while any is
  /// alive); they do not outlive the pool (its destruction frees their memory with the
  /// rest). Same errors and complexity as acquire().
  [[nodiscard, gnu::always_inline]] std::expected<raw_range<Int>, errc> acquire_raw(
      std::uint64_t size, std::uint64_t alignment = 1, strategy how = optimal) {
    if (options_.slabs && how.kind == strategy_kind::greedy)
      if (auto slot = acquire_slot<false>(size, alignment)) return *slot;
    return acquire_raw_slow(size, alignment, how);
  }

  /// Gives back the raw range that starts at `offset`. O(1) expected, plus the release.
  /// An offset that does not start a live raw range of this pool (released twice, a
  /// slice's range, another pool's, inside a range) is a contract violation: nothing
  /// changes and the result is false if the handler returns.
  bool release_raw(std::uint64_t offset) noexcept { return release_raw_offset(offset, nullptr); }

  /// As release_raw(offset), and `size` and `alignment` must be those given to
  /// acquire_raw: a mismatch is a contract violation and nothing changes.
  bool release_raw(std::uint64_t offset, std::uint64_t size, std::uint64_t alignment) noexcept {
    const raw_request request{size, alignment};
    return release_raw_offset(offset, &request);
  }

  /// Gives back the raw range whose memory starts at `pointer`: its region is found by
  /// address in O(log regions), never by reading the memory. Same contract as above.
  [[gnu::always_inline]] bool release_raw(const void* pointer) noexcept {
    return release_raw_pointer(pointer, nullptr);
  }

  /// As release_raw(pointer), checking `size` and `alignment` as release_raw(offset, size,
  /// alignment) does.
  [[gnu::always_inline]] bool release_raw(const void* pointer, std::uint64_t size,
                                          std::uint64_t alignment) noexcept {
    const raw_request request{size, alignment};
    return release_raw_pointer(pointer, &request);
  }

  /// The live raw range whose memory starts at `pointer`, with the size it was acquired
  /// (or last resized) with. invalid_argument if there is none. O(log regions) + O(1).
  [[nodiscard]] std::expected<raw_range<Int>, errc> raw_at(const void* pointer) const {
    return with_all_locked([&]() -> std::expected<raw_range<Int>, errc> {
      const auto at = locate(pointer);
      if (!at) return std::unexpected(errc::invalid_argument);
      auto* data = const_cast<std::byte*>(static_cast<const std::byte*>(pointer));
      if (const auto slab = find_slab(at->offset, at->region)) {
        const auto live = slab->slabs->live_slot(slab->span, at->offset);
        if (!live) return std::unexpected(errc::invalid_argument);
        return raw_range<Int>{static_cast<Int>(at->offset), static_cast<Int>(live->first),
                              static_cast<Int>(live->second), data};
      }
      const std::uint32_t node = raw_.find(at->offset);
      if (node == no_index) return std::unexpected(errc::invalid_argument);
      return raw_range<Int>{static_cast<Int>(at->offset), static_cast<Int>(engine_.tag(node)),
                            static_cast<Int>(engine_.node_size(node)), data};
    });
  }

  /// Grows or shrinks the raw range at `offset` in place to `size` bytes (its offset and
  /// pointer stay): growing takes the start of the next range if that range is free and in
  /// the same region; shrinking gives the tail back. The range's recorded size becomes
  /// `size`. Returns the new capacity. Errors, with nothing changed: invalid_size,
  /// too_large, out_of_memory (no room after the range); an offset that does not start a
  /// live raw range is a contract violation (invalid_argument if the handler returns).
  /// O(log n).
  [[nodiscard]] std::expected<Int, errc> resize_raw(std::uint64_t offset, std::uint64_t size) {
    return with_all_locked([&] { return resize_raw_locked(offset, size); });
  }

  /// As resize_raw(offset, size), for the raw range whose memory starts at `pointer`.
  [[nodiscard]] std::expected<Int, errc> resize_raw(const void* pointer, std::uint64_t size) {
    return with_all_locked([&]() -> std::expected<Int, errc> {  // one lock for both steps
      const auto at = locate(pointer);
      if (!detail::expects(at.has_value(),
                           "resize_raw: the pointer is in none of this pool's regions"))
        return std::unexpected(errc::invalid_argument);
      return resize_raw_locked(at->offset, size);
    });
  }

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
  std::size_t collect() {
    // The parked entries stay in parked_ while their guards are asked (park() only
    // appends, and only the one running collect() removes), so nothing is lost if
    // allocating, or a guard, throws.
    std::vector<detail::parked_guard*> asked;
    {
      std::scoped_lock lock(mutex_);
      if (collecting_ || parked_.empty()) return 0;
      asked.reserve(parked_.size());
      for (const auto& p : parked_) asked.push_back(p.guard.get());
      collecting_ = true;
    }
    std::vector<bool> released;
    try {
      released.reserve(asked.size());
      for (detail::parked_guard* g : asked) released.push_back(g->try_release());
    } catch (...) {
      std::scoped_lock lock(mutex_);
      collecting_ = false;
      throw;
    }
    std::scoped_lock lock(mutex_);
    collecting_ = false;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < parked_.size(); ++i) {
      if (i < released.size() && released[i])
        release_locked(parked_[i].node);
      else if (kept++ != i)
        parked_[kept - 1] = std::move(parked_[i]);
    }
    const std::size_t freed = parked_.size() - kept;
    parked_.erase(parked_.begin() + static_cast<std::ptrdiff_t>(kept), parked_.end());
    parked_count_.store(parked_.size(), std::memory_order_relaxed);
    guarded_.fetch_sub(freed);
    return freed;
  }

  /// Slices that carry a guard, parked ones included. O(1).
  [[nodiscard]] std::size_t active_guard_count() const noexcept { return guarded_.load(); }

  /// Totals over the pool. O(log n + C + T), C = ranges in the size-class cache (see
  /// engine), T = thread caches (option `thread_caches`).
  [[nodiscard]] pool_stats stats() const {
    return with_all_locked([this] { return stats_locked(); });
  }

  /// Totals of each initialized region, in initialization order. O(regions), times the
  /// number of slabs when the option `slabs` is on.
  [[nodiscard]] std::vector<region_stats> region_statistics() const {
    return with_all_locked([this] {
      std::vector<region_stats> out;
      for (std::uint32_t i = 0; i < engine_.region_count(); ++i) out.push_back(region_totals(i));
      return out;
    });
  }

  /// The ranges of region `id` in offset order (for pictures and tests). O(ranges).
  [[nodiscard]] std::vector<range_view> region_ranges(std::size_t id) const {
    std::scoped_lock lock(mutex_);
    return engine_.ranges(static_cast<std::uint32_t>(id));
  }

  /// A snapshot of the whole pool for pictures and tools: every region's ranges with their
  /// state (free, used, guarded, parked, spare), the pending expansions and the statistics.
  /// O(ranges). See to_json() and to_svg().
  [[nodiscard]] pool_map map() const {
    return with_all_locked([this] {
      pool_map out;
      out.stats = stats_locked();
      for (std::uint32_t id = 0; id < engine_.region_count(); ++id) {
        const region_stats r = engine_.region(id);
        map_region region{id, r.offset, r.size, {}};
        for (const range_view& v : engine_.ranges(id)) {
          if (const auto slab = v.used ? find_slab(v.offset, id) : std::nullopt) {
            slab->slabs->for_each_run(
                slab->span, [&](std::uint64_t offset, std::uint64_t size, bool live) {
                  region.ranges.push_back(
                      {offset, size, live ? range_state::used : range_state::spare});
                });
            continue;
          }
          range_state state = range_state::free;
          if (v.used)
            state = (v.marks & mark_parked_bit) != 0    ? range_state::parked
                    : (v.marks & mark_guarded_bit) != 0 ? range_state::guarded
                                                        : range_state::used;
          region.ranges.push_back({v.offset, v.size, state});
        }
        out.regions.push_back(std::move(region));
      }
      for (const auto& [offset, size] : engine_.pending_spans())
        out.pending.push_back({offset, size});
      return out;
    });
  }
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
  [[nodiscard]] std::expected<closed_pool<Int, Extra, Handle>, close_error> try_close() {
    return with_all_locked([this]() -> std::expected<closed_pool<Int, Extra, Handle>, close_error> {
      if (closed_) return std::unexpected(close_error{errc::pool_closed, 0, 0});
      const std::size_t live = stats_locked().live_slices;
      const std::size_t guarded = guarded_.load();
      if (live != 0 || guarded != 0)
        return std::unexpected(close_error{errc::in_use, live, guarded});
      drop_empty_slabs();  // all of them: no thread cache may hand out a slot any more
      closed_ = true;
      unpoison_all();
      closed_pool<Int, Extra, Handle> out{std::move(handle_), make_entries()};
      handle_.reset();
      return out;
    });
  }

  /// Whether try_close() has succeeded.
  [[nodiscard]] bool is_closed() const {
    std::scoped_lock lock(mutex_);
    return closed_;
  }

 private:
  template <class P>
  friend class expansion_handle;

  static constexpr bool can_cache = !std::is_same_v<Mutex, null_mutex>;

  // One thread's slabs in this pool, with copies of the regions they are in (a region never
  // changes once initialized), so that the thread finds its slots by address without the
  // pool's lock.
  struct cache : detail::cache_base {
    detail::slabs slabs;
    std::vector<std::optional<detail::region_info<Int, Extra>>> regions;  // by id
    std::vector<std::pair<std::uintptr_t, std::uint32_t>> by_address;     // base -> id, sorted
    // Strong guarantee.
    void add_region(const detail::region_info<Int, Extra>& r, std::uint32_t id) {
      if (id < regions.size() && regions[id]) return;
      by_address.reserve(by_address.size() + 1);
      if (regions.size() <= id) regions.resize(id + 1);
      regions[id].emplace(r);
      const auto base = reinterpret_cast<std::uintptr_t>(r.base);
      by_address.insert(
          std::upper_bound(by_address.begin(), by_address.end(), std::pair{base, std::uint32_t{0}}),
          {base, id});
    }
  };

  struct registry final : detail::cache_registry_base {
    buffer_pool* pool = nullptr;
    std::vector<std::unique_ptr<cache>> caches;  // only ever grows
    void detach(detail::cache_base& c) noexcept override {
      auto& mine = static_cast<cache&>(c);
      detail::owner_scope cache_lock(mine.lock);  // the exiting thread is the owner
      std::scoped_lock lock(pool->mutex_);
      mine.slabs.drop_empty([this](std::uint32_t node) { pool->engine_.release(node); });
    }
  };

  template <class P, class G>
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

  std::expected<range, errc> acquire_range(std::uint64_t size, std::uint64_t alignment,
                                           strategy how, bool raw = false) {
    for (int attempt = 0;; ++attempt) {
      {
        std::scoped_lock lock(mutex_);
        if (closed_) return std::unexpected(errc::pool_closed);
        auto a = engine_.allocate(size, alignment, how);
        if (a) {
          if (raw) {
            try {
              raw_.insert(a->offset, a->node);
            } catch (...) {  // strong guarantee: the range goes back
              engine_.release(a->node);
              throw;
            }
            engine_.set_tag(a->node, size, static_cast<std::uint8_t>(std::countr_zero(alignment)));
          }
          const auto* region = regions_[a->region].get();
          shade(*region, a->offset, a->capacity, false);
          return range{a->node, static_cast<Int>(a->offset), static_cast<Int>(size),
                       static_cast<Int>(a->capacity), region};
        }
        if (a.error() != errc::out_of_memory || attempt > 1) return std::unexpected(a.error());
        if (attempt == 0 && parked_.empty()) attempt = 1;  // nothing to collect
        if (attempt == 1 && !can_grow()) return std::unexpected(a.error());
      }
      if (attempt == 0) {
        collect();  // parked ranges whose I/O has finished may make room
      } else if constexpr (growing_handle<Handle, buffer_pool>) {
        // A new region that holds the request wherever its offset lands.
        const std::uint64_t need = size > ~std::uint64_t{0} - alignment ? size : size + alignment;
        if (!grow(need)) return std::unexpected(errc::out_of_memory);
      }
    }
  }

  bool can_grow() const noexcept {
    if constexpr (growing_handle<Handle, buffer_pool>)
      return options_.auto_expand && handle_.has_value();
    else
      return false;
  }

  std::expected<Int, errc> resize(std::uint32_t node, std::uint64_t size) {
    std::scoped_lock lock(mutex_);
    return resize_locked(node, size);
  }

  std::expected<Int, errc> resize_locked(std::uint32_t node, std::uint64_t size) {
    const std::uint64_t before = poisoning ? engine_.node_size(node) : 0;
    auto capacity = engine_.resize(node, size);
    if (!capacity) return std::unexpected(capacity.error());
    if constexpr (poisoning) {
      const std::uint64_t start = engine_.node_offset(node);
      if (*capacity > before)
        shade(region_of(start), start + before, *capacity - before, false);
      else if (*capacity < before)
        shade(region_of(start), start + *capacity, before - *capacity, true);
    }
    return static_cast<Int>(*capacity);
  }

  std::expected<Int, errc> resize_raw_locked(std::uint64_t offset, std::uint64_t size) {
    if (const auto slab = find_slab(offset, no_index)) return resize_slot(*slab, offset, size);
    const std::uint32_t node = raw_.find(offset);
    if (!detail::expects(node != no_index, not_raw_resize))
      return std::unexpected(errc::invalid_argument);
    auto capacity = resize_locked(node, size);
    if (capacity) engine_.set_tag(node, size, engine_.small_tag(node));
    return capacity;
  }

  void release(std::uint32_t node) noexcept {
    std::scoped_lock lock(mutex_);
    detail::expects(release_locked(node), "a slice is given back once: double release");
  }

  // Gives a live range back to the engine, poisoning it first (lock held). False (and
  // nothing changes) if `node` is not live.
  bool release_locked(std::uint32_t node) noexcept {
    if constexpr (poisoning) {  // other builds skip even the region lookup
      if (!engine_.is_live(node)) return false;
      const std::uint64_t start = engine_.node_offset(node);
      shade(region_of(start), start, engine_.node_size(node), true);
    }
    return engine_.release(node);
  }

  const detail::region_info<Int, Extra>& region_of(std::uint64_t offset) const noexcept {
    return *regions_[engine_.region_of(offset)];
  }

  static constexpr bool poisoning = BUFPOOL_POISONING != 0;

  // AddressSanitizer builds: makes [offset, offset + size) of `r` unaddressable (`poison`)
  // or addressable again, limited to the region's host memory. Nothing in other builds.
  static void shade([[maybe_unused]] const detail::region_info<Int, Extra>& r,
                    [[maybe_unused]] std::uint64_t offset, [[maybe_unused]] std::uint64_t size,
                    [[maybe_unused]] bool poison) noexcept {
#ifdef BUFPOOL_ASAN
    const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(r.base) + (offset - r.offset);
    const std::uintptr_t begin = std::max(at, r.host_begin);
    const std::uintptr_t end = std::min(at + size, r.host_end);
    if (begin >= end) return;
    if (poison)
      __asan_poison_memory_region(reinterpret_cast<const void*>(begin), end - begin);
    else
      __asan_unpoison_memory_region(reinterpret_cast<const void*>(begin), end - begin);
#endif
  }

  // Makes every region addressable again before its memory goes back to its owner.
  void unpoison_all() const noexcept {
    for (const auto& r : regions_) shade(*r, r->offset, r->size, false);
  }

  struct raw_request {
    std::uint64_t size;
    std::uint64_t alignment;
  };

  static constexpr const char* not_raw =
      "release_raw: the offset does not start a live raw range of this pool (released twice, a "
      "slice's range, another pool's, or inside a range)";
  static constexpr const char* not_raw_resize =
      "resize_raw: the offset does not start a live raw range of this pool";
  static constexpr const char* wrong_size =
      "release_raw: the size differs from the size the range was acquired with";
  static constexpr const char* wrong_alignment =
      "release_raw: the alignment differs from the alignment the range was acquired with";

  // ---- releases -------------------------------------------------------------------------
  // The slot paths of acquire_raw() and release_raw() are inlined whole into their callers
  // ([[gnu::always_inline]] on each step, the rest out of line): a call per step, and a
  // result returned through memory, cost more than their instructions, because their
  // stores wait behind the caller's store misses into the memory it just got. Inlined, a
  // churn of 64-byte slots (10k live) takes about 45% less time per acquire/release pair
  // on a local pool and 35% less with thread caches.
  // A slot of the calling thread's own slabs is freed under that cache's lock alone; any
  // other slot or raw range under the pool's lock; a slot of another thread's slabs (rare:
  // a release on another thread than the acquisition) under that thread's cache lock,
  // found by asking each cache in turn.

  // A slot of the thread's cache or of the pool's slabs is freed inline where release_raw()
  // is called; a raw range of the engine and another thread's slot out of line.
  [[gnu::always_inline]] bool release_raw_pointer(const void* pointer,
                                                  const raw_request* request) noexcept {
    if constexpr (can_cache) {
      if (registry_ != nullptr)
        if (const auto done = release_cached(pointer, request)) return *done;
    }
    const auto address = reinterpret_cast<std::uintptr_t>(pointer);
    std::optional<location> at;
    {
      std::scoped_lock lock(mutex_);
      if (const auto hit = slabs_.find_hinted(address))
        return release_slot(slabs_, nullptr, hit->span, hit->region, hit->offset, request);
      at = locate(pointer);
      if (!detail::expects(at.has_value(),
                           "release_raw: the pointer is in none of this pool's regions"))
        return false;
      if (const auto done = release_pool_locked(at->offset, request, at->region, address))
        return *done;
    }
    return release_in_caches(at->offset, at->region, request);
  }

  bool release_raw_offset(std::uint64_t offset, const raw_request* request) noexcept {
    std::uint32_t region = no_index;
    {
      std::scoped_lock lock(mutex_);
      if (const auto done = release_pool_locked(offset, request, no_index)) return *done;
      if (registry_ != nullptr) region = engine_.region_of(offset);
    }
    return release_in_caches(offset, region, request);
  }

  // Frees the pool's slot or raw range at `offset` (lock held); nothing, and nothing
  // reported, if the pool's own slabs and raw ranges have none there. A slot found is
  // noted as the hint for `address` (its memory), if not 0.
  [[gnu::always_inline]] std::optional<bool> release_pool_locked(
      std::uint64_t offset, const raw_request* request, std::uint32_t region,
      std::uintptr_t address = 0) noexcept {
    if (const std::uint32_t s = span_of(offset, region); s != no_index) {
      if (address != 0) slabs_.note_hint(address, s);
      return release_slot(slabs_, nullptr, s, region, offset, request);
    }
    return release_raw_range_locked(offset, request);
  }

  // The raw range of the engine at `offset` (lock held), as release_pool_locked().
  [[gnu::noinline]] std::optional<bool> release_raw_range_locked(
      std::uint64_t offset, const raw_request* request) noexcept {
    const std::uint32_t node = raw_.find(offset);
    if (node == no_index) return std::nullopt;
    if (request != nullptr) {
      if (!detail::expects(request->size == engine_.tag(node), wrong_size)) return false;
      if (!detail::expects(request->alignment == std::uint64_t{1} << engine_.small_tag(node),
                           wrong_alignment))
        return false;
    }
    raw_.erase(offset);
    release_locked(node);
    return true;
  }

  // Frees a slot of some thread's slabs (no lock held), or reports that nothing of this
  // pool starts at `offset`. O(threads that took slots).
  [[gnu::noinline]] bool release_in_caches(std::uint64_t offset, std::uint32_t region,
                                           const raw_request* request) noexcept {
    if (registry_ != nullptr && region != no_index) {
      std::scoped_lock registry_lock(registry_->mutex);
      for (const auto& c : registry_->caches) {
        std::scoped_lock cache_lock(c->lock);
        if (const std::uint32_t s = c->slabs.find(offset, region); s != no_index)
          return release_slot(c->slabs, c.get(), s, region, offset, request);
      }
    }
    return detail::expects(false, not_raw);
  }

  // The calling thread's own slot at `pointer`, freed under its cache's lock; nothing if
  // the thread's slabs do not hold `pointer`.
  [[gnu::always_inline]] std::optional<bool> release_cached(const void* pointer,
                                                            const raw_request* request) noexcept {
    cache* const held = held_cache();
    if (held == nullptr) return std::nullopt;
    cache& mine = *held;
    detail::owner_scope cache_lock(mine.lock);
    const auto address = reinterpret_cast<std::uintptr_t>(pointer);
    if (const auto hit = mine.slabs.find_hinted(address))
      return release_slot(mine.slabs, &mine, hit->span, hit->region, hit->offset, request);
    const auto at = locate_in(mine.by_address, mine.regions, pointer);
    if (!at) return std::nullopt;
    const std::uint32_t s = mine.slabs.find(at->offset, at->region);
    if (s == no_index) return std::nullopt;
    mine.slabs.note_hint(address, s);
    return release_slot(mine.slabs, &mine, s, at->region, at->offset, request);
  }

  // Frees the slot at `offset` of span s of `slabs`: the pool's (owner null, the pool's
  // lock held) or thread cache `owner`'s (its lock held; the pool's is taken to give an
  // emptied span back). `region` may be no_index for the pool's own slabs.
  [[gnu::always_inline]] bool release_slot(detail::slabs& slabs, cache* owner, std::uint32_t s,
                                           std::uint32_t region, std::uint64_t offset,
                                           const raw_request* request) noexcept {
    std::uint64_t capacity = 0;
    if constexpr (poisoning) {
      if (const auto live = slabs.live_slot(s, offset)) capacity = live->second;
    }
    std::uint32_t dropped = no_index;
    const auto v = slabs.give_back(s, offset, request != nullptr ? &request->size : nullptr,
                                   request != nullptr ? request->alignment : 0, dropped);
    using verdict = detail::slabs::verdict;
    if (!detail::expects(v != verdict::not_live, not_raw) ||
        !detail::expects(v != verdict::size, wrong_size) ||
        !detail::expects(v != verdict::alignment, wrong_alignment))
      return false;
    if constexpr (poisoning)
      shade(owner != nullptr ? *owner->regions[region] : region_of(offset), offset, capacity, true);
    if (dropped != no_index) {
      if (owner == nullptr) {
        engine_.release(dropped);
      } else {
        std::scoped_lock lock(mutex_);
        engine_.release(dropped);
      }
    }
    return true;
  }

  // ---- slab acquisitions ------------------------------------------------------------------

  // acquire_raw() when no span of the class has a free slot, or past the slabs: out of
  // line, so that acquire_raw() inlines only the slot path where it is called.
  [[gnu::noinline]] std::expected<raw_range<Int>, errc> acquire_raw_slow(std::uint64_t size,
                                                                         std::uint64_t alignment,
                                                                         strategy how) {
    if (options_.slabs && how.kind == strategy_kind::greedy)
      if (auto slot = acquire_slot<true>(size, alignment)) return *slot;
    auto r = acquire_range(size, alignment, how, true);
    if (!r) return std::unexpected(r.error());
    return raw_range<Int>{r->offset, r->size, r->capacity,
                          r->region->base + (r->offset - r->region->offset)};
  }

  // A slab slot for a small greedy raw request, or nothing: the engine path then serves the
  // request or reports its error. With `Grow`, a class without a free slot gets a new span.
  // Never throws: out of memory for a new slab's records, the engine path is taken too (so
  // reserve_metadata() keeps its promise).
  template <bool Grow>
  [[gnu::always_inline]] std::optional<raw_range<Int>> acquire_slot(std::uint64_t size,
                                                                    std::uint64_t alignment) {
    // A power of two (x ^ (x - 1) > x - 1, false for 0) up to max_alignment; written so
    // that the compiler does not make it a popcount (20 instructions without -mpopcnt).
    if (size == 0 || size > options_.max_size || (alignment ^ (alignment - 1)) <= alignment - 1 ||
        alignment > options_.max_alignment)
      return std::nullopt;
    const unsigned c =
        detail::slabs::class_of(std::max<std::uint64_t>(size, options_.min_size),
                                std::max<std::uint64_t>(alignment, options_.min_alignment));
    if (c == detail::slabs::no_class) return std::nullopt;
    const auto align_log2 = static_cast<unsigned>(std::countr_zero(alignment));
    if constexpr (can_cache) {
      if (registry_ != nullptr)
        if (cache* mine = this_thread_cache())
          return acquire_cached<Grow>(*mine, c, size, align_log2);
    }
    std::scoped_lock lock(mutex_);
    if (closed_) return std::nullopt;
    auto slot = slabs_.take(c, size, align_log2);
    if (!slot) {
      if (!Grow || !add_span(slabs_, nullptr, c)) return std::nullopt;
      slot = slabs_.take(c, size, align_log2);
    }
    return slot_range(*regions_[slot->region], *slot, size);
  }

  template <bool Grow>
  [[gnu::always_inline]] std::optional<raw_range<Int>> acquire_cached(
      cache& mine, unsigned c, std::uint64_t size, unsigned align_log2) noexcept {
    detail::owner_scope cache_lock(mine.lock);
    auto slot = mine.slabs.take(c, size, align_log2);
    if (!slot) {
      if constexpr (!Grow) return std::nullopt;
      std::scoped_lock lock(mutex_);
      if (closed_ || !add_span(mine.slabs, &mine, c)) return std::nullopt;
      slot = mine.slabs.take(c, size, align_log2);
    }
    return slot_range(*mine.regions[slot->region], *slot, size);
  }

  // Makes an engine range a new span of class c in `slabs` (the pool's lock held), noting
  // its region in `owner` (a thread cache whose lock is held, or null). False if there is
  // no room or no memory for the records; nothing changed then.
  bool add_span(detail::slabs& slabs, cache* owner, unsigned c) noexcept {
    auto a = engine_.allocate(
        detail::slabs::span_size(c),
        std::min<std::uint64_t>(detail::slabs::largest_alignment, options_.max_alignment), greedy);
    if (!a) return false;
    const auto& region = *regions_[a->region];
    try {
      if (owner != nullptr) owner->add_region(region, a->region);
      slabs.add_span(c, a->offset, a->capacity, a->node, a->region, region.offset, region.size,
                     region.base + (a->offset - region.offset));
    } catch (...) {
      engine_.release(a->node);
      return false;
    }
    return true;
  }

  static raw_range<Int> slot_range(const detail::region_info<Int, Extra>& region,
                                   const detail::slabs::slot& slot, std::uint64_t size) noexcept {
    shade(region, slot.offset, slot.capacity, false);
    return raw_range<Int>{static_cast<Int>(slot.offset), static_cast<Int>(size),
                          static_cast<Int>(slot.capacity), slot.address};
  }

  // The pool's slab span holding `offset`, or no_index (lock held). O(1), plus O(log
  // regions) to find the region when `region` is no_index and the pool has spans.
  std::uint32_t span_of(std::uint64_t offset, std::uint32_t region = no_index) const noexcept {
    if (slabs_.all().spans == 0) return no_index;
    return slabs_.find(offset, region != no_index ? region : engine_.region_of(offset));
  }

  struct slab_at {
    const detail::slabs* slabs;
    std::uint32_t span;
  };
  // The slabs (the pool's or a thread cache's) with a span holding `offset`, or nothing
  // (every lock held: see with_all_locked).
  std::optional<slab_at> find_slab(std::uint64_t offset, std::uint32_t region) const noexcept {
    if (const std::uint32_t s = span_of(offset, region); s != no_index) return slab_at{&slabs_, s};
    if (registry_ == nullptr) return std::nullopt;
    if (region == no_index) region = engine_.region_of(offset);
    for (const auto& c : registry_->caches)
      if (const std::uint32_t s = c->slabs.find(offset, region); s != no_index)
        return slab_at{&c->slabs, s};
    return std::nullopt;
  }

  std::expected<Int, errc> resize_slot(const slab_at& at, std::uint64_t offset,
                                       std::uint64_t size) {
    const auto live = at.slabs->live_slot(at.span, offset);
    if (!detail::expects(live.has_value(), not_raw_resize))
      return std::unexpected(errc::invalid_argument);
    if (size == 0) return std::unexpected(errc::invalid_size);
    if (size > options_.max_size) return std::unexpected(errc::too_large);
    if (std::max<std::uint64_t>(size, options_.min_size) > live->second)
      return std::unexpected(errc::out_of_memory);
    // The slabs are this pool's (find_slab() hands them out as const for const callers).
    const_cast<detail::slabs*>(at.slabs)->set_size(at.span, offset, size);
    return static_cast<Int>(live->second);
  }

  // ---- totals over every slab -------------------------------------------------------------

  [[nodiscard]] pool_stats stats_locked() const {
    const engine_stats e = engine_.stats();
    const auto slab = slab_totals();
    pool_stats s;
    s.used_bytes = e.used_bytes - slab.span_bytes + slab.live_bytes;
    s.free_bytes = e.free_bytes;
    s.spare_bytes = slab.span_bytes - slab.live_bytes;
    s.pending_bytes = e.pending_bytes;
    s.largest_free = e.largest_free;
    s.free_ranges = e.free_ranges;
    s.live_slices = e.used_ranges - slab.spans + slab.live_slots;
    s.guarded_slices = guarded_.load();
    s.parked_slices = parked_.size();
    s.regions = e.regions;
    return s;
  }

  std::expected<void, std::string> validate_locked() const {
    if (auto v = engine_.validate(); !v) return v;
    if (auto v = slabs_.validate(engine_); !v) return v;
    if (registry_ != nullptr)
      for (const auto& c : registry_->caches)
        if (auto v = c->slabs.validate(engine_); !v)
          return std::unexpected("thread cache " + v.error());
    const auto slab = slab_totals();
    const std::size_t live = stats_locked().live_slices;
    if (parked_.size() > guarded_.load()) return std::unexpected("more parked than guarded");
    if (guarded_.load() > live) return std::unexpected("more guarded than live slices");
    if (borrowed_.load() > live) return std::unexpected("more borrowed than live slices");
    if (borrowed_.load() + raw_.size() + slab.live_slots > live)
      return std::unexpected("more borrowed and raw ranges than live slices");
    bool raw_ok = true;
    raw_.for_each([&](std::uint64_t offset, std::uint32_t node) {
      raw_ok = raw_ok && engine_.is_live(node) && engine_.node_offset(node) == offset &&
               engine_.tag(node) <= engine_.node_size(node) && !find_slab(offset, no_index);
    });
    if (!raw_ok) return std::unexpected("a raw range's entry does not match a live range");
    return {};
  }

  detail::slabs::totals slab_totals() const noexcept {
    detail::slabs::totals t = slabs_.all();
    if (registry_ != nullptr)
      for (const auto& c : registry_->caches) add_totals(t, c->slabs.all());
    return t;
  }

  static void add_totals(detail::slabs::totals& t, const detail::slabs::totals& more) noexcept {
    t.span_bytes += more.span_bytes;
    t.live_bytes += more.live_bytes;
    t.spans += more.spans;
    t.live_slots += more.live_slots;
  }

  // A region's totals with its slabs' slots counted as ranges of their own.
  region_stats region_totals(std::uint32_t id) const noexcept {
    region_stats r = engine_.region(id);
    detail::slabs::totals slab;
    if (slabs_.all().spans != 0) slab = slabs_.of_region(id);
    if (registry_ != nullptr)
      for (const auto& c : registry_->caches)
        if (c->slabs.all().spans != 0) add_totals(slab, c->slabs.of_region(id));
    r.used_bytes = r.used_bytes - slab.span_bytes + slab.live_bytes;
    r.used_ranges = r.used_ranges - slab.spans + slab.live_slots;
    r.spare_bytes = slab.span_bytes - slab.live_bytes;
    return r;
  }

  // Gives every empty span back to the engine, the pool's and every thread's (every lock
  // held).
  void drop_empty_slabs() noexcept {
    const auto give = [this](std::uint32_t node) { engine_.release(node); };
    slabs_.drop_empty(give);
    if (registry_ != nullptr)
      for (const auto& c : registry_->caches) c->slabs.drop_empty(give);
  }

  struct location {
    std::uint64_t offset;
    std::uint32_t region;
  };
  // The pool offset and region of an address inside one of the regions (lock held).
  // O(log regions).
  std::optional<location> locate(const void* pointer) const noexcept {
    return locate_in(by_address_, regions_, pointer);
  }
  // The same over `by_address` (base address -> region id, sorted) and `regions` (by id,
  // pointer-like).
  template <class Regions>
  static std::optional<location> locate_in(
      const std::vector<std::pair<std::uintptr_t, std::uint32_t>>& by_address,
      const Regions& regions, const void* pointer) noexcept {
    const auto address = reinterpret_cast<std::uintptr_t>(pointer);
    auto it = std::upper_bound(by_address.begin(), by_address.end(), address,
                               [](std::uintptr_t a, const auto& r) { return a < r.first; });
    if (it == by_address.begin()) return std::nullopt;
    const std::uint32_t id = std::prev(it)->second;
    const auto& region = *regions[id];
    const std::uintptr_t delta = address - std::prev(it)->first;
    if (delta >= region.size) return std::nullopt;
    return location{std::uint64_t{region.offset} + delta, id};
  }

  // ---- thread caches (options `thread_caches`) ---------------------------------------------

  // The calling thread's cache in this pool, or null if it has none.
  [[gnu::always_inline]] cache* held_cache() const noexcept {
    const auto& last = detail::this_thread_last;
    if (last.uid == registry_->uid) return static_cast<cache*>(last.cache);
    return find_held_cache();
  }
  [[gnu::noinline]] cache* find_held_cache() const noexcept {
    auto& last = detail::this_thread_last;
    if (last.exited) return nullptr;  // its list is gone
    for (const auto& [r, c] : detail::this_thread_caches.held)
      if (r.get() == registry_.get()) {
        last = {registry_->uid, c, false};
        return static_cast<cache*>(c);
      }
    return nullptr;
  }

  // The calling thread's cache in this pool, attached on first use; null if the thread is
  // exiting or out of memory (the caller then takes the pool's slabs).
  [[gnu::always_inline]] cache* this_thread_cache() noexcept {
    if (cache* mine = held_cache()) return mine;
    return attach_thread_cache();
  }
  [[gnu::noinline]] cache* attach_thread_cache() noexcept {
    if (detail::this_thread_last.exited) return nullptr;
    auto& held = detail::this_thread_caches;
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
      detail::this_thread_last = {registry_->uid, mine, false};
      return mine;
    } catch (...) {
      return nullptr;
    }
  }

  // Runs f() with every lock taken, in order: the registry's, every thread cache's, the
  // pool's; with only the pool's when there are no thread caches.
  template <class F>
  decltype(auto) with_all_locked(F&& f) const {
    if (registry_ == nullptr) {
      std::scoped_lock lock(mutex_);
      return f();
    }
    std::scoped_lock registry_lock(registry_->mutex);
    bool barrier = false;  // one heavy barrier for every cache
    for (const auto& c : registry_->caches) barrier |= c->lock.begin_lock();
    if (barrier) detail::heavy_barrier();
    for (const auto& c : registry_->caches) c->lock.finish_lock();
    struct unlock_caches {
      const std::vector<std::unique_ptr<cache>>& caches;
      ~unlock_caches() {
        for (const auto& c : caches) c->lock.unlock();
      }
    } unlock{registry_->caches};
    std::scoped_lock lock(mutex_);
    return f();
  }

  // The engine marks of a used range, for map().
  static constexpr std::uint8_t mark_guarded_bit = 1;
  static constexpr std::uint8_t mark_parked_bit = 2;

  void mark_guarded(std::uint32_t node, bool guarded) noexcept {
    std::scoped_lock lock(mutex_);
    engine_.set_marks(node, guarded ? mark_guarded_bit : 0);
    if (guarded)
      guarded_.fetch_add(1);
    else
      guarded_.fetch_sub(1);
  }

  // Keeps a guarded range until collect() finds its guard released. Out of memory, the
  // range is never reused instead (its I/O may be in flight): it stays live and guarded.
  template <class G>
  void park(std::uint32_t node, G&& guard) noexcept {
    try {
      auto p = std::make_unique<detail::parked_guard_of<G>>(std::move(guard));
      std::scoped_lock lock(mutex_);
      parked_.push_back({node, std::move(p)});
      engine_.set_marks(node, mark_guarded_bit | mark_parked_bit);
      parked_count_.store(parked_.size(), std::memory_order_relaxed);
    } catch (...) {
      detail::report_diagnostic(
          "out of memory while parking a slice destroyed with its guard held: its range is "
          "kept (never reused) and its guard is dropped");
    }
  }

  std::expected<std::uint32_t, errc> publish(Int offset, Int size, std::byte* base,
                                             const Extra& extra, std::uintptr_t host_begin,
                                             std::uintptr_t host_end) {
    std::scoped_lock lock(mutex_);
    if (closed_) {
      engine_.cancel(offset, size);
      return std::unexpected(errc::pool_closed);
    }
    for (const auto& r : regions_) {  // the same memory must not back two regions
      const bool overlap = base < r->base + r->size && r->base < base + size;
      if (!detail::expects(!overlap, "a region's memory must not overlap another region's")) {
        engine_.cancel(offset, size);
        return std::unexpected(errc::invalid_argument);
      }
    }
    // Every allocation first, so that running out of memory changes nothing.
    auto info = std::make_unique<detail::region_info<Int, Extra>>(
        detail::region_info<Int, Extra>{offset, size, base, extra, host_begin, host_end});
    detail::room_for_one(regions_);
    detail::room_for_one(by_address_);
    const std::uint32_t id = engine_.publish(offset, size);
    regions_.push_back(std::move(info));
    const auto address = reinterpret_cast<std::uintptr_t>(base);
    by_address_.insert(
        std::upper_bound(by_address_.begin(), by_address_.end(), address,
                         [](std::uintptr_t a, const auto& r) { return a < r.first; }),
        {address, id});
    shade(*regions_.back(), offset, size, true);  // the whole region is free
    return id;
  }

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
  mutable Mutex mutex_;
  Mutex grow_mutex_;  // one grow() at a time
  engine engine_;
  std::vector<std::unique_ptr<detail::region_info<Int, Extra>>> regions_;  // by region id
  std::vector<std::pair<std::uintptr_t, std::uint32_t>> by_address_;       // base -> id, sorted
  detail::offset_map raw_;                                                 // live raw ranges
  detail::slabs slabs_;                 // small greedy raw ranges (options_.slabs)
  std::shared_ptr<registry> registry_;  // thread caches (options_.thread_caches), or null
  std::vector<detail::parked_range> parked_;
  std::optional<Handle> handle_;
  bool closed_ = false;
  bool collecting_ = false;  // a collect() is asking guards
  std::atomic<std::size_t> guarded_{0};
  std::atomic<std::size_t> borrowed_{0};
  std::atomic<std::size_t> parked_count_{0};
  std::uint64_t checked_id_ = 0;  // checked builds: this pool's id in the registry
};

/// A pool for one thread at a time: no locking.
template <offset_integer Int = std::uint32_t, class Extra = no_extra, class Handle = no_handle>
using local_buffer_pool = buffer_pool<Int, Extra, Handle, null_mutex>;

}  // namespace bufpool
