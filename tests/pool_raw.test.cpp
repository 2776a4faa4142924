// SPDX-License-Identifier: MIT
// Raw ranges: acquire_raw / release_raw by offset and by pointer, and their misuse.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <random>
#include <string>
#include <vector>
import bufpool;

#include "violations.hpp"

namespace {

using pool32 = bufpool::buffer_pool<>;

void add_region(pool32& pool, std::vector<std::byte>& memory) {
  auto grow = pool.begin_expand(memory.size());
  ASSERT_TRUE(grow.has_value());
  ASSERT_TRUE(std::move(*grow).initialize(memory.data()).has_value());
}

void expect_valid(const pool32& pool) {
  const auto v = pool.validate();
  EXPECT_TRUE(v.has_value()) << v.error();
}

using bufpool_test::g_last_violation;
using bufpool_test::g_violations;
using bufpool_test::recording_violations;

TEST(RawRange, AcquireAndReleaseByOffsetRestoresThePool) {
  std::vector<std::byte> memory(1 << 16);
  pool32 pool;
  add_region(pool, memory);
  const auto initial = pool.stats();
  auto r = pool.acquire_raw(100, 64);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->offset % 64, 0u);
  EXPECT_EQ(r->size, 100u);
  EXPECT_GE(r->capacity, 100u);
  EXPECT_EQ(r->pointer, memory.data() + r->offset);
  EXPECT_EQ(pool.stats().live_slices, 1u);
  expect_valid(pool);
  EXPECT_TRUE(pool.release_raw(std::uint64_t{r->offset}));
  EXPECT_EQ(pool.stats().live_slices, 0u);
  EXPECT_EQ(pool.stats().free_bytes, initial.free_bytes);
  EXPECT_EQ(pool.stats().free_ranges, initial.free_ranges);
  expect_valid(pool);
}

TEST(RawRange, ReleaseByPointerFindsTheRegionByAddress) {
  std::vector<std::byte> first(4096);
  std::vector<std::byte> second(8192);
  pool32 pool;
  add_region(pool, first);
  add_region(pool, second);
  auto a = pool.acquire_raw(4096);  // fills the first region
  auto b = pool.acquire_raw(6000);  // only fits the second
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->pointer, first.data());
  EXPECT_EQ(b->pointer, second.data());
  EXPECT_EQ(b->offset, 4096u);
  EXPECT_TRUE(pool.release_raw(static_cast<const void*>(b->pointer)));
  EXPECT_TRUE(pool.release_raw(static_cast<const void*>(a->pointer)));
  EXPECT_EQ(pool.stats().live_slices, 0u);
  expect_valid(pool);
}

TEST(RawRange, ReportsTheSameErrorsAsAcquire) {
  std::vector<std::byte> memory(4096);
  pool32 pool;
  add_region(pool, memory);
  EXPECT_EQ(pool.acquire_raw(0).error(), bufpool::errc::invalid_size);
  EXPECT_EQ(pool.acquire_raw(16, 3).error(), bufpool::errc::invalid_alignment);
  EXPECT_EQ(pool.acquire_raw(8192).error(), bufpool::errc::out_of_memory);
  auto r = pool.acquire_raw(64, 16, bufpool::fixed(128));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->offset, 128u);
  EXPECT_EQ(pool.acquire_raw(16, 16, bufpool::fixed(128)).error(), bufpool::errc::occupied);
  EXPECT_TRUE(pool.release_raw(std::uint64_t{128}));
  expect_valid(pool);
}

TEST(RawRange, CountsAsLiveSoTryCloseRefuses) {
  std::vector<std::byte> memory(4096);
  pool32 pool;
  add_region(pool, memory);
  auto r = pool.acquire_raw(64);
  ASSERT_TRUE(r.has_value());
  auto refused = pool.try_close();
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, bufpool::errc::in_use);
  EXPECT_EQ(refused.error().live_slices, 1u);
  EXPECT_TRUE(pool.release_raw(std::uint64_t{r->offset}));
  EXPECT_TRUE(pool.try_close().has_value());
}

