// SPDX-License-Identifier: MIT
// Differential libFuzzer target: bufpool::buffer_pool<> and bufpool::pmr::pool_resource
// driven by the input bytes and checked after every operation against a simple model.
//
// Any discrepancy prints which check failed, the operation index and the values, then aborts so
// that libFuzzer records the input.
//
// The input encoding is decoder.hpp's; the reference model is model.hpp's.
#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <expected>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <memory_resource>
#include <new>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>
#include "bounds.hpp"
#include "cookies.hpp"
#include "decoder.hpp"
#include "model.hpp"
#include "report.hpp"
#include "upstream.hpp"
import bufpool;
import bufpool.pmr;

namespace {

// ---- Guards -----------------------------------------------------------------------------

struct test_guard {
  std::shared_ptr<bool> done;
  int flag = 0;
  bool try_release() const { return *done; }
};
static_assert(bufpool::slice_guard<test_guard>);

using slice_t = pool_t::slice_type<test_guard>;

// ---- The session: one input ---------------------------------------------------------------

struct region_memory_deleter {
  void operator()(std::byte* p) const noexcept { ::operator delete(p, std::align_val_t{4096}); }
};

// Where an acquisition landed, for slices and raw ranges alike.
struct placed {
  u64 offset;
  u64 capacity;
  std::byte* pointer;
};

struct slice_rec {
  slice_t slice;
  u64 id;
  u64 size;
  u64 offset;
  int flag = -1;  // guard flag, -1 if unguarded
  bool exclusive = true;
};

struct raw_rec {
  bufpool::raw_range<std::uint32_t> range;
  u64 size;
  u64 alignment;
  u64 id;
};

struct pending_rec {
  std::optional<pool_t::expansion> handle;
  u64 offset;
  u64 size;
};

struct pmr_block {
  std::byte* pointer;
  std::size_t bytes;
  std::size_t alignment;
  u64 id;
  [[nodiscard]] bool dedicated() const noexcept {
    return alignment > bufpool::pmr::pool_resource::region_alignment;
  }
};

int g_foreign_object = 0;  // an address no pool or resource owns

class session {
 public:
  explicit session(input_decoder& in) : in_(in) {
    for (auto& f : flags_) f = std::make_shared<bool>(false);
    const pool_setup setup = in_.pool_setup_arg();
    options_ = setup.options;
    pool_ = std::make_shared<pool_t>(options_);
    expect(pool_->options().min_alignment == options_.min_alignment, "options are kept");
    if (setup.initial_region_size) {  // start with one region, so most inputs can acquire
      begin_expand(*setup.initial_region_size);
      initialize(pending_.size() - 1, 0);
    }
  }

  void run() {
    for (std::size_t n = 0; n < max_ops && !in_.empty(); ++n) {
      g_op = n;
      step(in_.u8());
      check_counts();
      if (n % full_check_every == full_check_every - 1) full_check();
    }
    g_op_name = "teardown";
    teardown();
  }

 private:
  // ---- Dispatch.

  void step(std::uint8_t opcode) {
    const operation op = operation_for(opcode);
    g_op_name = name_of(op);
    switch (op) {
      case operation::acquire:
        return op_acquire(false);
      case operation::acquire_raw:
        return op_acquire(true);
      case operation::release_raw_by_offset:
        return op_release_raw(false);
      case operation::release_raw_by_pointer:
        return op_release_raw(true);
      case operation::reclaim:
        return op_reclaim();
      case operation::destroy_slice:
        return op_destroy();
      case operation::try_resize:
        return op_try_resize();
      case operation::guard:
        return op_guard();
      case operation::try_unguard:
        return op_try_unguard();
      case operation::unguard_unchecked:
        return op_unguard_unchecked();
      case operation::set_guard_flag:
        return op_set_flag();
      case operation::collect:
        return op_collect();
      case operation::begin_expand:
        return op_begin_expand();
      case operation::initialize:
        return op_initialize();
      case operation::abandon_expansion:
        return op_abandon();
      case operation::raw_misuse:
        return op_raw_misuse();
      case operation::move_slice:
        return op_move();
      case operation::resize_raw:
        return op_resize_raw();
      case operation::initialize_misuse:
        return op_initialize_misuse();
      case operation::slice_access:
        return op_access();
      case operation::pmr_allocate:
        return op_pmr_allocate();
      case operation::pmr_deallocate:
        return op_pmr_deallocate();
      case operation::pmr_misuse:
        return op_pmr_misuse();
      case operation::pmr_release:
        return op_pmr_release();
      case operation::full_check:
        return full_check();
    }
  }

