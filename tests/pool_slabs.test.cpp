// SPDX-License-Identifier: MIT
// Slabs (option `slabs`): small greedy raw ranges are slots of one-class spans, found by
// offset through a per-region table; checked against a model in a randomized test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>
import bufpool;

#include "map_reader.hpp"
#include "page_aligned_pool.hpp"
#include "violations.hpp"

namespace {

using pool64 = bufpool::buffer_pool<std::uint64_t>;
using bufpool_test::g_last_violation;
using bufpool_test::g_violations;
using bufpool_test::recording_violations;
using bufpool_test::slab_options;

// A slab pool over one heap block (page-aligned offsets and addresses agree on alignment).
struct slab_pool : bufpool_test::page_aligned_pool<pool64> {
  explicit slab_pool(std::size_t bytes = std::size_t{1} << 20)
      : page_aligned_pool(slab_options(), bytes) {}
};

void expect_valid(const pool64& pool) {
  const auto v = pool.validate();
  EXPECT_TRUE(v.has_value()) << v.error();
}

std::uint64_t region_bytes(const pool64& pool) {
  std::uint64_t total = 0;
  for (const auto& r : pool.region_statistics()) total += r.size;
  return total;
}

// used + free + spare is every byte of the regions, in total and per region.
void expect_totals_add_up(const pool64& pool) {
  const auto s = pool.stats();
  EXPECT_EQ(s.used_bytes + s.free_bytes + s.spare_bytes, region_bytes(pool));
  std::uint64_t live = 0;
  for (const auto& r : pool.region_statistics()) {
    EXPECT_EQ(r.used_bytes + r.free_bytes + r.spare_bytes, r.size);
    live += r.used_ranges;
  }
  EXPECT_EQ(live, s.live_slices);
}

TEST(Slabs, SmallGreedyRawRangesAreSlotsOfOneSpanAndReleaseRestoresThePool) {
  slab_pool h;
  const auto initial = h.pool.stats();
  std::vector<bufpool::raw_range<std::uint64_t>> live;
  for (int i = 0; i < 10; ++i) live.push_back(h.pool.acquire_raw(64, 8, bufpool::greedy).value());
  for (std::size_t i = 1; i < live.size(); ++i) {
    EXPECT_EQ(live[i].capacity, 64u);
    EXPECT_EQ(live[i].offset, live[0].offset + 64 * i);  // lowest free slot first
    EXPECT_EQ(live[i].pointer, live[0].pointer + 64 * i);
  }
  const auto s = h.pool.stats();
  EXPECT_EQ(s.used_bytes, 640u);
  EXPECT_EQ(s.spare_bytes, 4096u - 640u);  // a 4 KiB span of 64-byte slots
  EXPECT_EQ(s.live_slices, 10u);
  expect_totals_add_up(h.pool);
  expect_valid(h.pool);
  for (const auto& r : live) EXPECT_TRUE(h.pool.release_raw(r.pointer, 64, 8));
  EXPECT_EQ(h.pool.stats().live_slices, 0u);
  EXPECT_EQ(h.pool.stats().spare_bytes, 4096u);  // the class keeps its one empty span
  h.pool.trim();
  const auto after = h.pool.stats();
  EXPECT_EQ(after.spare_bytes, 0u);
  EXPECT_EQ(after.free_bytes, initial.free_bytes);
  EXPECT_EQ(after.free_ranges, initial.free_ranges);
  EXPECT_EQ(after.largest_free, initial.largest_free);
  expect_valid(h.pool);
}

TEST(Slabs, EverySizeAndAlignmentGetsAnAlignedSlotWithinItsClassBound) {
  slab_pool h(std::size_t{16} << 20);
  for (std::uint64_t align = 1; align <= 4096; align *= 2) {
    for (std::uint64_t size = 1; size <= 65536; size += size < 300 ? 1 : size < 4096 ? 37 : 613) {
      const auto r = h.pool.acquire_raw(size, align, bufpool::greedy).value();
      ASSERT_EQ(r.offset % std::max<std::uint64_t>(align, 8), 0u) << size << " @" << align;
      ASSERT_GE(r.capacity, size);
      ASSERT_EQ(r.capacity % std::max<std::uint64_t>(align, 8), 0u);
      // The class: the size rounded up to 8 bytes (16 at alignment 16) up to 256, at most
      // 25% over above it; an alignment above that bound at most doubles the rounded size.
      const std::uint64_t step = std::clamp<std::uint64_t>(align, 8, 16);
      const std::uint64_t bound = size <= 256 ? (size + step - 1) / step * step : size + size / 4;
      ASSERT_LE(r.capacity, std::max(2 * bound, align)) << size << " @" << align;
      if (align <= 16) ASSERT_LE(r.capacity, bound) << size;
      ASSERT_TRUE(h.pool.release_raw(std::uint64_t{r.offset}, size, align));
      ASSERT_EQ(h.pool.stats().live_slices, 0u) << size << " @" << align;
    }
  }
  EXPECT_GT(h.pool.stats().spare_bytes, 0u);
  expect_valid(h.pool);
}

TEST(Slabs, OptimalFixedAndLargeRequestsDoNotUseSlabs) {
  slab_pool h;
  auto a = h.pool.acquire_raw(64, 8, bufpool::optimal).value();
  auto b = h.pool.acquire_raw(65537, 8, bufpool::greedy).value();
  auto c = h.pool.acquire_raw(64, 8192, bufpool::greedy);
  EXPECT_EQ(c.error(), bufpool::errc::alignment_too_big);
  EXPECT_EQ(h.pool.stats().spare_bytes, 0u);
  EXPECT_EQ(b.capacity, 65544u);  // an engine range: rounded to the granule only
  EXPECT_TRUE(h.pool.release_raw(a.pointer, 64, 8));
  EXPECT_TRUE(h.pool.release_raw(b.pointer, 65537, 8));
  expect_valid(h.pool);
}

TEST(Slabs, Row12DoubleReleaseOfASlotIsAViolationAndChangesNothing) {
  slab_pool h;
  auto keep = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  auto r = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  ASSERT_TRUE(h.pool.release_raw(std::uint64_t{r.offset}));
  const auto before = h.pool.stats();
  recording_violations watch;
  EXPECT_FALSE(h.pool.release_raw(std::uint64_t{r.offset}));
  EXPECT_FALSE(h.pool.release_raw(r.pointer, 64, 8));
  EXPECT_EQ(g_violations, 2);
  EXPECT_NE(g_last_violation.find("released twice"), std::string::npos);
  EXPECT_EQ(h.pool.stats().live_slices, before.live_slices);
  EXPECT_EQ(h.pool.stats().spare_bytes, before.spare_bytes);
  expect_valid(h.pool);
  EXPECT_TRUE(h.pool.release_raw(keep.pointer));
}

TEST(Slabs, Row37PointerInsideASlotIsAViolation) {
  slab_pool h;
  auto r = h.pool.acquire_raw(100, 8, bufpool::greedy).value();  // a 112-byte slot
  recording_violations watch;
  EXPECT_FALSE(h.pool.release_raw(r.pointer + 8));
  EXPECT_FALSE(h.pool.release_raw(std::uint64_t{r.offset + 112}));  // the next, free slot
  EXPECT_EQ(g_violations, 2);
  EXPECT_EQ(h.pool.stats().live_slices, 1u);
  EXPECT_TRUE(h.pool.release_raw(r.pointer));
  expect_valid(h.pool);
}

TEST(Slabs, Row31ReleaseWithAnotherSizeOrAlignmentIsAViolationAndChangesNothing) {
  slab_pool h;
  auto r = h.pool.acquire_raw(40, 16, bufpool::greedy).value();  // a 48-byte slot
  recording_violations watch;
  EXPECT_FALSE(h.pool.release_raw(r.pointer, 48, 16));  // same slot, not the size given
  EXPECT_NE(g_last_violation.find("size differs"), std::string::npos);
  EXPECT_FALSE(h.pool.release_raw(r.pointer, 40, 8));
  EXPECT_NE(g_last_violation.find("alignment differs"), std::string::npos);
  EXPECT_EQ(g_violations, 2);
  EXPECT_EQ(h.pool.stats().live_slices, 1u);
  EXPECT_TRUE(h.pool.release_raw(r.pointer, 40, 16));
  expect_valid(h.pool);
}

TEST(Slabs, RawAtReportsTheSizeAndResizeStaysWithinTheSlot) {
  slab_pool h;
  auto r = h.pool.acquire_raw(100, 8, bufpool::greedy).value();
  EXPECT_EQ(r.capacity, 104u);  // small classes are 8 bytes apart
  EXPECT_EQ(h.pool.raw_at(r.pointer).value().size, 100u);
  EXPECT_EQ(h.pool.resize_raw(r.pointer, 104).value(), 104u);
  EXPECT_EQ(h.pool.raw_at(r.pointer).value().size, 104u);
  EXPECT_EQ(h.pool.resize_raw(r.pointer, 105).error(), bufpool::errc::out_of_memory);
  EXPECT_EQ(h.pool.resize_raw(std::uint64_t{r.offset}, 0).error(), bufpool::errc::invalid_size);
  EXPECT_EQ(h.pool.resize_raw(std::uint64_t{r.offset}, 7).value(), 104u);
  EXPECT_EQ(h.pool.raw_at(r.pointer).value().size, 7u);
  EXPECT_FALSE(h.pool.raw_at(r.pointer + 104).has_value());  // a free slot
  recording_violations watch;
  EXPECT_FALSE(h.pool.release_raw(r.pointer, 100, 8));  // the size is now 7
  EXPECT_TRUE(h.pool.release_raw(r.pointer, 7, 8));
  EXPECT_FALSE(h.pool.raw_at(r.pointer).has_value());
  expect_valid(h.pool);
}

TEST(Slabs, AnEmptySpanGoesBackToTheEngineExceptOnePerClass) {
  slab_pool h;
  std::vector<bufpool::raw_range<std::uint64_t>> live;
  for (int i = 0; i < 3 * 64; ++i)  // three 4 KiB spans of 64-byte slots
    live.push_back(h.pool.acquire_raw(64, 8, bufpool::greedy).value());
  EXPECT_EQ(h.pool.stats().spare_bytes, 0u);
  for (const auto& r : live) ASSERT_TRUE(h.pool.release_raw(r.pointer));
  // The first span emptied is kept, the second went back; the 32 slots released last wait
  // on the class's stack, in the third span.
  EXPECT_EQ(h.pool.stats().spare_bytes, 2 * 4096u);
  expect_totals_add_up(h.pool);
  expect_valid(h.pool);
  h.pool.trim();  // the stacked slots go back to their span, and every empty span goes
  EXPECT_EQ(h.pool.stats().spare_bytes, 0u);
  expect_valid(h.pool);
}

TEST(Slabs, TheClassTableAgreesWithClassOfForEverySizeAndAlignmentItServes) {
  using slabs = bufpool::detail::slabs;
  for (std::uint64_t size = 1; size <= 4096; ++size)
    for (const std::uint64_t alignment : {8u, 16u})
      ASSERT_EQ(slabs::small_class((size - 1) / 8, alignment == 16),
                slabs::class_of(size, alignment))
          << size << " bytes at " << alignment;
  EXPECT_EQ(slabs::table_limit(true, 1, ~0ULL, 16, 4096), 4096u);
  EXPECT_EQ(slabs::table_limit(false, 1, ~0ULL, 16, 4096), 0u);    // no slabs
  EXPECT_EQ(slabs::table_limit(true, 1, 4095, 16, 4096), 0u);      // 4096 bytes is too large
  EXPECT_EQ(slabs::table_limit(true, 1, ~0ULL, 32, 4096), 0u);     // alignments raised past 16
  EXPECT_EQ(slabs::table_limit(true, 1, ~0ULL, 8, 8), 0u);         // 16 is too much alignment
  EXPECT_EQ(slabs::table_limit(true, 4097, ~0ULL, 16, 4096), 0u);  // sizes raised past 4096
}

TEST(Slabs, AMinimumSizeOrAlignmentRaisesTheRequestBeforeItsClassIsChosen) {
  bufpool::basic_options<std::uint64_t> o = slab_options();
  o.min_size = 100;
  o.min_alignment = 16;
  bufpool_test::page_aligned_pool<pool64> h(o, std::size_t{1} << 20);
  const auto r = h.pool.acquire_raw(1, 1, bufpool::greedy).value();
  EXPECT_EQ(r.capacity, 112u);  // 100 bytes, in the smallest class whose slots are 16-aligned
  EXPECT_EQ(r.offset % 16, 0u);
  EXPECT_EQ(h.pool.acquire_raw(24, 8, bufpool::greedy).value().capacity, 112u);
  EXPECT_EQ(h.pool.acquire_raw(104, 2, bufpool::greedy).value().capacity, 112u);
  expect_valid(h.pool);
}

TEST(Slabs, TheSlotReleasedLastIsTheNextOneAcquiredOfItsClass) {
  slab_pool h;
  const auto a = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  const auto b = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  const auto c = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  ASSERT_TRUE(h.pool.release_raw(b.pointer));
  ASSERT_TRUE(h.pool.release_raw(c.pointer));
  EXPECT_EQ(h.pool.acquire_raw(60, 8, bufpool::greedy).value().offset, c.offset);  // last
  EXPECT_EQ(h.pool.acquire_raw(64, 8, bufpool::greedy).value().offset, b.offset);
  EXPECT_EQ(h.pool.raw_at(c.pointer).value().size, 60u);  // recorded anew
  expect_totals_add_up(h.pool);
  expect_valid(h.pool);
  (void)a;
}

TEST(Slabs, AStackedSlotIsNotLiveForAnyRelease) {
  slab_pool h;
  const auto keep = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  const auto r = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  ASSERT_TRUE(h.pool.release_raw(r.pointer));  // stacked
  recording_violations watch;
  EXPECT_FALSE(h.pool.release_raw(r.pointer));
  EXPECT_FALSE(h.pool.release_raw(std::uint64_t{r.offset}));
  EXPECT_FALSE(h.pool.release_raw(r.pointer, 64, 8));
  EXPECT_EQ(bufpool_test::g_violations, 3);  // each release reported
  EXPECT_FALSE(h.pool.raw_at(r.pointer).has_value());
  EXPECT_EQ(h.pool.stats().live_slices, 1u);
  expect_totals_add_up(h.pool);
  expect_valid(h.pool);
  EXPECT_TRUE(h.pool.release_raw(keep.pointer));
}

// Drop-in fidelity item 13: the empty spans the classes keep are room, and an acquisition
// takes it back before it reports out_of_memory, as trim() would.
void expect_kept_empty_spans_are_room_for_other_requests(bool thread_caches) {
  bufpool_test::page_aligned_pool<pool64> h(slab_options(thread_caches), std::size_t{64} << 10);
  std::vector<bufpool::raw_range<std::uint64_t>> live;
  for (std::uint64_t size = 8; size <= 128; size += 8)  // 16 classes, a 4 KiB span each
    live.push_back(h.pool.acquire_raw(size, 8, bufpool::greedy).value());
  EXPECT_EQ(h.pool.stats().free_bytes, 0u);
  for (const auto& r : live) ASSERT_TRUE(h.pool.release_raw(r.pointer));
  EXPECT_EQ(h.pool.stats().spare_bytes, std::uint64_t{64} << 10);  // every class keeps one
  for (const bufpool::strategy how : {bufpool::optimal, bufpool::greedy}) {
    auto big = h.pool.acquire_raw(std::uint64_t{32} << 10, 8, how);
    ASSERT_TRUE(big.has_value()) << bufpool::to_string(big.error());
    ASSERT_TRUE(h.pool.release_raw(big->pointer));
  }
  auto slice = h.pool.acquire(std::uint64_t{64} << 10);
  ASSERT_TRUE(slice.has_value()) << bufpool::to_string(slice.error());
  slice = {};  // gives the slice back
  expect_totals_add_up(h.pool);
  expect_valid(h.pool);
}

TEST(Slabs, KeptEmptySpansAreTakenBackBeforeOutOfMemory) {
  expect_kept_empty_spans_are_room_for_other_requests(false);
}

TEST(Slabs, KeptEmptySpansOfThreadCachesAreTakenBackBeforeOutOfMemory) {
  expect_kept_empty_spans_are_room_for_other_requests(true);
}

TEST(Slabs, MapShowsEachLiveSlotAndSpareRunsCoveringTheRegion) {
  slab_pool h;
  auto a = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  auto b = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  auto c = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  ASSERT_TRUE(h.pool.release_raw(b.pointer));
  const auto map = h.pool.map();
  ASSERT_EQ(map.regions.size(), 1u);
  std::uint64_t at = map.regions[0].offset;
  std::vector<bufpool::map_range> in_span;
  for (const auto& r : map.regions[0].ranges) {
    EXPECT_EQ(r.offset, at);  // contiguous, covering the region
    at += r.size;
    if (r.offset >= a.offset && r.offset < a.offset + 4096) in_span.push_back(r);
  }
  EXPECT_EQ(at, map.regions[0].offset + map.regions[0].size);
  using bufpool::range_state;
  const std::vector<bufpool::map_range> want = {{a.offset, 64, range_state::used},
                                                {b.offset, 64, range_state::spare},
                                                {c.offset, 64, range_state::used},
                                                {c.offset + 64, 4096 - 192, range_state::spare}};
  EXPECT_EQ(in_span, want);
  const auto back = bufpool::tools::from_json(bufpool::to_json(map));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->regions, map.regions);
  EXPECT_EQ(back->stats.spare_bytes, map.stats.spare_bytes);
  EXPECT_NE(bufpool::to_svg(map).find("spare"), std::string::npos);
  EXPECT_TRUE(h.pool.release_raw(a.pointer));
  EXPECT_TRUE(h.pool.release_raw(c.pointer));
}

