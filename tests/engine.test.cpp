// SPDX-License-Identifier: MIT
// Unit tests of the offset engine: strategies, alignment, coalescing, expansion bookkeeping.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <expected>
#include <initializer_list>
#include <memory_resource>
#include <ostream>
#include <random>
#include <tuple>
#include <utility>
#include <vector>
import bufpool;

namespace bufpool {
// Lets GoogleTest print error codes by name.
inline void PrintTo(errc e, std::ostream* os) {
  *os << to_string(e);
}
}  // namespace bufpool

namespace {

using bufpool::errc;
using bufpool::offset_t;

constexpr offset_t kib = 1024;
constexpr offset_t mib = 1024 * kib;
constexpr offset_t u64_max = ~offset_t{0};

bufpool::engine_limits limits_u32() {
  bufpool::engine_limits l;
  l.last_offset = UINT32_MAX;
  l.max_size = UINT32_MAX;
  l.min_alignment = 16;
  l.max_alignment = std::uint64_t{1} << 31;
  return l;
}

bufpool::engine_limits limits_u16() {
  bufpool::engine_limits l;
  l.last_offset = UINT16_MAX;
  l.max_size = UINT16_MAX;
  l.min_alignment = 16;
  l.max_alignment = std::uint64_t{1} << 15;
  return l;
}

bufpool::engine_limits limits_u64() {
  return bufpool::engine_limits{};  // the full range: last offset UINT64_MAX
}

::testing::AssertionResult valid(const bufpool::engine& e) {
  const auto v = e.validate();
  if (v) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "validate(): " << v.error();
}

// The error of a failed call, or errc{} (not a valid code) for a success.
template <class T>
errc error_of(const std::expected<T, errc>& r) {
  return r ? errc{} : r.error();
}

// Reserves and publishes a region of `size` offsets; returns its id.
std::uint32_t add_region(bufpool::engine& e, offset_t size) {
  const offset_t at = e.reserve(size).value();
  return e.publish(at, size);
}

using layout = std::vector<std::tuple<offset_t, offset_t, bool>>;  // offset, size, used

layout layout_of(const bufpool::engine& e, std::uint32_t region) {
  layout out;
  for (const auto& r : e.ranges(region)) out.emplace_back(r.offset, r.size, r.used);
  return out;
}

// Fills a region from its start with consecutive fixed allocations of the given sizes.
std::vector<bufpool::engine_allocation> fill(bufpool::engine& e, offset_t start,
                                             std::initializer_list<offset_t> sizes) {
  std::vector<bufpool::engine_allocation> out;
  for (const offset_t size : sizes) {
    out.push_back(e.allocate(size, 1, bufpool::fixed(start)).value());
    start += size;
  }
  return out;
}

// A 4 KiB region (granule 16) whose free ranges are [272, 400) (128 bytes, not 256-aligned),
// [512, 672) (160 bytes, 256-aligned) and [1024, 2048) (1024 bytes); the rest is used.
struct holes {
  bufpool::engine e{limits_u32()};
  std::vector<bufpool::engine_allocation> used;
  holes() {
    add_region(e, 4 * kib);
    auto all = fill(e, 0, {272, 128, 112, 160, 352, 1024, 2048});
    for (const std::size_t i : {1u, 3u, 5u}) e.release(all[i].node);
    for (const std::size_t i : {0u, 2u, 4u, 6u}) used.push_back(all[i]);
  }
};

TEST(Engine, AllocatesFromPublishedRegionAndCoalescesBack) {
  bufpool::engine e(limits_u32());
  auto at = e.reserve(4096);
  ASSERT_TRUE(at.has_value());
  e.publish(*at, 4096);
  auto a = e.allocate(100, 1, bufpool::optimal);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, 0u);
  EXPECT_EQ(a->capacity, 112u);
  ASSERT_TRUE(valid(e));
  EXPECT_TRUE(e.release(a->node));
  EXPECT_EQ(e.stats().free_ranges, 1u);
  EXPECT_EQ(e.stats().free_bytes, 4096u);
  ASSERT_TRUE(valid(e));
}

// ---------------------------------------------------------------------------------------
// Strategies.

TEST(OptimalStrategy, PicksSmallestRangeThatHoldsAlignedRequest) {
  holes h;
  ASSERT_TRUE(valid(h.e));
  // 100 bytes fit all three holes: the 128-byte one is the smallest.
  auto a = h.e.allocate(100, 16, bufpool::optimal);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, 272u);
  ASSERT_TRUE(h.e.release(a->node));
  // Aligned to 256 the 128-byte hole holds nothing (padding 240): the 160-byte one wins.
  auto b = h.e.allocate(100, 256, bufpool::optimal);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->offset, 512u);
  ASSERT_TRUE(h.e.release(b->node));
  // 161 bytes only fit the 1 KiB hole.
  auto c = h.e.allocate(161, 16, bufpool::optimal);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->offset, 1024u);
  EXPECT_TRUE(valid(h.e));
}

TEST(OptimalStrategy, NeverFailsWhileSomeRangeHoldsAlignedRequest) {
  holes h;
  // The largest aligned request that fits: the whole 1 KiB hole at 1024.
  auto a = h.e.allocate(1024, 1024, bufpool::optimal);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, 1024u);
  EXPECT_EQ(a->capacity, 1024u);
  // Now 160 is the largest free range: 160 succeeds, 161 does not.
  EXPECT_EQ(error_of(h.e.allocate(161, 1, bufpool::optimal)), errc::out_of_memory);
  auto b = h.e.allocate(160, 1, bufpool::optimal);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->offset, 512u);
  // The 128-byte hole at 272 is 16-aligned but not 32-aligned: 128 at 32 cannot fit.
  EXPECT_EQ(error_of(h.e.allocate(128, 32, bufpool::optimal)), errc::out_of_memory);
  auto c = h.e.allocate(112, 32, bufpool::optimal);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->offset, 288u);
  EXPECT_TRUE(valid(h.e));
}

TEST(GreedyStrategy, ReturnsAlignedSliceInsideAFittingFreeRange) {
  holes h;
  const std::vector<std::pair<offset_t, offset_t>> free_ranges{
      {272, 128}, {512, 160}, {1024, 1024}};
  for (const offset_t alignment : {offset_t{1}, offset_t{16}, offset_t{64}, offset_t{256}}) {
    auto a = h.e.allocate(100, alignment, bufpool::greedy);
    ASSERT_TRUE(a.has_value()) << "alignment " << alignment;
    EXPECT_EQ(a->offset % std::max<offset_t>(alignment, 16), 0u);
    bool inside = false;
    for (const auto& [off, size] : free_ranges)
      inside = inside || (a->offset >= off && a->offset + a->capacity <= off + size);
    EXPECT_TRUE(inside) << "offset " << a->offset << " capacity " << a->capacity;
    ASSERT_TRUE(h.e.release(a->node));
  }
  EXPECT_TRUE(valid(h.e));
}

TEST(GreedyStrategy, FindsTheOnlyRangeThatHoldsTheRequest) {
  bufpool::engine e(limits_u32());
  add_region(e, 64 * kib);
  // Alternate 32-byte holes with used walls, and one 512-byte hole near the end.
  std::vector<bufpool::engine_allocation> walls;
  std::vector<bufpool::engine_allocation> holes_taken;
  offset_t at = 0;
  for (int i = 0; i < 500; ++i) {
    holes_taken.push_back(e.allocate(32, 1, bufpool::fixed(at)).value());
    walls.push_back(e.allocate(32, 1, bufpool::fixed(at + 32)).value());
    at += 64;
  }
  const offset_t big = 62 * kib;
  walls.push_back(e.allocate(big - at, 1, bufpool::fixed(at)).value());
  walls.push_back(e.allocate(64 * kib - big - 512, 1, bufpool::fixed(big + 512)).value());
  for (const auto& a : holes_taken) e.release(a.node);
  ASSERT_TRUE(valid(e));
  auto a = e.allocate(300, 512, bufpool::greedy);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, big);
  EXPECT_EQ(error_of(e.allocate(209, 1, bufpool::greedy)), errc::out_of_memory);  // tail is 208
  EXPECT_TRUE(valid(e));
}

TEST(GoodFitStrategy, TakesARangeFromTheFirstBinWhoseEveryRangeHoldsTheRequest) {
  holes h;  // free: 128 B at 272, 160 B at 512, 1 KiB at 1024 (granule 16)
  // 100 B need 7 granules: the 8-granule range is the first that every range of its bin holds.
  auto a = h.e.allocate(100, 16, bufpool::good_fit);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, 272u);
  EXPECT_EQ(a->capacity, 112u);  // the request rounded up to the granule: no size class
  ASSERT_TRUE(h.e.release(a->node));
  // 130 B need 9 granules: the 10-granule range at 512.
  auto b = h.e.allocate(130, 16, bufpool::good_fit);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->offset, 512u);
  ASSERT_TRUE(h.e.release(b->node));
  // Aligned to 256, a range must hold 100 B plus up to 240 B of padding: only the 1 KiB one
  // is sure to (the 160-byte range at 512 would do, as optimal finds; good_fit does not look).
  auto c = h.e.allocate(100, 256, bufpool::good_fit);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->offset, 1024u);
  EXPECT_TRUE(valid(h.e));
}

TEST(GoodFitStrategy, UsesARangeOfTheBinBelowWhenNoBinAboveHasOne) {
  bufpool::engine e(limits_u32());
  add_region(e, 17 * 16);  // one free range of 17 granules, in the bin of 16 and 17
  auto a = e.allocate(17 * 16, 16, bufpool::good_fit);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->capacity, 17u * 16);
  EXPECT_EQ(error_of(e.allocate(1, 1, bufpool::good_fit)), errc::out_of_memory);
  ASSERT_TRUE(e.release(a->node));
  EXPECT_TRUE(valid(e));
}

TEST(GoodFitStrategy, FlushesGreedysCacheAndWildernessBeforeItReportsNoSpace) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  std::vector<std::uint32_t> nodes;
  for (int i = 0; i < 32; ++i) nodes.push_back(e.allocate(128, 16, bufpool::greedy)->node);
  for (const std::uint32_t n : nodes) ASSERT_TRUE(e.release(n));  // cached, not coalesced
  ASSERT_GT(e.cached_ranges(), 0u);
  auto a = e.allocate(4 * kib, 16, bufpool::good_fit);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, 0u);
  EXPECT_EQ(e.cached_ranges(), 0u);
  EXPECT_TRUE(valid(e));
}

