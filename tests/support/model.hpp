// SPDX-License-Identifier: MIT
// A slow, obviously correct reference model of bufpool::engine for differential tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

// The model names no bufpool type, so it can be included before `import bufpool;`.
namespace bufpool_test {

using u64 = std::uint64_t;

/// Padding from `offset` up to the next multiple of `alignment` (a power of two).
inline u64 model_pad(u64 offset, u64 alignment) {
  const u64 rem = offset % alignment;
  return rem == 0 ? 0 : alignment - rem;
}

/// What the model expects from a fixed request, in the engine's order of checks.
enum class model_error {
  none,
  invalid_argument,     // misaligned offset
  arithmetic_overflow,  // offset + size beyond the integer
  out_of_range,         // not inside one region
  occupied,             // overlaps a used range
};

/// Where an allocation lands: the free range it is carved from, its start and capacity.
struct model_placement {
  std::uint32_t region = 0;
  u64 range_offset = 0;  // the free range that is split
  u64 range_size = 0;
  u64 start = 0;
  u64 capacity = 0;
};

struct model_fixed {
  model_error error = model_error::none;
  model_placement placement;
};

/// Totals as the engine reports them.
struct model_totals {
  u64 used_bytes = 0;
  u64 free_bytes = 0;
  u64 pending_bytes = 0;
  u64 largest_free = 0;
  std::size_t free_ranges = 0;
  std::size_t used_ranges = 0;
};

/// Every region is a std::map offset -> (size, used); free ranges are also kept in a
/// (size, offset) set so best fit is a plain scan from the smallest candidate upwards. The
/// offset space is a map of occupied spans (regions and pending reservations): holes below
/// the highest span are the gaps of cancelled reservations.
class engine_model {
 public:
  struct range {
    u64 size = 0;
    bool used = false;
  };
  struct region {
    u64 offset = 0;
    u64 size = 0;
    std::map<u64, range> ranges;
    u64 used_bytes = 0;
    u64 free_bytes = 0;
    std::size_t used_ranges = 0;
    std::size_t free_ranges = 0;
  };

  engine_model(u64 last_offset, u64 min_alignment)
      : last_offset_(last_offset), granule_(min_alignment) {}

  // ---- Offset space ---------------------------------------------------------------------

  /// The offset reserve(size) must return: the end of the used space if it fits, else the
  /// smallest gap that fits (lowest offset among equal sizes), else nothing.
  [[nodiscard]] std::optional<u64> expected_reserve(u64 size) const {
    if (size == 0) return std::nullopt;
    if (spans_.empty()) {
      if (size - 1 <= last_offset_) return u64{0};
    } else {
      const auto& [off, sp] = *spans_.rbegin();
      const u64 last = off + (sp.size - 1);
      if (last < last_offset_ && size - 1 <= last_offset_ - (last + 1)) return last + 1;
    }
    std::optional<u64> best;
    u64 best_size = 0;
    u64 hole_start = 0;
    for (const auto& [off, sp] : spans_) {
      const u64 hole = off - hole_start;
      if (hole >= size && (!best || hole < best_size)) {
        best = hole_start;
        best_size = hole;
      }
      hole_start = off + sp.size;  // never past a later span, so never wraps while used
    }
    return best;
  }
  void reserve_at(u64 offset, u64 size) {
    spans_.emplace(offset, span{size, true});
    pending_bytes_ += size;
  }
  void cancel(u64 offset, u64 size) {
    spans_.erase(offset);
    pending_bytes_ -= size;
  }
  std::uint32_t publish(u64 offset, u64 size) {
    spans_[offset].pending = false;
    pending_bytes_ -= size;
    const auto id = static_cast<std::uint32_t>(regions_.size());
    region r;
    r.offset = offset;
    r.size = size;
    regions_.push_back(std::move(r));
    region_by_offset_.emplace(offset, id);
    add_free(id, offset, size);
    return id;
  }

  // ---- Queries --------------------------------------------------------------------------

  /// The capacity the engine must give: size rounded up to the granule where the free range
  /// allows, the whole rest if the leftover tail would be smaller than the granule.
  [[nodiscard]] u64 expected_capacity(u64 avail, u64 len) const {
    const u64 rem = len % granule_;
    const u64 extra = rem == 0 ? 0 : granule_ - rem;
    if (extra > avail - len) return avail;  // cannot round up: take everything
    const u64 cap = len + extra;
    return avail - cap < granule_ ? avail : cap;
  }

  /// Exact best fit: the smallest free range that holds `len` at `align` (lowest offset
  /// among equal sizes), carved at its first aligned offset.
  [[nodiscard]] std::optional<model_placement> best_fit(u64 len, u64 align) const {
    for (auto it = free_by_size_.lower_bound({len, 0}); it != free_by_size_.end(); ++it) {
      const auto [size, off] = *it;
      const u64 pad = model_pad(off, align);
      if (pad < size && size - pad >= len) return place(off, off + pad, len);
    }
    return std::nullopt;
  }

  /// The free range containing `offset` as (region, range offset, range size), if any.
  [[nodiscard]] std::optional<model_placement> free_range_at(u64 offset) const {
    const auto reg = region_at(offset);
    if (!reg) return std::nullopt;
    const auto& ranges = regions_[*reg].ranges;
    auto it = ranges.upper_bound(offset);
    --it;  // the region's first range starts at its offset, so this exists
    if (it->second.used) return std::nullopt;
    return model_placement{*reg, it->first, it->second.size, offset, 0};
  }

