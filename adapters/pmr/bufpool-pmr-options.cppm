// SPDX-License-Identifier: MIT
// bufpool.pmr:options — how a pool_resource grows and locks, and which pools it can borrow.
module;
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory_resource>
export module bufpool.pmr:options;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import bufpool;

export namespace bufpool::pmr {

/// How a pool_resource that owns its pool grows, and whether it locks: the first region
/// it asks upstream for, the factor each following region grows by, the largest region
/// it asks for (a request larger than the next region size still gets a region of its
/// own size), and thread safety.
struct resource_options {
  std::size_t first_region_size = std::size_t{64} << 10;  ///< Bytes (rounded up to 4 KiB).
  double growth_factor = 2.0;                             ///< >= 1.
  /// >= first_region_size. Growth stops doubling here, so the regions the resource holds
  /// exceed what it needs by at most about this much once it is past twice this size.
  std::size_t max_region_size = std::size_t{8} << 20;
  /// true: allocate and deallocate may be called from many threads at once (like
  /// `synchronized_pool_resource`). false: no locking, one thread at a time (like
  /// `monotonic_buffer_resource` and `unsynchronized_pool_resource`), and faster.
  bool thread_safe = true;
  /// The most bytes of upstream regions that release() keeps for the next cycle instead of
  /// giving them back, so that an arena loop (fill, release(), refill) reuses memory whose
  /// pages are already mapped: the largest regions first, among those recent cycles used
  /// (see idle_cycles). The pool's own records (its bookkeeping) are kept too, at the
  /// capacity the largest cycle so far needed. The default has no cap beyond that; 0 gives
  /// everything back, records included, as the standard resources do. Destruction always
  /// gives everything back.
  std::size_t retained_bytes = std::numeric_limits<std::size_t>::max();
  /// A kept region that this many cycles in a row, plus the one ending, did not need is
  /// the excess: release() gives it back. 0 keeps only what the ending cycle used; the
  /// default keeps what any of the last 9 cycles used, so that an arena loop whose requests
  /// vary in size does not give its largest regions back after a few small requests and
  /// take (and fault in) new ones at the next large request.
  unsigned idle_cycles = 8;

  /// 1 <= first <= max, factor >= 1 (and not NaN).
  [[nodiscard]] constexpr bool valid() const noexcept {
    return first_region_size >= 1 && first_region_size <= max_region_size && growth_factor >= 1.0;
  }
};

/// A pool a pool_resource can be built over without owning it: any `buffer_pool`.
template <class Pool>
concept borrowable_pool =
    requires(Pool& p, const void* q, const bufpool::detail::release_rules& rules) {
      typename Pool::mutex_type;
      p.acquire_raw(std::uint64_t{1}, std::uint64_t{1}, bufpool::greedy);
      { p.release_raw(q, std::uint64_t{1}, std::uint64_t{1}) } -> std::same_as<bool>;
      { p.release_raw(q, std::uint64_t{1}, std::uint64_t{1}, rules) } -> std::same_as<bool>;
      { p.stats() } -> std::same_as<pool_stats>;
      { p.options().metadata } -> std::convertible_to<std::pmr::memory_resource*>;
    };

}  // namespace bufpool::pmr

#pragma GCC visibility pop