TEST(RawRange, Row12DoubleReleaseIsAViolationAndChangesNothing) {
  std::vector<std::byte> memory(4096);
  pool32 pool;
  add_region(pool, memory);
  auto keep = pool.acquire_raw(64);
  auto r = pool.acquire_raw(64);
  ASSERT_TRUE(keep && r);
  ASSERT_TRUE(pool.release_raw(std::uint64_t{r->offset}));
  const auto before = pool.stats();
  recording_violations watch;
  EXPECT_FALSE(pool.release_raw(std::uint64_t{r->offset}));
  EXPECT_EQ(g_violations, 1);
  EXPECT_NE(g_last_violation.find("released twice"), std::string::npos);
  EXPECT_EQ(pool.stats().live_slices, before.live_slices);
  EXPECT_EQ(pool.stats().free_bytes, before.free_bytes);
  expect_valid(pool);
}

TEST(RawRange, ASlicesRangeCannotBeReleasedRaw) {
  std::vector<std::byte> memory(4096);
  pool32 pool;
  add_region(pool, memory);
  auto s = pool.acquire(64);
  ASSERT_TRUE(s.has_value());
  recording_violations watch;
  EXPECT_FALSE(pool.release_raw(std::uint64_t{s->offset()}));
  EXPECT_EQ(g_violations, 1);
  EXPECT_EQ(pool.stats().live_slices, 1u);
  expect_valid(pool);
}

TEST(RawRange, Row37InteriorPointerIsAViolation) {
  std::vector<std::byte> memory(4096);
  pool32 pool;
  add_region(pool, memory);
  auto r = pool.acquire_raw(256);
  ASSERT_TRUE(r.has_value());
  recording_violations watch;
  EXPECT_FALSE(pool.release_raw(static_cast<const void*>(r->pointer + 16)));
  EXPECT_EQ(g_violations, 1);
  EXPECT_EQ(pool.stats().live_slices, 1u);
  EXPECT_TRUE(pool.release_raw(static_cast<const void*>(r->pointer)));
}

TEST(RawRange, CheckedReleaseWithTheAcquiredSizeAndAlignmentSucceeds) {
  std::vector<std::byte> memory(4096);
  pool32 pool;
  add_region(pool, memory);
  auto a = pool.acquire_raw(100, 64);
  auto b = pool.acquire_raw(3, 1);  // below the pool's minimum alignment: recorded as asked
  ASSERT_TRUE(a && b);
  recording_violations watch;
  EXPECT_TRUE(pool.release_raw(std::uint64_t{a->offset}, 100, 64));
  EXPECT_TRUE(pool.release_raw(static_cast<const void*>(b->pointer), 3, 1));
  EXPECT_EQ(g_violations, 0);
  EXPECT_EQ(pool.stats().live_slices, 0u);
  expect_valid(pool);
}

// BAD_INPUTS row 31 at the core: a release that names another size or alignment than the
// acquisition is reported, and the range stays allocated (never a different range freed).
TEST(RawRange, CheckedReleaseWithAnotherSizeOrAlignmentIsAViolationAndChangesNothing) {
  std::vector<std::byte> memory(4096);
  pool32 pool;
  add_region(pool, memory);
  auto r = pool.acquire_raw(100, 64);
  ASSERT_TRUE(r.has_value());
  const auto before = pool.stats();
  recording_violations watch;
  EXPECT_FALSE(pool.release_raw(std::uint64_t{r->offset}, 99, 64));
  EXPECT_EQ(g_violations, 1);
  EXPECT_NE(g_last_violation.find("size differs"), std::string::npos);
  EXPECT_FALSE(pool.release_raw(static_cast<const void*>(r->pointer), 112, 64));  // capacity
  EXPECT_EQ(g_violations, 2);
  EXPECT_FALSE(pool.release_raw(std::uint64_t{r->offset}, 100, 32));
  EXPECT_EQ(g_violations, 3);
  EXPECT_NE(g_last_violation.find("alignment differs"), std::string::npos);
  EXPECT_FALSE(pool.release_raw(static_cast<const void*>(r->pointer), 100, 128));
  EXPECT_EQ(g_violations, 4);
  EXPECT_EQ(pool.stats().live_slices, before.live_slices);
  EXPECT_EQ(pool.stats().used_bytes, before.used_bytes);
  expect_valid(pool);
  EXPECT_TRUE(pool.release_raw(std::uint64_t{r->offset}, 100, 64));
  EXPECT_EQ(g_violations, 4);
}