TEST(Slabs, TryCloseRefusesWhileASlotIsLive) {
  slab_pool h;
  auto r = h.pool.acquire_raw(32, 8, bufpool::greedy).value();
  const auto refused = h.pool.try_close();
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().live_slices, 1u);
  EXPECT_TRUE(h.pool.release_raw(r.pointer));
  EXPECT_TRUE(h.pool.try_close().has_value());  // the kept empty span is not a slice
  EXPECT_EQ(h.pool.acquire_raw(32, 8, bufpool::greedy).error(), bufpool::errc::pool_closed);
}

TEST(Slabs, SlotsNeverSpanTwoRegionsAndAreFoundInEach) {
  std::vector<std::byte> first(8192 + 4096);
  std::vector<std::byte> second(16384 + 4096);
  pool64 pool(slab_options());
  for (auto* m : {&first, &second}) {
    auto* base = m->data() + (4096 - reinterpret_cast<std::uintptr_t>(m->data()) % 4096);
    auto grow = pool.begin_expand(m->size() - 4096).value();
    ASSERT_TRUE(std::move(grow).initialize(base).has_value());
  }
  std::vector<bufpool::raw_range<std::uint64_t>> live;
  while (auto r = pool.acquire_raw(1000, 8, bufpool::greedy)) live.push_back(*r);
  EXPECT_GE(live.size(), 20u);  // both regions hold 1024-byte slots
  for (const auto& r : live) {
    const bool in_first = r.pointer >= first.data() && r.pointer < first.data() + first.size();
    const auto* end = r.pointer + r.capacity;
    EXPECT_TRUE(in_first ? end <= first.data() + first.size()
                         : end <= second.data() + second.size());
  }
  for (const auto& r : live) ASSERT_TRUE(pool.release_raw(r.pointer, 1000, 8));
  EXPECT_EQ(pool.stats().live_slices, 0u);
  expect_valid(pool);
}

