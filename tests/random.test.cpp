// SPDX-License-Identifier: MIT
// Seeded differential test: millions of random engine operations checked against model.hpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <expected>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model.hpp"
import bufpool;

// Reproduce a failure with BUFPOOL_SEED=<seed printed in the failure>; make the run longer
// or shorter with BUFPOOL_RANDOM_SCALE (a factor on the operation counts, default 1).

namespace {

using bufpool::errc;
using bufpool_test::model_error;
using bufpool_test::model_placement;
using bufpool_test::u64;

constexpr u64 kib = 1024;
constexpr u64 mib = 1024 * kib;

u64 base_seed() {
  const char* s = std::getenv("BUFPOOL_SEED");
  return s != nullptr && *s != '\0' ? std::strtoull(s, nullptr, 0) : u64{0x5eedb0f1};
}

double scale() {
  const char* s = std::getenv("BUFPOOL_RANDOM_SCALE");
  const double f = s != nullptr && *s != '\0' ? std::strtod(s, nullptr) : 1.0;
  return f > 0 ? f : 1.0;
}

errc to_errc(model_error e) {
  switch (e) {
    case model_error::invalid_argument:
      return errc::invalid_argument;
    case model_error::arithmetic_overflow:
      return errc::arithmetic_overflow;
    case model_error::out_of_range:
      return errc::out_of_range;
    case model_error::occupied:
      return errc::occupied;
    case model_error::none:
      break;
  }
  return errc{};
}

const char* name_of(errc e) {
  return e == errc{} ? "success" : bufpool::to_string(e);
}

template <class T>
errc error_of(const std::expected<T, errc>& r) {
  return r ? errc{} : r.error();
}

/// One configuration of limits and workload.
struct world {
  const char* name;
  bufpool::engine_limits limits;
  u64 pre_reserve;  // a span reserved (never published) first: pushes regions up
  u64 top_region;   // if not 0: a first region of this size ends at the last offset
  u64 min_region;   // region sizes are uniform in [min_region, max_region]
  u64 max_region;
  std::size_t max_regions;
  u64 small_max;           // most sizes are log-uniform in [1, small_max]
  u64 large_max;           // some are log-uniform in [small_max, large_max]
  unsigned max_align_log;  // alignments 2^0 .. 2^12 mostly, up to 2^max_align_log rarely
  double ops;              // operations at scale 1
  u64 salt;                // mixed into the seed
};

struct live_slice {
  std::uint32_t node;
  std::uint32_t region;
  u64 offset;
  u64 capacity;
};

class differential {
 public:
  differential(const world& w, u64 base)
      : w_(w),
        base_(base),
        rng_(base ^ w.salt),
        e_(w.limits),
        m_(w.limits.last_offset, granule()) {}

  void run() {
    if (w_.pre_reserve != 0) reserve(w_.pre_reserve, /*keep=*/true);
    if (w_.top_region != 0 && !failed()) {
      // Reserve the room left below the top region, publish the top region, then cancel
      // the room: a gap that later expansions must find.
      const u64 room = w_.limits.last_offset - w_.pre_reserve + 1 - w_.top_region;
      reserve(room, /*keep=*/false);
      if (!failed()) reserve(w_.top_region, /*keep=*/false);
      if (failed()) return;
      const auto [top, size] = pending_.back();
      pending_.pop_back();
      EXPECT_EQ(top + (size - 1), w_.limits.last_offset) << where();
      const std::uint32_t id = e_.publish(top, size);
      ASSERT_EQ(id, m_.publish(top, size)) << where();
      initial_.push_back(e_.region(id));
      const auto [hole, hole_size] = pending_.back();
      pending_.pop_back();
      e_.cancel(hole, hole_size);
      m_.cancel(hole, hole_size);
    }
    if (failed()) return;
    while (e_.region_count() < 2 && !failed()) expand();  // start with some space
    const auto total = static_cast<std::size_t>(w_.ops * scale());
    for (op_ = 0; op_ < total && !failed(); ++op_) {
      step();
      if ((op_ + 1) % 1000 == 0) check_batch();
    }
    if (failed()) return;
    check_batch();
    exhaust();
    if (failed()) return;
    restore();
  }