  /// The exact outcome of fixed(at) for `len` bytes at `align`.
  [[nodiscard]] model_fixed fixed(u64 at, u64 len, u64 align) const {
    if (model_pad(at, align) != 0) return {model_error::invalid_argument, {}};
    if (at > last_offset_ || len - 1 > last_offset_ - at)
      return {model_error::arithmetic_overflow, {}};
    const auto reg = region_at(at);
    if (!reg) return {model_error::out_of_range, {}};
    const region& r = regions_[*reg];
    if (len - 1 > (r.offset + (r.size - 1)) - at) return {model_error::out_of_range, {}};
    const auto fr = free_range_at(at);
    if (!fr || len > fr->range_size - (at - fr->range_offset)) return {model_error::occupied, {}};
    return {model_error::none, place(fr->range_offset, at, len)};
  }

  /// The region containing `offset`, if any.
  [[nodiscard]] std::optional<std::uint32_t> region_at(u64 offset) const {
    auto it = region_by_offset_.upper_bound(offset);
    if (it == region_by_offset_.begin()) return std::nullopt;
    --it;
    const region& r = regions_[it->second];
    if (offset - r.offset < r.size) return it->second;
    return std::nullopt;
  }

  // ---- Updates --------------------------------------------------------------------------

  /// Carves a placement out of its free range: [padding][used][tail].
  void take(const model_placement& p) {
    region& r = regions_[p.region];
    remove_free(p.region, p.range_offset);
    const u64 pad = p.start - p.range_offset;
    const u64 tail = p.range_size - pad - p.capacity;
    if (pad != 0) add_free(p.region, p.range_offset, pad);
    r.ranges[p.start] = range{p.capacity, true};
    r.used_bytes += p.capacity;
    ++r.used_ranges;
    used_bytes_ += p.capacity;
    ++used_ranges_;
    if (tail != 0) add_free(p.region, p.start + p.capacity, tail);
  }

  /// Frees the used range at `start` and merges it with free neighbours of its region.
  void give(std::uint32_t reg, u64 start) {
    region& r = regions_[reg];
    auto it = r.ranges.find(start);
    u64 off = it->first;
    u64 size = it->second.size;
    r.used_bytes -= size;
    --r.used_ranges;
    used_bytes_ -= size;
    --used_ranges_;
    r.ranges.erase(it);
    auto next = r.ranges.lower_bound(start);
    if (next != r.ranges.end() && !next->second.used) {
      const u64 next_size = next->second.size;
      remove_free(reg, next->first);
      size += next_size;
    }
    next = r.ranges.lower_bound(start);
    if (next != r.ranges.begin()) {
      const auto prev = std::prev(next);
      if (!prev->second.used) {
        off = prev->first;
        size += prev->second.size;
        remove_free(reg, prev->first);
      }
    }
    add_free(reg, off, size);
  }

  // ---- Inspection -----------------------------------------------------------------------

  [[nodiscard]] model_totals totals() const {
    model_totals t;
    t.used_bytes = used_bytes_;
    t.free_bytes = free_bytes_;
    t.pending_bytes = pending_bytes_;
    t.largest_free = free_by_size_.empty() ? 0 : free_by_size_.rbegin()->first;
    t.free_ranges = free_by_size_.size();
    t.used_ranges = used_ranges_;
    return t;
  }
  [[nodiscard]] const std::vector<region>& regions() const { return regions_; }
  [[nodiscard]] std::size_t free_range_count() const { return free_by_size_.size(); }
  /// Pending reservations (offset -> size).
  [[nodiscard]] std::vector<std::pair<u64, u64>> pending() const {
    std::vector<std::pair<u64, u64>> out;
    for (const auto& [off, sp] : spans_)
      if (sp.pending) out.emplace_back(off, sp.size);
    return out;
  }

 private:
  struct span {
    u64 size = 0;
    bool pending = true;
  };

  [[nodiscard]] model_placement place(u64 range_offset, u64 start, u64 len) const {
    const auto reg = *region_at(range_offset);
    const u64 range_size = regions_[reg].ranges.at(range_offset).size;
    const u64 avail = range_size - (start - range_offset);
    return {reg, range_offset, range_size, start, expected_capacity(avail, len)};
  }
  void add_free(std::uint32_t reg, u64 off, u64 size) {
    region& r = regions_[reg];
    r.ranges[off] = range{size, false};
    r.free_bytes += size;
    ++r.free_ranges;
    free_bytes_ += size;
    free_by_size_.emplace(size, off);
  }
  void remove_free(std::uint32_t reg, u64 off) {
    region& r = regions_[reg];
    const u64 size = r.ranges.at(off).size;
    r.ranges.erase(off);
    r.free_bytes -= size;
    --r.free_ranges;
    free_bytes_ -= size;
    free_by_size_.erase({size, off});
  }

  u64 last_offset_;
  u64 granule_;
  std::map<u64, span> spans_;  // regions and pending reservations, by offset
  u64 pending_bytes_ = 0;
  std::vector<region> regions_;
  std::map<u64, std::uint32_t> region_by_offset_;
  std::set<std::pair<u64, u64>> free_by_size_;  // (size, offset) of every free range
  u64 used_bytes_ = 0;
  u64 free_bytes_ = 0;
  std::size_t used_ranges_ = 0;
};

}  // namespace bufpool_test