TEST(FixedStrategy, AllocatesExactlyAtTheOffset) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto a = e.allocate(100, 64, bufpool::fixed(1024));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, 1024u);
  EXPECT_EQ(a->capacity, 112u);
  EXPECT_EQ(layout_of(e, 0),
            (layout{{0, 1024, false}, {1024, 112, true}, {1136, 4 * kib - 1136, false}}));
  // The very end of the region, and the start of a free range after a used one.
  auto b = e.allocate(16, 16, bufpool::fixed(4 * kib - 16));
  ASSERT_TRUE(b.has_value());
  auto c = e.allocate(16, 16, bufpool::fixed(1136));
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(valid(e));
}

TEST(FixedStrategy, RejectsMisalignedOffsetWithInvalidArgument) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  EXPECT_EQ(error_of(e.allocate(16, 64, bufpool::fixed(32))), errc::invalid_argument);
  // Alignments below the minimum are raised to it first: 8 is not 16-aligned.
  EXPECT_EQ(error_of(e.allocate(16, 1, bufpool::fixed(8))), errc::invalid_argument);
  EXPECT_EQ(e.stats().used_ranges, 0u);
  EXPECT_TRUE(valid(e));
}

TEST(FixedStrategy, RejectsRangeOutsideEveryRegionWithOutOfRange) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  const offset_t pending = e.reserve(4 * kib).value();  // reserved, not a region
  EXPECT_EQ(error_of(e.allocate(16, 16, bufpool::fixed(pending))), errc::out_of_range);
  EXPECT_EQ(error_of(e.allocate(16, 16, bufpool::fixed(64 * kib))), errc::out_of_range);
  // Starts inside the region but runs past its end.
  EXPECT_EQ(error_of(e.allocate(32, 16, bufpool::fixed(4 * kib - 16))), errc::out_of_range);
  EXPECT_TRUE(valid(e));
}

TEST(FixedStrategy, RejectsRangeAcrossTwoContiguousRegionsWithOutOfRange) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  add_region(e, 4 * kib);  // offsets 4096..8191, contiguous with the first
  ASSERT_EQ(e.region(1).offset, 4 * kib);
  EXPECT_EQ(error_of(e.allocate(32, 16, bufpool::fixed(4 * kib - 16))), errc::out_of_range);
  EXPECT_EQ(e.stats().used_ranges, 0u);
  EXPECT_TRUE(valid(e));
}

TEST(FixedStrategy, RejectsRangeOverlappingUsedRangeWithOccupied) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto a = e.allocate(256, 16, bufpool::fixed(1024));
  ASSERT_TRUE(a.has_value());
  const auto before = e.stats();
  EXPECT_EQ(error_of(e.allocate(16, 16, bufpool::fixed(1024))), errc::occupied);  // same start
  EXPECT_EQ(error_of(e.allocate(16, 16, bufpool::fixed(1200))), errc::occupied);  // inside
  EXPECT_EQ(error_of(e.allocate(64, 16, bufpool::fixed(992))), errc::occupied);   // runs into
  EXPECT_EQ(error_of(e.allocate(32, 16, bufpool::fixed(1008))), errc::occupied);  // by 16
  // Just before and just after are free.
  auto b = e.allocate(32, 16, bufpool::fixed(992));
  ASSERT_TRUE(b.has_value());
  auto c = e.allocate(16, 16, bufpool::fixed(1280));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(e.stats().used_ranges, before.used_ranges + 2);
  EXPECT_TRUE(valid(e));
}

TEST(FixedStrategy, RejectsRangeBeyondTheIntegerWithArithmeticOverflow) {
  bufpool::engine e(limits_u16());
  add_region(e, 65536);
  EXPECT_EQ(error_of(e.allocate(32, 16, bufpool::fixed(65520))), errc::arithmetic_overflow);
  EXPECT_EQ(error_of(e.allocate(16, 16, bufpool::fixed(65536))), errc::arithmetic_overflow);
  bufpool::engine w(limits_u64());
  const offset_t top = u64_max - 4095;  // the last 4 KiB of the u64 range
  ASSERT_EQ(w.reserve(top).value(), 0u);
  ASSERT_EQ(w.reserve(4096).value(), top);
  w.publish(top, 4096);
  EXPECT_EQ(error_of(w.allocate(32, 16, bufpool::fixed(u64_max - 15))), errc::arithmetic_overflow);
  EXPECT_EQ(error_of(w.allocate(4097, 16, bufpool::fixed(top))), errc::arithmetic_overflow);
  EXPECT_EQ(w.stats().used_ranges, 0u);
  EXPECT_TRUE(valid(e));
  EXPECT_TRUE(valid(w));
}

// ---------------------------------------------------------------------------------------
// Alignment.

TEST(Alignment, EveryPowerOfTwoFrom1To4096IsHonoured) {
  for (const auto how : {bufpool::optimal, bufpool::greedy}) {
    bufpool::engine e(limits_u32());
    add_region(e, 1 * mib);
    // A 16-byte slice first, so that the free space starts misaligned for every larger
    // alignment.
    ASSERT_TRUE(e.allocate(1, 1, how).has_value());
    for (offset_t alignment = 1; alignment <= 4096; alignment *= 2) {
      auto a = e.allocate(24, alignment, how);
      ASSERT_TRUE(a.has_value()) << "alignment " << alignment;
      EXPECT_EQ(a->offset % alignment, 0u) << "alignment " << alignment;
      EXPECT_EQ(a->offset % 16, 0u) << "alignment " << alignment;
      ASSERT_TRUE(valid(e));
    }
  }
}

TEST(Alignment, BelowMinimumIsRaisedToMinimum) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  for (const offset_t alignment : {offset_t{1}, offset_t{2}, offset_t{4}, offset_t{8}}) {
    auto a = e.allocate(3, alignment, bufpool::optimal);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->offset % 16, 0u);
    EXPECT_EQ(a->capacity, 16u);
  }
  EXPECT_TRUE(valid(e));
}

TEST(Alignment, OneMebibyteAlignmentIsHonouredAndPaddingStaysFree) {
  bufpool::engine e(limits_u32());
  ASSERT_EQ(e.reserve(4 * kib).value(), 0u);  // pushes the region off 1 MiB alignment
  add_region(e, 4 * mib);
  ASSERT_EQ(e.region(0).offset, 4 * kib);
  for (const auto how : {bufpool::optimal, bufpool::greedy}) {
    auto a = e.allocate(100, mib, how);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->offset, mib);
    EXPECT_EQ(layout_of(e, 0), (layout{{4 * kib, mib - 4 * kib, false},
                                       {mib, 112, true},
                                       {mib + 112, 4 * mib + 4 * kib - mib - 112, false}}));
    ASSERT_TRUE(e.release(a->node));
  }
  // Two more 1 MiB-aligned slices fit (at 2 MiB and 3 MiB), a fourth does not (4 MiB
  // leaves only 4 KiB of the region).
  ASSERT_TRUE(e.allocate(mib, mib, bufpool::optimal).has_value());
  ASSERT_TRUE(e.allocate(mib, mib, bufpool::optimal).has_value());
  ASSERT_TRUE(e.allocate(mib, mib, bufpool::optimal).has_value());
  EXPECT_EQ(error_of(e.allocate(8 * kib, mib, bufpool::optimal)), errc::out_of_memory);
  EXPECT_EQ(error_of(e.allocate(8 * kib, mib, bufpool::greedy)), errc::out_of_memory);
  EXPECT_TRUE(e.allocate(4 * kib, mib, bufpool::greedy).has_value());  // exactly at 4 MiB
  EXPECT_TRUE(valid(e));
}

TEST(Alignment, LargestAlignmentOfFullU64RangeIsHonoured) {
  bufpool::engine e(limits_u64());
  const offset_t half = offset_t{1} << 63;
  ASSERT_EQ(e.reserve(half - 4096).value(), 0u);
  add_region(e, 8192);  // [2^63 - 4096, 2^63 + 4096)
  auto a = e.allocate(1, half, bufpool::optimal);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, half);
  EXPECT_EQ(error_of(e.allocate(1, half, bufpool::greedy)), errc::out_of_memory);
  EXPECT_TRUE(valid(e));
}

TEST(Padding, AlignmentPaddingStaysAFreeRangeOfItsOwn) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto first = e.allocate(16, 1, bufpool::optimal);  // [0, 16)
  ASSERT_TRUE(first.has_value());
  auto a = e.allocate(100, 1024, bufpool::optimal);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, 1024u);
  EXPECT_EQ(
      layout_of(e, 0),
      (layout{{0, 16, true}, {16, 1008, false}, {1024, 112, true}, {1136, 4 * kib - 1136, false}}));
  EXPECT_EQ(e.stats().free_ranges, 2u);
  // The padding is usable: an exact fit goes there, not into the larger tail.
  auto b = e.allocate(1008, 16, bufpool::optimal);
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->offset, 16u);
  EXPECT_TRUE(valid(e));
}

// ---------------------------------------------------------------------------------------
// Capacity.

TEST(Capacity, IsSizeRoundedUpToMinAlignment) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  for (const auto& [size, capacity] : std::vector<std::pair<offset_t, offset_t>>{
           {1, 16}, {16, 16}, {17, 32}, {100, 112}, {1000, 1008}}) {
    auto a = e.allocate(size, 1, bufpool::optimal);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->capacity, capacity) << "size " << size;
  }
  EXPECT_TRUE(valid(e));
}

TEST(Capacity, AbsorbsTailSmallerThanMinAlignment) {
  bufpool::engine e(limits_u32());
  add_region(e, 120);  // 100 rounds to 112, leaving 8 < 16: the tail is absorbed
  auto a = e.allocate(100, 1, bufpool::optimal);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->capacity, 120u);
  EXPECT_EQ(e.stats().free_ranges, 0u);
  EXPECT_EQ(e.stats().used_bytes, 120u);
  EXPECT_TRUE(valid(e));
}

TEST(Capacity, KeepsTailOfExactlyMinAlignment) {
  bufpool::engine e(limits_u32());
  add_region(e, 128);
  auto a = e.allocate(100, 1, bufpool::optimal);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->capacity, 112u);
  EXPECT_EQ(layout_of(e, 0), (layout{{0, 112, true}, {112, 16, false}}));
  EXPECT_TRUE(valid(e));
}

TEST(Capacity, TakesWholeRangeWhenRoundingUpDoesNotFit) {
  bufpool::engine e(limits_u32());
  add_region(e, 104);  // 100 cannot round up to 112
  auto a = e.allocate(100, 1, bufpool::optimal);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->capacity, 104u);
  EXPECT_TRUE(valid(e));
}