  [[nodiscard]] std::size_t ops_done() const { return op_; }
  [[nodiscard]] std::size_t allocations() const { return allocations_; }
  [[nodiscard]] std::size_t failures() const { return failures_; }

 private:
  [[nodiscard]] u64 granule() const { return w_.limits.min_alignment; }
  [[nodiscard]] static bool failed() { return ::testing::Test::HasFailure(); }
  [[nodiscard]] std::string where() const {
    return std::string("world ") + w_.name + ", BUFPOOL_SEED=" + std::to_string(base_) + ", op " +
           std::to_string(op_);
  }

  // ---- Randomness (hand-rolled so that a seed means the same run on every library) ----

  u64 below(u64 n) { return n == 0 ? 0 : rng_() % n; }
  u64 between(u64 lo, u64 hi) { return lo + below(hi - lo + 1); }
  bool chance(unsigned percent) { return below(100) < percent; }
  u64 log_uniform(u64 lo, u64 hi) {
    const auto lo_log = static_cast<unsigned>(std::bit_width(lo) - 1);
    const auto hi_log = static_cast<unsigned>(std::bit_width(hi) - 1);
    const unsigned k = lo_log + static_cast<unsigned>(below(hi_log - lo_log + 1));
    return std::clamp(between(u64{1} << k, (u64{1} << k) * 2 - 1), lo, hi);
  }
  u64 random_size() {
    const unsigned roll = static_cast<unsigned>(below(100));
    if (roll < 10) return between(1, 64);
    if (roll < 95) return log_uniform(1, w_.small_max);
    return log_uniform(w_.small_max, w_.large_max);
  }
  u64 random_alignment() {
    if (!chance(4)) return u64{1} << below(13);
    return u64{1} << between(13, w_.max_align_log);
  }

  // ---- Operations -----------------------------------------------------------------------

  void step() {
    // Phases of 20k operations: grow, churn, drain, fill.
    const u64 phase = (op_ / 20000) % 4;
    const unsigned alloc_share = phase == 0 ? 70 : phase == 1 ? 50 : phase == 2 ? 25 : 90;
    const unsigned roll = static_cast<unsigned>(below(1000));
    if (roll < 6) {
      expand();
    } else if (roll < 6 + alloc_share * 10 || live_.empty()) {
      allocate();
    } else {
      release_one();
    }
  }

  void allocate() {
    const u64 size = random_size();
    const u64 alignment = random_alignment();
    const unsigned roll = static_cast<unsigned>(below(100));
    if (roll < 30)
      allocate_best(size, alignment, bufpool::optimal);
    else if (roll < 60)
      allocate_best(size, alignment, bufpool::greedy);
    else if (roll < 80)
      allocate_good(size, alignment);
    else
      allocate_fixed(size, alignment);
  }

