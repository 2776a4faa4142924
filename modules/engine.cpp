// SPDX-License-Identifier: MIT
// The offset engine: regions, free and used ranges linked to their physical neighbours for
// coalescing, the strategies' placements, and the size-class cache. The upkeep of the free
// ranges' bins and indexes is in engine_bins.inl, included here so that it inlines; the
// indexes are made and checked in engine_indexes.cpp.
module;
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <expected>
#include <map>
#include <memory>
#include <memory_resource>
#include <optional>
#include <set>
#include <source_location>
#include <string>
#include <utility>
#include <vector>

#include "internal_assert.hpp"
module bufpool;

import :bptree;
import :range_nodes;

// Every free range is in its size bin (good_fit's O(1) search), and, once a strategy has
// needed them, one entry of the size index (ordered by (size, offset); inner nodes keep the
// largest usable size per alignment level of each child, so the leftmost entry that fits is
// the exact aligned best fit, found in one descent) and one entry of the offset index
// (ordered by last offset, so fixed() finds the free range containing an offset in one
// descent). Used and free ranges of a region are linked to their physical
// neighbours, so release coalesces in O(1) before re-indexing. A free range that is split
// or merged keeps its node where it can, and with it its entries.

namespace bufpool {

namespace {

// Whether range n and its physical neighbours link to each other, in one region, with no gap
// or overlap between them (O(1), for the checks; a template so it can see engine::node).
template <class Nodes, class Regions>
bool linked_in_place(const Nodes& nodes, const Regions& regions, std::uint32_t n) noexcept {
  const auto& x = nodes[n];
  if (x.size == 0 || x.region >= regions.size()) return false;
  if (x.prev == no_index) {
    if (regions[x.region].first != n || regions[x.region].offset != x.offset) return false;
  } else {
    const auto& p = nodes[x.prev];
    if (p.next != n || p.region != x.region || last_of(p.offset, p.size) + 1 != x.offset)
      return false;
  }
  if (x.next == no_index)
    return last_of(x.offset, x.size) == last_of(regions[x.region].offset, regions[x.region].size);
  const auto& q = nodes[x.next];
  return q.prev == n && q.region == x.region && last_of(x.offset, x.size) + 1 == q.offset;
}

}  // namespace

#include "engine_bins.inl"

engine::engine(const engine_limits& limits, std::pmr::memory_resource* metadata)
    : limits_(limits),
      metadata_(detail::metadata_or_default(metadata)),
      nodes_(metadata_),
      regions_(metadata_),
      region_index_(metadata_),
      gaps_(metadata_),
      gap_sizes_(metadata_),
      spare_gaps_(metadata_),
      spare_gap_sizes_(metadata_),
      classes_(metadata_),
      bin_heads_(metadata_) {
  granule_log2_ = static_cast<unsigned>(std::countr_zero(limits_.min_alignment));
  levels_ = static_cast<unsigned>(std::countr_zero(limits_.max_alignment)) - granule_log2_ + 1;
  // Classes up to 64 KiB, and at most 1/16 of the offset space; none if a class would be
  // smaller than the granule.
  class_limit_ = offset_t{64} << 10;
  while (class_limit_ > (limits_.last_offset >> 4)) class_limit_ >>= 1;
  if (class_limit_ < limits_.min_alignment) class_limit_ = 0;
}

engine::~engine() = default;
engine::engine(engine&&) noexcept = default;

// The containers' allocators do not follow a move assignment (std::pmr), so a member-wise
// one would copy records into this engine's resource: this engine is rebuilt from the
// other instead, and takes its resource with its records.
engine& engine::operator=(engine&& other) noexcept {
  if (this != &other) {
    std::destroy_at(this);
    std::construct_at(this, std::move(other));
  }
  return *this;
}

void engine::clear() noexcept {
  BUFPOOL_ASSERT(pending_bytes_ == 0);
  auto nodes = std::move(nodes_);
  auto sizes = std::move(sizes_);
  auto offsets = std::move(offsets_);
  auto bins = std::move(bin_heads_);  // the indexes, if made, stay made (validate())
  auto classes = std::move(classes_);
  auto regions = std::move(regions_);
  auto region_index = std::move(region_index_);
  nodes.clear();
  regions.clear();
  region_index.clear();
  if (sizes) sizes->clear();  // no free range is left to index: empty indexes are exact
  if (offsets) offsets->clear();
  std::ranges::fill(bins, no_index);
  std::ranges::fill(classes, class_list{});
  *this = engine(limits_, metadata_);  // every other member as new
  nodes_ = std::move(nodes);           // one resource: the storage moves
  sizes_ = std::move(sizes);
  offsets_ = std::move(offsets);
  bin_heads_ = std::move(bins);
  classes_ = std::move(classes);
  regions_ = std::move(regions);
  region_index_ = std::move(region_index);
}

// ---------------------------------------------------------------------------------------
// Nodes: an index-linked free list, so steady state allocates nothing.

void engine::reserve_nodes(std::size_t nodes) {
  const std::size_t want = nodes_.size() + nodes;
  // The calls that follow must not allocate: the indexes they could make come first.
  if (bin_heads_.empty()) make_indexes();
  if (!sizes_) index_sizes();
  if (!offsets_) index_offsets();
  if (reserved_ < want) {
    sizes_->reserve(2 * want);
    offsets_->reserve(2 * want);
    reserved_ = 2 * want;
  }
  if (nodes_.capacity() < want) nodes_.reserve(std::max(want, 2 * nodes_.capacity()));
}

// The free list's head first: a steady state of acquisitions and releases takes every
// node from it.
[[gnu::always_inline]] std::uint32_t engine::new_node() {
  if (free_nodes_ != no_index) [[likely]] {
    const std::uint32_t n = free_nodes_;
    BUFPOOL_ASSERT(n < nodes_.size() && nodes_[n].state == node_unused);
    free_nodes_ = nodes_[n].link;
    nodes_[n] = node{};
    return n;
  }
  return append_node();
}

std::uint32_t engine::append_node() {
  // Free ranges never outnumber nodes: with this much room reserved in the indexes,
  // release() (which may add a free range) never allocates. Room first, so a failed
  // allocation changes nothing.
  if (const std::size_t want = nodes_.size() + 1; reserved_ < want) {
    if (bin_heads_.empty()) make_indexes();
    if (sizes_) sizes_->reserve(2 * want);
    if (offsets_) offsets_->reserve(2 * want);
    reserved_ = 2 * want;
  }
  nodes_.emplace_back();
  return static_cast<std::uint32_t>(nodes_.size() - 1);
}

void engine::drop_new_node(std::uint32_t n) noexcept {
  BUFPOOL_ASSERT(n < nodes_.size() && nodes_[n].state == node_unused &&
                 nodes_[n].prev == no_index && nodes_[n].next == no_index);
  nodes_[n].link = free_nodes_;
  free_nodes_ = n;
}

[[gnu::always_inline]] void engine::free_node(std::uint32_t n) noexcept {
  // Not freed twice, and no neighbour still links to it.
  BUFPOOL_ASSERT(n < nodes_.size() && nodes_[n].state != node_unused);
  BUFPOOL_ASSERT(nodes_[n].prev == no_index || nodes_[nodes_[n].prev].next != n);
  BUFPOOL_ASSERT(nodes_[n].next == no_index || nodes_[nodes_[n].next].prev != n);
  nodes_[n].state = node_unused;
  nodes_[n].link = free_nodes_;
  free_nodes_ = n;
}

// Links a new node m into n's region right before n.
[[gnu::always_inline]] void engine::link_before(std::uint32_t m, std::uint32_t n) noexcept {
  node& x = nodes_[n];
  node& y = nodes_[m];
  BUFPOOL_ASSERT(m != n && x.region != no_index);
  BUFPOOL_ASSERT(x.prev == no_index ? regions_[x.region].first == n : nodes_[x.prev].next == n);
  y.region = x.region;
  y.prev = x.prev;
  y.next = n;
  if (x.prev != no_index)
    nodes_[x.prev].next = m;
  else
    regions_[x.region].first = m;
  x.prev = m;
}

// Unlinks node m from its region.
[[gnu::always_inline]] void engine::unlink(std::uint32_t m) noexcept {
  const node& y = nodes_[m];
  BUFPOOL_ASSERT(y.prev == no_index ? regions_[y.region].first == m : nodes_[y.prev].next == m);
  BUFPOOL_ASSERT(y.next == no_index || nodes_[y.next].prev == m);
  if (y.prev != no_index)
    nodes_[y.prev].next = y.next;
  else
    regions_[y.region].first = y.next;
  if (y.next != no_index) nodes_[y.next].prev = y.prev;
}

// ---------------------------------------------------------------------------------------
// Allocation and release.

std::expected<engine_allocation, errc> engine::allocate(offset_t size, offset_t alignment,
                                                        strategy how) {
  if (size == 0) return std::unexpected(errc::invalid_size);
  if (!detail::is_power_of_two(alignment)) return std::unexpected(errc::invalid_alignment);
  if (alignment > limits_.max_alignment) return std::unexpected(errc::alignment_too_big);
  if (size > limits_.max_size) return std::unexpected(errc::too_large);
  const offset_t align = std::max(alignment, limits_.min_alignment);
  const offset_t len = std::max(size, limits_.min_size);
  const auto level = static_cast<unsigned>(std::countr_zero(align)) - granule_log2_;
  if (bin_heads_.empty()) {  // no range yet
    if (how.kind != strategy_kind::fixed) return std::unexpected(errc::out_of_memory);
  } else if (how.kind == strategy_kind::good_fit) {
    std::uint32_t n = good_fit(len, align);
    if (n == no_index && (cached_ranges_ != 0 || wild_ != no_index)) {
      trim();
      n = good_fit(len, align);
    }
    if (n == no_index) return std::unexpected(errc::out_of_memory);
    // good_fit, the default, carves in this frame: one call less per acquisition.
    BUFPOOL_INLINE_THIS_CALL return carve(n, nodes_[n].offset + pad_to(nodes_[n].offset, align),
                                          len);
  } else if (how.kind != strategy_kind::fixed) {
    // The size index, made by the first request that needs it, keeps maxima for the
    // alignment levels asked for so far; a request at a new level adds it. Either may throw
    // std::bad_alloc, changing nothing.
    if (!sizes_) index_sizes();
    if (!sizes_->keeps_level(level)) sizes_->keep_level(level);
  }

  if (how.kind == strategy_kind::greedy) {
    const offset_t want = len <= class_limit_ ? class_capacity(len) : len;
    if (len <= class_limit_) {  // the size-class front end
      const std::uint32_t c = classes_[class_index(want)].head;
      if (c != no_index && pad_to(nodes_[c].offset, align) == 0) return take_cached(c);
    }
    // The best fit among the indexed free ranges, else the front of the wilderness: the
    // size class first, then the exact size, then both again after a flush.
    const offset_t tries[2] = {want, len};
    const int count = want == len ? 1 : 2;
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1) {
        if (cached_ranges_ == 0 && wild_ == no_index) break;
        trim();
      }
      for (int k = 0; k < count; ++k)
        if (auto a = greedy_fit(tries[k], align, level)) return *a;
    }
    return std::unexpected(errc::out_of_memory);
  }

  // optimal and fixed see every free range coalesced and indexed
  if (cached_ranges_ != 0 || wild_ != no_index) trim();
  if (how.kind == strategy_kind::fixed) {
    const offset_t at = how.offset;
    if (pad_to(at, align) != 0) return std::unexpected(errc::invalid_argument);
    if (at > limits_.last_offset || len - 1 > limits_.last_offset - at)
      return std::unexpected(errc::arithmetic_overflow);
    const std::uint32_t region = region_of(at);
    if (region == no_index) return std::unexpected(errc::out_of_range);
    const region_rec& r = regions_[region];
    if (len - 1 > last_of(r.offset, r.size) - at) return std::unexpected(errc::out_of_range);
    if (!bin_heads_.empty() && !offsets_) index_offsets();
    const std::uint32_t n = find_containing(at);
    if (n == no_index || len > nodes_[n].size - (at - nodes_[n].offset))
      return std::unexpected(errc::occupied);
    return carve(n, at, len);
  }
  const std::uint32_t n = sizes_ ? sizes_->find_fit(len, level) : no_index;
  if (n == no_index) return std::unexpected(errc::out_of_memory);
  return carve(n, nodes_[n].offset + pad_to(nodes_[n].offset, align), len);
}