TEST(Capacity, MinSizeRaisesSmallRequests) {
  auto limits = limits_u32();
  limits.min_size = 64;
  bufpool::engine e(limits);
  add_region(e, 4 * kib);
  auto a = e.allocate(1, 1, bufpool::optimal);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->capacity, 64u);
  auto b = e.allocate(1, 1, bufpool::fixed(64));
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->capacity, 64u);
  EXPECT_EQ(error_of(e.allocate(1, 1, bufpool::fixed(96))), errc::occupied);
  EXPECT_TRUE(valid(e));
}

// ---------------------------------------------------------------------------------------
// Release and coalescing.

TEST(Coalescing, ReleaseMergesWithBothFreeNeighbours) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto all = fill(e, 0, {1024, 1024, 1024, 1024});
  ASSERT_TRUE(e.release(all[0].node));
  ASSERT_TRUE(e.release(all[2].node));
  EXPECT_EQ(e.stats().free_ranges, 2u);
  ASSERT_TRUE(e.release(all[1].node));  // joins [0, 1024) and [2048, 3072)
  EXPECT_EQ(layout_of(e, 0), (layout{{0, 3 * kib, false}, {3 * kib, kib, true}}));
  ASSERT_TRUE(e.release(all[3].node));
  EXPECT_EQ(layout_of(e, 0), (layout{{0, 4 * kib, false}}));
  EXPECT_TRUE(valid(e));
}

TEST(Coalescing, ReleaseMergesWithPreviousOrNextOnly) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto all = fill(e, 0, {1024, 1024, 1024, 1024});
  ASSERT_TRUE(e.release(all[0].node));
  ASSERT_TRUE(e.release(all[1].node));  // previous only
  EXPECT_EQ(layout_of(e, 0),
            (layout{{0, 2 * kib, false}, {2 * kib, kib, true}, {3 * kib, kib, true}}));
  ASSERT_TRUE(e.release(all[3].node));
  ASSERT_TRUE(e.release(all[2].node));  // both, ending the region
  EXPECT_EQ(layout_of(e, 0), (layout{{0, 4 * kib, false}}));
  auto again = fill(e, 0, {2048, 2048});
  ASSERT_TRUE(e.release(again[1].node));
  ASSERT_TRUE(e.release(again[0].node));  // next only
  EXPECT_EQ(layout_of(e, 0), (layout{{0, 4 * kib, false}}));
  EXPECT_TRUE(valid(e));
}

TEST(Coalescing, NeverMergesAcrossRegionsWithContiguousOffsets) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  add_region(e, 4 * kib);
  ASSERT_EQ(e.region(1).offset, 4 * kib);
  EXPECT_EQ(e.region_of(4 * kib - 1), 0u);
  EXPECT_EQ(e.region_of(4 * kib), 1u);
  auto a = e.allocate(4 * kib, 16, bufpool::fixed(0));
  auto b = e.allocate(4 * kib, 16, bufpool::fixed(4 * kib));
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(a->region, 0u);
  EXPECT_EQ(b->region, 1u);
  ASSERT_TRUE(e.release(a->node));
  ASSERT_TRUE(e.release(b->node));
  EXPECT_EQ(e.stats().free_ranges, 2u);
  EXPECT_EQ(e.stats().largest_free, 4 * kib);
  EXPECT_EQ(layout_of(e, 0), (layout{{0, 4 * kib, false}}));
  EXPECT_EQ(layout_of(e, 1), (layout{{4 * kib, 4 * kib, false}}));
  // 8 KiB of contiguous free offsets, but no single slice may span both regions.
  for (const auto how : {bufpool::optimal, bufpool::greedy})
    EXPECT_EQ(error_of(e.allocate(4 * kib + 16, 16, how)), errc::out_of_memory);
  EXPECT_TRUE(valid(e));
}

// ---------------------------------------------------------------------------------------
// Resizing in place.

TEST(Resize, GrowsIntoAFreeNextRangeKeepingTheOffset) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto all = fill(e, 0, {1024, 1024, 2048});
  ASSERT_TRUE(e.release(all[1].node));
  EXPECT_EQ(e.resize(all[0].node, 1500).value(), 1504u);  // rounded to the granule
  EXPECT_EQ(layout_of(e, 0),
            (layout{{0, 1504, true}, {1504, 544, false}, {2 * kib, 2 * kib, true}}));
  EXPECT_EQ(e.stats().used_bytes, 1504u + 2048u);
  EXPECT_EQ(e.stats().free_bytes, 544u);
  EXPECT_TRUE(valid(e));
  EXPECT_EQ(e.resize(all[0].node, 2048).value(), 2048u);  // takes the free range whole
  EXPECT_EQ(layout_of(e, 0), (layout{{0, 2 * kib, true}, {2 * kib, 2 * kib, true}}));
  EXPECT_EQ(e.stats().free_ranges, 0u);
  EXPECT_TRUE(valid(e));
}

TEST(Resize, GrowthAbsorbsALeftoverSmallerThanTheGranule) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto all = fill(e, 0, {1024, 1024, 2048});
  ASSERT_TRUE(e.release(all[1].node));
  EXPECT_EQ(e.resize(all[0].node, 2040).value(), 2048u);  // 8 bytes would be left: taken too
  EXPECT_EQ(e.stats().free_ranges, 0u);
  EXPECT_TRUE(valid(e));
}

TEST(Resize, GrowthFailsWithOutOfMemoryWhenTheNextRangeIsUsedOrTooSmall) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto all = fill(e, 0, {1024, 1024, 1024, 1024});
  ASSERT_TRUE(e.release(all[2].node));
  const layout before = layout_of(e, 0);
  EXPECT_EQ(error_of(e.resize(all[0].node, 1040)), errc::out_of_memory);  // next is used
  EXPECT_EQ(error_of(e.resize(all[1].node, 2049)), errc::out_of_memory);  // next too small
  EXPECT_EQ(error_of(e.resize(all[3].node, 1040)), errc::out_of_memory);  // region's end
  EXPECT_EQ(layout_of(e, 0), before);
  EXPECT_TRUE(valid(e));
}

TEST(Resize, NeverGrowsAcrossRegionsWithContiguousOffsets) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  add_region(e, 4 * kib);  // offsets [4096, 8192): contiguous, another region
  auto a = e.allocate(4 * kib, 1, bufpool::fixed(0));
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(error_of(e.resize(a->node, 4 * kib + 16)), errc::out_of_memory);
  EXPECT_TRUE(valid(e));
}

TEST(Resize, ShrinkGivesTheTailBackAsAFreeRangeOrToAFreeNeighbour) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto all = fill(e, 0, {2048, 1024, 1024});
  EXPECT_EQ(e.resize(all[0].node, 1000).value(), 1008u);  // next is used: a new free range
  EXPECT_EQ(
      layout_of(e, 0),
      (layout{{0, 1008, true}, {1008, 1040, false}, {2 * kib, kib, true}, {3 * kib, kib, true}}));
  EXPECT_TRUE(valid(e));
  ASSERT_TRUE(e.release(all[2].node));
  EXPECT_EQ(e.resize(all[1].node, 16).value(), 16u);  // the free next range grows backwards
  EXPECT_EQ(layout_of(e, 0), (layout{{0, 1008, true},
                                     {1008, 1040, false},
                                     {2 * kib, 16, true},
                                     {2 * kib + 16, 2 * kib - 16, false}}));
  EXPECT_EQ(e.stats().used_bytes, 1008u + 16u);
  EXPECT_TRUE(valid(e));
}

TEST(Resize, ShrinkByLessThanAGranuleKeepsTheCapacity) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto all = fill(e, 0, {1024, 3072});
  EXPECT_EQ(e.resize(all[0].node, 1020).value(), 1024u);
  EXPECT_EQ(e.resize(all[0].node, 1009).value(), 1024u);
  EXPECT_EQ(e.stats().free_ranges, 0u);
  EXPECT_TRUE(valid(e));
}

TEST(Resize, BadArgumentsAreErrorsThatChangeNothing) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto a = e.allocate(100, 1, bufpool::optimal);
  auto b = e.allocate(100, 1, bufpool::optimal);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(e.release(b->node));
  EXPECT_EQ(error_of(e.resize(a->node, 0)), errc::invalid_size);
  EXPECT_EQ(error_of(e.resize(a->node, offset_t{UINT32_MAX} + 1)), errc::too_large);
  EXPECT_EQ(error_of(e.resize(b->node, 50)), errc::not_live);  // released
  EXPECT_EQ(error_of(e.resize(12345, 50)), errc::not_live);    // never a node
  EXPECT_EQ(e.stats().used_bytes, 112u);
  EXPECT_TRUE(valid(e));
}

// Random grows, shrinks, allocations and releases: every resize keeps the offset, yields a
// capacity that holds the request, fails only when the bytes right after are not free
// (checked against a byte map), and the engine stays valid throughout.
TEST(Resize, RandomResizesKeepEveryInvariant) {
  bufpool::engine e(limits_u32());
  constexpr offset_t size = 64 * kib;
  add_region(e, size);
  std::vector<char> owner(size, 0);  // 1 where a live range lies
  struct live {
    std::uint32_t node;
    offset_t offset;
    offset_t capacity;
  };
  std::vector<live> ranges;
  int grew = 0;
  int shrank = 0;
  int refused = 0;
  std::uint64_t x = 88172645463325252ULL;
  auto next = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  auto mark = [&owner](offset_t from, offset_t n, char v) {
    std::fill(owner.begin() + static_cast<std::ptrdiff_t>(from),
              owner.begin() + static_cast<std::ptrdiff_t>(from + n), v);
  };
  for (int step = 0; step < 20000; ++step) {
    const auto op = next() % 4;
    if (op == 0 || ranges.empty()) {
      auto a = e.allocate(1 + next() % 2000, offset_t{1} << (next() % 7), bufpool::optimal);
      if (!a) continue;
      ranges.push_back({a->node, a->offset, a->capacity});
      mark(a->offset, a->capacity, 1);
    } else if (op == 1) {
      const std::size_t i = next() % ranges.size();
      ASSERT_TRUE(e.release(ranges[i].node));
      mark(ranges[i].offset, ranges[i].capacity, 0);
      ranges[i] = ranges.back();
      ranges.pop_back();
    } else {
      live& r = ranges[next() % ranges.size()];
      const offset_t want = 1 + next() % 4000;
      mark(r.offset, r.capacity, 0);
      offset_t room = 0;  // free bytes from the offset on
      while (r.offset + room < size && owner[r.offset + room] == 0) ++room;
      auto c = e.resize(r.node, want);
      if (want <= room) {
        ASSERT_TRUE(c.has_value()) << "step " << step;
        ASSERT_GE(*c, want);
        ASSERT_LE(*c, room);
        grew += *c > r.capacity ? 1 : 0;
        shrank += *c < r.capacity ? 1 : 0;
        r.capacity = *c;
      } else {
        ASSERT_EQ(error_of(c), errc::out_of_memory) << "step " << step;
        ++refused;
      }
      ASSERT_EQ(e.node_offset(r.node), r.offset);
      ASSERT_EQ(e.node_size(r.node), r.capacity);
      mark(r.offset, r.capacity, 1);
    }
    if (step % 500 == 0) ASSERT_TRUE(valid(e)) << "step " << step;
  }
  for (const live& r : ranges) ASSERT_TRUE(e.release(r.node));
  EXPECT_EQ(layout_of(e, 0), (layout{{0, size, false}}));
  EXPECT_TRUE(valid(e));
  EXPECT_GT(grew, 500);  // every branch was taken often
  EXPECT_GT(shrank, 500);
  EXPECT_GT(refused, 500);
}