// A release by pointer first asks the hint of the pointer's 4 KiB page of addresses. Here
// the second region's offsets start 2 KiB past a 4 KiB boundary while its memory starts on
// one, so every span there covers parts of two pages and shares each with a neighbour:
// releases that alternate between neighbours find their own span every time.
TEST(Slabs, ReleasesByPointerFindTheirSpanWhenTwoSpansShareAPage) {
  for (const bool thread_caches : {false, true}) {
    std::vector<std::byte> memory(6144 + 65536 + 8192);
    auto* first = memory.data() + (4096 - reinterpret_cast<std::uintptr_t>(memory.data()) % 4096);
    pool64 pool(slab_options(thread_caches));
    auto grow = pool.begin_expand(6144).value();
    ASSERT_TRUE(std::move(grow).initialize(first).has_value());
    grow = pool.begin_expand(65536).value();
    ASSERT_TRUE(std::move(grow).initialize(first + 8192).has_value());
    std::vector<bufpool::raw_range<std::uint64_t>> live;
    while (auto r = pool.acquire_raw(64, 8, bufpool::greedy)) live.push_back(*r);
    // Slots by page of address, those of the second region only (offset 6144 on).
    std::map<std::uintptr_t, std::vector<bufpool::raw_range<std::uint64_t>>> by_page;
    for (const auto& r : live)
      if (r.offset >= 6144)
        by_page[reinterpret_cast<std::uintptr_t>(r.pointer) / 4096].push_back(r);
    std::size_t shared = 0;
    for (const auto& [page, slots] : by_page) {
      // Slots of two spans (4 KiB of offsets each): alternate between them.
      std::vector<bufpool::raw_range<std::uint64_t>> low, high;
      for (const auto& r : slots)
        (r.offset / 4096 == slots.front().offset / 4096 ? low : high).push_back(r);
      if (high.empty()) continue;
      ++shared;
      for (std::size_t i = 0; i < std::min(low.size(), high.size()); ++i) {
        ASSERT_TRUE(pool.release_raw(low[i].pointer, 64, 8));
        ASSERT_TRUE(pool.release_raw(high[i].pointer, 64, 8));
      }
      recording_violations watch;
      EXPECT_FALSE(pool.release_raw(low.front().pointer));
      EXPECT_FALSE(pool.release_raw(high.front().pointer));
      EXPECT_EQ(g_violations, 2);
    }
    EXPECT_GE(shared, 10u);
    expect_valid(pool);
  }
}

