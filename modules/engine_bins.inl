// SPDX-License-Identifier: MIT
// The engine's hot bookkeeping of free ranges: the size bins (two-level bitmaps over 8 bins
// per doubling), good_fit's O(1) search of them, and the moves of a free range in and out of
// the bins and the indexes. Included by engine.cpp alone, inside its namespace, so that the
// placements and releases there, which call these on every acquisition and release, inline
// them instead of paying a call for each step.

// How many ranges of the bin just below the guaranteed ones good_fit looks at: a bounded
// search (no scan of a whole bin on any path) that finds a range holding the request when
// no bin above has one, so a pool is not reported full while such a range is at hand.
namespace {
constexpr unsigned near_bin_tries = 8;
}  // namespace

// A size of g granules is in bin g below 8, else in bin 8 * (e - 2) + m, where e is the
// position of g's top bit and m the 3 bits below it: bin b holds the sizes from
// bin_floor(b) up to bin_floor(b + 1) - 1 granules.
[[gnu::always_inline]] unsigned engine::bin_of(offset_t granules) noexcept {
  if (granules < 8) return static_cast<unsigned>(granules);
  // Not std::bit_width: granules is not 0, and without -mlzcnt its test for 0 is a branch.
  const auto e = 63U - static_cast<unsigned>(__builtin_clzll(granules));
  return 8 * (e - 2) + static_cast<unsigned>((granules >> (e - 3)) & 7);
}

[[gnu::always_inline]] offset_t engine::bin_floor(unsigned bin) noexcept {
  if (bin < 8) return bin;
  const unsigned e = bin / 8 + 2;
  return (offset_t{8} + (bin & 7)) << (e - 3);
}

// The bin of a free range: that of the whole granules it holds from its first granule
// boundary, so every range of bin b holds bin_floor(b) granules at any alignment up to the
// granule even where it starts off one (as a region may).
[[gnu::always_inline]] unsigned engine::bin_of_range(offset_t offset,
                                                     offset_t size) const noexcept {
  const offset_t lead = (offset_t{0} - offset) & (limits_.min_alignment - 1);
  return bin_of(lead < size ? (size - lead) >> granule_log2_ : 0);
}

[[gnu::always_inline]] void engine::bin_link(std::uint32_t n, unsigned b) noexcept {
  node& x = nodes_[n];
  BUFPOOL_ASSERT(b == bin_of_range(x.offset, x.size));
  x.bin = static_cast<std::uint16_t>(b);
  x.cprev = no_index;
  x.link = bin_heads_[b];
  if (x.link != no_index) nodes_[x.link].cprev = n;
  bin_heads_[b] = n;
  bin_masks_[b / 8] = static_cast<std::uint8_t>(bin_masks_[b / 8] | 1U << (b % 8));
  bin_groups_ |= std::uint64_t{1} << (b / 8);
}

[[gnu::always_inline]] void engine::bin_unlink(std::uint32_t n) noexcept {
  node& x = nodes_[n];
  const unsigned b = x.bin;
  BUFPOOL_ASSERT(b == bin_of_range(x.offset, x.size));
  BUFPOOL_ASSERT(x.cprev != no_index ? nodes_[x.cprev].link == n : bin_heads_[b] == n);
  if (x.cprev != no_index)
    nodes_[x.cprev].link = x.link;
  else
    bin_heads_[b] = x.link;
  if (x.link != no_index) nodes_[x.link].cprev = x.cprev;
  x.link = x.cprev = no_index;
  if (bin_heads_[b] == no_index) {
    bin_masks_[b / 8] = static_cast<std::uint8_t>(bin_masks_[b / 8] & ~(1U << (b % 8)));
    if (bin_masks_[b / 8] == 0) bin_groups_ &= ~(std::uint64_t{1} << (b / 8));
  }
}