TEST(Release, NonLiveNodeReturnsFalseAndChangesNothing) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto a = e.allocate(100, 16, bufpool::optimal);
  auto b = e.allocate(100, 16, bufpool::optimal);
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  EXPECT_TRUE(e.is_live(a->node));
  ASSERT_TRUE(e.release(a->node));
  EXPECT_FALSE(e.is_live(a->node));
  const auto before = e.stats();
  const auto shape = layout_of(e, 0);
  EXPECT_FALSE(e.release(a->node));  // double release
  EXPECT_FALSE(e.release(bufpool::no_index));
  EXPECT_FALSE(e.release(100000));
  EXPECT_EQ(e.stats().used_ranges, before.used_ranges);
  EXPECT_EQ(e.stats().free_bytes, before.free_bytes);
  EXPECT_EQ(layout_of(e, 0), shape);
  EXPECT_TRUE(e.is_live(b->node));
  EXPECT_TRUE(valid(e));
}

// ---------------------------------------------------------------------------------------
// Argument checks: errors, never state changes.

TEST(Arguments, ZeroSizeIsInvalidSize) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  for (const auto how : {bufpool::optimal, bufpool::greedy, bufpool::fixed(0)})
    EXPECT_EQ(error_of(e.allocate(0, 16, how)), errc::invalid_size);
  EXPECT_EQ(e.stats().used_ranges, 0u);
}

TEST(Arguments, NonPowerOfTwoAlignmentIsInvalidAlignment) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  for (const offset_t alignment : {offset_t{0}, offset_t{3}, offset_t{48}, offset_t{4097}})
    for (const auto how : {bufpool::optimal, bufpool::greedy, bufpool::fixed(0)})
      EXPECT_EQ(error_of(e.allocate(16, alignment, how)), errc::invalid_alignment)
          << "alignment " << alignment;
  EXPECT_EQ(e.stats().used_ranges, 0u);
}

TEST(Arguments, AlignmentAboveMaximumIsAlignmentTooBig) {
  bufpool::engine e(limits_u16());
  add_region(e, 4 * kib);
  EXPECT_TRUE(e.allocate(16, offset_t{1} << 15, bufpool::fixed(0)).has_value());
  for (const auto how : {bufpool::optimal, bufpool::greedy, bufpool::fixed(0)})
    EXPECT_EQ(error_of(e.allocate(16, offset_t{1} << 16, how)), errc::alignment_too_big);
  EXPECT_EQ(e.stats().used_ranges, 1u);
}

TEST(Arguments, SizeAboveMaxSizeIsTooLarge) {
  auto limits = limits_u32();
  limits.max_size = 1024;
  bufpool::engine e(limits);
  add_region(e, 4 * kib);
  EXPECT_TRUE(e.allocate(1024, 16, bufpool::optimal).has_value());
  for (const auto how : {bufpool::optimal, bufpool::greedy, bufpool::fixed(2048)})
    EXPECT_EQ(error_of(e.allocate(1025, 16, how)), errc::too_large);
  EXPECT_EQ(e.stats().used_ranges, 1u);
  EXPECT_TRUE(valid(e));
}

TEST(Arguments, NoFreeRangeIsOutOfMemory) {
  bufpool::engine e(limits_u32());
  for (const auto how : {bufpool::optimal, bufpool::greedy})
    EXPECT_EQ(error_of(e.allocate(16, 16, how)), errc::out_of_memory);  // no region at all
  add_region(e, 4 * kib);
  for (const auto how : {bufpool::optimal, bufpool::greedy})
    EXPECT_EQ(error_of(e.allocate(4 * kib + 1, 16, how)), errc::out_of_memory);
  EXPECT_TRUE(valid(e));
}

// ---------------------------------------------------------------------------------------
// Offset space: reserve, cancel, publish.

TEST(Reserve, TakesOffsetsAtTheEndOfTheUsedSpace) {
  bufpool::engine e(limits_u32());
  EXPECT_EQ(e.reserve(4096).value(), 0u);
  EXPECT_EQ(e.reserve(100).value(), 4096u);
  EXPECT_EQ(e.reserve(1).value(), 4196u);
  EXPECT_EQ(e.stats().pending_bytes, 4197u);
  e.publish(4096, 100);
  EXPECT_EQ(e.stats().pending_bytes, 4097u);
  EXPECT_EQ(e.stats().regions, 1u);
  EXPECT_EQ(e.region(0).offset, 4096u);
  EXPECT_EQ(e.region(0).size, 100u);
  EXPECT_TRUE(valid(e));
}

TEST(Reserve, ZeroSizeIsInvalidSize) {
  bufpool::engine e(limits_u32());
  EXPECT_EQ(error_of(e.reserve(0)), errc::invalid_size);
  EXPECT_EQ(e.reserve(16).value(), 0u);  // nothing was taken
}

TEST(Reserve, CancelledSpanIsReusedOnceTheEndIsExhausted) {
  bufpool::engine e(limits_u16());
  ASSERT_EQ(e.reserve(16 * kib).value(), 0u);
  ASSERT_EQ(e.reserve(16 * kib).value(), 16 * kib);
  ASSERT_EQ(e.reserve(32 * kib).value(), 32 * kib);  // the space is now full
  e.cancel(16 * kib, 16 * kib);
  EXPECT_EQ(e.stats().pending_bytes, 48 * kib);
  ASSERT_TRUE(valid(e));
  EXPECT_EQ(e.reserve(8 * kib).value(), 16 * kib);  // front of the gap
  EXPECT_EQ(e.reserve(8 * kib).value(), 24 * kib);  // the rest of it
  EXPECT_EQ(error_of(e.reserve(1)), errc::out_of_offset_space);
  EXPECT_TRUE(valid(e));
}

TEST(Reserve, SmallestFittingGapIsChosen) {
  bufpool::engine e(limits_u16());
  const offset_t a = e.reserve(3 * kib).value();
  e.reserve(kib).value();
  const offset_t b = e.reserve(2 * kib).value();
  e.reserve(kib).value();
  const offset_t c = e.reserve(4 * kib).value();
  e.reserve(64 * kib - 11 * kib).value();  // the end is now exhausted
  e.cancel(a, 3 * kib);
  e.cancel(b, 2 * kib);
  e.cancel(c, 4 * kib);
  ASSERT_TRUE(valid(e));
  EXPECT_EQ(e.reserve(2 * kib).value(), b);
  EXPECT_EQ(e.reserve(2 * kib).value(), a);  // 3 KiB beats 4 KiB
  EXPECT_EQ(e.reserve(3 * kib).value(), c);
  EXPECT_EQ(error_of(e.reserve(2 * kib)), errc::out_of_offset_space);  // 1 KiB gaps left
  EXPECT_EQ(e.reserve(kib).value(), a + 2 * kib);
  EXPECT_TRUE(valid(e));
}

TEST(Reserve, AdjacentCancelledSpansMergeIntoOneGap) {
  bufpool::engine e(limits_u16());
  const offset_t a = e.reserve(kib).value();
  const offset_t b = e.reserve(kib).value();
  const offset_t c = e.reserve(kib).value();
  e.reserve(64 * kib - 3 * kib).value();
  e.cancel(a, kib);
  e.cancel(c, kib);
  e.cancel(b, kib);  // joins both neighbours
  ASSERT_TRUE(valid(e));
  EXPECT_EQ(e.reserve(3 * kib).value(), a);
  EXPECT_TRUE(valid(e));
}

TEST(Reserve, CancelAtTheFrontierRetractsIt) {
  bufpool::engine e(limits_u32());
  const offset_t a = e.reserve(kib).value();
  const offset_t b = e.reserve(kib).value();
  const offset_t c = e.reserve(kib).value();
  e.cancel(b, kib);  // a gap: c is still above it
  e.cancel(c, kib);  // reaches the frontier, taking the gap with it
  ASSERT_TRUE(valid(e));
  // A larger span now starts right after `a`: the end of the used space moved back.
  EXPECT_EQ(e.reserve(8 * kib).value(), a + kib);
  EXPECT_EQ(e.stats().pending_bytes, 9 * kib);
  EXPECT_TRUE(valid(e));
}

TEST(Reserve, CancelOfTheLastSpanOfAFullSpaceRetractsTheFrontier) {
  bufpool::engine e(limits_u16());
  ASSERT_EQ(e.reserve(60 * kib).value(), 0u);
  ASSERT_EQ(e.reserve(4 * kib).value(), 60 * kib);  // touches offset 65535
  EXPECT_EQ(error_of(e.reserve(1)), errc::out_of_offset_space);
  e.cancel(60 * kib, 4 * kib);
  ASSERT_TRUE(valid(e));
  EXPECT_EQ(e.reserve(4 * kib).value(), 60 * kib);
  EXPECT_TRUE(valid(e));
}

TEST(Reserve, OutOfOffsetSpaceWhenNoSpanFits) {
  bufpool::engine e(limits_u16());
  EXPECT_EQ(error_of(e.reserve(64 * kib + 1)), errc::out_of_offset_space);
  const offset_t a = e.reserve(kib).value();
  e.reserve(63 * kib).value();
  e.cancel(a, kib);
  EXPECT_EQ(error_of(e.reserve(kib + 1)), errc::out_of_offset_space);
  EXPECT_EQ(e.reserve(kib).value(), a);
  EXPECT_EQ(error_of(e.reserve(1)), errc::out_of_offset_space);
  EXPECT_TRUE(valid(e));
}