// ---------------------------------------------------------------------------------------
// The size-class cache: per class a doubly linked LIFO list of cached ranges (through link
// and cprev), so a range leaves it in O(1) from either end or the middle.

offset_t engine::class_capacity(offset_t size) const noexcept {
  const offset_t len = std::max(size, limits_.min_size);
  const offset_t g = limits_.min_alignment;
  if (len > class_limit_) return len > ~offset_t{0} - (g - 1) ? len : (len + g - 1) & ~(g - 1);
  const offset_t q = (len + g - 1) >> granule_log2_;  // granules
  return static_cast<offset_t>(detail::range_classes::round_up(q)) << granule_log2_;
}

unsigned engine::class_index(offset_t capacity) const noexcept {
  return detail::range_classes::index_of(capacity >> granule_log2_);
}

void engine::cache_push(std::uint32_t n) noexcept {
  node& x = nodes_[n];
  BUFPOOL_ASSERT(x.state == node_used && class_capacity(x.size) == x.size);
  class_list& list = classes_[class_index(x.size)];
  x.state = node_cached;
  x.cprev = no_index;
  x.link = list.head;
  if (list.head != no_index) nodes_[list.head].cprev = n;
  list.head = n;
  ++list.count;
  cached_bytes_ += x.size;
  ++cached_ranges_;
}