  // good_fit: succeeds whenever a free range holds the request rounded up to the granule
  // plus the largest padding its alignment may need; lands inside a free range, aligned,
  // with the request's capacity (plus a tail too small to stand alone).
  void allocate_good(u64 size, u64 alignment) {
    const u64 len = std::max(size, w_.limits.min_size);
    const u64 align = std::max(alignment, granule());
    const u64 rounded = (len + granule() - 1) / granule() * granule();
    const bool promised = rounded >= len && rounded <= ~u64{0} - (align - granule()) &&
                          m_.best_fit(rounded + (align - granule()), granule()).has_value();
    const auto got = e_.allocate(size, alignment, bufpool::good_fit);
    if (!got) {
      EXPECT_EQ(got.error(), errc::out_of_memory) << where() << ": good_fit size " << size;
      EXPECT_FALSE(promised) << where() << ": good_fit size " << size << " alignment " << alignment
                             << " failed while a free range holds it padded";
      ++failures_;
      return;
    }
    const auto range = m_.free_range_at(got->offset);
    ASSERT_TRUE(range.has_value())
        << where() << ": offset " << got->offset << " is not in a free range of the model";
    model_placement p = *range;
    ASSERT_LE(got->capacity, p.range_size - (got->offset - p.range_offset))
        << where() << ": good_fit range at " << got->offset << " capacity " << got->capacity
        << " passes the end of free range " << p.range_offset;
    ASSERT_TRUE(got->capacity >= len && got->capacity < rounded + granule())
        << where() << ": good_fit size " << size << " got capacity " << got->capacity;
    p.start = got->offset;
    p.capacity = got->capacity;
    accept(*got, p, align);
  }

  // optimal and greedy: the model's exact best fit decides success (greedy falls back from
  // its size class to the exact size, and flushes its cache, before it gives up), and for
  // optimal the size and place of the chosen free range.
  void allocate_best(u64 size, u64 alignment, bufpool::strategy how) {
    const u64 len = std::max(size, w_.limits.min_size);
    const u64 align = std::max(alignment, granule());
    const auto best = m_.best_fit(len, align);
    const bool optimal = how == bufpool::optimal;
    const auto got = e_.allocate(size, alignment, how);
    if (!best) {
      EXPECT_EQ(error_of(got), errc::out_of_memory)
          << where() << (optimal ? ": optimal" : ": greedy") << " size " << size << " alignment "
          << alignment << ": the model has no fitting range";
      ++failures_;
      return;
    }
    ASSERT_TRUE(got.has_value()) << where() << (optimal ? ": optimal" : ": greedy") << " size "
                                 << size << " alignment " << alignment << " failed with "
                                 << name_of(got.error()) << " but the model fits it at "
                                 << best->start;
    const auto range = m_.free_range_at(got->offset);
    ASSERT_TRUE(range.has_value())
        << where() << ": offset " << got->offset << " is not in a free range of the model";
    model_placement p = *range;
    if (!optimal) {
      // greedy: anywhere in a free range (a cached range lies inside a larger free range of
      // the model), with its size class's capacity, or less when only less fits, plus a tail
      // too small to stand alone.
      const u64 want = e_.class_capacity(size);
      ASSERT_LE(got->capacity, p.range_size - (got->offset - p.range_offset))
          << where() << ": greedy range at " << got->offset << " capacity " << got->capacity
          << " passes the end of free range " << p.range_offset;
      ASSERT_TRUE(got->capacity >= len && got->capacity < want + granule())
          << where() << ": greedy size " << size << " got capacity " << got->capacity
          << ", its class has " << want;
      p.start = got->offset;
      p.capacity = got->capacity;
      accept(*got, p, align);
      return;
    }
    const u64 pad = bufpool_test::model_pad(p.range_offset, align);
    ASSERT_EQ(got->offset, p.range_offset + pad)
        << where() << ": not at the first aligned offset of free range " << p.range_offset;
    ASSERT_LE(len, p.range_size - pad) << where() << ": the chosen free range is too small";
    ASSERT_EQ(p.range_size, best->range_size)
        << where() << ": optimal size " << size << " alignment " << alignment
        << " chose a free range of " << p.range_size << " at " << p.range_offset
        << ", the smallest fitting one has " << best->range_size << " at " << best->range_offset;
    p.start = got->offset;
    p.capacity = m_.expected_capacity(p.range_size - pad, len);
    accept(*got, p, align);
  }

  void allocate_fixed(u64 size, u64 alignment) {
    const u64 len = std::max(size, w_.limits.min_size);
    const u64 align = std::max(alignment, granule());
    allocate_fixed_at(fixed_target(len, align), size, alignment);
  }