// ---------------------------------------------------------------------------------------
// The integer's whole range.

TEST(U16Limits, RegionCoveringTheWholeSpaceIsUsableUpToOffset65535) {
  bufpool::engine e(limits_u16());
  ASSERT_EQ(e.reserve(65536).value(), 0u);
  e.publish(0, 65536);
  EXPECT_EQ(error_of(e.reserve(1)), errc::out_of_offset_space);
  auto top = e.allocate(16, 16, bufpool::fixed(65520));
  ASSERT_TRUE(top.has_value());
  EXPECT_EQ(top->capacity, 16u);
  auto rest = e.allocate(65520, 16, bufpool::optimal);
  ASSERT_TRUE(rest.has_value());
  EXPECT_EQ(rest->offset, 0u);
  EXPECT_EQ(e.stats().used_bytes, 65536u);
  EXPECT_EQ(error_of(e.allocate(65536, 16, bufpool::optimal)), errc::too_large);
  ASSERT_TRUE(e.release(top->node));
  ASSERT_TRUE(e.release(rest->node));
  EXPECT_EQ(layout_of(e, 0), (layout{{0, 65536, false}}));
  auto whole = e.allocate(65535, 1, bufpool::greedy);  // rounds up to the whole space
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(whole->capacity, 65536u);
  EXPECT_TRUE(valid(e));
}

TEST(U64Limits, RegionTouchingTheTopOffsetWorks) {
  bufpool::engine e(limits_u64());
  const offset_t top = u64_max - (mib - 1);  // the last 1 MiB of offsets
  ASSERT_EQ(e.reserve(top).value(), 0u);
  ASSERT_EQ(e.reserve(mib).value(), top);
  const std::uint32_t r = e.publish(top, mib);
  EXPECT_EQ(e.region_of(u64_max), r);
  EXPECT_EQ(e.region_of(0), bufpool::no_index);  // no wrap-around to offset 0
  EXPECT_EQ(error_of(e.reserve(1)), errc::out_of_offset_space);
  ASSERT_TRUE(valid(e));

  auto last = e.allocate(16, 16, bufpool::fixed(u64_max - 15));
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->capacity, 16u);
  auto low = e.allocate(mib - 32, 16, bufpool::optimal);
  ASSERT_TRUE(low.has_value());
  EXPECT_EQ(low->offset, top);
  auto mid = e.allocate(16, 16, bufpool::greedy);
  ASSERT_TRUE(mid.has_value());
  EXPECT_EQ(mid->offset, u64_max - 31);
  EXPECT_EQ(e.stats().free_ranges, 0u);
  EXPECT_EQ(e.stats().used_bytes, mib);
  ASSERT_TRUE(valid(e));
  ASSERT_TRUE(e.release(last->node));
  ASSERT_TRUE(e.release(low->node));
  ASSERT_TRUE(e.release(mid->node));
  EXPECT_EQ(layout_of(e, r), (layout{{top, mib, false}}));
  // One slice of the whole region ends exactly at 2^64.
  auto whole = e.allocate(mib, mib, bufpool::optimal);
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(whole->offset, top);
  EXPECT_EQ(whole->capacity, mib);
  EXPECT_TRUE(valid(e));
}

TEST(U64Limits, ReservationsNeverWrapAround) {
  bufpool::engine e(limits_u64());
  ASSERT_EQ(e.reserve(u64_max).value(), 0u);  // offsets 0 .. 2^64 - 2
  ASSERT_EQ(e.reserve(1).value(), u64_max);   // the very last offset
  EXPECT_EQ(error_of(e.reserve(1)), errc::out_of_offset_space);
  ASSERT_TRUE(valid(e));
  e.cancel(u64_max, 1);
  EXPECT_EQ(error_of(e.reserve(2)), errc::out_of_offset_space);
  ASSERT_TRUE(valid(e));
  EXPECT_EQ(e.reserve(1).value(), u64_max);
  e.cancel(0, u64_max);  // a gap below the last offset
  ASSERT_TRUE(valid(e));
  EXPECT_EQ(e.reserve(16).value(), 0u);
  EXPECT_EQ(e.stats().pending_bytes, 17u);
  EXPECT_TRUE(valid(e));
}

// ---------------------------------------------------------------------------------------
// Statistics.

TEST(Stats, CountersFollowAllocateReleaseAndExpansion) {
  bufpool::engine e(limits_u32());
  EXPECT_EQ(e.stats().regions, 0u);
  EXPECT_EQ(e.stats().largest_free, 0u);
  const offset_t at = e.reserve(8 * kib).value();
  EXPECT_EQ(e.stats().pending_bytes, 8 * kib);
  EXPECT_EQ(e.stats().free_bytes, 0u);
  e.publish(at, 8 * kib);
  auto s = e.stats();
  EXPECT_EQ(s.pending_bytes, 0u);
  EXPECT_EQ(s.free_bytes, 8 * kib);
  EXPECT_EQ(s.largest_free, 8 * kib);
  EXPECT_EQ(s.free_ranges, 1u);
  EXPECT_EQ(s.used_ranges, 0u);
  EXPECT_EQ(s.regions, 1u);
  auto a = e.allocate(100, 1024, bufpool::fixed(1024)).value();
  s = e.stats();
  EXPECT_EQ(s.used_bytes, 112u);
  EXPECT_EQ(s.free_bytes, 8 * kib - 112);
  EXPECT_EQ(s.largest_free, 8 * kib - 1136);
  EXPECT_EQ(s.free_ranges, 2u);
  EXPECT_EQ(s.used_ranges, 1u);
  ASSERT_TRUE(e.release(a.node));
  s = e.stats();
  EXPECT_EQ(s.used_bytes, 0u);
  EXPECT_EQ(s.free_bytes, 8 * kib);
  EXPECT_EQ(s.free_ranges, 1u);
  EXPECT_EQ(s.used_ranges, 0u);
  EXPECT_TRUE(valid(e));
}

TEST(Stats, PerRegionStatsCountOnlyTheirRegion) {
  bufpool::engine e(limits_u32());
  const std::uint32_t r0 = add_region(e, 4 * kib);
  const std::uint32_t r1 = add_region(e, 8 * kib);
  ASSERT_TRUE(e.allocate(100, 16, bufpool::fixed(4 * kib + 512)).has_value());
  ASSERT_TRUE(e.allocate(200, 16, bufpool::fixed(8 * kib)).has_value());
  ASSERT_TRUE(e.allocate(16, 16, bufpool::fixed(0)).has_value());
  const auto a = e.region(r0);
  EXPECT_EQ(a.offset, 0u);
  EXPECT_EQ(a.size, 4 * kib);
  EXPECT_EQ(a.used_bytes, 16u);
  EXPECT_EQ(a.free_bytes, 4 * kib - 16);
  EXPECT_EQ(a.used_ranges, 1u);
  EXPECT_EQ(a.free_ranges, 1u);
  const auto b = e.region(r1);
  EXPECT_EQ(b.offset, 4 * kib);
  EXPECT_EQ(b.size, 8 * kib);
  EXPECT_EQ(b.used_bytes, 112u + 208u);
  EXPECT_EQ(b.free_bytes, 8 * kib - 320);
  EXPECT_EQ(b.used_ranges, 2u);
  EXPECT_EQ(b.free_ranges, 3u);
  const auto s = e.stats();
  EXPECT_EQ(s.used_bytes, a.used_bytes + b.used_bytes);
  EXPECT_EQ(s.free_ranges, a.free_ranges + b.free_ranges);
  EXPECT_TRUE(valid(e));
}

}  // namespace

namespace {

// Deep indexes: 32768 isolated free ranges make both B+trees about five levels deep; then
// every used range is released in random order, so merges shrink the trees back to one
// entry. Best fit, fixed lookups and validate() are checked on the way down and up.
TEST(Indexes, GrowDeepAndShrinkBackToOneFreeRange) {
  bufpool::engine e(limits_u32());
  constexpr offset_t slice = 128;
  constexpr std::size_t count = 65536;
  add_region(e, slice * count);
  std::vector<std::uint32_t> nodes;
  for (std::size_t i = 0; i < count; ++i)
    nodes.push_back(e.allocate(slice, 1, bufpool::optimal)->node);
  EXPECT_EQ(e.stats().free_ranges, 0u);
  for (std::size_t i = 0; i < count; i += 2) ASSERT_TRUE(e.release(nodes[i]));
  EXPECT_EQ(e.stats().free_ranges, count / 2);
  EXPECT_EQ(e.stats().largest_free, slice);
  ASSERT_TRUE(valid(e));
  // Every free range is findable by offset (the offset index) and by size (best fit).
  for (std::size_t i = 0; i < count; i += 4096) {
    auto a = e.allocate(slice, 1, bufpool::fixed(i * slice));
    ASSERT_TRUE(a.has_value()) << i;
    EXPECT_EQ(error_of(e.allocate(16, 1, bufpool::fixed(i * slice + slice))), errc::occupied);
    nodes[i] = a->node;
  }
  auto best = e.allocate(slice, 128, bufpool::optimal);
  ASSERT_TRUE(best.has_value());
  EXPECT_EQ(best->capacity, slice);
  ASSERT_TRUE(valid(e));
  ASSERT_TRUE(e.release(best->node));
  for (std::size_t i = 0; i < count; i += 4096) ASSERT_TRUE(e.release(nodes[i]));
  // Release the odd (used) ranges in a shuffled order: every release merges.
  std::vector<std::uint32_t> rest;
  for (std::size_t i = 1; i < count; i += 2) rest.push_back(nodes[i]);
  std::uint64_t state = 0x9e3779b97f4a7c15ULL;
  for (std::size_t i = rest.size(); i > 1; --i) {  // Fisher-Yates with a fixed generator
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    std::swap(rest[i - 1], rest[(state >> 33) % i]);
  }
  for (std::size_t i = 0; i < rest.size(); ++i) {
    ASSERT_TRUE(e.release(rest[i]));
    if (i % 8192 == 0) ASSERT_TRUE(valid(e)) << "after " << i << " merges";
  }
  EXPECT_EQ(e.stats().free_ranges, 1u);
  EXPECT_EQ(e.stats().largest_free, slice * count);
  EXPECT_TRUE(valid(e));
}

}  // namespace

// ---- the size-class cache of greedy ------------------------------------------------------