  // ---- Acquisition, checked against the model.

  // Errors the request itself causes, whatever the pool holds.
  [[nodiscard]] std::uint32_t request_errors(u64 size, u64 alignment) const {
    std::uint32_t e = 0;
    if (size == 0) e |= bit(errc::invalid_size);
    if (!std::has_single_bit(alignment)) e |= bit(errc::invalid_alignment);
    if (alignment > options_.max_alignment) e |= bit(errc::alignment_too_big);
    if (size > options_.max_size) e |= bit(errc::too_large);
    return e;
  }

  [[nodiscard]] std::uint32_t fixed_errors(u64 at, u64 len, u64 align) const {
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
  bool settle_acquire(const request& q, const std::expected<placed, errc>& got, bool raw) {
    if (const std::uint32_t errs = request_errors(q.size, q.alignment); errs != 0) {
      expect(!got && (errs & bit(got.error())) != 0,
             "an invalid request fails with a matching error", "size ", q.size, " alignment ",
             q.alignment, ": got ", outcome(got), ", expected one of ", error_set{errs});
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
                 q.how.offset, ") size ", q.size, " alignment ", q.alignment, ": got ",
                 outcome(got), ", expected one of ", error_set{errs});
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
      case bufpool::strategy_kind::greedy: {
        // Whether acquire() collected is not decided by the model (greedy may fail its first
        // attempt while a gap fits): observe it, and check it is all-or-nothing.
        const std::size_t parked = model_.parked();
        const std::size_t releasable = model_.releasable_parked(flags_);
        const std::size_t now = pool_->stats().parked_slices;
        if (!got) {
          expect(got.error() == errc::out_of_memory, "greedy fails only for lack of space", "got ",
                 outcome(got));
          if (parked > 0) model_.collect(flags_);
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

  void check_placement(const request& q, const placed& p, u64 len, u64 align, bool raw) const {
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

  void op_acquire(bool raw) {
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
    expect(s->size() == q.size && s->reference_kind() == q.ref && !s->is_guarded() &&
               s->pool_is_alive(),
           "a new slice has the size and reference asked for", "size ", s->size());
    const u64 id = next_id_++;
    fill_cookie(s->data(), q.size, id);
    slices_.push_back({std::move(*s), id, q.size, got->offset});
  }

  // ---- Raw ranges.

  void verify_raw(const raw_rec& r, const char* what) const {
    verify_cookie(r.range.pointer, r.size, r.size, r.id, what);
  }

  void forget_raw(std::size_t i) {
    const auto it = model_.live.find(raws_[i].range.offset);
    expect(it != model_.live.end() && it->second.kind == range_kind::raw, "model: raw range known");
    model_.live.erase(it);
    raws_[i] = std::move(raws_.back());
    raws_.pop_back();
  }

  void op_release_raw(bool by_pointer) {
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

  void op_resize_raw() {
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

  // Checks a resize against the model (errors: nothing changed; success: the new capacity
  // is within the range and the free room after it) and records it. Returns success.
  bool check_resize(u64 offset, u64 capacity, u64 size, std::optional<u64> got, errc error,
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

  // ---- Slices.

  [[nodiscard]] bool accessible(const slice_rec& s) const { return s.flag < 0 || !s.exclusive; }

  void verify_slice(const slice_rec& s, const char* what) const {
    if (!accessible(s)) return;  // exclusively guarded: no data access
    auto bytes = s.slice.try_cbytes();
    expect(bytes.has_value() && bytes->size() == s.size, "a slice's bytes are readable", what);
    verify_cookie(bytes->data(), s.size, s.size, s.id, what);
  }

  void remove_slice_rec(std::size_t i) {
    slices_[i] = std::move(slices_.back());
    slices_.pop_back();
  }

  void op_reclaim() {
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

  void op_destroy() {
    const std::size_t i = in_.pick(slices_.size());
    if (slices_.empty()) return;
    verify_slice(slices_[i], "destroy");
    {
      slice_t dying = std::move(slices_[i].slice);
    }
    model_.destroyed(slices_[i].offset, flags_);
    remove_slice_rec(i);
  }

  void op_try_resize() {
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

  void op_guard() {
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

  void unguarded(slice_rec& s) {
    s.flag = -1;
    model_.live.at(s.offset).flag = -1;
  }

  void op_try_unguard() {
    const std::size_t i = in_.pick(slices_.size());
    if (slices_.empty()) return;
    slice_rec& s = slices_[i];
    auto r = s.slice.try_unguard();
    if (s.flag < 0) {
      expect(!r && r.error() == errc::not_guarded,
             "try_unguard of an unguarded slice: not_guarded");
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

  void op_unguard_unchecked() {
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

  void op_set_flag() {
    const std::uint8_t v = in_.u8();
    *flags_[v % flag_count] = (v & 0x80u) == 0;  // mostly "done"
  }

  void op_collect() {
    const std::size_t want = model_.collect(flags_);
    const std::size_t got = pool_->collect();
    expect(got == want, "collect frees exactly the parked ranges whose guard releases", "got ", got,
           ", expected ", want);
  }

  void op_move() {
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
      expect(!resized && resized.error() == errc::invalid_argument,
             "try_resize of an empty slice: invalid_argument");
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

  void op_access() {
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

  // ---- Expansion.

  void begin_expand(u64 size) {
    std::uint32_t errs = 0;
    std::vector<u64> where;  // acceptable offsets
    const u64 frontier = model_.frontier();
    if (size == 0) {
      errs = bit(errc::invalid_size);
    } else if (size > offset_max) {
      errs = bit(errc::out_of_offset_space);
    } else if (size <= (offset_max + 1) - frontier) {
      where.push_back(frontier);  // the next offsets at the end of the used space
    } else {                      // the end is exhausted: the smallest hole that fits
      std::optional<u64> best;
      const auto holes = model_.holes();
      for (const auto& h : holes)
        if (h.size >= size && (!best || h.size < *best)) best = h.size;
      for (const auto& h : holes)
        if (best && h.size == *best) where.push_back(h.offset);
      if (where.empty()) errs = bit(errc::out_of_offset_space);
    }
    auto h = pool_->begin_expand(size);
    if (errs != 0) {
      expect(!h && (errs & bit(h.error())) != 0, "begin_expand fails as the model says", "size ",
             size, ": got ", outcome(h), ", expected one of ", error_set{errs});
      return;
    }
    expect(h.has_value(), "begin_expand succeeds while the offset space has room", "size ", size,
           " frontier ", frontier, ": got ", outcome(h));
    expect(h->size() == size && std::ranges::find(where, u64{h->offset()}) != where.end(),
           "begin_expand reserves at the end of the used space, else in the smallest hole", "size ",
           size, " got offset ", h->offset(), ", frontier ", frontier, ", candidates ",
           where.size());
    const u64 offset = h->offset();
    model_.pending.emplace(offset, size);
    pending_.push_back({std::move(*h), offset, size});
  }

  void op_begin_expand() {
    const u64 size = in_.expand_size_arg(model_.frontier());
    if (pending_.size() >= max_pending) return;
    begin_expand(size);
  }

  void abandon(std::size_t i) {
    {
      auto dying = std::move(pending_[i].handle);
    }  // destroying the handle cancels it
    model_.pending.erase(pending_[i].offset);
    pending_[i] = std::move(pending_.back());
    pending_.pop_back();
  }

  void initialize(std::size_t i, std::size_t shift) {
    pending_rec& p = pending_[i];
    if (p.size > max_region_size || model_.regions.size() >= max_regions ||
        memory_bytes_ + p.size > region_budget)
      return abandon(i);
    // The base is 4 KiB-aligned, or shifted by a few granules; the pool promises nothing
    // about addresses, so only offsets are checked for alignment.
    auto* memory = static_cast<std::byte*>(::operator new(p.size + shift, std::align_val_t{4096}));
    memory_.emplace_back(memory);
    memory_bytes_ += p.size;
    std::byte* base = memory + shift;
    auto id = std::move(*p.handle).initialize(base);
    expect(id.has_value() && *id == model_.regions.size(),
           "initialize publishes the region with the next id", "got ", outcome(id));
    model_.pending.erase(p.offset);
    model_.regions.push_back({p.offset, p.size, base});
    pending_[i] = std::move(pending_.back());
    pending_.pop_back();
  }

  void op_initialize() {
    const std::size_t i = in_.pick(pending_.size());
    const std::size_t shift = 8 * (in_.u8() % 4);
    if (pending_.empty()) return;
    initialize(i, shift);
  }

  void op_abandon() {
    const std::size_t i = in_.pick(pending_.size());
    if (pending_.empty()) return;
    abandon(i);
  }

  void op_initialize_misuse() {
    const std::size_t i = in_.pick(pending_.size());
    const std::uint8_t how = in_.u8();
    const u64 into = in_.u16();
    if (pending_.empty()) return;
    pending_rec& p = pending_[i];
    void* base = nullptr;                              // null memory
    if ((how & 1u) != 0 && !model_.regions.empty()) {  // memory of an existing region
      const model_region& r = model_.regions[how / 2 % model_.regions.size()];
      base = r.base + into % r.size;
    }
    {
      deliberate_misuse m("initialize with null or overlapping memory");
      auto id = std::move(*p.handle).initialize(base);
      m.expect_reported();
      expect(!id && id.error() == errc::invalid_argument,
             "initialize with bad memory fails with invalid_argument");
    }
    model_.pending.erase(p.offset);  // the reservation is cancelled
    pending_[i] = std::move(pending_.back());
    pending_.pop_back();
  }

  // ---- Deliberate misuse of raw ranges: reported, and nothing changes.

  [[nodiscard]] bool raw_starts_at(u64 offset) const {
    const auto it = model_.live.find(offset);
    return it != model_.live.end() && it->second.kind == range_kind::raw;
  }

  void op_raw_misuse() {
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
        expect(!r && r.error() == errc::invalid_argument,
               "resize_raw of a non-raw offset fails with invalid_argument", outcome(r));
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

  // ---- pmr.

  void ensure_resource() {
    if (resource_) return;
    const resource_setup setup = in_.resource_setup_arg();
    if (setup.over_user_buffer) {  // over a user buffer of any size and alignment
      user_size_ = setup.user_size;
      user_storage_.assign(user_size_ + 64, std::byte{0});
      user_buffer_ = user_storage_.data() + setup.misalign;
      resource_.emplace(static_cast<void*>(user_buffer_), user_size_, &upstream_);
    } else {
      resource_.emplace(setup.growth, &upstream_);
    }
    resource_base_ = resource_->stats();
    expect(upstream_.outstanding() == 0, "a new resource takes nothing from upstream");
  }

  [[nodiscard]] std::size_t pool_blocks() const {
    std::size_t n = 0;
    for (const auto& [address, b] : blocks_) n += b.dedicated() ? 0 : 1;
    return n;
  }

  void check_resource_counts() const {
    const auto s = resource_->stats();
    expect(s.live_slices == resource_base_.live_slices + pool_blocks(),
           "pmr: live ranges = the buffer's pad slices + live pool blocks", "got ", s.live_slices,
           ", base ", resource_base_.live_slices, " + ", pool_blocks());
    expect(s.guarded_slices == 0 && s.pending_bytes == 0, "pmr: no guards, nothing pending");
  }

  void expect_resource_unchanged(const bufpool::pool_stats& before,
                                 const counting_upstream::snapshot& up, const char* what) const {
    expect_stats(resource_->stats(), before, what);
    expect(upstream_.outstanding() == up.outstanding, what, ": upstream bytes changed");
  }

  void op_pmr_allocate() {
    ensure_resource();
    const std::size_t bytes = in_.pmr_bytes_arg();
    const std::size_t alignment = in_.pmr_alignment_arg();
    if (blocks_.size() >= max_pmr_blocks) return;
    const bufpool::pool_stats before = resource_->stats();
    const counting_upstream::snapshot up = upstream_.now();
    void* p = nullptr;
    if (!std::has_single_bit(alignment)) {
      bool bad_alloc = false;
      {
        deliberate_misuse m("pmr allocate with a non-power-of-two alignment");
        try {
          p = resource_->allocate(bytes, alignment);
        } catch (const std::bad_alloc&) {
          bad_alloc = true;
        }
        m.expect_reported();
      }
      expect(bad_alloc, "pmr: a non-power-of-two alignment throws bad_alloc");
      expect_resource_unchanged(before, up, "pmr: a refused allocation changes nothing");
      return;
    }
    int failure = 0;  // 1: bad_alloc, 2: the upstream's exception
    try {
      p = resource_->allocate(bytes, alignment);
    } catch (const upstream_refused&) {
      failure = 2;
    } catch (const std::bad_alloc&) {
      failure = 1;
    }
    const bool refused = upstream_.now().refusals != up.refusals;
    if (failure != 0) {
      expect_resource_unchanged(before, up, "pmr: a failed allocation changes nothing");
      if (failure == 2) return;
      constexpr std::size_t top = std::numeric_limits<std::size_t>::max();
      expect(!refused && alignment <= bufpool::pmr::pool_resource::region_alignment &&
                 bytes > top - 4095,
             "pmr: bad_alloc only for sizes no region can hold; upstream errors propagate",
             "bytes ", bytes, " alignment ", alignment, " upstream refused ", refused);
      return;
    }
    expect(!refused, "pmr: an upstream refusal is not swallowed", "bytes ", bytes);
    const std::size_t extent = std::max<std::size_t>(bytes, 1);
    const auto address = reinterpret_cast<std::uintptr_t>(p);
    expect(address % alignment == 0, "pmr: the pointer is aligned", "pointer ", p, " alignment ",
           alignment);
    auto next = blocks_.lower_bound(address);
    const bool overlaps_next = next != blocks_.end() && next->first - address < extent;
    bool overlaps_prev = false;
    if (next != blocks_.begin()) {
      const auto& prev = std::prev(next)->second;
      overlaps_prev =
          reinterpret_cast<std::uintptr_t>(prev.pointer) + std::max<std::size_t>(prev.bytes, 1) >
          address;
    }
    expect(!overlaps_next && !overlaps_prev, "pmr: a block overlaps no other live block",
           "pointer ", p, " bytes ", bytes);
    auto* b = static_cast<std::byte*>(p);
    const bool in_buffer = user_buffer_ != nullptr && b >= user_buffer_ && extent <= user_size_ &&
                           static_cast<std::size_t>(b - user_buffer_) <= user_size_ - extent;
    expect(in_buffer || upstream_.contains(p, extent),
           "pmr: a block lies in the user buffer or in memory from upstream", "pointer ", p,
           " bytes ", bytes);
    const u64 id = next_id_++;
    fill_cookie(b, bytes, id);
    blocks_.emplace(address, pmr_block{b, bytes, alignment, id});
    check_resource_counts();
  }

  std::map<std::uintptr_t, pmr_block>::iterator nth_block(std::size_t i) {
    return std::next(blocks_.begin(), static_cast<std::ptrdiff_t>(i % blocks_.size()));
  }

  void pmr_deallocate(std::map<std::uintptr_t, pmr_block>::iterator it, bool zero_as_given) {
    const pmr_block b = it->second;
    verify_cookie(b.pointer, b.bytes, b.bytes, b.id, "pmr deallocate");
    const counting_upstream::snapshot up = upstream_.now();
    // A block of 0 bytes may be given back as 0 or 1 byte: the resource asks the pool for 1.
    const std::size_t bytes = b.bytes == 0 && !zero_as_given ? 1 : b.bytes;
    resource_->deallocate(b.pointer, bytes, b.alignment);
    blocks_.erase(it);
    const u64 expected =
        b.dedicated() ? up.outstanding - std::max<std::size_t>(b.bytes, 1) : up.outstanding;
    expect(upstream_.outstanding() == expected,
           "pmr: deallocate returns dedicated blocks upstream, and keeps regions", "outstanding ",
           upstream_.outstanding(), ", expected ", expected);
    check_resource_counts();
  }

  void op_pmr_deallocate() {
    const std::size_t i = in_.u8();
    const bool zero = (in_.u8() & 1u) != 0;
    if (!resource_ || blocks_.empty()) return;
    pmr_deallocate(nth_block(i), zero);
  }

  void op_pmr_misuse() {
    const std::uint8_t kind = in_.u8();
    const std::size_t i = in_.u8();
    const std::size_t arg = in_.u8();
    const std::size_t alignment = std::size_t{1} << (arg % 14);  // up to the dedicated path
    if (!resource_) return;
    const bufpool::pool_stats before = resource_->stats();
    const counting_upstream::snapshot up = upstream_.now();
    void* p = nullptr;
    std::size_t bytes = 16;
    std::size_t align = alignment;
    switch (kind % 6) {
      case 0:  // memory the resource never handed out
        p = &g_foreign_object;
        break;
      case 1:  // a pointer inside the user buffer, or into the core pool's memory
        if (user_buffer_ != nullptr && user_size_ != 0 && (kind & 0x80u) != 0)
          p = user_buffer_ + arg % user_size_;
        else if (!model_.regions.empty())
          p = model_.regions[0].base + arg % model_.regions[0].size;
        else
          p = &g_foreign_object;
        break;
      case 2: {  // inside a live block
        if (blocks_.empty()) return;
        const pmr_block& b = nth_block(i)->second;
        p = b.pointer + 1 + arg;
        bytes = b.bytes;
        align = b.alignment;
        break;
      }
      case 3: {  // the size differs from the allocation's
        if (blocks_.empty()) return;
        const pmr_block& b = nth_block(i)->second;
        p = b.pointer;
        bytes = std::max<std::size_t>(b.bytes, 1) + 1 + arg;
        align = b.alignment;
        break;
      }
      case 4: {  // the alignment differs from the allocation's
        if (blocks_.empty()) return;
        const pmr_block& b = nth_block(i)->second;
        p = b.pointer;
        bytes = b.bytes;
        align = b.alignment == alignment ? alignment * 2 : alignment;
        break;
      }
      default: {  // deallocated twice
        if (blocks_.empty()) return;
        const auto it = nth_block(i);
        p = it->second.pointer;
        bytes = it->second.bytes;
        align = it->second.alignment;
        pmr_deallocate(it, true);
        const bufpool::pool_stats after_first = resource_->stats();
        const counting_upstream::snapshot up_first = upstream_.now();
        {
          deliberate_misuse m("pmr deallocate twice");
          resource_->deallocate(p, bytes, align);
          m.expect_reported();
        }
        expect_resource_unchanged(after_first, up_first,
                                  "pmr: a second deallocate changes nothing");
        return;
      }
    }
    if (blocks_.contains(reinterpret_cast<std::uintptr_t>(p))) return;  // not a misuse after all
    {
      deliberate_misuse m("pmr deallocate of a pointer, size or alignment it did not hand out");
      resource_->deallocate(p, bytes, align);
      m.expect_reported();
    }
    expect_resource_unchanged(before, up, "pmr: a misused deallocate changes nothing");
    check_resource_counts();
  }

  void op_pmr_release() {
    if (!resource_) return;
    resource_->release();
    blocks_.clear();
    expect(upstream_.outstanding() == 0 && upstream_.blocks() == 0,
           "pmr: release() gives every upstream block back", "outstanding ",
           upstream_.outstanding());
    expect_stats(resource_->stats(), resource_base_,
                 "pmr: release() returns the resource to its initial state");
  }

  // ---- Checks.

  void check_counts() const {
    const bufpool::pool_stats want = model_.stats();
    expect_stats(pool_->stats(), want, "pool.stats() equals the model's");
    const std::size_t guarded = want.guarded_slices;
    expect(pool_->active_guard_count() == guarded, "active_guard_count() equals the model's",
           "got ", pool_->active_guard_count(), ", expected ", guarded);
  }

  void full_check() const {
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

  // ---- End of input: give everything back and check the pool is whole again.

  void teardown() {
    while (!pending_.empty()) abandon(pending_.size() - 1);
    for (auto& s : slices_) {
      if (s.flag >= 0) {
        expect(s.slice.unguard_unchecked().has_value(), "unguard_unchecked at teardown");
        unguarded(s);
      }
      verify_slice(s, "teardown");
      expect(std::move(s.slice).reclaim().has_value(), "reclaim at teardown");
      model_.live.erase(s.offset);
    }
    slices_.clear();
    while (!raws_.empty()) {
      const raw_rec& r = raws_.back();
      verify_raw(r, "teardown");
      expect(pool_->release_raw(static_cast<const void*>(r.range.pointer), r.size, r.alignment),
             "release_raw at teardown");
      forget_raw(raws_.size() - 1);
    }
    for (auto& f : flags_) *f = true;
    const std::size_t parked = model_.collect(flags_);
    expect(pool_->collect() == parked, "collect at teardown frees every parked range");
    check_counts();
    full_check();

    const auto s = pool_->stats();
    u64 total = 0;
    u64 largest = 0;
    for (const auto& r : model_.regions) {
      total += r.size;
      largest = std::max(largest, r.size);
    }
    expect(s.used_bytes == 0 && s.live_slices == 0 && s.guarded_slices == 0 &&
               s.parked_slices == 0 && s.pending_bytes == 0,
           "everything given back: nothing used, live, guarded, parked or pending");
    expect(s.free_ranges == model_.regions.size() && s.free_bytes == total &&
               s.largest_free == largest,
           "fully coalesced: one free range per region, never across regions", "free_ranges ",
           s.free_ranges, " regions ", model_.regions.size());

    if (resource_) {
      g_op_name = "pmr teardown";
      while (!blocks_.empty()) pmr_deallocate(blocks_.begin(), true);
      const auto rs = resource_->stats();
      expect(rs.live_slices == resource_base_.live_slices &&
                 rs.used_bytes == resource_base_.used_bytes &&
                 (rs.spare_bytes != 0 || rs.free_ranges == rs.regions),
             "pmr: all blocks given back, every region one free range", "live ", rs.live_slices,
             " free_ranges ", rs.free_ranges, " regions ", rs.regions);
      const auto rv = resource_->validate();
      expect(rv.has_value(), "pmr: validate()", rv ? std::string() : rv.error());
      resource_.reset();
      expect(upstream_.outstanding() == 0 && upstream_.blocks() == 0,
             "pmr: destroying the resource gives every upstream byte back", "outstanding ",
             upstream_.outstanding());
    }

    g_op_name = "close";
    auto closed = pool_->try_close();
    expect(closed.has_value(), "try_close succeeds once everything is given back");
    const auto& entries = closed->entries;
    bool same = entries.size() == model_.regions.size();
    for (std::size_t k = 0; same && k < entries.size(); ++k)
      same = entries[k].pool_offset == model_.regions[k].offset &&
             entries[k].size == model_.regions[k].size &&
             entries[k].pointer == model_.regions[k].base;
    expect(same, "try_close hands back every region in initialization order");
    const auto late = pool_->acquire(16);
    expect(!late && late.error() == errc::pool_closed, "a closed pool refuses acquisitions");
  }

  input_decoder& in_;
  std::vector<std::unique_ptr<std::byte, region_memory_deleter>> memory_;  // outlives the pool
  u64 memory_bytes_ = 0;
  std::array<std::shared_ptr<bool>, flag_count> flags_;
  options_t options_;
  std::shared_ptr<pool_t> pool_;
  pool_model model_;
  std::vector<pending_rec> pending_;
  std::vector<slice_rec> slices_;
  std::vector<raw_rec> raws_;
  u64 next_id_ = 1;

  counting_upstream upstream_;  // outlives the resource
  std::vector<std::byte> user_storage_;
  std::byte* user_buffer_ = nullptr;
  std::size_t user_size_ = 0;
  std::optional<bufpool::pmr::pool_resource> resource_;
  std::map<std::uintptr_t, pmr_block> blocks_;
  bufpool::pool_stats resource_base_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bufpool::set_violation_handler(&on_violation);
  bufpool::set_diagnostic_handler(&on_diagnostic);
  g_op = 0;
  g_op_name = "setup";
  g_misuse_expected = false;
  input_decoder in(data, size);
  session s(in);
  s.run();
  return 0;
}