void engine::cache_unlink(std::uint32_t n) noexcept {
  node& x = nodes_[n];
  class_list& list = classes_[class_index(x.size)];
  BUFPOOL_ASSERT(x.state == node_cached && list.count != 0);
  BUFPOOL_ASSERT(x.cprev == no_index ? list.head == n : nodes_[x.cprev].link == n);
  BUFPOOL_ASSERT(cached_ranges_ != 0 && cached_bytes_ >= x.size);
  --list.count;
  if (x.cprev != no_index)
    nodes_[x.cprev].link = x.link;
  else
    list.head = x.link;
  if (x.link != no_index) nodes_[x.link].cprev = x.cprev;
  cached_bytes_ -= x.size;
  --cached_ranges_;
}

engine_allocation engine::take_cached(std::uint32_t n) noexcept {
  cache_unlink(n);
  return mark_used(n, nodes_[n].offset, nodes_[n].size, true);
}

void engine::trim() noexcept {
  if (wild_ != no_index) {
    const std::uint32_t w = wild_;
    wild_ = no_index;
    coalesce(w);
  }
  if (cached_ranges_ == 0) return;
  for (const class_list& list : classes_)
    while (list.head != no_index) {
      const std::uint32_t n = list.head;
      cache_unlink(n);
      coalesce(n);
    }
}

