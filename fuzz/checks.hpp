// SPDX-License-Identifier: MIT
// The checks that compare the pool, its slices and the pmr resource with the model.
#pragma once
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <sstream>
#include <string>
#include <vector>
#include "session.hpp"
import bufpool;

namespace {

// ---- Acquisition.

// Errors the request itself causes, whatever the pool holds.
std::uint32_t session::request_errors(u64 size, u64 alignment) const {
  std::uint32_t e = 0;
  if (size == 0) e |= bit(errc::invalid_size);
  if (!std::has_single_bit(alignment)) e |= bit(errc::invalid_alignment);
  if (alignment > options_.max_alignment) e |= bit(errc::alignment_too_big);
  if (size > options_.max_size) e |= bit(errc::too_large);
  return e;
}

std::uint32_t session::fixed_errors(u64 at, u64 len, u64 align) const {
  std::uint32_t e = 0;
  if (at % align != 0) e |= bit(errc::invalid_argument);
  const bool overflow = at > offset_max || len - 1 > offset_max - at;
  if (overflow) return e | bit(errc::arithmetic_overflow);
  if (!model_.inside_one_region(at, len)) e |= bit(errc::out_of_range);
  if (model_.overlaps_live(at, len)) e |= bit(errc::occupied);
  return e;
}

// Checks an acquisition's outcome against the model and records it there. Returns
// whether it succeeded.
bool session::settle_acquire(const request& q, const std::expected<placed, errc>& got, bool raw) {
  if (const std::uint32_t errs = request_errors(q.size, q.alignment); errs != 0) {
    expect(!got && (errs & bit(got.error())) != 0, "an invalid request fails with a matching error",
           "size ", q.size, " alignment ", q.alignment, ": got ", outcome(got),
           ", expected one of ", error_set{errs});
    return false;
  }
  const u64 align = effective_alignment(q.alignment, options_.min_alignment);
  const u64 len = std::max<u64>(q.size, options_.min_size);
  std::optional<u64> best;
  switch (q.how.kind) {
    case bufpool::strategy_kind::fixed: {
      const std::uint32_t errs = fixed_errors(q.how.offset, len, align);
      if (errs != 0) {
        expect(!got && (errs & bit(got.error())) != 0,
               "fixed(off) fails exactly when the model says so, with a matching error", "fixed(",
               q.how.offset, ") size ", q.size, " alignment ", q.alignment, ": got ", outcome(got),
               ", expected one of ", error_set{errs});
        return false;
      }
      expect(got.has_value(), "fixed(off) succeeds when the range is free, aligned, in a region",
             "fixed(", q.how.offset, ") size ", q.size, " alignment ", q.alignment, ": got ",
             outcome(got));
      expect(got->offset == q.how.offset, "fixed(off) places the slice exactly at off",
             "got offset ", got->offset, ", asked ", q.how.offset);
      break;
    }
    case bufpool::strategy_kind::optimal: {
      best = model_.best_fit(len, align);
      // acquire() collects parked ranges when it would otherwise run out of space.
      if (!best && model_.parked() > 0) {
        model_.collect(flags_);
        best = model_.best_fit(len, align);
      }
      if (!best) {
        expect(!got && got.error() == errc::out_of_memory,
               "optimal fails with out_of_memory when no free gap holds the request", "size ",
               q.size, " alignment ", q.alignment, ": got ", outcome(got));
        return false;
      }
      expect(got.has_value(),
             "optimal never reports out_of_memory while a free gap holds the aligned request",
             "size ", q.size, " (len ", len, ") alignment ", align, ": got ", outcome(got),
             "; the smallest fitting gap has ", *best, " bytes");
      break;
    }
    case bufpool::strategy_kind::greedy:
    case bufpool::strategy_kind::good_fit: {
      // Whether acquire() collected is not decided by the model (greedy and good_fit may fail
      // their first attempt while a gap fits): observe it, and check it is all-or-nothing.
      const std::size_t parked = model_.parked();
      const std::size_t releasable = model_.releasable_parked(flags_);
      const std::size_t now = pool_->stats().parked_slices;
      if (!got) {
        expect(got.error() == errc::out_of_memory,
               "greedy and good_fit fail only for lack of space", "got ", outcome(got));
        if (parked > 0) model_.collect(flags_);
        // good_fit's promise: a gap that holds the request, rounded up to the granule, plus
        // the most padding its alignment may need, is always found.
        const u64 g = options_.min_alignment;
        const u64 rounded = len + (g - len % g) % g;
        expect(q.how.kind != bufpool::strategy_kind::good_fit || rounded < len ||
                   rounded > ~u64{0} - (align - g) ||
                   !model_.best_fit(rounded + (align - g), g).has_value(),
               "good_fit never fails while a free gap holds the request plus its padding", "size ",
               q.size, " (len ", len, ") alignment ", align, ": got ", outcome(got));
        return false;
      }
      if (releasable > 0 && now == parked - releasable)
        model_.collect(flags_);
      else
        expect(now == parked, "acquire collects all releasable parked ranges or none",
               "parked before ", parked, ", releasable ", releasable, ", parked now ", now);
      break;
    }
  }
  check_placement(q, *got, len, align, raw);
  if (best) {
    const auto gap = model_.gap_holding(got->offset, got->capacity);
    expect(gap->size == *best, "optimal takes the smallest free gap that holds the request",
           "took a gap of ", gap->size, " bytes at ", gap->offset, ", smallest fitting ", *best);
  }
  model_.live.emplace(got->offset,
                      model_range{got->capacity, raw ? range_kind::raw : range_kind::slice, -1});
  return true;
}

void session::check_placement(const request& q, const placed& p, u64 len, u64 align,
                              bool raw) const {
  const u64 g = options_.min_alignment;
  expect(p.offset % align == 0, "offset is a multiple of the alignment (raised to the minimum)",
         "offset ", p.offset, " alignment ", align);
  const model_region* r = model_.region_containing(p.offset);
  expect(r != nullptr, "a range lies inside an initialized region", "offset ", p.offset);
  expect(p.capacity <= r->end() - p.offset, "a range does not cross its region's end", "offset ",
         p.offset, " capacity ", p.capacity, " region [", r->offset, ", ", r->end(), ")");
  expect(p.capacity >= len, "capacity >= size (raised to min_size)", "capacity ", p.capacity,
         " size ", q.size, " len ", len);
  expect(p.capacity % g == 0 || p.offset + p.capacity == r->end(),
         "capacity is a multiple of min_alignment except at a region's end", "offset ", p.offset,
         " capacity ", p.capacity);
  expect(p.pointer == r->base + (p.offset - r->offset),
         "pointer = region base + (offset - region offset)", "offset ", p.offset, " pointer ",
         static_cast<const void*>(p.pointer), " region base ", static_cast<const void*>(r->base),
         " region offset ", r->offset);
  expect(model_.gap_holding(p.offset, p.capacity).has_value(),
         "a new range lies in free space: no overlap with live, guarded or parked ranges",
         "offset ", p.offset, " capacity ", p.capacity, raw ? " (raw)" : " (slice)");
}

// ---- Resizing.

// Checks a resize against the model (errors: nothing changed; success: the new capacity
// is within the range and the free room after it) and records it. Returns success.
bool session::check_resize(u64 offset, u64 capacity, u64 size, std::optional<u64> got, errc error,
                           bool guarded) {
  std::uint32_t errs = 0;
  if (guarded) {
    errs = bit(errc::in_use);
  } else {
    if (size == 0) errs |= bit(errc::invalid_size);
    if (size > options_.max_size) errs |= bit(errc::too_large);
  }
  const u64 len = std::max<u64>(size, options_.min_size);
  const u64 room = capacity + model_.room_after(offset);
  if (errs == 0 && len > room) errs = bit(errc::out_of_memory);
  if (errs != 0) {
    expect(!got && (errs & bit(error)) != 0, "resize fails exactly as the model says", "offset ",
           offset, " capacity ", capacity, " room ", room, " to size ", size, ": got ",
           shown_outcome{got.has_value(), error}, ", expected one of ", error_set{errs});
    return false;
  }
  expect(got.has_value(), "resize succeeds when the room after the range holds it", "offset ",
         offset, " capacity ", capacity, " room ", room, " to size ", size, ": got ",
         got ? "success" : bufpool::to_string(error));
  const model_region* r = model_.region_containing(offset);
  expect(*got >= len && *got <= room, "a resized capacity holds the size and stays in the room",
         "new capacity ", *got, " len ", len, " room ", room);
  expect(*got % options_.min_alignment == 0 || offset + *got == r->end(),
         "a resized capacity is a multiple of min_alignment except at a region's end",
         "new capacity ", *got);
  model_.live.at(offset).capacity = *got;
  return true;
}

// ---- Data in raw ranges and slices.

void session::verify_raw(const raw_rec& r, const char* what) const {
  verify_cookie(r.range.pointer, r.size, r.size, r.id, what);
}

bool session::accessible(const slice_rec& s) const {
  return s.flag < 0 || !s.exclusive;
}

void session::verify_slice(const slice_rec& s, const char* what) const {
  if (!accessible(s)) return;  // exclusively guarded: no data access
  auto bytes = s.slice.try_cbytes();
  expect(bytes.has_value() && bytes->size() == s.size, "a slice's bytes are readable", what);
  verify_cookie(bytes->data(), s.size, s.size, s.id, what);
}

// ---- The pmr resource.

std::size_t session::pool_blocks() const {
  std::size_t n = 0;
  for (const auto& [address, b] : blocks_) n += b.dedicated() ? 0 : 1;
  return n;
}

void session::check_resource_counts() const {
  const auto s = resource_->stats();
  expect(s.live_slices == resource_base_.live_slices + pool_blocks(),
         "pmr: live ranges = the buffer's pad slices + live pool blocks", "got ", s.live_slices,
         ", base ", resource_base_.live_slices, " + ", pool_blocks());
  expect(s.guarded_slices == 0 && s.pending_bytes == 0, "pmr: no guards, nothing pending");
}

void session::expect_resource_unchanged(const bufpool::pool_stats& before,
                                        const counting_upstream::snapshot& up,
                                        const char* what) const {
  expect_stats(resource_->stats(), before, what);
  expect(upstream_.outstanding() == up.outstanding, what, ": upstream bytes changed");
}

void session::expect_failed_allocation_unchanged(const bufpool::pool_stats& before,
                                                 const counting_upstream::snapshot& up) const {
  constexpr const char* what = "pmr: a failed allocation changes nothing but kept empty spans";
  const bufpool::pool_stats now = resource_->stats();
  if (now.spare_bytes == before.spare_bytes) {
    expect_resource_unchanged(before, up, what);
    return;
  }
  // Before it reports failure, an allocation takes back the empty spans the size classes
  // keep: their bytes move from spare to free, and nothing a caller holds changes.
  expect(now.spare_bytes < before.spare_bytes &&
             now.free_bytes + now.spare_bytes == before.free_bytes + before.spare_bytes &&
             now.largest_free >= before.largest_free && now.used_bytes == before.used_bytes &&
             now.live_slices == before.live_slices && now.regions == before.regions &&
             now.pending_bytes == before.pending_bytes,
         what, "spare ", before.spare_bytes, " -> ", now.spare_bytes, ", free ", before.free_bytes,
         " -> ", now.free_bytes, ", used ", before.used_bytes, " -> ", now.used_bytes, ", live ",
         before.live_slices, " -> ", now.live_slices);
  expect(upstream_.outstanding() == up.outstanding, what, ": upstream bytes changed");
}

// ---- Counts after every operation, and the full comparison every few.

void session::check_counts() const {
  const bufpool::pool_stats want = model_.stats();
  expect_stats(pool_->stats(), want, "pool.stats() equals the model's");
  const std::size_t guarded = want.guarded_slices;
  expect(pool_->active_guard_count() == guarded, "active_guard_count() equals the model's", "got ",
         pool_->active_guard_count(), ", expected ", guarded);
}

void session::full_check() const {
  const auto v = pool_->validate();
  expect(v.has_value(), "pool.validate()", v ? std::string() : v.error());
  const auto per_region = pool_->region_statistics();
  expect(per_region.size() == model_.regions.size(), "region_statistics() lists every region");
  for (std::size_t id = 0; id < per_region.size(); ++id) {
    const model_region& r = model_.regions[id];
    const bufpool::region_stats& s = per_region[id];
    bufpool::region_stats want{r.offset, r.size, 0, 0, 0, 0};
    std::ostringstream walk;
    std::vector<bufpool::range_view> ranges;
    model_.for_each_range_in(r, [&](u64 offset, u64 size, bool used) {
      (used ? want.used_bytes : want.free_bytes) += size;
      ++(used ? want.used_ranges : want.free_ranges);
      ranges.push_back({offset, size, used});
    });
    expect(s.offset == want.offset && s.size == want.size && s.used_bytes == want.used_bytes &&
               s.free_bytes == want.free_bytes && s.free_ranges == want.free_ranges &&
               s.used_ranges == want.used_ranges,
           "region_statistics() equals the model's", "region ", id, ": got used ", s.used_bytes,
           "/", s.used_ranges, " free ", s.free_bytes, "/", s.free_ranges, ", expected used ",
           want.used_bytes, "/", want.used_ranges, " free ", want.free_bytes, "/",
           want.free_ranges);
    const auto got = pool_->region_ranges(id);
    bool same = got.size() == ranges.size();
    for (std::size_t k = 0; same && k < got.size(); ++k)
      same = got[k].offset == ranges[k].offset && got[k].size == ranges[k].size &&
             got[k].used == ranges[k].used;
    expect(same, "region_ranges() equals the model's map of the region", "region ", id, ": ",
           got.size(), " ranges, expected ", ranges.size());
  }
  std::size_t slices = 0;
  std::size_t raws = 0;
  for (const auto& [offset, r] : model_.live) {
    slices += r.kind == range_kind::slice ? 1 : 0;
    raws += r.kind == range_kind::raw ? 1 : 0;
  }
  expect(slices == slices_.size() && raws == raws_.size(), "model: live ranges are accounted");
  for (const auto& s : slices_) {
    const auto it = model_.live.find(s.offset);
    expect(it != model_.live.end() && it->second.kind == range_kind::slice &&
               it->second.capacity == s.slice.capacity() && it->second.flag == s.flag,
           "a slice matches the model", "offset ", s.offset);
    expect(s.slice.offset() == s.offset && s.slice.size() == s.size &&
               s.slice.is_guarded() == (s.flag >= 0) && s.slice.pool_is_alive(),
           "a slice keeps its range", "offset ", s.offset);
  }
  for (const auto& r : raws_) {
    const auto it = model_.live.find(r.range.offset);
    expect(it != model_.live.end() && it->second.kind == range_kind::raw &&
               it->second.capacity == r.range.capacity,
           "a raw range matches the model", "offset ", r.range.offset);
    const auto at = pool_->raw_at(r.range.pointer);
    expect(at && at->offset == r.range.offset && at->size == r.size &&
               at->capacity == r.range.capacity,
           "raw_at(pointer) finds the raw range", "offset ", r.range.offset);
  }
  if (resource_) {
    const auto rv = resource_->validate();
    expect(rv.has_value(), "pmr: validate()", rv ? std::string() : rv.error());
    check_resource_counts();
  }
}

}  // namespace