TEST(SizeClasses, GreedyRoundsUpToTheClassAtMostAnEighth) {
  bufpool::engine e(limits_u32());  // granule 16
  EXPECT_EQ(e.class_limit(), 64 * kib);
  EXPECT_EQ(e.class_capacity(1), 16u);
  EXPECT_EQ(e.class_capacity(256), 256u);  // 16 granules: still exact
  EXPECT_EQ(e.class_capacity(257), 288u);  // then 8 classes per doubling
  EXPECT_EQ(e.class_capacity(1000), 1024u);
  EXPECT_EQ(e.class_capacity(64 * kib), 64 * kib);
  EXPECT_EQ(e.class_capacity(64 * kib + 1), 64 * kib + 16);  // above the limit: the granule
  for (offset_t n = 1; n <= 64 * kib; n += 7) {
    const offset_t c = e.class_capacity(n);
    ASSERT_GE(c, n);
    ASSERT_LE(c - n, std::max<offset_t>(15, n / 8)) << n;
    ASSERT_EQ(e.class_capacity(c), c) << "a class capacity is its own class: " << n;
  }
  add_region(e, mib);
  auto a = e.allocate(1000, 1, bufpool::greedy);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->capacity, 1024u);
  auto b = e.allocate(1000, 1, bufpool::optimal);  // optimal does not round
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->capacity, 1008u);
}

TEST(SizeClasses, ARangeGivenBackIsReusedByTheNextGreedyRequestOfItsClass) {
  bufpool::engine e(limits_u32());
  add_region(e, mib);
  std::vector<bufpool::engine_allocation> held;
  for (int i = 0; i < 8; ++i) held.push_back(e.allocate(64, 1, bufpool::greedy).value());
  // Give back the 3rd and the 6th: an exact best fit would take the lower one; the cache
  // hands back the last one given (LIFO), in O(1).
  ASSERT_TRUE(e.release(held[2].node));
  ASSERT_TRUE(e.release(held[5].node));
  auto again = e.allocate(60, 1, bufpool::greedy);  // same class (64)
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->offset, held[5].offset);
  EXPECT_EQ(again->capacity, 64u);
  auto next = e.allocate(64, 16, bufpool::greedy);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->offset, held[2].offset);
  EXPECT_TRUE(valid(e));
}

TEST(SizeClasses, CachedRangesCountAsFreeAndMergedInEveryView) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto a = e.allocate(64, 1, bufpool::greedy).value();
  auto b = e.allocate(64, 1, bufpool::greedy).value();
  auto c = e.allocate(64, 1, bufpool::greedy).value();
  ASSERT_TRUE(e.release(b.node));  // cached, between two used ranges
  ASSERT_TRUE(e.release(c.node));  // cached, next to b and to the free tail
  const auto s = e.stats();
  EXPECT_EQ(s.used_bytes, 64u);
  EXPECT_EQ(s.free_bytes, 4 * kib - 64);
  EXPECT_EQ(s.free_ranges, 1u);  // b, c and the tail are one free range
  EXPECT_EQ(s.largest_free, 4 * kib - 64);
  const auto r = e.region(0);
  EXPECT_EQ(r.free_ranges, 1u);
  EXPECT_EQ(r.free_bytes, 4 * kib - 64);
  const auto ranges = e.ranges(0);
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_TRUE(ranges[0].used);
  EXPECT_FALSE(ranges[1].used);
  EXPECT_EQ(ranges[1].offset, 64u);
  EXPECT_EQ(ranges[1].size, 4 * kib - 64);
  EXPECT_TRUE(valid(e));
  ASSERT_TRUE(e.release(a.node));
  EXPECT_EQ(e.stats().free_ranges, 1u);
  EXPECT_EQ(e.stats().largest_free, 4 * kib);
  EXPECT_TRUE(valid(e));
}

TEST(SizeClasses, OptimalAndFixedSeeCachedRangesCoalesced) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto a = e.allocate(2 * kib, 1, bufpool::greedy).value();
  auto b = e.allocate(2 * kib, 1, bufpool::greedy).value();
  ASSERT_TRUE(e.release(a.node));
  ASSERT_TRUE(e.release(b.node));
  // Only the two cached halves merged can hold this: optimal flushes, then finds it.
  auto whole = e.allocate(4 * kib, 1, bufpool::optimal);
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(whole->offset, 0u);
  ASSERT_TRUE(e.release(whole->node));
  a = e.allocate(2 * kib, 1, bufpool::greedy).value();
  ASSERT_TRUE(e.release(a.node));                              // cached again
  auto at = e.allocate(16, 1, bufpool::fixed(a.offset + 32));  // inside the cached range
  ASSERT_TRUE(at.has_value());
  EXPECT_EQ(at->offset, a.offset + 32);
  EXPECT_TRUE(valid(e));
}

TEST(SizeClasses, GreedyFlushesTheCacheBeforeItReportsNoSpace) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  std::vector<bufpool::engine_allocation> quarters;
  for (int i = 0; i < 4; ++i) quarters.push_back(e.allocate(kib, 1, bufpool::greedy).value());
  for (const auto& q : quarters) ASSERT_TRUE(e.release(q.node));
  auto whole = e.allocate(3 * kib, 1, bufpool::greedy);  // another class: needs a merge
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(whole->capacity, 3 * kib);
  EXPECT_EQ(error_of(e.allocate(2 * kib, 1, bufpool::greedy)), errc::out_of_memory);
  EXPECT_TRUE(valid(e));
}

TEST(SizeClasses, ResizeGrowsIntoACachedNeighbour) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto a = e.allocate(64, 1, bufpool::greedy).value();
  auto b = e.allocate(64, 1, bufpool::greedy).value();
  auto wall = e.allocate(64, 1, bufpool::greedy).value();
  ASSERT_TRUE(e.release(b.node));  // cached
  auto grown = e.resize(a.node, 128);
  ASSERT_TRUE(grown.has_value());
  EXPECT_EQ(*grown, 128u);
  EXPECT_EQ(error_of(e.resize(a.node, 129)), errc::out_of_memory);  // the wall follows
  EXPECT_TRUE(e.release(wall.node));
  EXPECT_TRUE(valid(e));
}

TEST(SizeClasses, ResizeGrowsAcrossSeveralCachedRangesAndTheWilderness) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto a = e.allocate(64, 1, bufpool::greedy).value();
  auto b = e.allocate(64, 1, bufpool::greedy).value();
  auto c = e.allocate(128, 1, bufpool::greedy).value();  // the rest is the wilderness
  ASSERT_TRUE(e.release(b.node));                        // cached
  ASSERT_TRUE(e.release(c.node));                        // cached
  auto grown = e.resize(a.node, 256);                    // a, b and c merged
  ASSERT_TRUE(grown.has_value());
  EXPECT_EQ(*grown, 256u);
  grown = e.resize(a.node, 3 * kib);  // on into the free rest of the region
  ASSERT_TRUE(grown.has_value());
  EXPECT_EQ(*grown, 3 * kib);
  EXPECT_EQ(e.stats().free_bytes, kib);
  EXPECT_TRUE(valid(e));
}

TEST(SizeClasses, ResizeGrowsAcrossAnIndexedRangeFollowedByACachedOne) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto a = e.allocate(64, 1, bufpool::greedy).value();
  auto b = e.allocate(64, 1, bufpool::optimal).value();  // not cached when released
  auto c = e.allocate(64, 1, bufpool::greedy).value();
  auto wall = e.allocate(64, 1, bufpool::fixed(192)).value();
  ASSERT_TRUE(e.release(c.node));  // cached
  ASSERT_TRUE(e.release(b.node));  // indexed, next to the cached c
  auto grown = e.resize(a.node, 192);
  ASSERT_TRUE(grown.has_value());
  EXPECT_EQ(*grown, 192u);
  ASSERT_TRUE(e.release(wall.node));
  EXPECT_TRUE(valid(e));
}

TEST(SizeClasses, TheCacheIsBoundedAndTrimEmptiesIt) {
  bufpool::engine e(limits_u32());
  add_region(e, 64 * mib);
  std::vector<bufpool::engine_allocation> held;
  for (int i = 0; i < 20000; ++i)
    held.push_back(e.allocate(16 + 16 * static_cast<offset_t>(i % 64), 1, bufpool::greedy).value());
  for (std::size_t i = 0; i < held.size(); i += 2) ASSERT_TRUE(e.release(held[i].node));
  ASSERT_TRUE(valid(e));
  // 32 classes were given back (even i): each keeps at most its cap out of the indexes.
  EXPECT_GT(e.cached_ranges(), 0u);
  EXPECT_LE(e.cached_ranges(), 32 * bufpool::engine::max_cached_per_class);
  // With every other range free, each cached one is a free range of its own.
  const std::size_t free_ranges = e.stats().free_ranges;
  EXPECT_EQ(free_ranges, 10001u);  // 10000 holes and the tail, cached or not
  e.trim();
  EXPECT_EQ(e.cached_ranges(), 0u);
  EXPECT_EQ(e.cached_bytes(), 0u);
  EXPECT_EQ(e.stats().free_ranges, free_ranges);
  ASSERT_TRUE(valid(e));
  // After trim, an exact best fit and greedy agree: the lowest hole of the class.
  auto g = e.allocate(16, 1, bufpool::greedy);
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->offset, held[0].offset);
  for (std::size_t i = 1; i < held.size(); i += 2) ASSERT_TRUE(e.release(held[i].node));
  ASSERT_TRUE(e.release(g->node));
  EXPECT_EQ(e.stats().free_ranges, 1u);
  EXPECT_EQ(e.stats().largest_free, 64 * mib);
  EXPECT_TRUE(valid(e));
}

TEST(Wilderness, GreedyCarvesAnArenaOffTheFrontOfTheLargestFreeRange) {
  bufpool::engine e(limits_u32());
  add_region(e, mib);
  offset_t expect = 0;
  std::vector<bufpool::engine_allocation> held;
  for (int i = 0; i < 1000; ++i) {  // consecutive, in allocation order
    auto a = e.allocate(16 + 16 * static_cast<offset_t>(i % 15), 1, bufpool::greedy);
    ASSERT_TRUE(a.has_value());
    ASSERT_EQ(a->offset, expect) << i;
    expect += a->capacity;
    held.push_back(*a);
  }
  // The rest of the region is one free range in every view.
  EXPECT_EQ(e.stats().free_ranges, 1u);
  EXPECT_EQ(e.stats().largest_free, mib - expect);
  EXPECT_TRUE(valid(e));
  // Giving back the last range returns it to the wilderness; optimal and fixed still see it.
  ASSERT_TRUE(e.release(held.back().node));
  held.pop_back();
  EXPECT_EQ(e.stats().largest_free, mib - held.back().offset - held.back().capacity);
  auto at = e.allocate(64, 1, bufpool::fixed(mib - 64));
  ASSERT_TRUE(at.has_value());
  auto best = e.allocate(128, 1, bufpool::optimal);
  ASSERT_TRUE(best.has_value());
  EXPECT_TRUE(valid(e));
  for (const auto& a : held) ASSERT_TRUE(e.release(a.node));
  ASSERT_TRUE(e.release(at->node));
  ASSERT_TRUE(e.release(best->node));
  EXPECT_EQ(e.stats().free_ranges, 1u);
  EXPECT_EQ(e.stats().largest_free, mib);
  EXPECT_TRUE(valid(e));
}