TEST(RawRange, ResizeGrowsAndShrinksInPlaceAndUpdatesTheRecordedSize) {
  std::vector<std::byte> memory(4096);
  pool32 pool;
  add_region(pool, memory);
  auto r = pool.acquire_raw(100, 64);
  ASSERT_TRUE(r.has_value());
  auto grown = pool.resize_raw(static_cast<const void*>(r->pointer), 2000);
  ASSERT_TRUE(grown.has_value());
  EXPECT_GE(*grown, 2000u);
  EXPECT_EQ(pool.stats().used_bytes, *grown);
  recording_violations watch;
  EXPECT_FALSE(pool.release_raw(std::uint64_t{r->offset}, 100, 64));  // the old size
  EXPECT_EQ(g_violations, 1);
  auto shrunk = pool.resize_raw(std::uint64_t{r->offset}, 50);
  ASSERT_TRUE(shrunk.has_value());
  EXPECT_EQ(*shrunk, 64u);
  EXPECT_EQ(pool.resize_raw(std::uint64_t{r->offset}, 5000).error(), bufpool::errc::out_of_memory);
  EXPECT_TRUE(pool.release_raw(std::uint64_t{r->offset}, 50, 64));
  EXPECT_EQ(pool.resize_raw(std::uint64_t{r->offset}, 50).error(), bufpool::errc::not_live);
  EXPECT_EQ(g_violations, 2);  // not a live raw range
  expect_valid(pool);
}

// Regions that share a block of addresses (and so a hint of the search by address) with
// gaps between them: each release by pointer finds its own region whichever region the
// previous one found, and a pointer in a gap is in none.
TEST(RawRange, ReleaseByPointerFindsItsRegionAmongRegionsThatShareAnAddressBlock) {
  constexpr std::size_t region_bytes = 16 << 10;
  constexpr std::size_t gap_bytes = 4 << 10;
  constexpr std::size_t regions = 8;
  std::vector<std::byte> memory(regions * (region_bytes + gap_bytes));
  pool32 pool;
  std::vector<std::byte*> bases;
  for (std::size_t r = 0; r < regions; ++r) {
    // Out of order, so ids, offsets and addresses sort differently.
    const std::size_t slot = (r * 3) % regions;
    std::byte* base = memory.data() + slot * (region_bytes + gap_bytes);
    auto grow = pool.begin_expand(region_bytes);
    ASSERT_TRUE(grow.has_value());
    ASSERT_TRUE(std::move(*grow).initialize(base).has_value());
    bases.push_back(base);
  }
  std::vector<bufpool::raw_range<std::uint32_t>> live;
  std::vector<std::byte*> pointers;
  for (std::size_t r = 0; r < regions; ++r) {  // each range fills one region
    auto range = pool.acquire_raw(region_bytes);
    ASSERT_TRUE(range.has_value());
    live.push_back(*range);
    pointers.push_back(range->pointer);
  }
  std::ranges::sort(pointers);
  std::ranges::sort(bases);
  EXPECT_EQ(pointers, bases);
  {  // a gap's first and last byte, between hinted regions
    recording_violations watch;
    const auto* gap = bases[0] + region_bytes;
    EXPECT_FALSE(pool.release_raw(static_cast<const void*>(gap)));
    EXPECT_FALSE(pool.release_raw(static_cast<const void*>(gap + gap_bytes - 1)));
    EXPECT_EQ(g_violations, 2);
    EXPECT_NE(g_last_violation.find("none of this pool's regions"), std::string::npos);
  }
  for (const std::size_t r :
       {1U, 6U, 0U, 7U, 2U, 5U, 3U, 4U}) {  // every release after another region's
    const auto at = pool.raw_at(static_cast<const void*>(live[r].pointer));
    ASSERT_TRUE(at.has_value());
    EXPECT_EQ(at->offset, live[r].offset);
    EXPECT_TRUE(pool.release_raw(static_cast<const void*>(live[r].pointer)));
  }
  EXPECT_EQ(pool.stats().live_slices, 0u);
  expect_valid(pool);
}