// A dropped span covers nothing, and its record is reused by the next span, elsewhere: the
// hints that named it must miss, so releasing its old slots again is reported, not taken
// for a slot of the new span.
TEST(Slabs, ReleasingASlotOfADroppedSpanAgainIsAViolationAndChangesNothing) {
  slab_pool h;
  std::vector<bufpool::raw_range<std::uint64_t>> gone;
  for (int i = 0; i < 3 * 64; ++i)  // three 4 KiB spans of 64-byte slots
    gone.push_back(h.pool.acquire_raw(64, 8, bufpool::greedy).value());
  for (const auto& r : gone) ASSERT_TRUE(h.pool.release_raw(r.pointer));  // two spans dropped
  const auto release_again = [&](const std::vector<bufpool::raw_range<std::uint64_t>>& live) {
    const auto before = h.pool.stats();
    recording_violations watch;
    int refused = 0;
    for (const auto& r : gone) {
      const bool reused = std::any_of(live.begin(), live.end(), [&](const auto& l) {
        return r.pointer >= l.pointer && r.pointer < l.pointer + l.capacity;
      });
      if (!reused) refused += h.pool.release_raw(r.pointer, 64, 8) ? 0 : 1;
    }
    EXPECT_EQ(g_violations, refused);
    EXPECT_EQ(h.pool.stats().live_slices, before.live_slices);
    EXPECT_EQ(h.pool.stats().spare_bytes, before.spare_bytes);
    expect_valid(h.pool);
    return refused;
  };
  EXPECT_EQ(release_again({}), 3 * 64);
  std::vector<bufpool::raw_range<std::uint64_t>> live;
  for (int i = 0; i < 2 * 32; ++i)  // the dropped records again, as spans of 128-byte slots
    live.push_back(h.pool.acquire_raw(128, 8, bufpool::greedy).value());
  EXPECT_GE(release_again(live), 64);  // at least the kept empty span's
  for (const auto& r : live) ASSERT_TRUE(h.pool.release_raw(r.pointer, 128, 8));
  expect_valid(h.pool);
}