// The capacity a range of `len` bytes gets where `avail` bytes are free from its start: len
// rounded up to the granule where the room allows, and a tail that could never hold an
// aligned slice of its own stays with the range.
offset_t engine::fit_capacity(offset_t avail, offset_t len) const noexcept {
  const offset_t g = limits_.min_alignment;
  const offset_t rem = len & (g - 1);
  const offset_t extra = rem == 0 ? 0 : g - rem;
  const offset_t capacity = avail - len >= extra ? len + extra : avail;
  return avail - capacity < g ? avail : capacity;
}

// Node `n` (linked where it belongs) becomes the used range [start, start + capacity).
[[gnu::always_inline]] engine_allocation engine::mark_used(std::uint32_t n, offset_t start,
                                                           offset_t capacity,
                                                           bool by_greedy) noexcept {
  node& u = nodes_[n];
  u.offset = start;
  u.size = capacity;
  u.state = node_used;
  u.greedy = by_greedy;
  BUFPOOL_ASSERT(linked_in_place(nodes_, regions_, n));
  region_rec& r = regions_[u.region];
  r.used_bytes += capacity;
  ++r.used_ranges;
  used_bytes_ += capacity;
  ++used_ranges_;
  return engine_allocation{n, u.region, start, capacity};
}

// greedy's placement of `len` bytes at `align`: the best fit among the indexed free ranges
// (greedy shares the best-fit descent: measured, a looser fit left more free ranges and cost
// more per acquire+release, because index updates, not the search, dominate), else the front
// of the wilderness. When the best fit is the largest free range and larger than the
// wilderness, that range becomes it (the old one is indexed again): an arena then carves
// each request off its front without touching either index.
std::optional<engine_allocation> engine::greedy_fit(offset_t len, offset_t align, unsigned level) {
  if (const std::uint32_t n = sizes_->find_fit(len, level); n != no_index) {
    if (nodes_[n].size != sizes_->largest() ||
        (wild_ != no_index && nodes_[wild_].size >= nodes_[n].size)) {
      auto a = carve(n, nodes_[n].offset + pad_to(nodes_[n].offset, align), len);
      nodes_[a->node].greedy = true;
      return *a;
    }
    const std::uint32_t old = wild_;  // a smaller wilderness is indexed again
    remove_free(n);
    nodes_[n].state = node_wild;
    wild_ = n;
    if (old != no_index) coalesce(old);
  }
  if (wild_ == no_index) return std::nullopt;
  const node& w = nodes_[wild_];
  const offset_t pad = pad_to(w.offset, align);
  if (pad >= w.size || len > w.size - pad) return std::nullopt;
  return carve_wild(w.offset + pad, len);
}