  // fixed: the model's exact answer, error code included.
  void allocate_fixed_at(u64 at, u64 size, u64 alignment) {
    const u64 len = std::max(size, w_.limits.min_size);
    const u64 align = std::max(alignment, granule());
    const auto want = m_.fixed(at, len, align);
    const auto got = e_.allocate(size, alignment, bufpool::fixed(at));
    ASSERT_EQ(error_of(got), to_errc(want.error))
        << where() << ": fixed(" << at << ") size " << size << " alignment " << alignment
        << ": engine says " << name_of(error_of(got)) << ", model says "
        << name_of(to_errc(want.error));
    if (!got) {
      ++failures_;
      return;
    }
    ASSERT_EQ(got->offset, at) << where();
    accept(*got, want.placement, align);
  }

  // A fixed offset: mostly inside free ranges, also on live slices, anywhere in a region,
  // anywhere at all, misaligned, or at the very top of the integer.
  u64 fixed_target(u64 len, u64 align) {
    const unsigned roll = static_cast<unsigned>(below(100));
    const auto& regions = m_.regions();
    if (roll < 50 && !regions.empty()) {
      const auto& r = regions[below(regions.size())];
      auto it = r.ranges.upper_bound(r.offset + below(r.size));
      --it;
      if (it->second.used && std::next(it) != r.ranges.end()) ++it;
      const u64 start = it->first + bufpool_test::model_pad(it->first, align);
      if (start - it->first >= it->second.size) return start;
      const u64 room = it->second.size - (start - it->first);
      if (chance(30) && room >= len) return start + (room - len) / align * align;  // flush end
      return start + below(room / align + 1) * align;
    }
    if (roll < 75 && !live_.empty()) {
      const live_slice& s = live_[below(live_.size())];
      const u64 inside = s.offset + below(s.capacity);
      return chance(50) ? s.offset : inside - inside % align;
    }
    if (roll < 88 && !regions.empty()) {
      const auto& r = regions[below(regions.size())];
      const u64 at = r.offset + below(r.size);
      return at - at % align;
    }
    if (roll < 94) {
      const u64 at = below(w_.limits.last_offset) + below(2);
      return at - at % align;
    }
    if (roll < 97) {  // near the top of the integer: often crosses it
      const u64 at = w_.limits.last_offset - below(len + 64);
      return at - at % align;
    }
    return below(w_.limits.last_offset) | 1;  // odd: misaligned unless the granule is 1
  }

  void accept(const bufpool::engine_allocation& got, const model_placement& p, u64 align) {
    ASSERT_EQ(got.offset % align, 0u)
        << where() << ": offset " << got.offset << " alignment " << align;
    ASSERT_EQ(got.region, p.region) << where();
    ASSERT_EQ(got.capacity, p.capacity)
        << where() << ": capacity at " << got.offset << " in free range [" << p.range_offset
        << ", +" << p.range_size << ")";
    ASSERT_TRUE(e_.is_live(got.node)) << where();
    m_.take(p);
    live_.push_back({got.node, got.region, got.offset, got.capacity});
    ++allocations_;
  }

  void release_one() {
    const std::size_t i = below(live_.size());
    const live_slice s = live_[i];
    live_[i] = live_.back();
    live_.pop_back();
    ASSERT_TRUE(e_.release(s.node)) << where() << ": release of live node " << s.node;
    m_.give(s.region, s.offset);
    if (chance(2)) ASSERT_FALSE(e_.release(s.node)) << where() << ": double release succeeded";
  }