// The hint table grows with the spans (one hint per 4 KiB page, from 1024 hints), replacing
// the hints noted before; every release by pointer, before and after a growth, is still
// checked against its slot, with or without thread caches.
TEST(Slabs, ReleasesByPointerStayCheckedWhileTheHintTableGrowsWithTheSpans) {
  for (const bool thread_caches : {false, true}) {
    bufpool_test::page_aligned_pool<pool64> h(slab_options(thread_caches), std::size_t{40} << 20);
    std::vector<bufpool::raw_range<std::uint64_t>> live;
    // 4 KiB slots up to 32 MiB of spans, so the table of the slabs holding them grows on the
    // way, while every third step releases a slot (noting its hint) that a later step reuses.
    for (std::size_t step = 1; h.pool.stats().used_bytes < (std::uint64_t{32} << 20); ++step) {
      live.push_back(h.pool.acquire_raw(4096, 8, bufpool::greedy).value());
      if (step % 3 == 0) {
        const auto middle = live.begin() + static_cast<std::ptrdiff_t>(live.size() / 2);
        ASSERT_TRUE(h.pool.release_raw(middle->pointer, 4096, 8));
        live.erase(middle);
      }
    }
    const auto before = h.pool.stats();
    {
      recording_violations watch;
      for (std::size_t i = 0; i < live.size(); i += 97)
        EXPECT_FALSE(h.pool.release_raw(live[i].pointer + 8, 4096, 8));  // an interior pointer
      for (std::size_t i = 0; i < live.size(); i += 89)
        EXPECT_FALSE(h.pool.release_raw(live[i].pointer, 2048, 8));  // another size
      EXPECT_EQ(g_violations, static_cast<int>((live.size() + 96) / 97 + (live.size() + 88) / 89));
    }
    const auto after = h.pool.stats();
    EXPECT_EQ(after.used_bytes, before.used_bytes);
    EXPECT_EQ(after.live_slices, before.live_slices);
    for (const auto& r : live) ASSERT_TRUE(h.pool.release_raw(r.pointer, 4096, 8));
    {
      recording_violations watch;
      for (std::size_t i = 0; i < live.size(); i += 101)
        EXPECT_FALSE(h.pool.release_raw(live[i].pointer, 4096, 8));  // released twice
      EXPECT_EQ(g_violations, static_cast<int>((live.size() + 100) / 101));
    }
    EXPECT_EQ(h.pool.stats().live_slices, 0u);
    expect_totals_add_up(h.pool);
    expect_valid(h.pool);
  }
}