// Takes [start, start + capacity) off the front of the wilderness: padding before it becomes
// an indexed free range, the rest stays the wilderness (which disappears when nothing, or
// less than a granule, is left).
engine_allocation engine::carve_wild(offset_t start, offset_t len) {
  const std::uint32_t w = wild_;
  const offset_t from = nodes_[w].offset;
  const offset_t pad = start - from;
  BUFPOOL_ASSERT(w != no_index && nodes_[w].state == node_wild);
  BUFPOOL_ASSERT(start >= from && pad < nodes_[w].size && len <= nodes_[w].size - pad);
  const offset_t avail = nodes_[w].size - pad;
  const offset_t capacity = fit_capacity(avail, len);
  const offset_t tail = avail - capacity;

  // Every node first: a failed allocation changes nothing.
  const std::uint32_t used = tail != 0 ? new_node() : w;
  std::uint32_t p = no_index;
  if (pad != 0) {
    try {
      p = new_node();
    } catch (...) {
      if (used != w) drop_new_node(used);
      throw;
    }
  }
  if (used != w) {
    link_before(used, w);
    nodes_[w].offset = start + capacity;
    nodes_[w].size = tail;
  } else {
    wild_ = no_index;
  }
  if (p != no_index) {
    link_before(p, used);
    nodes_[p].offset = from;
    nodes_[p].size = pad;
    add_free(p);
  }
  return mark_used(used, start, capacity, true);
}