  // Reserve a new span, or resolve a pending one (publish it as a region, or cancel it).
  void expand() {
    if (!pending_.empty() && (chance(50) || e_.region_count() >= w_.max_regions)) {
      const std::size_t i = below(pending_.size());
      const auto [offset, size] = pending_[i];
      pending_[i] = pending_.back();
      pending_.pop_back();
      if (chance(60) && e_.region_count() < w_.max_regions) {
        const std::uint32_t id = e_.publish(offset, size);
        ASSERT_EQ(id, m_.publish(offset, size)) << where();
        initial_.push_back(e_.region(id));
      } else {
        e_.cancel(offset, size);
        m_.cancel(offset, size);
      }
      return;
    }
    if (e_.region_count() >= w_.max_regions || pending_.size() >= 3) return;
    const u64 size = chance(10) ? between(1, 4 * kib) : between(w_.min_region, w_.max_region);
    reserve(size, /*keep=*/false);
  }

  void reserve(u64 size, bool keep) {
    const auto want = m_.expected_reserve(size);
    const auto got = e_.reserve(size);
    if (!want) {
      ASSERT_EQ(error_of(got), errc::out_of_offset_space) << where() << ": reserve " << size;
      return;
    }
    ASSERT_TRUE(got.has_value()) << where() << ": reserve " << size << " failed with "
                                 << name_of(got.error()) << ", the model has " << *want;
    ASSERT_EQ(*got, *want) << where() << ": reserve " << size;
    m_.reserve_at(*got, size);
    if (!keep) pending_.emplace_back(*got, size);
  }

  // ---- Checks ---------------------------------------------------------------------------

  void check_batch() {
    const auto v = e_.validate();
    ASSERT_TRUE(v.has_value()) << where() << ": validate(): " << v.error();
    const auto s = e_.stats();
    const auto t = m_.totals();
    ASSERT_EQ(s.used_bytes, t.used_bytes) << where();
    ASSERT_EQ(s.free_bytes, t.free_bytes) << where();
    ASSERT_EQ(s.pending_bytes, t.pending_bytes) << where();
    ASSERT_EQ(s.largest_free, t.largest_free) << where();
    ASSERT_EQ(s.free_ranges, t.free_ranges) << where();
    ASSERT_EQ(s.used_ranges, t.used_ranges) << where();
    ASSERT_EQ(s.used_ranges, live_.size()) << where();
    ASSERT_EQ(s.regions, m_.regions().size()) << where();
    for (std::uint32_t id = 0; id < m_.regions().size(); ++id) {
      const auto& mr = m_.regions()[id];
      const auto er = e_.region(id);
      ASSERT_EQ(er.offset, mr.offset) << where() << ", region " << id;
      ASSERT_EQ(er.size, mr.size) << where() << ", region " << id;
      ASSERT_EQ(er.used_bytes, mr.used_bytes) << where() << ", region " << id;
      ASSERT_EQ(er.free_bytes, mr.free_bytes) << where() << ", region " << id;
      ASSERT_EQ(er.used_ranges, mr.used_ranges) << where() << ", region " << id;
      ASSERT_EQ(er.free_ranges, mr.free_ranges) << where() << ", region " << id;
      const auto ranges = e_.ranges(id);
      ASSERT_EQ(ranges.size(), mr.ranges.size()) << where() << ", region " << id;
      auto it = mr.ranges.begin();
      for (const auto& r : ranges) {
        ASSERT_EQ(r.offset, it->first) << where() << ", region " << id;
        ASSERT_EQ(r.size, it->second.size) << where() << ", region " << id << " at " << r.offset;
        ASSERT_EQ(r.used, it->second.used) << where() << ", region " << id << " at " << r.offset;
        ++it;
      }
    }
  }

