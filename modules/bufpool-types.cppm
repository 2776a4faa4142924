// SPDX-License-Identifier: MIT
// bufpool:types — the vocabulary of pools: region entries, handles, guards, statistics, errors that
// hand values back.
module;
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>
#include "build_flags.hpp"
export module bufpool:types;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :errors;
import :options;

export namespace bufpool {

/// True in checked builds (debug, or BUFPOOL_CHECKED): besides the contract checks every
/// build makes, a borrowed slice that outlives its pool finds out (pool_is_alive() false,
/// pool_gone errors, destruction does nothing) instead of touching freed memory.
inline constexpr bool checked_build = BUFPOOL_CHECKED_BUILD != 0;

/// The default `extra` of a region: nothing, and it takes no space.
struct no_extra {
  /// Always true: there is nothing to compare.
  friend constexpr bool operator==(no_extra, no_extra) noexcept = default;
};

/// What the pool knows about one initialized region; handed to a handle when it closes.
template <offset_integer Int, class Extra>
struct mmap_entry {
  Int pool_offset = 0;                  ///< First offset of the region in the pool's offset space.
  Int size = 0;                         ///< Bytes in the region.
  std::byte* pointer = nullptr;         ///< The memory given to initialize().
  [[no_unique_address]] Extra extra{};  ///< The user's value given to initialize().
};

/// Every initialized region of a pool, in the order they were initialized.
template <offset_integer Int, class Extra>
using mmap_entries = std::vector<mmap_entry<Int, Extra>>;

/// A handle frees a pool's regions: `close(entries)`, and optionally a faster `close_all`
/// used when the pool is destroyed.
template <class H, class Int, class Extra>
concept pool_handle =
    std::movable<H> && requires(H& h, const mmap_entries<Int, Extra>& e) { h.close(e); };

/// A handle that can also add regions: `grow(pool, min_bytes)` reserves offsets in `pool`,
/// provides memory for them and initializes the region, returning its id or the system's
/// error. Used by buffer_pool::grow() and by the `auto_expand` option.
template <class H, class Pool>
concept growing_handle = requires(H& h, Pool& pool, std::uint64_t n) {
  { h.grow(pool, n) } -> std::same_as<std::expected<std::uint32_t, std::error_code>>;
};

/// The handle of a pool that frees nothing itself (the user owns the regions' memory).
struct no_handle {
  /// Does nothing: the user frees the regions' memory.
  template <class Entries>
  void close(const Entries&) noexcept {}
};

/// A guard says a slice's memory may still be in use outside this program's control
/// (an in-flight I/O or DMA). `try_release()` returns true once it is safe to reuse.
template <class G>
concept slice_guard = std::move_constructible<G> && requires(G& g) {
  { g.try_release() } -> std::convertible_to<bool>;
};

/// The guard type of slices that carry none.
struct no_guard {
  /// Always true: nothing holds the range.
  constexpr bool try_release() noexcept { return true; }
};

/// What a region's memory is, for AddressSanitizer builds: the pool poisons the free ranges
/// of host memory (a use after reclaim, or an overflow into a free neighbour, is reported)
/// and never touches the shadow of opaque memory.
enum class region_memory : std::uint8_t {
  host,    ///< Ordinary memory of this process (the default).
  opaque,  ///< Device, shared or borrowed memory that the pool must leave alone.
};

/// How a slice refers to its pool.
enum class pool_ref : std::uint8_t {
  none,      ///< An empty (moved-from) slice.
  borrowed,  ///< A plain pointer: the pool must outlive the slice (checked at destruction).
  shared,    ///< A std::shared_ptr keeps the pool alive.
  weak,      ///< A std::weak_ptr: the slice notices when the pool is gone.
};

/// Statistics of a whole pool.
struct pool_stats {
  std::uint64_t used_bytes = 0;  ///< Capacity of live slices, parked ones included.
  std::uint64_t free_bytes = 0;  ///< Free bytes in initialized regions.
  /// Free slots of slabs (options `slabs`): free, but only for requests of their size
  /// class. used_bytes + free_bytes + spare_bytes is the bytes of all initialized regions.
  std::uint64_t spare_bytes = 0;
  std::uint64_t pending_bytes = 0;  ///< Reserved by expansions not yet initialized.
  std::uint64_t largest_free = 0;   ///< The largest free range.
  std::size_t free_ranges = 0;      ///< Number of free ranges.
  std::size_t live_slices = 0;      ///< Used ranges, parked ones included.
  std::size_t guarded_slices = 0;   ///< Guarded slices, parked ones included.
  std::size_t parked_slices = 0;    ///< Destroyed while guarded, waiting for their guard.
  std::size_t regions = 0;          ///< Number of initialized regions.
};

/// An error that hands a slice back (reclaim of a guarded slice).
template <class Slice>
struct reclaim_error {
  errc code;    ///< Why reclaim() refused: in_use (the slice is guarded).
  Slice slice;  ///< The slice, unchanged.
};

/// An error that hands a rejected guard back.
template <class Guard>
struct guard_error {
  errc code;    ///< Why: already_guarded or pool_gone.
  Guard guard;  ///< The guard that was not attached.
};

/// An error from the by-value with_guard: the slice and the rejected guard come back.
template <class Slice, class Guard>
struct with_guard_error {
  errc code;    ///< Why: already_guarded, pool_gone or empty_slice.
  Slice slice;  ///< The slice, unchanged.
  Guard guard;  ///< The guard that was not attached.
};

/// A range acquired without an owning slice (acquire_raw): for adapters and C-style code.
/// The caller gives it back with release_raw(offset) or release_raw(pointer).
template <offset_integer Int>
struct raw_range {
  Int offset;          ///< First offset (a multiple of the alignment).
  Int size;            ///< Bytes requested.
  Int capacity;        ///< Bytes reserved (>= size).
  std::byte* pointer;  ///< The region's memory at `offset`.
};

/// Why try_close() refused, with the counts that stood in the way.
struct close_error {
  errc code;                       ///< in_use or pool_closed
  std::size_t live_slices = 0;     ///< including parked ones
  std::size_t guarded_slices = 0;  ///< including parked ones
};

/// What try_close() hands back: the handle (if the pool had one) and every region.
template <offset_integer Int, class Extra, class Handle>
struct closed_pool {
  std::optional<Handle> handle;      ///< The pool's handle; empty if it had none.
  mmap_entries<Int, Extra> entries;  ///< Every region, in initialization order, to free.
};

namespace detail {

template <class H, class Entries>
concept has_close_all = requires(H& h, const Entries& e) { h.close_all(e); };

}  // namespace detail

}  // namespace bufpool

#pragma GCC visibility pop
