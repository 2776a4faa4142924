// SPDX-License-Identifier: MIT
// bufpool:pool_inspect — the pool's totals and checks over the engine, its slabs and every thread
// cache: stats, region totals, map(), validate().
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
export module bufpool:pool_inspect;
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
inline auto buffer_pool<Int, Extra, Handle, Mutex>::region_statistics() const
    -> std::vector<region_stats> {
  return with_all_locked([this] {
    std::vector<region_stats> out;
    for (std::uint32_t i = 0; i < engine_.region_count(); ++i) out.push_back(region_totals(i));
    return out;
  });
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::stats_locked() const -> pool_stats {
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

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::validate_locked() const
    -> std::expected<void, std::string> {
  if (auto v = engine_.validate(); !v) return v;
  if (auto v = slabs_.validate(engine_); !v) return v;
  std::expected<void, std::string> caches_ok;
  caches_.for_each([&](const cache& c) {
    if (auto v = c.slabs.validate(engine_); caches_ok && !v)
      caches_ok = std::unexpected("thread cache " + v.error());
  });
  if (!caches_ok) return caches_ok;
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
             engine_.user_word(node) <= engine_.node_size(node) && !find_slab(offset, no_index);
  });
  if (!raw_ok) return std::unexpected("a raw range's entry does not match a live range");
  return {};
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::slab_totals() const noexcept
    -> detail::slabs::totals {
  detail::slabs::totals t = slabs_.all();
  caches_.for_each([&](const cache& c) { add_totals(t, c.slabs.all()); });
  return t;
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::add_totals(
    detail::slabs::totals& t, const detail::slabs::totals& more) noexcept -> void {
  t.span_bytes += more.span_bytes;
  t.live_bytes += more.live_bytes;
  t.spans += more.spans;
  t.live_slots += more.live_slots;
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::region_totals(std::uint32_t id) const noexcept
    -> region_stats {
  region_stats r = engine_.region(id);
  detail::slabs::totals slab;
  if (slabs_.all().spans != 0) slab = slabs_.of_region(id);
  caches_.for_each([&](const cache& c) {
    if (c.slabs.all().spans != 0) add_totals(slab, c.slabs.of_region(id));
  });
  r.used_bytes = r.used_bytes - slab.span_bytes + slab.live_bytes;
  r.used_ranges = r.used_ranges - slab.spans + slab.live_slots;
  r.spare_bytes = slab.span_bytes - slab.live_bytes;
  return r;
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::drop_empty_slabs() noexcept -> std::size_t {
  std::size_t dropped = 0;
  const auto give = [&](std::uint32_t node) {
    engine_.release(node);
    ++dropped;
  };
  slabs_.drop_empty(give);
  caches_.for_each([&](cache& c) { c.slabs.drop_empty(give); });
  return dropped;
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::map() const -> pool_map {
  return with_all_locked([this] {
    pool_map out;
    out.stats = stats_locked();
    for (std::uint32_t id = 0; id < engine_.region_count(); ++id) {
      const region_stats r = engine_.region(id);
      map_region region{id, r.offset, r.size, {}};
      for (const range_view& v : engine_.ranges(id)) {
        if (const auto slab = v.used ? find_slab(v.offset, id) : std::nullopt) {
          slab->slabs->for_each_run(slab->span, [&](std::uint64_t offset, std::uint64_t size,
                                                    bool live) {
            region.ranges.push_back({offset, size, live ? range_state::used : range_state::spare});
          });
          continue;
        }
        range_state state = range_state::free;
        if (v.used)
          state = (v.user_bits & parked_bit) != 0    ? range_state::parked
                  : (v.user_bits & guarded_bit) != 0 ? range_state::guarded
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

}  // namespace bufpool

#pragma GCC visibility pop