  // Fill every region until nothing fits any more, still checking each answer: random
  // requests until many miss, then every remaining free range is taken whole.
  void exhaust() {
    for (int misses = 0; misses < 64 && !failed();) {
      const std::size_t before = allocations_;
      allocate_best(random_size(), u64{1} << below(7),
                    chance(50) ? bufpool::optimal : bufpool::greedy);
      if (allocations_ == before) ++misses;
    }
    std::vector<std::pair<u64, u64>> crumbs;  // offset, size
    for (const auto& r : m_.regions())
      for (const auto& [offset, range] : r.ranges)
        if (!range.used) crumbs.emplace_back(offset, range.size);
    for (const auto& [offset, size] : crumbs) {
      if (failed()) return;
      const u64 pad = bufpool_test::model_pad(offset, granule());
      if (pad >= size || size - pad < w_.limits.min_size) continue;  // can never be used
      if (chance(50))
        allocate_fixed_at(offset + pad, size - pad, 1);
      else
        allocate_best(size - pad, 1, chance(50) ? bufpool::optimal : bufpool::greedy);
    }
    allocate_best(1, 1, bufpool::optimal);  // the model says whether anything is left
    allocate_best(1, 1, bufpool::greedy);
    if (failed()) return;
    check_batch();
  }

  // Release everything in shuffled order and cancel pending spans: every region must be
  // back to one free range, with exactly the stats it had when it was published.
  void restore() {
    for (std::size_t i = live_.size(); i > 1; --i) std::swap(live_[i - 1], live_[below(i)]);
    while (!live_.empty() && !failed()) {
      const live_slice s = live_.back();
      live_.pop_back();
      ASSERT_TRUE(e_.release(s.node)) << where();
      m_.give(s.region, s.offset);
    }
    for (const auto& [offset, size] : pending_) {
      e_.cancel(offset, size);
      m_.cancel(offset, size);
    }
    pending_.clear();
    check_batch();
    ASSERT_EQ(e_.region_count(), initial_.size()) << where();
    u64 largest = 0;
    for (std::uint32_t id = 0; id < initial_.size(); ++id) {
      const auto now = e_.region(id);
      const auto& was = initial_[id];
      EXPECT_EQ(now.offset, was.offset) << where() << ", region " << id;
      EXPECT_EQ(now.size, was.size) << where() << ", region " << id;
      EXPECT_EQ(now.used_bytes, 0u) << where() << ", region " << id;
      EXPECT_EQ(now.free_bytes, was.size) << where() << ", region " << id;
      EXPECT_EQ(now.free_ranges, 1u) << where() << ", region " << id;
      EXPECT_EQ(now.used_ranges, 0u) << where() << ", region " << id;
      EXPECT_EQ(was.free_ranges, 1u) << where() << ", region " << id;
      const auto ranges = e_.ranges(id);
      ASSERT_EQ(ranges.size(), 1u) << where() << ", region " << id;
      EXPECT_EQ(ranges[0].offset, was.offset);
      EXPECT_EQ(ranges[0].size, was.size);
      EXPECT_FALSE(ranges[0].used);
      largest = std::max(largest, was.size);
    }
    const auto s = e_.stats();
    EXPECT_EQ(s.used_bytes, 0u) << where();
    EXPECT_EQ(s.used_ranges, 0u) << where();
    EXPECT_EQ(s.free_ranges, initial_.size()) << where();
    EXPECT_EQ(s.largest_free, largest) << where();
    EXPECT_EQ(s.pending_bytes, w_.pre_reserve) << where();
  }

  world w_;
  u64 base_;  // the seed before mixing in the world's salt
  std::mt19937_64 rng_;
  bufpool::engine e_;
  bufpool_test::engine_model m_;
  std::vector<live_slice> live_;
  std::vector<std::pair<u64, u64>> pending_;  // offset, size
  std::vector<bufpool::region_stats> initial_;
  std::size_t op_ = 0;

