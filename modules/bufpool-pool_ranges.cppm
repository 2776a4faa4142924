// SPDX-License-Identifier: MIT
// bufpool:pool_ranges — the pool's acquisition and release paths: engine ranges (slices and
// raw ranges), slab slots of the pool or of thread caches, and every release_raw().
module;
#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "build_flags.hpp"
export module bufpool:pool_ranges;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :contracts;
import :engine;
import :errors;
import :options;
import :pool;
import :regions;
import :slabs;
import :thread_caches;
import :types;

namespace bufpool {

template <offset_integer Int, class Extra, class Handle, class Mutex>
[[gnu::always_inline]] inline auto buffer_pool<Int, Extra, Handle, Mutex>::acquire_range(
    std::uint64_t size, std::uint64_t alignment, strategy how, bool raw)
    -> std::expected<range, errc> {
  for (unsigned way = 0;;) {
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
          engine_.set_user_word(a->node, size);
          engine_.set_user_bits(a->node, static_cast<std::uint8_t>(std::countr_zero(alignment)));
        }
        const auto* region = regions_[a->region].get();
        detail::unpoison(*region, a->offset, a->capacity);
        return range{a->node, static_cast<Int>(a->offset), static_cast<Int>(size),
                     static_cast<Int>(a->capacity), region};
      }
      if (a.error() != errc::out_of_memory) return std::unexpected(a.error());
    }
    // Each way of making room is tried once, in order, until one makes some.
    bool made = false;
    while (!made && way < room_ways) made = make_room(way++, size, alignment);
    if (!made) return std::unexpected(errc::out_of_memory);
  }
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::make_room(unsigned way, std::uint64_t size,
                                                              std::uint64_t alignment) -> bool {
  switch (way) {
    case 0:  // parked ranges whose I/O has finished
      return collect() != 0;
    case 1:  // the empty spans the slab classes keep, the pool's and every thread's
      return options_.slabs && with_all_locked([this] { return drop_empty_slabs() != 0; });
    default:  // a new region that holds the request wherever its offset lands
      if constexpr (growing_handle<Handle, buffer_pool>) {
        {
          std::scoped_lock lock(mutex_);
          if (!can_grow()) return false;
        }
        const std::uint64_t need = size > ~std::uint64_t{0} - alignment ? size : size + alignment;
        return grow(need).has_value();
      } else {
        return false;
      }
  }
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::can_grow() const noexcept -> bool {
  if constexpr (growing_handle<Handle, buffer_pool>)
    return options_.auto_expand && handle_.has_value();
  else
    return false;
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::resize(std::uint32_t node, std::uint64_t size)
    -> std::expected<Int, errc> {
  std::scoped_lock lock(mutex_);
  return resize_locked(node, size);
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::resize_locked(std::uint32_t node,
                                                                  std::uint64_t size)
    -> std::expected<Int, errc> {
  const std::uint64_t before = detail::poisoning ? engine_.node_size(node) : 0;
  auto capacity = engine_.resize(node, size);
  if (!capacity) return std::unexpected(capacity.error());
  if constexpr (detail::poisoning) {
    const std::uint64_t start = engine_.node_offset(node);
    if (*capacity > before)
      detail::unpoison(region_of(start), start + before, *capacity - before);
    else if (*capacity < before)
      detail::poison(region_of(start), start + *capacity, before - *capacity);
  }
  return static_cast<Int>(*capacity);
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::resize_raw_locked(std::uint64_t offset,
                                                                      std::uint64_t size)
    -> std::expected<Int, errc> {
  if (const auto slab = find_slab(offset, no_index)) return resize_slot(*slab, offset, size);
  const std::uint32_t node = raw_.find(offset);
  if (!detail::expects(node != no_index, not_raw_resize)) return std::unexpected(errc::not_live);
  auto capacity = resize_locked(node, size);
  if (capacity) engine_.set_user_word(node, size);
  return capacity;
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::raw_at(const void* pointer) const
    -> std::expected<raw_range<Int>, errc> {
  return with_all_locked([&]() -> std::expected<raw_range<Int>, errc> {
    const auto at = locate(pointer);
    if (!at) return std::unexpected(errc::not_live);
    auto* data = const_cast<std::byte*>(static_cast<const std::byte*>(pointer));
    if (const auto slab = find_slab(at->offset, at->region)) {
      const auto live = slab->slabs->live_slot(slab->span, at->offset);
      if (!live) return std::unexpected(errc::not_live);
      return raw_range<Int>{static_cast<Int>(at->offset), static_cast<Int>(live->first),
                            static_cast<Int>(live->second), data};
    }
    const std::uint32_t node = raw_.find(at->offset);
    if (node == no_index) return std::unexpected(errc::not_live);
    return raw_range<Int>{static_cast<Int>(at->offset), static_cast<Int>(engine_.user_word(node)),
                          static_cast<Int>(engine_.node_size(node)), data};
  });
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::resize_raw(const void* pointer,
                                                               std::uint64_t size)
    -> std::expected<Int, errc> {
  return with_all_locked([&]() -> std::expected<Int, errc> {  // one lock for both steps
    const auto at = locate(pointer);
    if (!detail::expects(at.has_value(),
                         "resize_raw: the pointer is in none of this pool's regions"))
      return std::unexpected(errc::not_live);
    return resize_raw_locked(at->offset, size);
  });
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::release(std::uint32_t node) noexcept -> void {
  std::scoped_lock lock(mutex_);
  detail::expects(release_locked(node), "a slice is given back once: double release");
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::release_locked(std::uint32_t node) noexcept
    -> bool {
  if constexpr (detail::poisoning) {  // other builds skip even the region lookup
    if (!engine_.is_live(node)) return false;
    const std::uint64_t start = engine_.node_offset(node);
    detail::poison(region_of(start), start, engine_.node_size(node));
  }
  return engine_.release(node);
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
[[gnu::always_inline]] inline auto buffer_pool<Int, Extra, Handle, Mutex>::release_raw_pointer(
    const void* pointer, const raw_request* request, const detail::release_rules& rules) noexcept
    -> bool {
  if constexpr (can_cache) {
    if (caches_.enabled()) {
      if (const auto done = caches_.release_own(pointer, release_slot_in_cache(request, rules)))
        return *done;
      if (caches_.has_recent_other())
        if (const auto done = release_in_recent_cache(pointer, request, rules)) return *done;
    }
  }
  const auto address = reinterpret_cast<std::uintptr_t>(pointer);
  std::optional<detail::location> at;
  cache* owner = nullptr;
  {
    std::scoped_lock lock(mutex_);
    if (const auto hit = slabs_.find_hinted(address))
      return release_slot(slabs_, nullptr, hit->span, hit->region, hit->offset, request, rules);
    at = locate(pointer);
    if (!detail::expects(at.has_value(), rules.foreign_pointer)) return false;
    if (const auto done = release_pool_locked(at->offset, request, rules, at->region, address))
      return *done;
    owner = owner_of(at->offset, at->region);
  }
  return release_in_caches(at->offset, at->region, owner, request, rules);
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::release_raw_offset(
    std::uint64_t offset, const raw_request* request, const detail::release_rules& rules) noexcept
    -> bool {
  if constexpr (can_cache) {
    if (caches_.enabled()) {
      if (const auto done = caches_.release_own(offset, release_slot_in_cache(request, rules)))
        return *done;
      if (caches_.has_recent_other())
        if (const auto done = release_in_recent_cache(offset, request, rules)) return *done;
    }
  }
  std::uint32_t region = no_index;
  cache* owner = nullptr;
  {
    std::scoped_lock lock(mutex_);
    if (const auto done = release_pool_locked(offset, request, rules, no_index)) return *done;
    if (caches_.enabled()) region = engine_.region_of(offset);
    owner = owner_of(offset, region);
  }
  return release_in_caches(offset, region, owner, request, rules);
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
template <class Key>
[[gnu::noinline]] inline auto buffer_pool<Int, Extra, Handle, Mutex>::release_in_recent_cache(
    Key key, const raw_request* request, const detail::release_rules& rules) noexcept
    -> std::optional<bool> {
  return caches_.release_in_recent(key, release_slot_in_cache(request, rules));
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::owner_of(std::uint64_t offset,
                                                             std::uint32_t region) const noexcept
    -> cache* {
  if (!caches_.enabled() || region == no_index) return nullptr;
  return caches_.owner_of(region, regions_[region]->offset, offset);
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
[[gnu::always_inline]] inline auto buffer_pool<Int, Extra, Handle, Mutex>::release_pool_locked(
    std::uint64_t offset, const raw_request* request, const detail::release_rules& rules,
    std::uint32_t region, std::uintptr_t address) noexcept -> std::optional<bool> {
  if (const std::uint32_t s = span_of(offset, region); s != no_index) {
    if (address != 0) slabs_.note_hint(address, s);
    return release_slot(slabs_, nullptr, s, region, offset, request, rules);
  }
  return release_raw_range_locked(offset, request, rules);
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
[[gnu::noinline]] inline auto buffer_pool<Int, Extra, Handle, Mutex>::release_raw_range_locked(
    std::uint64_t offset, const raw_request* request, const detail::release_rules& rules) noexcept
    -> std::optional<bool> {
  const std::size_t cell = raw_.find_cell(offset);
  if (cell == detail::offset_map::no_cell) return std::nullopt;
  const std::uint32_t node = raw_.node_at(cell);
  if (request != nullptr) {
    if (!detail::expects(request->size == engine_.user_word(node), rules.wrong_size)) return false;
    if (!detail::expects(request->alignment ==
                             std::uint64_t{1} << (engine_.user_bits(node) & raw_alignment_bits),
                         rules.wrong_alignment))
      return false;
  }
  raw_.erase_cell(cell);
  release_locked(node);
  return true;
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
[[gnu::noinline]] inline auto buffer_pool<Int, Extra, Handle, Mutex>::release_in_caches(
    std::uint64_t offset, std::uint32_t region, cache* owner, const raw_request* request,
    const detail::release_rules& rules) noexcept -> bool {
  if (region != no_index)
    if (const auto done =
            caches_.release_in_any(offset, region, owner, [&](cache& in, std::uint32_t s) {
              return release_slot(in.slabs, &in, s, region, offset, request, rules);
            }))
      return *done;
  return detail::expects(false, rules.not_live);
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
[[gnu::always_inline]] inline auto buffer_pool<Int, Extra, Handle, Mutex>::release_slot(
    detail::slabs& slabs, cache* owner, std::uint32_t s, std::uint32_t region, std::uint64_t offset,
    const raw_request* request, const detail::release_rules& rules) noexcept -> bool {
  std::uint64_t capacity = 0;
  if constexpr (detail::poisoning) {
    if (const auto live = slabs.live_slot(s, offset)) capacity = live->second;
  }
  std::uint32_t dropped = no_index;
  const auto v = slabs.free_slot(s, offset, request != nullptr ? &request->size : nullptr,
                                 request != nullptr ? request->alignment : 0, dropped);
  using verdict = detail::slabs::verdict;
  if (!detail::expects(v != verdict::not_live, rules.not_live) ||
      !detail::expects(v != verdict::size, rules.wrong_size) ||
      !detail::expects(v != verdict::alignment, rules.wrong_alignment))
    return false;
  if constexpr (detail::poisoning)
    detail::poison(owner != nullptr ? *owner->regions[region] : region_of(offset), offset,
                   capacity);
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

template <offset_integer Int, class Extra, class Handle, class Mutex>
[[gnu::noinline]] inline auto buffer_pool<Int, Extra, Handle, Mutex>::acquire_raw_slow(
    std::uint64_t size, std::uint64_t alignment, strategy how)
    -> std::expected<raw_range<Int>, errc> {
  if (options_.slabs && how.kind == strategy_kind::greedy)
    if (auto slot = acquire_slot<true>(size, alignment)) return *slot;
  auto r = acquire_range(size, alignment, how, true);
  if (!r) return std::unexpected(r.error());
  return raw_range<Int>{r->offset, r->size, r->capacity,
                        r->region->base + (r->offset - r->region->offset)};
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
template <bool Grow>
[[gnu::always_inline]] inline auto buffer_pool<Int, Extra, Handle, Mutex>::acquire_slot(
    std::uint64_t size, std::uint64_t alignment) -> std::optional<raw_range<Int>> {
  unsigned c;
  // 1 .. small_slot_limit_ bytes at an alignment of 1, 2, 4, 8 or 16 (the bits of 0x10116):
  // the class from a table (see slabs::table_limit).
  if (size - 1 < small_slot_limit_ && alignment - 1 < 16 && ((0x10116U >> alignment) & 1) != 0)
      [[likely]] {
    c = detail::slabs::small_class(
        (std::max<std::uint64_t>(size, options_.min_size) - 1) / detail::slot_granule,
        std::max<std::uint64_t>(alignment, options_.min_alignment) > 8);
  } else {
    if (size == 0 || size > options_.max_size || !detail::is_power_of_two(alignment) ||
        alignment > options_.max_alignment)
      return std::nullopt;
    c = detail::slabs::class_of(std::max<std::uint64_t>(size, options_.min_size),
                                std::max<std::uint64_t>(alignment, options_.min_alignment));
    if (c == detail::slabs::no_class) return std::nullopt;
  }
  const auto align_log2 = static_cast<unsigned>(std::countr_zero(alignment));
  if constexpr (can_cache) {
    if (caches_.enabled())
      if (cache* mine = caches_.held_or_attach())
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

template <offset_integer Int, class Extra, class Handle, class Mutex>
template <bool Grow>
[[gnu::always_inline]] inline auto buffer_pool<Int, Extra, Handle, Mutex>::acquire_cached(
    cache& mine, unsigned c, std::uint64_t size, unsigned align_log2) noexcept
    -> std::optional<raw_range<Int>> {
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

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::add_span(detail::slabs& slabs, cache* owner,
                                                             unsigned c) noexcept -> bool {
  std::expected<engine_allocation, errc> a = std::unexpected(errc::out_of_memory);
  // The class's next span size, else smaller ones down to its first size while the engine
  // has no room for it.
  const std::uint64_t alignment =
      std::min<std::uint64_t>(detail::slabs::largest_alignment, options_.max_alignment);
  for (std::uint64_t bytes = slabs.next_span_size(c);; bytes /= 2) {
    try {  // out of memory for the engine's records: no span, as when it has no room
      a = engine_.allocate(bytes, alignment, greedy);
    } catch (...) {
      return false;
    }
    if (a || a.error() != errc::out_of_memory || bytes == detail::slabs::span_size(c)) break;
  }
  if (!a) return false;
  const auto& region = *regions_[a->region];
  try {
    if (owner != nullptr) {
      owner->add_region(region, a->region);
      caches_.note_owner(*owner, a->region, region.offset, region.size, a->offset, a->capacity);
    }
    slabs.add_span(c, a->offset, a->capacity, a->node, a->region, region.offset, region.size,
                   region.base + (a->offset - region.offset));
  } catch (...) {
    engine_.release(a->node);
    return false;
  }
  return true;
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::slot_range(
    const detail::region_info<Int, Extra>& region, const detail::slabs::slot& slot,
    std::uint64_t size) noexcept -> raw_range<Int> {
  detail::unpoison(region, slot.offset, slot.capacity);
  return raw_range<Int>{static_cast<Int>(slot.offset), static_cast<Int>(size),
                        static_cast<Int>(slot.capacity), slot.address};
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::span_of(std::uint64_t offset,
                                                            std::uint32_t region) const noexcept
    -> std::uint32_t {
  if (slabs_.all().spans == 0) return no_index;
  return slabs_.find(offset, region != no_index ? region : engine_.region_of(offset));
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::find_slab(std::uint64_t offset,
                                                              std::uint32_t region) const noexcept
    -> std::optional<slab_at> {
  if (const std::uint32_t s = span_of(offset, region); s != no_index) return slab_at{&slabs_, s};
  if (!caches_.enabled()) return std::nullopt;
  if (region == no_index) region = engine_.region_of(offset);
  std::optional<slab_at> found;
  caches_.for_each([&](const cache& c) {
    if (const std::uint32_t s = c.slabs.find(offset, region); !found && s != no_index)
      found = slab_at{&c.slabs, s};
  });
  return found;
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::resize_slot(const slab_at& at,
                                                                std::uint64_t offset,
                                                                std::uint64_t size)
    -> std::expected<Int, errc> {
  const auto live = at.slabs->live_slot(at.span, offset);
  if (!detail::expects(live.has_value(), not_raw_resize)) return std::unexpected(errc::not_live);
  if (size == 0) return std::unexpected(errc::invalid_size);
  if (size > options_.max_size) return std::unexpected(errc::too_large);
  if (std::max<std::uint64_t>(size, options_.min_size) > live->second)
    return std::unexpected(errc::out_of_memory);
  // The slabs are this pool's (find_slab() hands them out as const for const callers).
  const_cast<detail::slabs*>(at.slabs)->set_size(at.span, offset, size);
  return static_cast<Int>(live->second);
}

}  // namespace bufpool

#pragma GCC visibility pop
