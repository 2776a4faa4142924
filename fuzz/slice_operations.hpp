// SPDX-License-Identifier: MIT
// The operations on slices and raw ranges: acquire, resize, guard, move, free, misuse.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <utility>
#include "session.hpp"
import bufpool;

namespace {

// ---- Acquisition.

void session::op_acquire(bool raw) {
  const request q = in_.request_arg(model_, options_.min_alignment);
  if (raw ? raws_.size() >= max_raws : slices_.size() >= max_slices) return;
  if (raw) {
    auto r = pool_->acquire_raw(q.size, q.alignment, q.how);
    std::expected<placed, errc> got = std::unexpected(errc::invalid_argument);
    if (r) {
      got = placed{r->offset, r->capacity, r->pointer};
      expect(r->size == q.size, "raw size is the size requested", r->size, " vs ", q.size);
    } else {
      got = std::unexpected(r.error());
    }
    if (!settle_acquire(q, got, true)) return;
    const u64 id = next_id_++;
    fill_cookie(r->pointer, q.size, id);
    raws_.push_back({*r, q.size, q.alignment, id});
    return;
  }
  std::expected<slice_t, errc> s = std::unexpected(errc::invalid_argument);
  switch (q.ref) {
    case bufpool::pool_ref::shared:
      s = pool_t::acquire_shared<test_guard>(pool_, q.size, q.alignment, q.how);
      break;
    case bufpool::pool_ref::weak:
      s = pool_t::acquire_weak<test_guard>(pool_, q.size, q.alignment, q.how);
      break;
    default:
      s = pool_->acquire<test_guard>(q.size, q.alignment, q.how);
      break;
  }
  std::expected<placed, errc> got = std::unexpected(errc::invalid_argument);
  if (s) {
    auto bytes = s->try_bytes();
    expect(bytes.has_value() && bytes->size() == q.size, "a new slice's bytes are accessible",
           "size ", q.size);
    got = placed{s->offset(), s->capacity(), bytes->data()};
  } else {
    got = std::unexpected(s.error());
  }
  if (!settle_acquire(q, got, false)) return;
  const model_region* r = model_.region_containing(s->offset());
  expect(s->region_offset() == r->offset && s->region_size() == r->size,
         "a slice reports its region", "slice region [", s->region_offset(), ", +",
         s->region_size(), "), model [", r->offset, ", +", r->size, ")");
  expect(
      s->size() == q.size && s->reference_kind() == q.ref && !s->is_guarded() && s->pool_is_alive(),
      "a new slice has the size and reference asked for", "size ", s->size());
  const u64 id = next_id_++;
  fill_cookie(s->data(), q.size, id);
  slices_.push_back({std::move(*s), id, q.size, got->offset});
}

// ---- Raw ranges.

void session::forget_raw(std::size_t i) {
  const auto it = model_.live.find(raws_[i].range.offset);
  expect(it != model_.live.end() && it->second.kind == range_kind::raw, "model: raw range known");
  model_.live.erase(it);
  raws_[i] = std::move(raws_.back());
  raws_.pop_back();
}

void session::op_release_raw(bool by_pointer) {
  const std::size_t i = in_.pick(raws_.size());
  const bool checked = (in_.u8() & 1u) != 0;
  if (raws_.empty()) return;
  const raw_rec& r = raws_[i];
  verify_raw(r, "release_raw");
  bool ok = false;
  if (by_pointer)
    ok = checked
             ? pool_->release_raw(static_cast<const void*>(r.range.pointer), r.size, r.alignment)
             : pool_->release_raw(static_cast<const void*>(r.range.pointer));
  else
    ok = checked ? pool_->release_raw(u64{r.range.offset}, r.size, r.alignment)
                 : pool_->release_raw(u64{r.range.offset});
  expect(ok, "release_raw of a live raw range succeeds", "offset ", r.range.offset);
  forget_raw(i);
}

void session::op_resize_raw() {
  const std::size_t i = in_.pick(raws_.size());
  const u64 size = in_.size_arg();
  const bool by_pointer = (in_.u8() & 1u) != 0;
  if (raws_.empty()) return;
  raw_rec& r = raws_[i];
  verify_raw(r, "resize_raw");
  const u64 offset = r.range.offset;
  const u64 capacity = model_.live.at(offset).capacity;
  const auto got = by_pointer ? pool_->resize_raw(static_cast<const void*>(r.range.pointer), size)
                              : pool_->resize_raw(offset, size);
  if (!check_resize(offset, capacity, size,
                    got.has_value() ? std::optional<u64>(*got) : std::nullopt,
                    got ? errc{} : got.error(), false))
    return;
  verify_cookie(r.range.pointer, r.size, std::min(r.size, size), r.id, "resize_raw keeps data");
  r.size = size;
  r.range.capacity = *got;
  fill_cookie(r.range.pointer, size, r.id);
  const auto at = pool_->raw_at(r.range.pointer);
  expect(at && at->offset == offset && at->size == size && at->capacity == *got,
         "raw_at reports a resized range", "offset ", offset);
}

// ---- Slices.

void session::remove_slice_rec(std::size_t i) {
  slices_[i] = std::move(slices_.back());
  slices_.pop_back();
}

void session::op_reclaim() {
  const std::size_t i = in_.pick(slices_.size());
  if (slices_.empty()) return;
  slice_rec& s = slices_[i];
  verify_slice(s, "reclaim");
  auto r = std::move(s.slice).reclaim();
  if (s.flag >= 0) {
    expect(!r && r.error().code == errc::in_use, "reclaim of a guarded slice fails with in_use");
    s.slice = std::move(r.error().slice);
    expect(s.slice.offset() == s.offset && s.slice.is_guarded(),
           "a failed reclaim hands the slice back intact", "offset ", s.slice.offset());
    return;
  }
  expect(r.has_value() && !s.slice, "reclaim of an unguarded slice succeeds");
  model_.live.erase(s.offset);
  remove_slice_rec(i);
}

void session::op_destroy() {
  const std::size_t i = in_.pick(slices_.size());
  if (slices_.empty()) return;
  verify_slice(slices_[i], "destroy");
  {
    slice_t dying = std::move(slices_[i].slice);
  }
  model_.destroyed(slices_[i].offset, flags_);
  remove_slice_rec(i);
}

void session::op_try_resize() {
  const std::size_t i = in_.pick(slices_.size());
  const u64 size = in_.size_arg();
  if (slices_.empty()) return;
  slice_rec& s = slices_[i];
  verify_slice(s, "try_resize");
  const u64 capacity = s.slice.capacity();
  auto got = s.slice.try_resize(size);
  if (!check_resize(s.offset, capacity, size,
                    got ? std::optional<u64>(s.slice.capacity()) : std::nullopt,
                    got ? errc{} : got.error(), s.flag >= 0)) {
    expect(s.slice.size() == s.size && s.slice.capacity() == capacity,
           "a failed resize changes nothing");
    return;
  }
  expect(s.slice.offset() == s.offset && s.slice.size() == size, "a resize keeps the offset");
  auto bytes = s.slice.try_bytes();
  expect(bytes.has_value() && bytes->size() == size, "a resized slice's bytes are accessible");
  verify_cookie(bytes->data(), s.size, std::min(s.size, size), s.id, "try_resize keeps data");
  s.size = size;
  fill_cookie(bytes->data(), size, s.id);
}

void session::op_guard() {
  const std::size_t i = in_.pick(slices_.size());
  const std::uint8_t how = in_.u8();
  if (slices_.empty()) return;
  slice_rec& s = slices_[i];
  const int flag = static_cast<int>(how % flag_count);
  const auto mode =
      (how & 0x10u) != 0 ? bufpool::guard_mode::shared : bufpool::guard_mode::exclusive;
  test_guard g{flags_[static_cast<std::size_t>(flag)], flag};
  auto returned_intact = [&](const test_guard& back) {
    return back.flag == flag && back.done == flags_[static_cast<std::size_t>(flag)];
  };
  if ((how & 0x20u) != 0) {  // the by-value form
    auto r = std::move(s.slice).with_guard(std::move(g), mode);
    if (s.flag >= 0) {
      expect(!r && r.error().code == errc::already_guarded && returned_intact(r.error().guard),
             "with_guard on a guarded slice fails and returns the slice and guard");
      s.slice = std::move(r.error().slice);
      expect(s.slice.offset() == s.offset, "with_guard hands the slice back intact");
      return;
    }
    expect(r.has_value(), "with_guard on an unguarded slice succeeds");
    s.slice = std::move(*r);
  } else {
    auto r = s.slice.guard(std::move(g), mode);
    if (s.flag >= 0) {
      expect(!r && r.error().code == errc::already_guarded && returned_intact(r.error().guard),
             "a second guard is refused and handed back");
      return;
    }
    expect(r.has_value(), "guarding an unguarded slice succeeds");
  }
  expect(s.slice.is_guarded() && s.slice.mode() == mode, "a guarded slice reports its guard");
  s.flag = flag;
  s.exclusive = mode == bufpool::guard_mode::exclusive;
  model_.live.at(s.offset).flag = flag;
}

void session::unguarded(slice_rec& s) {
  s.flag = -1;
  model_.live.at(s.offset).flag = -1;
}

void session::op_try_unguard() {
  const std::size_t i = in_.pick(slices_.size());
  if (slices_.empty()) return;
  slice_rec& s = slices_[i];
  auto r = s.slice.try_unguard();
  if (s.flag < 0) {
    expect(!r && r.error() == errc::not_guarded, "try_unguard of an unguarded slice: not_guarded");
    return;
  }
  if (!*flags_[static_cast<std::size_t>(s.flag)]) {
    expect(!r && r.error() == errc::in_use, "try_unguard while the guard holds: in_use");
    expect(s.slice.is_guarded(), "a refused unguard keeps the guard");
    return;
  }
  expect(r.has_value() && r->flag == s.flag, "try_unguard returns a released guard");
  expect(!s.slice.is_guarded(), "an unguarded slice has no guard");
  unguarded(s);
}

void session::op_unguard_unchecked() {
  const std::size_t i = in_.pick(slices_.size());
  if (slices_.empty()) return;
  slice_rec& s = slices_[i];
  auto r = s.slice.unguard_unchecked();
  if (s.flag < 0) {
    expect(!r.has_value(), "unguard_unchecked of an unguarded slice returns nothing");
    return;
  }
  expect(r.has_value() && r->flag == s.flag && !s.slice.is_guarded(),
         "unguard_unchecked returns the guard, whatever it says");
  unguarded(s);
}

void session::op_set_flag() {
  const std::uint8_t v = in_.u8();
  *flags_[v % flag_count] = (v & 0x80u) == 0;  // mostly "done"
}

void session::op_collect() {
  const std::size_t want = model_.collect(flags_);
  const std::size_t got = pool_->collect();
  expect(got == want, "collect frees exactly the parked ranges whose guard releases", "got ", got,
         ", expected ", want);
}

void session::op_move() {
  const std::size_t i = in_.pick(slices_.size());
  const std::size_t j = in_.pick(slices_.size());
  const bool assign = (in_.u8() & 1u) != 0;
  if (slices_.empty()) return;
  slice_rec& s = slices_[i];
  if (i == j || !assign) {  // move out and back, and poke the moved-from slice
    slice_t moved = std::move(s.slice);
    expect(!s.slice && s.slice.size() == 0 && s.slice.data() == nullptr &&
               s.slice.reference_kind() == bufpool::pool_ref::none,
           "a moved-from slice is empty");
    expect(moved.offset() == s.offset && moved.is_guarded() == (s.flag >= 0),
           "a moved slice keeps its range and guard");
    auto resized = s.slice.try_resize(64);
    expect(!resized && resized.error() == errc::empty_slice,
           "try_resize of an empty slice: empty_slice");
    expect(std::move(s.slice).reclaim().has_value(), "reclaim of an empty slice does nothing");
    s.slice = std::move(moved);
    return;
  }
  // Move-assign over another live slice: the target's range is given back (or parked).
  slice_rec& t = slices_[j];
  verify_slice(t, "move-assign target");
  t.slice = std::move(s.slice);
  model_.destroyed(t.offset, flags_);
  t.id = s.id;
  t.size = s.size;
  t.offset = s.offset;
  t.flag = s.flag;
  t.exclusive = s.exclusive;
  expect(t.slice.offset() == t.offset && !s.slice, "move assignment transfers the range");
  remove_slice_rec(i);
}

void session::op_access() {
  const std::size_t i = in_.pick(slices_.size());
  if (slices_.empty()) return;
  slice_rec& s = slices_[i];
  auto w = s.slice.try_bytes();
  auto r = s.slice.try_cbytes();
  if (s.flag < 0) {
    expect(w && r && w->size() == s.size && r->data() == w->data(),
           "an unguarded slice allows data access");
    verify_cookie(r->data(), s.size, s.size, s.id, "data access");
    return;
  }
  expect(!w && w.error() == errc::access_denied, "no write access while guarded");
  if (s.exclusive)
    expect(!r && r.error() == errc::access_denied, "no access while exclusively guarded");
  else
    expect(r && r->size() == s.size, "read access while guarded in shared mode");
  deliberate_misuse m("bytes() of a guarded slice");
  const auto b = s.slice.bytes();
  m.expect_reported();
  expect(b.empty(), "bytes() of a guarded slice is empty");
}

// ---- Deliberate misuse of raw ranges: reported, and nothing changes.

bool session::raw_starts_at(u64 offset) const {
  const auto it = model_.live.find(offset);
  return it != model_.live.end() && it->second.kind == range_kind::raw;
}

void session::op_raw_misuse() {
  const std::uint8_t kind = in_.u8();
  const std::size_t i = in_.pick(raws_.size());
  const u64 arg = in_.u16();
  const bufpool::pool_stats before = pool_->stats();
  const std::size_t guards = pool_->active_guard_count();
  deliberate_misuse m("raw range misuse");
  bool ok = true;
  switch (kind % 7) {
    case 0: {  // an offset that does not start a raw range
      u64 offset = arg;
      if (!slices_.empty() && (kind & 0x80u) != 0) offset = slices_[i % slices_.size()].offset;
      if (!raws_.empty() && (kind & 0x40u) != 0) offset = u64{raws_[i].range.offset} + 1 + arg;
      if (raw_starts_at(offset)) return;
      ok = pool_->release_raw(offset);
      break;
    }
    case 1:  // a pointer to memory no region holds
      ok = pool_->release_raw(static_cast<const void*>(&g_foreign_object));
      break;
    case 2: {  // a pointer into a region that does not start a raw range
      if (model_.regions.empty()) return;
      const model_region& r = model_.regions[arg % model_.regions.size()];
      const u64 delta = (arg * 16 + kind) % r.size;
      if (raw_starts_at(r.offset + delta)) return;
      ok = pool_->release_raw(static_cast<const void*>(r.base + delta));
      break;
    }
    case 3:  // the size differs from the acquisition's
      if (raws_.empty()) return;
      ok = pool_->release_raw(u64{raws_[i].range.offset}, raws_[i].size + 1 + arg,
                              raws_[i].alignment);
      break;
    case 4:  // the alignment differs from the acquisition's
      if (raws_.empty()) return;
      ok = pool_->release_raw(static_cast<const void*>(raws_[i].range.pointer), raws_[i].size,
                              raws_[i].alignment * 2);
      break;
    case 5: {  // resize of an offset that does not start a raw range
      const u64 offset = slices_.empty() ? arg : slices_[i % slices_.size()].offset;
      if (raw_starts_at(offset)) return;
      const auto r = pool_->resize_raw(offset, 64);
      ok = r.has_value();
      expect(!r && r.error() == errc::not_live,
             "resize_raw of a non-raw offset fails with not_live", outcome(r));
      break;
    }
    default: {  // released twice
      if (raws_.empty()) return;
      const u64 offset = raws_[i].range.offset;
      g_misuse_expected = false;
      expect(pool_->release_raw(offset), "release_raw of a live raw range succeeds");
      forget_raw(i);
      g_misuse_expected = true;
      const bufpool::pool_stats after_first = pool_->stats();
      ok = pool_->release_raw(offset);
      m.expect_reported();
      expect(!ok, "a second release_raw fails");
      expect_stats(pool_->stats(), after_first, "a second release_raw changes nothing");
      return;
    }
  }
  m.expect_reported();
  expect(!ok, "a misused release_raw returns false");
  expect_stats(pool_->stats(), before, "a misused release_raw changes nothing");
  expect(pool_->active_guard_count() == guards, "a misused release_raw changes nothing");
}

}  // namespace