  std::size_t allocations_ = 0;
  std::size_t failures_ = 0;
};

void run_world(const world& w) {
  const u64 seed = base_seed();
  SCOPED_TRACE(std::string("world ") + w.name +
               ": rerun with BUFPOOL_SEED=" + std::to_string(seed) + " --gtest_filter=" +
               ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name() + "." +
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
  differential d(w, seed);
  d.run();
  // The run must have exercised both outcomes, or it proves little.
  EXPECT_GT(d.allocations(), d.ops_done() / 4);
  EXPECT_GT(d.failures(), 0u);
}

bufpool::engine_limits limits(u64 last, u64 min_alignment, u64 max_alignment) {
  bufpool::engine_limits l;
  l.last_offset = last;
  l.max_size = last;
  l.min_alignment = min_alignment;
  l.max_alignment = max_alignment;
  return l;
}

TEST(RandomDifferential, U32OffsetsMatchTheModel) {
  // Regions live in the top 16 MiB of a 4 GiB space, the first one ending at offset 2^32 - 1:
  // the end is exhausted at once and every later region comes from a gap.
  run_world({"u32", limits(UINT32_MAX, 16, mib), (u64{1} << 32) - 16 * mib, mib, 64 * kib, 2 * mib,
             16, 64 * kib, mib, 20, 400000, 0x1});
}

TEST(RandomDifferential, U16OffsetsMatchTheModel) {
  run_world({"u16", limits(UINT16_MAX, 8, u64{1} << 15), 0, 0, kib, 16 * kib, 12, 4 * kib, 16 * kib,
             15, 600000, 0x2});
}

TEST(RandomDifferential, U64TopOfRangeMatchesTheModel) {
  // Only the last 16 MiB below 2^64 are left for regions; the first one touches the top.
  run_world({"u64-top", limits(~u64{0}, 16, u64{1} << 63), ~u64{0} - 16 * mib + 1, mib, 64 * kib,
             2 * mib, 16, 64 * kib, mib, 63, 150000, 0x3});
}

TEST(RandomDifferential, ByteGranuleWithMinSizeMatchesTheModel) {
  auto l = limits(UINT32_MAX, 1, u64{1} << 16);
  l.min_size = 24;
  run_world(
      {"byte-granule", l, 0, 0, 16 * kib, 512 * kib, 12, 64 * kib, 512 * kib, 16, 250000, 0x4});
}

}  // namespace

// The pool's offset map (open addressing, backward-shift erase) against std::unordered_map:
// keys drawn from a small set of multiples of 4 KiB, so that probe runs are long and every
// erase moves cells; lookups, erases by key and by cell, and growth are all checked.
TEST(RandomDifferential, OffsetMapFindsEveryKeyAfterAnyMixOfInsertsAndErases) {
  const u64 seed = base_seed() + 77;
  SCOPED_TRACE("BUFPOOL_SEED=" + std::to_string(seed - 77));
  std::mt19937_64 rng(seed);
  bufpool::detail::offset_map map;
  std::unordered_map<u64, std::uint32_t> model;
  const auto steps = static_cast<std::size_t>(200'000 * scale());
  for (std::size_t step = 0; step < steps; ++step) {
    const u64 key = (rng() % 3000) * 4 * kib;
    const auto it = model.find(key);
    switch (rng() % 4) {
      case 0:
      case 1:
        if (it == model.end()) {
          const auto node = static_cast<std::uint32_t>(rng() % 1'000'000);
          map.insert(key, node);
          model.emplace(key, node);
        }
        break;
      case 2:
        ASSERT_EQ(map.erase(key), it != model.end()) << "step " << step;
        if (it != model.end()) model.erase(it);
        break;
      default: {
        const std::size_t cell = map.find_cell(key);
        ASSERT_EQ(cell != bufpool::detail::offset_map::no_cell, it != model.end())
            << "step " << step;
        if (it != model.end()) {
          ASSERT_EQ(map.node_at(cell), it->second) << "step " << step;
          map.erase_cell(cell);
          model.erase(it);
        }
      }
    }
    ASSERT_EQ(map.size(), model.size());
    if (step % 1000 == 0)
      for (const auto& [k, node] : model) ASSERT_EQ(map.find(k), node) << "step " << step;
  }
  for (const auto& [k, node] : model) ASSERT_EQ(map.find(k), node);
}