// Random greedy acquisitions (slots and engine ranges), releases (by offset or pointer,
// checked or not), resizes and trims, against a model of the live ranges: no overlap,
// alignment, capacities, exact totals, and validate(). With thread caches, the slots are
// the calling thread's: a release by pointer takes the cache's path, by offset the pool's.
void random_operations_match_a_model(bool thread_caches) {
  std::vector<std::byte> memory((std::size_t{4} << 20) + 4096);
  auto* base = memory.data() + (4096 - reinterpret_cast<std::uintptr_t>(memory.data()) % 4096);
  pool64 pool(slab_options(thread_caches));
  for (std::uint64_t k = 0; k < 4; ++k) {  // four regions, offsets not on 4 KiB
    auto grow = pool.begin_expand((std::uint64_t{1} << 20) - 4136 * k).value();
    ASSERT_TRUE(std::move(grow).initialize(base + (std::uint64_t{1} << 20) * k).has_value());
  }
  struct entry {
    std::uint64_t size, align, capacity;
    std::byte* pointer;
  };
  std::map<std::uint64_t, entry> model;  // offset -> live range
  std::mt19937_64 rng(7);
  for (int step = 0; step < 40000; ++step) {
    const auto op = rng() % 16;
    if (op < 8 || model.empty()) {
      const std::uint64_t size =
          rng() % 4 == 0 ? 1 + rng() % (rng() % 4 == 0 ? 70000 : 6000) : 1 + rng() % 300;
      const std::uint64_t align = std::uint64_t{1} << (rng() % 4 == 0 ? rng() % 13 : 3);
      auto r = pool.acquire_raw(size, align, rng() % 8 == 0 ? bufpool::optimal : bufpool::greedy);
      if (!r) {
        ASSERT_EQ(r.error(), bufpool::errc::out_of_memory);
        continue;
      }
      ASSERT_EQ(r->offset % std::max<std::uint64_t>(align, 8), 0u);
      ASSERT_GE(r->capacity, size);
      auto next = model.lower_bound(r->offset);
      if (next != model.end()) ASSERT_LE(r->offset + r->capacity, next->first);
      if (next != model.begin()) {
        const auto prev = std::prev(next);
        ASSERT_LE(prev->first + prev->second.capacity, r->offset);
      }
      model[r->offset] = {size, align, r->capacity, r->pointer};
    } else if (op < 14) {
      auto it = std::next(model.begin(), static_cast<std::ptrdiff_t>(rng() % model.size()));
      const entry& e = it->second;
      switch (rng() % 3) {
        case 0:
          ASSERT_TRUE(pool.release_raw(e.pointer, e.size, e.align));
          break;
        case 1:
          ASSERT_TRUE(pool.release_raw(e.pointer));
          break;
        default:
          ASSERT_TRUE(pool.release_raw(std::uint64_t{it->first}));
      }
      model.erase(it);
    } else if (op < 15) {
      auto it = std::next(model.begin(), static_cast<std::ptrdiff_t>(rng() % model.size()));
      const std::uint64_t size = 1 + rng() % it->second.capacity;
      auto c = pool.resize_raw(std::uint64_t{it->first}, size);
      ASSERT_TRUE(c.has_value());
      ASSERT_GE(*c, size);
      it->second.size = size;
      it->second.capacity = *c;
    } else {
      pool.trim();
    }
    if (step % 1000 == 0 || model.empty()) {
      expect_valid(pool);
      std::uint64_t used = 0;
      for (const auto& [offset, e] : model) {
        used += e.capacity;
        const auto at = pool.raw_at(e.pointer);
        ASSERT_TRUE(at.has_value());
        ASSERT_EQ(at->size, e.size);
        ASSERT_EQ(at->capacity, e.capacity);
      }
      const auto s = pool.stats();
      ASSERT_EQ(s.used_bytes, used);
      ASSERT_EQ(s.live_slices, model.size());
      expect_totals_add_up(pool);
    }
  }
  for (const auto& [offset, e] : model) ASSERT_TRUE(pool.release_raw(e.pointer, e.size, e.align));
  pool.trim();
  const auto s = pool.stats();
  EXPECT_EQ(s.used_bytes + s.spare_bytes, 0u);
  EXPECT_EQ(s.free_ranges, 4u);  // everything coalesced again
  expect_valid(pool);
}