TEST(RawRange, Row13PointerOfAnotherPoolIsAViolation) {
  std::vector<std::byte> ma(4096);
  std::vector<std::byte> mb(4096);
  pool32 a;
  pool32 b;
  add_region(a, ma);
  add_region(b, mb);
  auto from_b = b.acquire_raw(64);
  auto from_a = a.acquire_raw(64);
  ASSERT_TRUE(from_a && from_b);
  recording_violations watch;
  EXPECT_FALSE(a.release_raw(static_cast<const void*>(from_b->pointer)));  // not a's memory
  EXPECT_EQ(g_violations, 1);
  EXPECT_NE(g_last_violation.find("none of this pool's regions"), std::string::npos);
  EXPECT_EQ(a.stats().live_slices, 1u);
  EXPECT_EQ(b.stats().live_slices, 1u);
  EXPECT_TRUE(b.release_raw(static_cast<const void*>(from_b->pointer)));
  EXPECT_TRUE(a.release_raw(static_cast<const void*>(from_a->pointer)));
}

TEST(RawRange, ManyRangesReleasedInRandomOrderLeaveThePoolAsItWas) {
  std::vector<std::byte> memory(1 << 22);
  pool32 pool;
  add_region(pool, memory);
  const auto initial = pool.stats();
  std::mt19937_64 rng(0x7261770aULL);  // fixed seed: reproducible
  std::vector<bufpool::raw_range<std::uint32_t>> live;
  for (int round = 0; round < 20'000; ++round) {
    if (live.empty() || rng() % 3 != 0) {
      const std::uint64_t size = 1 + rng() % 512;
      const std::uint64_t align = std::uint64_t{1} << (rng() % 9);
      auto r = pool.acquire_raw(size, align);
      ASSERT_TRUE(r.has_value()) << "round " << round;
      live.push_back(*r);
    } else {
      const std::size_t i = rng() % live.size();
      const bool by_pointer = rng() % 2 == 0;
      ASSERT_TRUE(by_pointer ? pool.release_raw(static_cast<const void*>(live[i].pointer))
                             : pool.release_raw(std::uint64_t{live[i].offset}));
      live[i] = live.back();
      live.pop_back();
    }
    if (round % 2000 == 0) expect_valid(pool);
  }
  expect_valid(pool);
  std::shuffle(live.begin(), live.end(), rng);
  for (const auto& r : live) ASSERT_TRUE(pool.release_raw(std::uint64_t{r.offset}));
  EXPECT_EQ(pool.stats().live_slices, 0u);
  EXPECT_EQ(pool.stats().free_ranges, initial.free_ranges);
  EXPECT_EQ(pool.stats().free_bytes, initial.free_bytes);
  expect_valid(pool);
}

TEST(RawRangeDeathTest, Row12DoubleReleaseAbortsWithTheRule) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        std::vector<std::byte> memory(4096);
        pool32 pool;
        add_region(pool, memory);
        auto r = pool.acquire_raw(64);
        (void)pool.release_raw(std::uint64_t{r->offset});
        (void)pool.release_raw(std::uint64_t{r->offset});
      },
      "does not start a live raw range");
}

}  // namespace