TEST(Wilderness, ANewLargerRegionTakesOverAndResizeGrowsIntoIt) {
  bufpool::engine e(limits_u32());
  add_region(e, 4 * kib);
  auto a = e.allocate(64, 1, bufpool::greedy).value();  // the region's rest is the wilderness
  auto grown = e.resize(a.node, 1024);                  // into the wilderness
  ASSERT_TRUE(grown.has_value());
  EXPECT_EQ(*grown, 1024u);
  EXPECT_TRUE(valid(e));
  add_region(e, 64 * kib);
  auto b = e.allocate(8 * kib, 1, bufpool::greedy);  // only the new region holds it
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->region, 1u);
  auto c = e.allocate(64, 1, bufpool::greedy);  // an indexed hole that fits comes first
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->offset, 1024u);
  auto d = e.allocate(4 * kib, 1, bufpool::greedy);  // no hole holds it: the wilderness
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->offset, b->offset + b->capacity);
  EXPECT_EQ(e.stats().free_ranges, 2u);
  EXPECT_TRUE(valid(e));
}

// Internal assertions (checked builds): a broken invariant fails where it breaks, naming the
// file, line and condition. cancel() of a span that reserve() never handed out would wrap the
// engine's pending counters and surface later, if at all; the assertion in cancel() stops it.
// ---------------------------------------------------------------------------------------
// Metadata: every record comes from the resource given at construction.

// Counts what goes through it and forwards to the global heap.
class counting_resource : public std::pmr::memory_resource {
 public:
  std::size_t allocations = 0;
  std::size_t deallocations = 0;
  std::size_t live_bytes = 0;

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    void* p = std::pmr::new_delete_resource()->allocate(bytes, alignment);
    ++allocations;
    live_bytes += bytes;
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    ++deallocations;
    live_bytes -= bytes;
    std::pmr::new_delete_resource()->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }
};

// While it lives, a container that falls back to the default resource throws.
struct no_default_resource {
  std::pmr::memory_resource* saved =
      std::pmr::set_default_resource(std::pmr::null_memory_resource());
  no_default_resource() = default;
  no_default_resource(const no_default_resource&) = delete;
  no_default_resource& operator=(const no_default_resource&) = delete;
  ~no_default_resource() { std::pmr::set_default_resource(saved); }
};

TEST(EngineMetadata, EveryRecordComesFromTheGivenResourceAndConstructionAllocatesNothing) {
  counting_resource counting;
  counting_resource other;
  {
    const no_default_resource guard;
    bufpool::engine e(limits_u32(), &counting);
    EXPECT_EQ(counting.allocations, 0u);
    EXPECT_EQ(e.metadata(), &counting);
    // What an engine without ranges answers, before any record exists.
    EXPECT_EQ(error_of(e.allocate(64, 16, bufpool::greedy)), errc::out_of_memory);
    EXPECT_EQ(error_of(e.allocate(64, 16, bufpool::optimal)), errc::out_of_memory);
    EXPECT_EQ(error_of(e.allocate(64, 16, bufpool::fixed(0))), errc::out_of_range);
    EXPECT_EQ(e.stats().largest_free, 0u);
    EXPECT_TRUE(valid(e));
    EXPECT_EQ(counting.allocations, 0u);

    std::mt19937_64 rng(20261206);
    std::vector<std::uint32_t> live;
    std::vector<std::pair<offset_t, offset_t>> pending;
    for (int step = 0; step < 6000; ++step) {
      const auto roll = rng() % 100;
      if (roll < 4) {  // expansion: reserve, then publish or cancel
        const offset_t size = (1 + rng() % 64) * 4 * kib;
        if (const auto at = e.reserve(size)) pending.emplace_back(*at, size);
        if (!pending.empty() && rng() % 3 != 0) {
          const auto k = rng() % pending.size();
          const auto [at, size2] = pending[k];
          pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(k));
          if (rng() % 4 == 0)
            e.cancel(at, size2);
          else
            e.publish(at, size2);
        }
      } else if (roll < 50) {  // acquire
        const offset_t size = rng() % 4 == 0 ? 1 + rng() % (16 * kib) : 1 + rng() % 512;
        const offset_t alignment = offset_t{1} << (rng() % 9);
        const auto how = rng() % 3 == 0 ? bufpool::optimal : bufpool::greedy;
        if (const auto a = e.allocate(size, alignment, how)) live.push_back(a->node);
      } else if (roll < 90) {  // release
        if (live.empty()) continue;
        const auto k = rng() % live.size();
        EXPECT_TRUE(e.release(live[k]));
        live[k] = live.back();
        live.pop_back();
      } else if (!live.empty()) {  // resize in place
        (void)e.resize(live[rng() % live.size()], 1 + rng() % (8 * kib));
      }
      if (step % 1000 == 0) ASSERT_TRUE(valid(e));
    }
    EXPECT_TRUE(valid(e));
    EXPECT_GT(counting.allocations, 0u);

    // A move assignment takes the other engine's records and resource.
    bufpool::engine moved(limits_u32(), &other);
    moved = std::move(e);
    EXPECT_EQ(moved.metadata(), &counting);
    for (const std::uint32_t n : live) EXPECT_TRUE(moved.release(n));
    for (const auto& [at, size] : pending) moved.cancel(at, size);
    moved.trim();
    EXPECT_TRUE(valid(moved));
    EXPECT_EQ(moved.stats().used_ranges, 0u);
  }
  EXPECT_EQ(other.allocations, 0u);
  EXPECT_EQ(counting.live_bytes, 0u);
  EXPECT_EQ(counting.deallocations, counting.allocations);
}

TEST(EngineMetadata, SlabsOffsetMapAndAddressIndexTakeEveryRecordFromTheGivenResource) {
  counting_resource counting;
  counting_resource other;
  {
    const no_default_resource guard;
    bufpool::detail::slabs slabs(&counting);
    bufpool::detail::offset_map map(&counting);
    bufpool::detail::address_index index(&counting);
    EXPECT_EQ(counting.allocations, 0u);

    // Spans of several classes in two regions, with fake addresses (slabs never touch
    // memory): every slot taken, then every slot given back.
    using slabs_t = bufpool::detail::slabs;
    constexpr offset_t region_size = 64 * mib;
    auto* const base = reinterpret_cast<std::byte*>(std::uintptr_t{1} << 40);
    offset_t next = 0;
    std::uint32_t node = 0;
    for (const std::uint32_t region : {0u, 1u}) {
      index.reserve_one();
      index.insert(reinterpret_cast<std::uintptr_t>(base + region * region_size), region);
      for (unsigned c = 2 * region; c < slabs_t::class_count; c += 5) {  // one span per class
        const offset_t bytes = slabs_t::span_size(c);
        next = (next + bytes - 1) / bytes * bytes;
        slabs.add_span(c, region * region_size + next, bytes, node++, region, region * region_size,
                       region_size, base + region * region_size + next);
        next += bytes;
        std::vector<slabs_t::slot> taken;
        while (const auto s = slabs.take(c, slabs_t::slot_size(c), 3)) taken.push_back(*s);
        EXPECT_EQ(taken.size(), bytes / slabs_t::slot_size(c));
        for (const auto& s : taken) {
          const std::uint32_t span = slabs.find(s.offset, s.region);
          ASSERT_NE(span, bufpool::no_index);
          slabs.note_hint(reinterpret_cast<std::uintptr_t>(s.address), span);
          map.insert(s.offset, span);
        }
        for (const auto& s : taken) {
          const std::uint32_t span = map.find(s.offset);
          std::uint32_t dropped = bufpool::no_index;
          EXPECT_EQ(slabs.free_slot(span, s.offset, nullptr, 0, dropped), slabs_t::verdict::ok);
          EXPECT_TRUE(map.erase(s.offset));
        }
      }
      next = 0;
    }
    EXPECT_EQ(map.size(), 0u);
    map.reserve(5000);
    EXPECT_GT(counting.allocations, 0u);

    // A move assignment takes the other slabs' records and resource.
    bufpool::detail::slabs moved(&other);
    moved = std::move(slabs);
    EXPECT_EQ(moved.all().spans, 2 * 13u);
  }
  EXPECT_EQ(other.allocations, 0u);
  EXPECT_EQ(counting.live_bytes, 0u);
  EXPECT_EQ(counting.deallocations, counting.allocations);
}

// A 4 MiB region filled with 128-byte optimal ranges, every other one released: 16384 free
// ranges, enough for the size index to have inner nodes.
::testing::AssertionResult fill_then_free_every_other(bufpool::engine& e) {
  add_region(e, 4 * mib);
  std::vector<std::uint32_t> nodes;
  for (offset_t at = 0; at < 4 * mib; at += 128) {
    const auto a = e.allocate(128, 16, bufpool::optimal);
    if (!a) return ::testing::AssertionFailure() << "no room at " << at;
    nodes.push_back(a->node);
  }
  for (std::size_t i = 0; i < nodes.size(); i += 2)
    if (!e.release(nodes[i])) return ::testing::AssertionFailure() << "release " << i;
  return valid(e);
}

// The size index keeps alignment maxima for the levels requested so far, not for every level
// the limits allow: an engine whose requests never ask more than the granule holds the same
// records whatever its max_alignment.
TEST(EngineMetadata, TheSizeIndexPaysOnlyForTheAlignmentLevelsRequested) {
  counting_resource wide;    // max_alignment 2^63: 60 levels allowed
  counting_resource narrow;  // max_alignment 16: one level
  bufpool::engine_limits one_level;
  one_level.min_alignment = 16;
  one_level.max_alignment = 16;
  bufpool::engine e_wide(limits_u64(), &wide);
  bufpool::engine e_narrow(one_level, &narrow);
  for (bufpool::engine* e : {&e_wide, &e_narrow}) ASSERT_TRUE(fill_then_free_every_other(*e));
  EXPECT_EQ(e_wide.stats().free_ranges, 16384u);  // enough for inner nodes
  EXPECT_EQ(wide.live_bytes, narrow.live_bytes);
  // A first request at a higher level adds its levels' maxima to the index, and finds a fit.
  const std::size_t before = wide.live_bytes;
  const auto a = e_wide.allocate(128, 128, bufpool::optimal);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset % 128, 0u);
  EXPECT_GT(wide.live_bytes, before);
  EXPECT_TRUE(valid(e_wide));
}

