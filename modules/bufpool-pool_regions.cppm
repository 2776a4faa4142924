// SPDX-License-Identifier: MIT
// bufpool:pool_regions — a pool's regions over its life: reserving an expansion, publishing it
// as a region, closing the pool, and handing every region back when the pool ends.
module;
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <limits>
#include <mutex>
#include <string>
#include <utility>

#include "build_flags.hpp"
export module bufpool:pool_regions;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :contracts;
import :engine;
import :errors;
import :locks;
import :metadata;
import :pool;
import :regions;
import :thread_caches;
import :types;

namespace bufpool {

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline buffer_pool<Int, Extra, Handle, Mutex>::~buffer_pool() {
  if constexpr (can_cache) detail::delist_for_fork(fork_locks_);  // first: no lock held
  if constexpr (checked_build) detail::unregister_pool(checked_node_);
  caches_.pool_gone();
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
  if (handle_) close_regions(make_entries());
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::begin_expand(std::uint64_t size)
    -> std::expected<expansion, errc> {
  if (size > std::numeric_limits<Int>::max()) return std::unexpected(errc::out_of_offset_space);
  std::scoped_lock lock(mutex_);
  if (closed_) return std::unexpected(errc::pool_closed);
  auto offset = engine_.reserve(size);
  if (!offset) return std::unexpected(offset.error());
  return expansion(this, static_cast<Int>(*offset), static_cast<Int>(size));
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::try_close()
    -> std::expected<closed_pool<Int, Extra, Handle>, close_error> {
  return with_all_locked([this]() -> std::expected<closed_pool<Int, Extra, Handle>, close_error> {
    if (closed_) return std::unexpected(close_error{errc::pool_closed, 0, 0});
    const std::size_t live = stats_locked().live_slices;
    const std::size_t guarded = guarded_.load();
    if (live != 0 || guarded != 0) return std::unexpected(close_error{errc::in_use, live, guarded});
    drop_empty_slabs();  // all of them: no thread cache may hand out a slot any more
    closed_ = true;
    unpoison_all();
    closed_pool<Int, Extra, Handle> out{std::move(handle_), make_entries()};
    handle_.reset();
    return out;
  });
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::clear() -> std::expected<void, errc> {
  auto cleared = with_all_locked([this]() -> std::expected<entries, errc> {
    if (closed_) return std::unexpected(errc::pool_closed);
    // Raw ranges are the slab slots and those in raw_: any other live range is a slice.
    const std::size_t slices = stats_locked().live_slices - slab_totals().live_slots - raw_.size();
    if (slices != 0 || guarded_.load() != 0 || engine_.stats().pending_bytes != 0)
      return std::unexpected(errc::in_use);
    unpoison_all();
    entries gone = handle_ ? make_entries() : entries{};
    engine_.clear();
    slabs_.clear();
    caches_.clear_all();
    raw_.clear();
    regions_.clear();
    by_address_.clear();
    return gone;
  });
  if (!cleared) return std::unexpected(cleared.error());
  close_regions(*cleared);  // no lock held: the handle may call the pool
  return {};
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::publish(Int offset, Int size, std::byte* base,
                                                            const Extra& extra,
                                                            std::uintptr_t host_begin,
                                                            std::uintptr_t host_end)
    -> std::expected<std::uint32_t, errc> {
  std::scoped_lock lock(mutex_);
  if (closed_) {
    engine_.cancel(offset, size);
    return std::unexpected(errc::pool_closed);
  }
  for (const auto& r : regions_) {  // the same memory must not back two regions
    const bool overlap = base < r->base + r->size && r->base < base + size;
    if (!detail::expects(!overlap, "a region's memory must not overlap another region's")) {
      engine_.cancel(offset, size);
      return std::unexpected(errc::overlapping_memory);
    }
  }
  // Every allocation first, so that running out of memory changes nothing.
  auto info = detail::make_meta<detail::region_info<Int, Extra>>(
      metadata_, detail::region_info<Int, Extra>{offset, size, base, extra, host_begin, host_end});
  detail::room_for_one(regions_);
  by_address_.reserve_one();
  const std::uint32_t id = engine_.publish(offset, size);
  regions_.push_back(std::move(info));
  by_address_.insert(reinterpret_cast<std::uintptr_t>(base), id);
  detail::poison(*regions_.back(), offset, size);  // the whole region is free
  return id;
}

}  // namespace bufpool

#pragma GCC visibility pop