// Spans of a class grow with the bytes the class holds: each new span is at most 1/32 of them
// (its first size while they are few), doubling up to 64 KiB and 4096 slots. The slabs never
// touch memory, so the spans are laid out at fake addresses.
TEST(Slabs, AClassTakesLargerSpansAsItHoldsMoreUpTo64KiBAndNoMoreThanAThirtySecondOfIt) {
  using slabs_t = bufpool::detail::slabs;
  for (const std::uint64_t slot : {8u, 64u, 256u, 4096u}) {
    slabs_t slabs;
    const unsigned c = slabs_t::class_of(slot, 8);
    ASSERT_EQ(slabs_t::slot_size(c), slot);
    constexpr std::uint64_t region = std::uint64_t{64} << 20;
    auto* const base = reinterpret_cast<std::byte*>(std::uintptr_t{1} << 40);
    std::uint64_t held = 0;
    std::uint32_t node = 0;
    std::vector<std::uint64_t> sizes;
    while (held < (std::uint64_t{16} << 20)) {
      const std::uint64_t bytes = slabs.next_span_size(c);
      EXPECT_TRUE(bytes == slabs_t::span_size(c) || bytes <= held / 32) << slot << " " << held;
      slabs.add_span(c, held, bytes, node++, 0, 0, region, base + held);
      std::uint64_t taken = 0;  // every slot, so that the class asks for its next span
      while (slabs.take(c, slot, 3)) ++taken;
      EXPECT_EQ(taken, bytes / slot);
      held += bytes;
      sizes.push_back(bytes);
    }
    EXPECT_TRUE(std::ranges::is_sorted(sizes)) << slot;
    EXPECT_EQ(sizes.front(), slabs_t::span_size(c));
    // The largest: 64 KiB, or 4096 slots of 8 bytes; slots over 4 KiB do not grow.
    EXPECT_EQ(sizes.back(), std::min<std::uint64_t>(
                                65536, std::max<std::uint64_t>(4096 * slot, slabs_t::span_size(c))))
        << slot;
    EXPECT_EQ(slabs.all().span_bytes, held);
  }
}

