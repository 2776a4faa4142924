// SPDX-License-Identifier: MIT
// The engine's indexes of free ranges, made when first needed: the size bins and class lists
// (with the first node), and the B+trees by size and by offset (with the first strategy that
// searches them); the lookups and checks over them. Their upkeep on every acquisition and
// release is in engine_bins.inl, compiled into engine.cpp.
module;
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <expected>
#include <memory>
#include <memory_resource>
#include <source_location>
#include <string>
#include <utility>
#include <vector>

#include "internal_assert.hpp"
module bufpool;

import :bptree;
import :range_nodes;

namespace bufpool {

// Nothing is indexed before the first node: the bins and class lists are made with it.
void engine::make_indexes() {
  detail::meta_vector<class_list> classes(metadata_);
  if (class_limit_ != 0) classes.assign(class_index(class_limit_) + 1, class_list{});
  detail::meta_vector<std::uint32_t> bins(metadata_);
  bins.assign(bin_count, no_index);
  classes_.swap(classes);  // one resource: nothing is copied
  bin_heads_.swap(bins);
}

// The best-fit descent of optimal and greedy needs the size index: it is made from the free
// ranges when the first such request comes, with the room reserved for every node, and kept
// up to date from then on. Strong guarantee.
void engine::index_sizes() {
  auto sizes =
      detail::make_meta<detail::bptree<true>>(metadata_, limits_.min_alignment, levels_, metadata_);
  sizes->reserve(reserved_);
  for (std::uint32_t n = 0; n < nodes_.size(); ++n)
    if (nodes_[n].state == node_free) sizes->insert(nodes_[n].size, nodes_[n].offset, n);
  sizes_ = std::move(sizes);
}

// Only `fixed` looks free ranges up by offset (coalescing follows the ranges' links): the
// offset index is made from the free ranges when the first fixed request comes, with the room
// the size index has, and kept up to date from then on. Strong guarantee.
void engine::index_offsets() {
  auto offsets =
      detail::make_meta<detail::bptree<false>>(metadata_, limits_.min_alignment, 0u, metadata_);
  offsets->reserve(reserved_);
  for (std::uint32_t n = 0; n < nodes_.size(); ++n)
    if (nodes_[n].state == node_free)
      offsets->insert(last_of(nodes_[n].offset, nodes_[n].size), 0, n);
  offsets_ = std::move(offsets);
}

// The free node whose range contains `offset`, or no_index.
std::uint32_t engine::find_containing(offset_t offset) const noexcept {
  BUFPOOL_ASSERT(offsets_ || bin_heads_.empty());   // index_offsets() came first
  if (!offsets_) return no_index;                   // no range yet
  const auto e = offsets_->lower_bound(offset, 0);  // the first free range ending at or after
  if (!e || nodes_[e->node].offset > offset) return no_index;
  // The entry found names a free range that ends where its key says.
  BUFPOOL_ASSERT(nodes_[e->node].state == node_free &&
                 last_of(nodes_[e->node].offset, nodes_[e->node].size) == e->key);
  return e->node;
}

// ---------------------------------------------------------------------------------------
// The size bins.

// The size of the largest free range in the bins: the largest in the highest non-empty bin
// or the bin just below it (whose ranges hold a granule less but may start off the granule,
// so span more bytes). O(ranges of those two bins).
offset_t engine::largest_binned() const noexcept {
  if (bin_groups_ == 0) return 0;
  const auto k = static_cast<unsigned>(std::bit_width(bin_groups_)) - 1;
  const auto top = 8 * k + static_cast<unsigned>(std::bit_width(unsigned{bin_masks_[k]})) - 1;
  offset_t largest = 0;
  for (unsigned b = top == 0 ? 0 : top - 1; b <= top; ++b)
    for (std::uint32_t n = bin_heads_[b]; n != no_index; n = nodes_[n].link)
      largest = std::max(largest, nodes_[n].size);
  return largest;
}

// Every free range is in its bin once, the lists are well linked and the bitmaps say which
// bins are not empty. O(free ranges + bins).
std::expected<void, std::string> engine::validate_bins() const {
  auto fail = [](const char* what) { return std::unexpected(std::string(what)); };
  if (bin_heads_.empty()) {
    if (free_ranges_ != 0 || bin_groups_ != 0) return fail("bins: free ranges without bins");
    return {};
  }
  std::size_t listed = 0;
  for (unsigned b = 0; b < bin_count; ++b) {
    const bool marked = (bin_masks_[b / 8] >> (b % 8) & 1U) != 0;
    if (marked != (bin_heads_[b] != no_index)) return fail("bins: bitmap wrong");
    for (std::uint32_t n = bin_heads_[b], before = no_index; n != no_index;
         before = n, n = nodes_[n].link) {
      if (n >= nodes_.size() || nodes_[n].state != node_free || nodes_[n].cprev != before)
        return fail("bins: broken list");
      if (bin_of_range(nodes_[n].offset, nodes_[n].size) != b)
        return fail("bins: range in the wrong bin");
      if (nodes_[n].bin != b) return fail("bins: a range's recorded bin is not its list's");
      if (++listed > free_ranges_) return fail("bins: a list loops or holds too many");
    }
  }
  for (unsigned k = 0; k < bin_count / 8; ++k)
    if (((bin_groups_ >> k & 1U) != 0) != (bin_masks_[k] != 0)) return fail("bins: groups wrong");
  if (listed != free_ranges_) return fail("bins: a free range is in no bin");
  return {};
}

}  // namespace bufpool
