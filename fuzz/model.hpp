// SPDX-License-Identifier: MIT
// The reference model of the pool: its regions, pending reservations and live ranges.
//
// The model is deliberately naive: a list of initialized regions, a map of pending
// reservations and a map of live ranges (slices, raw ranges and parked ranges with their
// capacities). Free space is whatever regions hold outside live ranges, so "full
// coalescing" and "exact best fit" are checked against the gaps of that map.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <vector>
#include "bounds.hpp"
#include "report.hpp"
import bufpool;

namespace {

// The alignment a range gets (and a fixed offset is rounded to): the request's, raised to
// the pool's minimum.
[[nodiscard]] constexpr u64 effective_alignment(u64 alignment, u64 min_alignment) noexcept {
  return std::max<u64>(alignment, min_alignment);
}

enum class range_kind : std::uint8_t { slice, raw, parked };

struct model_range {
  u64 capacity;
  range_kind kind;
  int flag;  // index of the guard's flag, -1 if unguarded
};

struct model_region {
  u64 offset;
  u64 size;
  std::byte* base;
  [[nodiscard]] u64 end() const noexcept { return offset + size; }
};

struct span_of {
  u64 offset;
  u64 size;
};

class pool_model {
 public:
  std::vector<model_region> regions;  // in publication order: index = region id
  std::map<u64, u64> pending;         // offset -> size of reservations not yet initialized
  std::map<u64, model_range> live;    // offset -> live range (slices, raw and parked ranges)

  [[nodiscard]] const model_region* region_containing(u64 offset) const noexcept {
    for (const auto& r : regions)
      if (offset >= r.offset && offset - r.offset < r.size) return &r;
    return nullptr;
  }

  [[nodiscard]] bool inside_one_region(u64 offset, u64 len) const noexcept {
    const model_region* r = region_containing(offset);
    return r != nullptr && len <= r->end() - offset;
  }

  [[nodiscard]] bool overlaps_live(u64 offset, u64 len) const {
    auto next = live.lower_bound(offset);
    if (next != live.end() && next->first - offset < len) return true;
    if (next == live.begin()) return false;
    const auto prev = std::prev(next);
    return prev->first + prev->second.capacity > offset;
  }

  // The free gap that holds [offset, offset + len), if [offset, offset + len) is free.
  [[nodiscard]] std::optional<span_of> gap_holding(u64 offset, u64 len) const {
    const model_region* r = region_containing(offset);
    if (r == nullptr || len > r->end() - offset) return std::nullopt;
    auto next = live.lower_bound(offset);
    const u64 gap_end = next != live.end() && next->first < r->end() ? next->first : r->end();
    if (gap_end - offset < len || gap_end < offset) return std::nullopt;
    u64 gap_start = r->offset;
    if (next != live.begin()) {
      const auto prev = std::prev(next);
      const u64 prev_end = prev->first + prev->second.capacity;
      if (prev->first >= r->offset) {
        if (prev_end > offset) return std::nullopt;
        gap_start = prev_end;
      }
    }
    return span_of{gap_start, gap_end - gap_start};
  }

  // Free bytes right after the live range at `offset`, in its region.
  [[nodiscard]] u64 room_after(u64 offset) const {
    const auto at = live.find(offset);
    const u64 end = offset + at->second.capacity;
    const model_region* r = region_containing(offset);
    const auto next = std::next(at);
    const u64 limit = next != live.end() && next->first < r->end() ? next->first : r->end();
    return limit - end;
  }

  // f(offset, size, used) for every range of region r in offset order.
  template <class F>
  void for_each_range_in(const model_region& r, F&& f) const {
    u64 at = r.offset;
    for (auto it = live.lower_bound(r.offset); it != live.end() && it->first < r.end(); ++it) {
      if (it->first > at) f(at, it->first - at, false);
      f(it->first, it->second.capacity, true);
      at = it->first + it->second.capacity;
    }
    if (at < r.end()) f(at, r.end() - at, false);
  }