// A class whose next span no longer fits takes a smaller one, down to its first size, so a
// fixed region fills as it did before spans grew.
TEST(Slabs, ASpanTooLargeForTheRoomLeftFallsBackToSmallerOnes) {
  constexpr std::size_t bytes = (std::size_t{1} << 20) + 12288;  // ends in 8 + 4 KiB
  slab_pool h(bytes);
  std::vector<bufpool::raw_range<std::uint64_t>> live;
  while (auto r = h.pool.acquire_raw(64, 8, bufpool::greedy)) live.push_back(*r);
  EXPECT_EQ(live.size() * 64, bytes);
  expect_valid(h.pool);
  // The last block is a slot too, not an engine range of its own: released, it stays in its
  // span, a used engine range.
  const auto last = live.back();
  live.pop_back();
  EXPECT_TRUE(h.pool.release_raw(last.pointer, 64, 8));
  const auto ranges = h.pool.region_ranges(0);
  const auto at = std::ranges::find_if(ranges, [&](const auto& r) {
    return r.offset <= last.offset && last.offset < r.offset + r.size;
  });
  ASSERT_NE(at, ranges.end());
  EXPECT_TRUE(at->used);
  EXPECT_GE(at->size, 4096u);
  for (const auto& r : live) EXPECT_TRUE(h.pool.release_raw(r.pointer, 64, 8));
  h.pool.trim();
  EXPECT_EQ(h.pool.stats().free_ranges, 1u);
}

TEST(Slabs, RandomOperationsMatchAModelOfLiveRanges) {
  random_operations_match_a_model(false);
}

TEST(Slabs, RandomOperationsWithThreadCachesMatchAModelOfLiveRanges) {
  random_operations_match_a_model(true);
}

TEST(SlabsDeathTest, Row12DoubleReleaseOfASlotAbortsWithTheRule) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        slab_pool h;
        auto r = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
        (void)h.pool.release_raw(std::uint64_t{r.offset});
        (void)h.pool.release_raw(std::uint64_t{r.offset});
      },
      "does not start a live raw range");
}

}  // namespace