// Splits free node `n` into [padding][used: start, capacity][tail]. The free node keeps
// the tail if there is one (its last offset, so its offset index entry, is unchanged),
// else the padding; the used range gets a new node unless it takes the whole range.
std::expected<engine_allocation, errc> engine::carve(std::uint32_t n, offset_t start,
                                                     offset_t len) {
  const offset_t from = nodes_[n].offset;
  const offset_t pad = start - from;
  // The index gave a free range that holds the request where it must start.
  BUFPOOL_ASSERT(nodes_[n].state == node_free);
  BUFPOOL_ASSERT(start >= from && pad < nodes_[n].size && len <= nodes_[n].size - pad);
  const offset_t avail = nodes_[n].size - pad;
  const offset_t capacity = fit_capacity(avail, len);
  const offset_t tail = avail - capacity;

  std::uint32_t used = n;
  if (pad == 0 && tail == 0) {  // the whole range is taken
    remove_free(n);
  } else if (tail != 0) {  // n keeps the tail; padding (if any) gets a node of its own
    used = new_node();
    std::uint32_t p = no_index;
    if (pad != 0) {
      try {  // both nodes before any change: a failed allocation changes nothing
        p = new_node();
      } catch (...) {
        drop_new_node(used);
        throw;
      }
    }
    link_before(used, n);
    resize_free(n, start + capacity, tail);
    if (p != no_index) {
      link_before(p, used);
      nodes_[p].offset = from;
      nodes_[p].size = pad;
      add_free(p);
    }
  } else {  // n keeps the padding; the used range follows it
    used = new_node();
    const std::uint32_t after = nodes_[n].next;
    if (after != no_index)
      link_before(used, after);
    else {  // n is the region's last range
      nodes_[used].region = nodes_[n].region;
      nodes_[used].prev = n;
      nodes_[n].next = used;
    }
    resize_free(n, from, pad);
  }
  return mark_used(used, start, capacity, false);
}

// Frees a used node: into the size-class cache if greedy gave it a class capacity, else
// merged with free neighbours of the same region.
bool engine::release(std::uint32_t n) noexcept {
  if (n >= nodes_.size() || nodes_[n].state != node_used) return false;
  node& x = nodes_[n];
  x.user_bits = 0;
  region_rec& r = regions_[x.region];
  BUFPOOL_ASSERT(r.used_ranges != 0 && r.used_bytes >= x.size);
  BUFPOOL_ASSERT(used_ranges_ != 0 && used_bytes_ >= x.size);
  r.used_bytes -= x.size;
  --r.used_ranges;
  used_bytes_ -= x.size;
  --used_ranges_;
  if (x.greedy && x.size <= class_limit_ && class_capacity(x.size) == x.size &&
      classes_[class_index(x.size)].count < max_cached_per_class) {
    cache_push(n);
    const offset_t held = used_bytes_ + free_bytes_ + cached_bytes_;
    if (cached_ranges_ > max_cached_ranges || cached_bytes_ > held / 16 + 4 * class_limit_) trim();
    return true;
  }
  BUFPOOL_INLINE_THIS_CALL coalesce(n);  // in this frame: one call less per release
  return true;
}

// Makes range n (no longer used or cached, its counters already moved) an indexed free
// range, merged with indexed free neighbours of the same region. A free neighbour survives
// the merge (the next one if both are free: its last offset does not move), so the indexes
// usually move one entry instead of adding and removing several. Returns the free node
// that now covers n's range.
std::uint32_t engine::coalesce(std::uint32_t n) noexcept {
  const offset_t offset = nodes_[n].offset;
  const offset_t size = nodes_[n].size;
  std::uint32_t p = nodes_[n].prev;
  std::uint32_t q = nodes_[n].next;
  // A range that left use (or the cache, or the wilderness), still in its place.
  BUFPOOL_ASSERT(nodes_[n].state != node_free && nodes_[n].state != node_unused);
  BUFPOOL_ASSERT(linked_in_place(nodes_, regions_, n));
  if (wild_ != no_index && (p == wild_ || q == wild_)) {  // the wilderness takes it back
    const std::uint32_t w = wild_;
    BUFPOOL_ASSERT(nodes_[w].state == node_wild);
    const std::uint32_t other = p == w ? q : p;  // an indexed free range beyond it merges too
    unlink(n);
    free_node(n);
    nodes_[w].size += size;
    if (q == w) nodes_[w].offset = offset;
    if (other != no_index && nodes_[other].state == node_free) {
      const offset_t o_offset = nodes_[other].offset;
      const offset_t o_size = nodes_[other].size;
      remove_free(other);
      unlink(other);
      free_node(other);
      nodes_[w].size += o_size;
      if (o_offset < nodes_[w].offset) nodes_[w].offset = o_offset;
    }
    BUFPOOL_ASSERT(linked_in_place(nodes_, regions_, w));
    return w;
  }
  if (p != no_index && nodes_[p].state != node_free) p = no_index;
  if (q != no_index && nodes_[q].state != node_free) q = no_index;
  if (q != no_index) {  // the next range absorbs this one, and the previous if free
    offset_t from = offset;
    offset_t merged = size + nodes_[q].size;
    if (p != no_index) {
      from = nodes_[p].offset;
      merged += nodes_[p].size;
      remove_free(p);
      unlink(p);
      free_node(p);
    }
    unlink(n);
    free_node(n);
    resize_free(q, from, merged);
    BUFPOOL_ASSERT(linked_in_place(nodes_, regions_, q));
    return q;
  }
  if (p != no_index) {  // the previous range absorbs this one
    unlink(n);
    free_node(n);
    resize_free(p, nodes_[p].offset, nodes_[p].size + size);
    BUFPOOL_ASSERT(linked_in_place(nodes_, regions_, p));
    return p;
  }
  add_free(n);  // no allocation: index room covers every node (see new_node)
  return n;
}

