// SPDX-License-Identifier: MIT
// bufpool:options — the offset integer concept, allocation strategies and pool options.
module;
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory_resource>
export module bufpool:options;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :errors;

export namespace bufpool {

/// The integer types a pool can use for offsets and lengths. The whole range is usable:
/// offsets 0 .. max, slices and regions of up to max bytes.
template <class T>
concept offset_integer = std::same_as<T, std::uint16_t> || std::same_as<T, std::uint32_t> ||
                         std::same_as<T, std::uint64_t> || std::same_as<T, std::size_t>;

/// How acquire() chooses a free range.
enum class strategy_kind : std::uint8_t {
  optimal,   ///< Exact best fit: the smallest free range that holds the aligned request.
  greedy,    ///< Fast: a freed range of the request's size class (capacity rounded up to the
             ///< class, at most 12.5%) reused in O(1), else the best fit among indexed free
             ///< ranges, else the front of the wilderness (see engine). Never fails while a
             ///< fit exists.
  fixed,     ///< Exactly at a given offset, or fail.
  good_fit,  ///< Fast and tight, O(1): a free range from the first non-empty size bin (8 per
             ///< doubling) whose every range holds the aligned request, else one of the first
             ///< few ranges of the bin below that holds it; the capacity is the request's,
             ///< rounded up to min_alignment (see engine).
};

/// An allocation strategy: `bufpool::optimal`, `bufpool::greedy`, `bufpool::good_fit` or
/// `bufpool::fixed(offset)`.
struct strategy {
  strategy_kind kind = strategy_kind::good_fit;  ///< Which strategy (acquire()'s default).
  std::uint64_t offset = 0;                      ///< Only for `fixed`.
  /// Equal when kind and offset are.
  friend constexpr bool operator==(const strategy&, const strategy&) = default;
};

/// Exact best fit (strategy_kind::optimal).
inline constexpr strategy optimal{strategy_kind::optimal, 0};
/// Size classes and slabs, the fastest (strategy_kind::greedy).
inline constexpr strategy greedy{strategy_kind::greedy, 0};
/// A good fit in O(1), without size classes (strategy_kind::good_fit); the default of
/// acquire() and acquire_raw().
inline constexpr strategy good_fit{strategy_kind::good_fit, 0};
/// A slice exactly at `offset` (which must satisfy the requested alignment).
[[nodiscard]] constexpr strategy fixed(std::uint64_t offset) noexcept {
  return {strategy_kind::fixed, offset};
}

/// The largest power of two an integer of type Int holds.
template <offset_integer Int>
inline constexpr Int largest_power_of_two = Int{1} << (std::numeric_limits<Int>::digits - 1);

namespace detail {
// Whether x is a power of two (x ^ (x - 1) > x - 1, false for 0): three instructions, where
// std::has_single_bit becomes a popcount of about 20 on the x86-64 baseline (no -mpopcnt).
[[nodiscard]] constexpr bool is_power_of_two(std::uint64_t x) noexcept {
  return (x ^ (x - 1)) > x - 1;
}
}  // namespace detail

/// Bounds on slice sizes and alignments. Sizes below `min_size` and alignments below
/// `min_alignment` are raised to them; requests above the maxima fail with an error.
/// Every slice's offset is a multiple of its alignment, and its capacity a multiple of
/// `min_alignment` except at the end of a region.
template <offset_integer Int>
struct basic_options {
  /// Requested sizes below this are raised to it.
  Int min_size = 1;
  /// Requested sizes above this fail with too_large.
  Int max_size = std::numeric_limits<Int>::max();
  /// Requested alignments below this are raised to it.
  Int min_alignment = static_cast<Int>(alignof(std::max_align_t));
  /// Requested alignments above this fail with alignment_too_big.
  Int max_alignment = largest_power_of_two<Int>;
  /// Grow on demand: an acquisition that finds no space asks the pool's handle for a new
  /// region (see buffer_pool::grow) and retries once. Needs a handle that can grow.
  bool auto_expand = false;
  /// Slabs for small raw ranges: a `greedy` acquire_raw() of at most 64 KiB (after min_size
  /// and min_alignment, at an alignment of at most 4 KiB) takes a slot of its size class
  /// (from 8 to 256 bytes in steps of 8, then 4 classes per doubling, so under 25% more
  /// than asked above 256 bytes, rounded up further to a multiple of a larger alignment)
  /// from an engine range of slots of that class (16 slots of up to 4 KiB, at least 4 KiB;
  /// 4 to 6 larger ones: 4 to 256 KiB), and release_raw() frees it through a per-region
  /// table, in O(1) without a hash or an engine node. Free slots are "spare" in the
  /// statistics: reusable only by requests of their class, until their slab is empty and
  /// goes back (trim() returns every empty slab, and so does an acquisition that finds no
  /// other room before it reports out_of_memory). The slots a class released last (up to
  /// 32 KiB of them) wait for its next requests before their slab can empty, until trim().
  /// A slot resizes in place only within its capacity.
  bool slabs = false;
  /// With `slabs`, in a pool with a lock (buffer_pool, not local_buffer_pool): each thread
  /// that takes slots has slabs of its own, so that a `greedy` acquire_raw() of a slot and a
  /// release_raw(pointer[, size, alignment]) of one of the thread's own slots take only a
  /// per-thread lock, not the pool's (threads sharing a pool do not wait for each other); a
  /// slot released on another thread, or by offset, takes the pool's lock and then its
  /// owner's (O(threads)). A thread keeps at most one empty slab per class (2528 KiB of
  /// slabs if it uses all 64 classes, 608 KiB for the 48 up to 4 KiB); when it exits, its
  /// empty slabs go back and the rest wait for the next thread. trim() and try_close() give
  /// back every thread's empty slabs; the statistics, map() and validate() see every slot.
  /// Ignored otherwise.
  bool thread_caches = false;
  /// Where the pool's own records come from (its index of ranges, slab tables, thread
  /// caches, regions' records): every byte of them is allocated from this resource and given
  /// back to it, and constructing a pool allocates nothing. Null (the default) means
  /// `std::pmr::new_delete_resource()`. The resource must outlive the pool, and must be
  /// safe to call from several threads at once if the pool is used from several threads
  /// (the pool calls it under its own locks, but thread caches grow under theirs). Not part
  /// of valid().
  std::pmr::memory_resource* metadata = nullptr;

  /// Checks the options themselves: non-zero sizes with min <= max, power-of-two alignments
  /// with min <= max.
  [[nodiscard]] constexpr bool valid() const noexcept {
    return min_size >= 1 && min_size <= max_size && std::has_single_bit(min_alignment) &&
           std::has_single_bit(max_alignment) && min_alignment <= max_alignment;
  }
};

/// Per-region data access policy for guarded slices.
enum class guard_mode : std::uint8_t {
  exclusive,  ///< No data access through the slice while guarded.
  shared,     ///< Read-only access allowed while guarded (e.g. an in-flight write to disk).
};

}  // namespace bufpool

#pragma GCC visibility pop