// A row of maxima per alignment requested, not per level up to it: a first request at 4 KiB
// (eight levels above the granule) costs the index one row, as one at 32 bytes does.
TEST(EngineMetadata, ANewAlignmentAddsOneRowOfMaximaWhateverItsLevel) {
  counting_resource low;   // asked for 32 bytes
  counting_resource high;  // asked for 4 KiB
  bufpool::engine e_low(limits_u64(), &low);
  bufpool::engine e_high(limits_u64(), &high);
  for (bufpool::engine* e : {&e_low, &e_high}) ASSERT_TRUE(fill_then_free_every_other(*e));
  const std::size_t low_before = low.live_bytes;
  const std::size_t high_before = high.live_bytes;
  ASSERT_EQ(low_before, high_before);
  const auto a = e_low.allocate(128, 32, bufpool::optimal);
  const auto b = e_high.allocate(128, 4096, bufpool::optimal);
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(b->offset % 4096, 0u);
  EXPECT_GT(low.live_bytes, low_before);
  EXPECT_EQ(high.live_bytes - high_before, low.live_bytes - low_before);
  EXPECT_TRUE(valid(e_low));
  EXPECT_TRUE(valid(e_high));
}

// Only `fixed` looks free ranges up by offset: the offset index is made by the first fixed
// request, from every free range there is, and kept up to date from then on.
TEST(EngineMetadata, TheOffsetIndexIsMadeByTheFirstFixedRequestAndFindsEveryFreeRange) {
  counting_resource counting;
  bufpool::engine e(limits_u32(), &counting);
  add_region(e, 1 * mib);
  std::vector<bufpool::engine_allocation> all;
  for (offset_t at = 0; at < 1 * mib; at += 256)
    all.push_back(e.allocate(256, 16, bufpool::optimal).value());
  for (std::size_t i = 0; i < all.size(); i += 2) ASSERT_TRUE(e.release(all[i].node));
  ASSERT_TRUE(valid(e));
  const std::size_t before = counting.live_bytes;
  // Every free range is found at its offset, and a used one is reported occupied.
  for (std::size_t i = 0; i < all.size(); i += 2) {
    EXPECT_EQ(error_of(e.allocate(16, 16, bufpool::fixed(all[i + 1].offset))), errc::occupied);
    const auto a = e.allocate(256, 16, bufpool::fixed(all[i].offset));
    ASSERT_TRUE(a.has_value()) << all[i].offset;
    if (i == 0) EXPECT_GT(counting.live_bytes, before);  // the index came with the first
    all[i] = *a;
  }
  ASSERT_TRUE(valid(e));
  // Kept up to date: releases and merges after it are found by offset too.
  for (std::size_t i = 0; i < all.size(); i += 4) ASSERT_TRUE(e.release(all[i].node));
  ASSERT_TRUE(e.release(all[1].node));  // merges [0, 256) and [256, 512)
  ASSERT_TRUE(valid(e));
  EXPECT_TRUE(e.allocate(512, 16, bufpool::fixed(0)).has_value());
  EXPECT_TRUE(e.allocate(256, 16, bufpool::fixed(all[4].offset)).has_value());
  EXPECT_TRUE(valid(e));
}

// optimal's best fit is exact at every alignment level, also at a level first requested after
// the index was built (its maxima are then computed over the whole index at once), in any
// order (each level's row is added where the rows end).
TEST(OptimalStrategy, AFirstRequestAtAHigherAlignmentLevelGetsTheExactBestFit) {
  bufpool::engine e(limits_u64());
  const std::uint32_t region = add_region(e, 8 * mib);
  std::mt19937_64 rng(7);
  std::vector<std::uint32_t> nodes;
  for (;;) {
    const auto a = e.allocate(16 * (1 + rng() % 256), 16, bufpool::optimal);
    if (!a) break;
    nodes.push_back(a->node);
  }
  for (const std::uint32_t n : nodes)
    if (rng() % 2 == 0) ASSERT_TRUE(e.release(n));
  ASSERT_TRUE(valid(e));
  // The expected choice: the smallest free range (then the lowest) that holds the request.
  const auto best_fit = [&](offset_t len, offset_t align) {
    std::pair<offset_t, offset_t> best{u64_max, u64_max};  // (size, offset)
    for (const auto& r : e.ranges(region)) {
      const offset_t pad = (align - r.offset % align) % align;
      if (!r.used && pad < r.size && r.size - pad >= len)
        best = std::min(best, std::make_pair(r.size, r.offset));
    }
    return best.second == u64_max ? u64_max : best.second + (align - best.second % align) % align;
  };
  for (const unsigned log2 : {13U, 5U, 9U, 7U, 11U, 6U, 8U, 12U, 10U}) {
    const offset_t align = offset_t{1} << log2;
    for (const offset_t len : {offset_t{16}, offset_t{400}, offset_t{2000}, offset_t{4096}}) {
      const offset_t expected = best_fit(len, align);
      const auto a = e.allocate(len, align, bufpool::optimal);
      if (expected == u64_max) {
        EXPECT_EQ(error_of(a), errc::out_of_memory) << len << " at " << align;
        continue;
      }
      ASSERT_TRUE(a.has_value()) << len << " at " << align;
      EXPECT_EQ(a->offset, expected) << len << " at " << align;
      ASSERT_TRUE(e.release(a->node));
    }
    ASSERT_TRUE(valid(e)) << "after level " << log2;
  }
}

TEST(EngineMetadata, GoodFitStatsWithoutTheSizeIndexAndTheIndexMadeLaterFindsTheBestFit) {
  counting_resource counting;
  bufpool::engine e(limits_u32(), &counting);
  add_region(e, 1 * mib);
  std::vector<bufpool::engine_allocation> all;
  for (offset_t size = 16; size <= 2 * kib; size += 16) {  // sizes rising, each used twice
    all.push_back(e.allocate(size, 16, bufpool::good_fit).value());
    all.push_back(e.allocate(16, 16, bufpool::good_fit).value());
  }
  for (std::size_t i = 0; i < all.size(); i += 2) ASSERT_TRUE(e.release(all[i].node));
  ASSERT_TRUE(valid(e));
  const auto st = e.stats();
  EXPECT_EQ(st.free_ranges, all.size() / 2 + 1);  // the freed ones and the rest of the region
  EXPECT_EQ(st.largest_free, 1 * mib - (all.back().offset + all.back().capacity));
  // The first optimal request makes the size index from the bins' ranges: the exact best fit.
  const std::size_t before = counting.live_bytes;
  auto best = e.allocate(1000, 16, bufpool::optimal);
  ASSERT_TRUE(best.has_value());
  EXPECT_EQ(best->offset, all[2 * (1008 / 16 - 1)].offset);  // the 1008-byte hole
  EXPECT_GT(counting.live_bytes, before);
  EXPECT_TRUE(valid(e));
}

TEST(EngineInternalAssertDeathTest, CancelOfASpanNeverReservedAbortsAtItsCause) {
  if (!bufpool::checked_build) GTEST_SKIP() << "internal assertions are compiled out in this build";
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        bufpool::engine e(limits_u32());
        e.cancel(0, 4 * kib);
      },
      "internal assertion failed: pending_spans_ != 0 && size != 0 .*engine_space\\.cpp:[0-9]+");
}

// A violation handler that returns lets misuse be skipped, but not a broken invariant.
TEST(EngineInternalAssertDeathTest, AbortsEvenIfTheViolationHandlerReturns) {
  if (!bufpool::checked_build) GTEST_SKIP() << "internal assertions are compiled out in this build";
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        bufpool::set_violation_handler([](const bufpool::contract_violation& v) {
          std::fprintf(stderr, "handler saw: %s\n", v.rule);
        });
        bufpool::engine e(limits_u32());
        auto span = e.reserve(4 * kib);
        if (span) e.cancel(*span, 8 * kib);  // more than was reserved
      },
      "handler saw: internal assertion failed: .*size <= pending_bytes_");
}

TEST(GoodFitStrategy, ARequestWhosePaddedSizeOverflowsTheOffsetTypeFindsNoRange) {
  bufpool::engine_limits l = limits_u64();
  l.min_alignment = 1;  // granule 1: the size plus its padding is counted in bytes
  bufpool::engine e(l);
  add_region(e, 4 * kib);
  EXPECT_EQ(error_of(e.allocate(u64_max - 2, 16, bufpool::good_fit)), errc::out_of_memory);
  EXPECT_TRUE(valid(e));
}

TEST(GoodFitStrategy, ARangeThatHoldsARequestTooLargeToPadIsStillFound) {
  bufpool::engine_limits l = limits_u64();
  l.min_alignment = 1;
  bufpool::engine e(l);
  add_region(e, u64_max);  // [0, 2^64 - 1): starts aligned, so it needs no padding
  auto a = e.allocate(u64_max - 2, 16, bufpool::good_fit);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, 0u);
  EXPECT_TRUE(valid(e));
}

TEST(GoodFitStrategy, ARegionStartingOffTheGranuleGetsNoRequestItCannotHold) {
  bufpool::engine e(limits_u32());
  add_region(e, 300);  // [0, 300): the next region starts at 300, off the 16-byte granule
  add_region(e, 256);
  auto a = e.allocate(256, 16, bufpool::good_fit);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset % 16, 0u);
  EXPECT_TRUE(valid(e));
}

TEST(EngineStats, TheLargestFreeRangeIsFoundWhereItHoldsFewerGranulesThanAShorterOne) {
  bufpool::engine e(limits_u32());  // granule 16
  add_region(e, 8);                 // [0, 8)
  add_region(e, 263);               // [8, 271): 8 bytes, 15 granules, 15 bytes: the largest, bin 15
  add_region(e, 1);                 // [271, 272)
  add_region(e, 256);               // [272, 528): 16 granules, bin 16
  EXPECT_EQ(e.stats().largest_free, 263u);
  EXPECT_TRUE(valid(e));
}