  template <class F>
  void for_each_gap(F&& f) const {
    for (const auto& r : regions)
      for_each_range_in(r, [&](u64 offset, u64 size, bool used) {
        if (!used) f(offset, size);
      });
  }

  // The size of the smallest free gap that holds `len` bytes at a multiple of `align`.
  [[nodiscard]] std::optional<u64> best_fit(u64 len, u64 align) const {
    std::optional<u64> best;
    for_each_gap([&](u64 offset, u64 size) {
      const u64 pad = (u64{0} - offset) & (align - 1);
      if (pad < size && size - pad >= len && (!best || size < *best)) best = size;
    });
    return best;
  }

  [[nodiscard]] std::size_t parked() const {
    std::size_t n = 0;
    for (const auto& [offset, r] : live) n += r.kind == range_kind::parked ? 1 : 0;
    return n;
  }

  template <class Flags>
  [[nodiscard]] std::size_t releasable_parked(const Flags& flags) const {
    std::size_t n = 0;
    for (const auto& [offset, r] : live)
      n += r.kind == range_kind::parked && *flags[static_cast<std::size_t>(r.flag)] ? 1 : 0;
    return n;
  }

  // The pool's collect(): parked ranges whose guard releases become free.
  template <class Flags>
  std::size_t collect(const Flags& flags) {
    std::size_t n = 0;
    for (auto it = live.begin(); it != live.end();) {
      if (it->second.kind == range_kind::parked &&
          *flags[static_cast<std::size_t>(it->second.flag)]) {
        it = live.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
    return n;
  }

  // What happens to a slice's range when the slice is destroyed.
  template <class Flags>
  void destroyed(u64 offset, const Flags& flags) {
    auto it = live.find(offset);
    expect(it != live.end() && it->second.kind == range_kind::slice, "model: destroyed slice known",
           "offset ", offset);
    if (it->second.flag >= 0 && !*flags[static_cast<std::size_t>(it->second.flag)])
      it->second.kind = range_kind::parked;
    else
      live.erase(it);
  }

  // ---- Offset space: regions and pending reservations.

  [[nodiscard]] std::vector<span_of> spans() const {
    std::vector<span_of> out;
    for (const auto& r : regions) out.push_back({r.offset, r.size});
    for (const auto& [offset, size] : pending) out.push_back({offset, size});
    std::ranges::sort(out, {}, &span_of::offset);
    return out;
  }

  // One past the highest offset handed out (regions and pending): the end of the used space.
  [[nodiscard]] u64 frontier() const {
    u64 f = 0;
    for (const auto& s : spans()) f = std::max(f, s.offset + s.size);
    return f;
  }

  // Holes between regions and reservations below the frontier (cancelled reservations).
  [[nodiscard]] std::vector<span_of> holes() const {
    std::vector<span_of> out;
    u64 at = 0;
    for (const auto& s : spans()) {
      if (s.offset > at) out.push_back({at, s.offset - at});
      at = s.offset + s.size;
    }
    return out;
  }

  [[nodiscard]] bufpool::pool_stats stats() const {
    bufpool::pool_stats s;
    u64 total = 0;
    for (const auto& r : regions) {
      total += r.size;
      for_each_range_in(r, [&](u64, u64 size, bool used) {
        if (used) return;
        ++s.free_ranges;
        s.largest_free = std::max<u64>(s.largest_free, size);
      });
    }
    for (const auto& [offset, r] : live) {
      s.used_bytes += r.capacity;
      ++s.live_slices;
      if (r.flag >= 0) ++s.guarded_slices;
      if (r.kind == range_kind::parked) ++s.parked_slices;
    }
    s.free_bytes = total - s.used_bytes;
    for (const auto& [offset, size] : pending) s.pending_bytes += size;
    s.regions = regions.size();
    return s;
  }
};

}  // namespace