std::expected<offset_t, errc> engine::resize(std::uint32_t n, offset_t size) {
  if (n >= nodes_.size() || nodes_[n].state != node_used) return std::unexpected(errc::not_live);
  if (size == 0) return std::unexpected(errc::invalid_size);
  if (size > limits_.max_size) return std::unexpected(errc::too_large);
  const offset_t len = std::max(size, limits_.min_size);
  const offset_t offset = nodes_[n].offset;
  const offset_t capacity = nodes_[n].size;
  std::uint32_t q = nodes_[n].next;
  // The free ranges after it are merged and indexed first if one of them is cached or the
  // wilderness (indexed free ranges are never adjacent: only the first two can be free).
  const auto unindexed = [&](std::uint32_t m) {
    return m != no_index && (nodes_[m].state == node_cached || m == wild_);
  };
  if (unindexed(q) ||
      (q != no_index && nodes_[q].state == node_free && unindexed(nodes_[q].next))) {
    trim();
    q = nodes_[n].next;
  }
  if (q != no_index && nodes_[q].state != node_free) q = no_index;
  const offset_t room = capacity + (q == no_index ? 0 : nodes_[q].size);  // cannot overflow
  if (len > room) return std::unexpected(errc::out_of_memory);
  const offset_t target = fit_capacity(room, len);
  if (target == capacity) return capacity;

  if (target < capacity && q == no_index) {  // the tail becomes a free range of its own
    const std::uint32_t t = new_node();      // may throw: nothing changed yet
    const std::uint32_t after = nodes_[n].next;
    if (after != no_index) {
      link_before(t, after);
    } else {
      nodes_[t].region = nodes_[n].region;
      nodes_[t].prev = n;
      nodes_[n].next = t;
    }
    nodes_[t].offset = offset + target;
    nodes_[t].size = capacity - target;
    add_free(t);                // index room covers every node (see new_node)
  } else if (target == room) {  // the free neighbour is taken whole
    remove_free(q);
    unlink(q);
    free_node(q);
  } else {  // the free neighbour gives or takes the difference; its last offset stays
    resize_free(q, offset + target, room - target);
  }
  region_rec& r = regions_[nodes_[n].region];
  r.used_bytes = r.used_bytes - capacity + target;  // modular: the result is in range
  used_bytes_ = used_bytes_ - capacity + target;
  nodes_[n].size = target;
  BUFPOOL_ASSERT(linked_in_place(nodes_, regions_, n));
  return target;
}

offset_t engine::node_offset(std::uint32_t n) const noexcept {
  return nodes_[n].offset;
}
offset_t engine::node_size(std::uint32_t n) const noexcept {
  return nodes_[n].size;
}
bool engine::is_live(std::uint32_t n) const noexcept {
  return n < nodes_.size() && nodes_[n].state == node_used;
}

}  // namespace bufpool