// The first range of the first non-empty bin whose every range holds `len` bytes at `align`
// wherever it starts (its size covers the request plus the largest padding, align - granule),
// else the first of a few ranges of the bin below that holds it. O(1).
[[gnu::always_inline]] std::uint32_t engine::good_fit(offset_t len, offset_t align) const noexcept {
  if (bin_heads_.empty()) return no_index;  // no range yet
  const offset_t g = limits_.min_alignment;
  const offset_t pad = align - g;  // the most a granule-aligned start needs
  const offset_t most = ~offset_t{0} >> granule_log2_;
  const offset_t len_g = (len >> granule_log2_) + ((len & (g - 1)) != 0);
  const offset_t pad_g = pad >> granule_log2_;
  // No range is sure to hold a request whose size plus padding exceeds the offset type; the
  // largest bin may still hold one whose start needs less padding.
  const bool sure_fits_type = len_g <= most - pad_g;
  const offset_t need_g = sure_fits_type ? len_g + pad_g : most;
  const unsigned below = bin_of(need_g);
  // The bins from b on hold need_g granules or more.
  const unsigned b = bin_floor(below) < need_g ? below + 1 : below;
  if (sure_fits_type && b < bin_count) {
    unsigned k = b / 8;
    unsigned mask = bin_masks_[k] & (0xffU << (b % 8));
    if (mask == 0 && k + 1 < 64) {
      const std::uint64_t groups = bin_groups_ & (~std::uint64_t{0} << (k + 1));
      if (groups != 0) {
        k = static_cast<unsigned>(__builtin_ctzll(groups));  // not 0: no test for it
        mask = bin_masks_[k];
      }
    }
    if (mask != 0) return bin_heads_[8 * k + static_cast<unsigned>(__builtin_ctz(mask))];
  }
  if (below < bin_count) {
    unsigned tries = 0;
    for (std::uint32_t n = bin_heads_[below]; n != no_index && tries < near_bin_tries;
         n = nodes_[n].link, ++tries) {
      const node& x = nodes_[n];
      const offset_t lead = pad_to(x.offset, align);
      if (lead < x.size && x.size - lead >= len) return n;
    }
  }
  return no_index;
}

// ---------------------------------------------------------------------------------------
// Free ranges in and out of the bins and the indexes, with the counters.

[[gnu::always_inline]] void engine::add_free(std::uint32_t n) {
  node& x = nodes_[n];
  BUFPOOL_ASSERT(x.state != node_free && x.size != 0 && x.region < regions_.size());
  x.state = node_free;
  bin_link(n, bin_of_range(x.offset, x.size));
  if (sizes_) sizes_->insert(x.size, x.offset, n);
  if (offsets_) offsets_->insert(last_of(x.offset, x.size), 0, n);
  region_rec& r = regions_[x.region];
  r.free_bytes += x.size;
  ++r.free_ranges;
  free_bytes_ += x.size;
  ++free_ranges_;
}

[[gnu::always_inline]] void engine::remove_free(std::uint32_t n) noexcept {
  node& x = nodes_[n];
  BUFPOOL_ASSERT(x.state == node_free);
  bin_unlink(n);
  if (sizes_) sizes_->erase(x.size, x.offset);
  if (offsets_) offsets_->erase(last_of(x.offset, x.size), 0);
  region_rec& r = regions_[x.region];
  BUFPOOL_ASSERT(r.free_ranges != 0 && r.free_bytes >= x.size);
  BUFPOOL_ASSERT(free_ranges_ != 0 && free_bytes_ >= x.size);
  r.free_bytes -= x.size;
  --r.free_ranges;
  free_bytes_ -= x.size;
  --free_ranges_;
}

// Free node n now covers [offset, offset + size), which passes no other free range: the
// size index moves its entry; the offset index changes only if its last offset moved.
[[gnu::always_inline]] void engine::resize_free(std::uint32_t n, offset_t offset,
                                                offset_t size) noexcept {
  node& x = nodes_[n];
  BUFPOOL_ASSERT(x.state == node_free && size != 0);
  const unsigned old_bin = x.bin;
  const unsigned new_bin = bin_of_range(offset, size);
  if (old_bin != new_bin) bin_unlink(n);
  if (sizes_) sizes_->erase(x.size, x.offset);
  const offset_t old_last = last_of(x.offset, x.size);
  const offset_t new_last = last_of(offset, size);
  if (offsets_ && old_last != new_last) offsets_->replace(old_last, 0, new_last, 0);
  region_rec& r = regions_[x.region];
  r.free_bytes = r.free_bytes - x.size + size;  // modular: the result is in range
  free_bytes_ = free_bytes_ - x.size + size;
  x.offset = offset;
  x.size = size;
  if (old_bin != new_bin) bin_link(n, new_bin);
  if (sizes_) sizes_->insert(size, offset, n);
}
