// SPDX-License-Identifier: MIT
// The offset engine's offset space (reservations, gaps, regions) and its whole-engine views:
// statistics, range walks and validate().
module;
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <expected>
#include <iterator>
#include <map>
#include <memory>
#include <memory_resource>
#include <set>
#include <source_location>
#include <string>
#include <utility>
#include <vector>

#include "internal_assert.hpp"
module bufpool;

import :bptree;
import :range_nodes;

namespace bufpool {

// ---------------------------------------------------------------------------------------
// Offset space: reservations, cancellations, regions.

// Every pending span may become a gap when it is cancelled, and cancel() cannot fail: the
// nodes the gap indexes will need are allocated here, kept as spare node handles.
void engine::keep_spare_gap_nodes() {
  const std::size_t want = pending_spans_ + 1;
  spare_gaps_.reserve(want);
  spare_gap_sizes_.reserve(want);
  // Made from the resource of the indexes they join (node handles move only between
  // containers whose allocators compare equal).
  if (spare_gaps_.size() < want) {
    gap_map one(metadata_);
    one.emplace(0, 0);
    spare_gaps_.push_back({one.extract(one.begin())});
  }
  if (spare_gap_sizes_.size() < want) {
    gap_set one(metadata_);
    one.emplace(0, 0);
    spare_gap_sizes_.push_back({one.extract(one.begin())});
  }
}

std::expected<offset_t, errc> engine::reserve(offset_t size) {
  if (size == 0) return std::unexpected(errc::invalid_size);
  keep_spare_gap_nodes();  // may throw: nothing changed
  // At the end of the used space?
  if (!space_full_ && size - 1 <= limits_.last_offset - frontier_) {
    const offset_t offset = frontier_;
    if (size - 1 == limits_.last_offset - frontier_)
      space_full_ = true;  // the frontier would be one past the integer's range
    else
      frontier_ += size;
    pending_bytes_ += size;
    ++pending_spans_;
    return offset;
  }
  // End exhausted: the smallest gap left by a cancelled reservation that fits.
  const auto it = gap_sizes_.lower_bound({size, 0});
  if (it == gap_sizes_.end()) return std::unexpected(errc::out_of_offset_space);
  const auto [gap_size, gap_offset] = *it;
  auto by_size = gap_sizes_.extract(it);
  auto by_offset = gaps_.extract(gap_offset);
  if (gap_size > size) {  // the rest stays a gap: the same nodes, re-keyed (no allocation)
    by_size.value() = {gap_size - size, gap_offset + size};
    by_offset.key() = gap_offset + size;
    by_offset.mapped() = gap_size - size;
    gap_sizes_.insert(std::move(by_size));
    gaps_.insert(std::move(by_offset));
  }
  pending_bytes_ += size;
  ++pending_spans_;
  return gap_offset;
}

void engine::cancel(offset_t offset, offset_t size) noexcept {
  // Only a span reserve() handed out can come back: anything else would wrap the counters.
  // (Pending bytes count modulo 2^64: 0 with a span pending is the whole u64 space.)
  BUFPOOL_ASSERT(pending_spans_ != 0 && size != 0);
  BUFPOOL_ASSERT(pending_bytes_ == 0 || size <= pending_bytes_);
  BUFPOOL_ASSERT(space_full_ || last_of(offset, size) < frontier_);
  pending_bytes_ -= size;
  --pending_spans_;
  // Merge with the gaps on either side.
  auto next = gaps_.lower_bound(offset);
  if (next != gaps_.begin()) {
    const auto prev = std::prev(next);
    if (last_of(prev->first, prev->second) + 1 == offset) {
      offset = prev->first;
      size += prev->second;
      gap_sizes_.erase({prev->second, prev->first});
      gaps_.erase(prev);
    }
  }
  const offset_t last = last_of(offset, size);
  if (next != gaps_.end() && last != limits_.last_offset && last + 1 == next->first) {
    size += next->second;
    gap_sizes_.erase({next->second, next->first});
    gaps_.erase(next);
  }
  // A gap that ends at the frontier gives the offsets back to the end of the space.
  const offset_t gap_last = last_of(offset, size);
  const bool at_frontier =
      space_full_ ? gap_last == limits_.last_offset : gap_last + 1 == frontier_;
  if (at_frontier) {
    frontier_ = offset;
    space_full_ = false;
    return;
  }
  BUFPOOL_ASSERT(!spare_gaps_.empty() && !spare_gap_sizes_.empty());
  auto by_offset = std::move(spare_gaps_.back().handle);  // kept by reserve(): no allocation
  spare_gaps_.pop_back();
  auto by_size = std::move(spare_gap_sizes_.back().handle);
  spare_gap_sizes_.pop_back();
  by_offset.key() = offset;
  by_offset.mapped() = size;
  by_size.value() = {size, offset};
  gaps_.insert(std::move(by_offset));
  gap_sizes_.insert(std::move(by_size));
}

std::uint32_t engine::publish(offset_t offset, offset_t size) {
  // A span reserve() handed out (see cancel()).
  BUFPOOL_ASSERT(pending_spans_ != 0 && size != 0);
  BUFPOOL_ASSERT(pending_bytes_ == 0 || size <= pending_bytes_);
  BUFPOOL_ASSERT(space_full_ || last_of(offset, size) < frontier_);
  detail::room_for_one(regions_);  // every allocation first: a failure changes nothing
  detail::room_for_one(region_index_);
  const std::uint32_t n = new_node();
  pending_bytes_ -= size;
  --pending_spans_;
  if (spare_gaps_.size() > pending_spans_ + 1) spare_gaps_.pop_back();
  if (spare_gap_sizes_.size() > pending_spans_ + 1) spare_gap_sizes_.pop_back();
  const auto id = static_cast<std::uint32_t>(regions_.size());
  regions_.push_back(region_rec{offset, size, n, 0, 0, 0, 0});
  const auto pos = std::ranges::lower_bound(region_index_, std::pair{offset, std::uint32_t{0}});
  region_index_.insert(pos, {offset, id});
  nodes_[n].offset = offset;
  nodes_[n].size = size;
  nodes_[n].region = id;
  add_free(n);
  return id;
}

std::uint32_t engine::region_of(offset_t offset) const noexcept {
  auto it = std::ranges::upper_bound(region_index_, offset, {},
                                     &std::pair<offset_t, std::uint32_t>::first);
  if (it == region_index_.begin()) return no_index;
  const region_rec& r = regions_[std::prev(it)->second];
  return offset - r.offset < r.size ? std::prev(it)->second : no_index;
}

// ---------------------------------------------------------------------------------------
// Introspection.

// Whether range n is free: indexed, cached or the wilderness (false for no_index).
bool engine::is_free(std::uint32_t n) const noexcept {
  return n != no_index && nodes_[n].state != node_used && nodes_[n].state != node_unused;
}

engine::cache_view engine::view_of_cache(std::uint32_t region) const noexcept {
  cache_view v;
  // Each free range outside the indexes (cached, or the wilderness) adds its bytes and a
  // range; each adjacent pair of free ranges is one merge, counted at the unindexed range on
  // its left, or at the unindexed range on its right when the left one is indexed; and the
  // merged range holding it is measured once, from its first range: itself, or the indexed
  // range before it (indexed ranges are never adjacent to each other).
  const auto visit = [&](std::uint32_t c) {
    const node& x = nodes_[c];
    if (region != no_index && x.region != region) return;
    v.bytes += x.size;
    ++v.ranges;
    if (is_free(x.next)) ++v.merges;
    if (x.prev != no_index && nodes_[x.prev].state == node_free) ++v.merges;
    std::uint32_t first = no_index;
    if (!is_free(x.prev))
      first = c;
    else if (nodes_[x.prev].state == node_free && !is_free(nodes_[x.prev].prev))
      first = x.prev;
    if (first == no_index) return;
    offset_t merged = 0;
    for (std::uint32_t m = first; is_free(m); m = nodes_[m].next) merged += nodes_[m].size;
    v.largest = std::max(v.largest, merged);
  };
  if (wild_ != no_index) visit(wild_);
  if (cached_ranges_ != 0)
    for (const class_list& list : classes_)
      for (std::uint32_t c = list.head; c != no_index; c = nodes_[c].link) visit(c);
  return v;
}

region_stats engine::region(std::uint32_t id) const noexcept {
  const region_rec& r = regions_[id];
  const cache_view c = view_of_cache(id);
  return {r.offset,
          r.size,
          r.used_bytes,
          r.free_bytes + c.bytes,
          r.free_ranges + c.ranges - c.merges,
          r.used_ranges};
}

std::vector<range_view> engine::ranges(std::uint32_t id) const {
  std::vector<range_view> out;
  for (std::uint32_t n = regions_[id].first; n != no_index; n = nodes_[n].next) {
    const bool used = nodes_[n].state == node_used;
    if (!used && !out.empty() && !out.back().used)  // cached ranges show merged
      out.back().size += nodes_[n].size;
    else
      out.push_back(
          {nodes_[n].offset, nodes_[n].size, used, used ? nodes_[n].user_bits : std::uint8_t{0}});
  }
  return out;
}

std::vector<std::pair<offset_t, offset_t>> engine::pending_spans() const {
  // Below the frontier every offset is in a region, a gap or a pending span.
  std::vector<std::pair<offset_t, offset_t>> known;  // regions and gaps, (offset, size)
  known.reserve(region_index_.size() + gaps_.size());
  for (const auto& [offset, id] : region_index_) known.emplace_back(offset, regions_[id].size);
  for (const auto& [offset, size] : gaps_) known.emplace_back(offset, size);
  std::ranges::sort(known);
  std::vector<std::pair<offset_t, offset_t>> out;
  if (!space_full_ && frontier_ == 0) return out;
  const offset_t last = space_full_ ? limits_.last_offset : frontier_ - 1;
  offset_t next = 0;  // the first offset not yet accounted for
  bool done = false;  // next would be one past the last offset of the integer
  for (const auto& [offset, size] : known) {
    if (offset > next) out.emplace_back(next, offset - next);
    const offset_t end_last = last_of(offset, size);
    if (end_last == limits_.last_offset) {
      done = true;
      break;
    }
    next = end_last + 1;
  }
  if (!done && next <= last) out.emplace_back(next, last - next + 1);
  // What is neither a region nor a gap is pending: the counter must agree (modulo 2^64).
  BUFPOOL_ASSERT([&] {
    offset_t bytes = 0;
    for (const auto& span : out) bytes += span.second;
    return bytes == pending_bytes_;
  }());
  return out;
}

engine_stats engine::stats() const noexcept {
  engine_stats st;
  st.used_bytes = used_bytes_;
  const cache_view c = view_of_cache(no_index);
  st.free_bytes = free_bytes_ + c.bytes;
  st.pending_bytes = pending_bytes_;
  st.free_ranges = free_ranges_ + c.ranges - c.merges;
  st.used_ranges = used_ranges_;
  st.regions = regions_.size();
  st.largest_free = std::max(sizes_ ? sizes_->largest() : largest_binned(), c.largest);
  return st;
}

std::expected<void, std::string> engine::validate() const {
  auto fail = [](std::string what) { return std::unexpected(std::move(what)); };
  offset_t used = 0;
  offset_t free = 0;
  offset_t cached = 0;
  std::size_t used_count = 0;
  std::size_t free_count = 0;
  std::size_t cached_count = 0;
  std::size_t wild_count = 0;
  for (std::uint32_t id = 0; id < regions_.size(); ++id) {
    const region_rec& r = regions_[id];
    const std::string where = "region " + std::to_string(id) + ": ";
    offset_t covered = 0;
    offset_t r_used = 0;
    offset_t r_free = 0;
    std::size_t r_used_count = 0;
    std::size_t r_free_count = 0;
    offset_t expect = r.offset;
    std::uint32_t prev = no_index;
    for (std::uint32_t n = r.first; n != no_index; prev = n, n = nodes_[n].next) {
      const node& x = nodes_[n];
      if (x.region != id) return fail(where + "range owned by another region");
      if (x.prev != prev) return fail(where + "broken neighbour links");
      if (x.size == 0) return fail(where + "empty range");
      if (x.offset != expect) return fail(where + "ranges do not tile the region (gap/overlap)");
      covered += x.size;
      if (covered > r.size) return fail(where + "ranges exceed the region");
      if (covered < r.size) expect = x.offset + x.size;
      if (x.state == node_free) {
        if (prev != no_index && nodes_[prev].state == node_free)
          return fail(where + "adjacent free ranges not coalesced");
        r_free += x.size;
        ++r_free_count;
      } else if (x.state == node_cached) {
        cached += x.size;
        ++cached_count;
      } else if (x.state == node_wild) {
        if (n != wild_) return fail(where + "a second wilderness");
        ++wild_count;
      } else if (x.state == node_used) {
        r_used += x.size;
        ++r_used_count;
      } else {
        return fail(where + "unused node linked into a region");
      }
    }
    if (covered != r.size) return fail(where + "ranges do not cover the region");
    if (r_used != r.used_bytes || r_free != r.free_bytes || r_used_count != r.used_ranges ||
        r_free_count != r.free_ranges)
      return fail(where + "region counters wrong");
    used += r_used;
    free += r_free;
    used_count += r_used_count;
    free_count += r_free_count;
  }
  if (used != used_bytes_ || free != free_bytes_ || used_count != used_ranges_ ||
      free_count != free_ranges_)
    return fail("engine counters wrong");

  // Every cached range is in the list of its class, once, and has that class's capacity.
  std::size_t listed = 0;
  offset_t listed_bytes = 0;
  for (std::size_t k = 0; k < classes_.size(); ++k) {
    std::size_t in_class = 0;
    for (std::uint32_t c = classes_[k].head, before = no_index; c != no_index;
         before = c, c = nodes_[c].link) {
      if (c >= nodes_.size() || nodes_[c].state != node_cached || nodes_[c].cprev != before)
        return fail("size-class cache: broken list");
      if (class_capacity(nodes_[c].size) != nodes_[c].size || class_index(nodes_[c].size) != k)
        return fail("size-class cache: range in the wrong class");
      if (++listed > cached_count) return fail("size-class cache: a list loops");
      listed_bytes += nodes_[c].size;
      ++in_class;
    }
    if (in_class != classes_[k].count) return fail("size-class cache: class count wrong");
  }
  if (listed != cached_count || listed != cached_ranges_ || listed_bytes != cached ||
      cached != cached_bytes_)
    return fail("size-class cache counters wrong");
  if (wild_count != (wild_ == no_index ? 0u : 1u)) return fail("the wilderness is lost");

  // Each free range has exactly one entry in each index, with its current key.
  if (bin_heads_.empty() && (sizes_ != nullptr || offsets_ != nullptr || !nodes_.empty()))
    return fail("the indexes are missing");
  if (auto v = validate_bins(); !v) return fail(v.error());
  std::vector<detail::bptree<true>::entry> by_size;
  if (sizes_)
    if (auto v = sizes_->validate(by_size); !v) return fail("size " + v.error());
  std::vector<detail::bptree<false>::entry> by_offset;
  if (offsets_)
    if (auto v = offsets_->validate(by_offset); !v) return fail("offset " + v.error());
  if ((sizes_ && by_size.size() != free_ranges_) || (offsets_ && by_offset.size() != free_ranges_))
    return fail("the indexes do not hold exactly the free ranges");
  for (const auto& en : by_size)
    if (en.node >= nodes_.size() || nodes_[en.node].state != node_free ||
        nodes_[en.node].offset != en.tie || nodes_[en.node].size != en.key)
      return fail("size index entry does not match a free range");
  for (const auto& en : by_offset)
    if (en.node >= nodes_.size() || nodes_[en.node].state != node_free ||
        last_of(nodes_[en.node].offset, nodes_[en.node].size) != en.key)
      return fail("offset index entry does not match a free range");

  // Regions and gaps are disjoint, inside the handed-out space.
  for (std::size_t i = 1; i < region_index_.size(); ++i) {
    const region_rec& a = regions_[region_index_[i - 1].second];
    if (last_of(a.offset, a.size) >= region_index_[i].first) return fail("regions overlap");
  }
  offset_t gap_bytes = 0;
  for (auto it = gaps_.begin(); it != gaps_.end(); ++it) {
    gap_bytes += it->second;
    if (region_of(it->first) != no_index) return fail("gap overlaps a region");
    if (!gap_sizes_.contains({it->second, it->first})) return fail("gap size index wrong");
    if (const auto nx = std::next(it);
        nx != gaps_.end() && last_of(it->first, it->second) + 1 >= nx->first)
      return fail("gaps overlap or are not merged");
    if (!space_full_ && last_of(it->first, it->second) >= frontier_)
      return fail("gap beyond the frontier");
  }
  if (gap_sizes_.size() != gaps_.size()) return fail("gap size index wrong");
  // Regions, pending reservations and gaps tile the handed-out offsets exactly (modulo
  // 2^64, so a u64 space that is full compares equal too).
  offset_t handed_out = pending_bytes_ + gap_bytes;
  for (const region_rec& r : regions_) handed_out += r.size;
  const offset_t end = space_full_ ? limits_.last_offset + 1 : frontier_;
  if (handed_out != end) return fail("regions, pending and gaps do not tile the used space");
  return {};
}

}  // namespace bufpool
