// SPDX-License-Identifier: MIT
// clear(): a pool emptied for the next round of an arena loop keeps its records' capacity,
// refuses while a slice still needs it, and forgets its raw ranges.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <utility>
#include <vector>
import bufpool;

#include "counting_resource.hpp"
#include "page_aligned_pool.hpp"
#include "violations.hpp"

namespace {

using pool64 = bufpool::buffer_pool<std::uint64_t>;
using raw64 = bufpool::raw_range<std::uint64_t>;
using bufpool_test::counting_resource;

constexpr std::size_t region_bytes = std::size_t{4} << 20;

// Page-aligned memory for one region, added again after each clear().
struct arena_memory {
  std::vector<std::byte> bytes = std::vector<std::byte>(region_bytes + 4096);
  std::byte* base() {
    return bytes.data() + (4096 - reinterpret_cast<std::uintptr_t>(bytes.data()) % 4096);
  }
  void add_to(pool64& pool) {
    auto grow = pool.begin_expand(region_bytes);
    ASSERT_TRUE(grow.has_value());
    ASSERT_TRUE(std::move(*grow).initialize(base()).has_value());
  }
};

bufpool::basic_options<std::uint64_t> options_with(std::pmr::memory_resource* metadata,
                                                   bool thread_caches = false) {
  auto o = bufpool_test::slab_options(thread_caches);
  o.metadata = metadata;
  return o;
}

// One round: raw ranges of many sizes, slab slots and engine ranges, half of them released.
std::vector<raw64> fill(pool64& pool) {
  std::vector<raw64> live;
  for (std::uint64_t i = 0; i < 6000; ++i) {
    auto r = pool.acquire_raw(16 + i % 241, 8, bufpool::greedy);
    EXPECT_TRUE(r.has_value());
    if (r) live.push_back(*r);
  }
  for (std::uint64_t i = 0; i < 40; ++i) {
    auto r = pool.acquire_raw(70000 + 512 * i, 64, bufpool::greedy);  // beyond the slabs
    EXPECT_TRUE(r.has_value());
    if (r) live.push_back(*r);
  }
  for (std::size_t i = 0; i < live.size(); i += 2) EXPECT_TRUE(pool.release_raw(live[i].pointer));
  return live;
}

void expect_valid(const pool64& pool) {
  const auto v = pool.validate();
  EXPECT_TRUE(v.has_value()) << v.error();
}

TEST(Clear, LeavesThePoolAsANewOneAndTheSameRoundAgainTakesNoRecordPerRange) {
  counting_resource records;
  arena_memory memory;
  pool64 pool(options_with(&records));
  memory.add_to(pool);
  const std::size_t before_first = records.allocations();
  (void)fill(pool);
  const std::size_t first_round = records.allocations() - before_first;
  ASSERT_TRUE(pool.clear().has_value());
  const auto s = pool.stats();
  EXPECT_EQ(s.regions, 0u);
  EXPECT_EQ(s.live_slices, 0u);
  EXPECT_EQ(s.used_bytes + s.free_bytes + s.spare_bytes, 0u);
  EXPECT_TRUE(pool.region_statistics().empty());
  expect_valid(pool);
  memory.add_to(pool);
  const std::size_t before_second = records.allocations();
  (void)fill(pool);
  // The region's table of spans is made again; nothing per span, slot or range.
  EXPECT_LE(records.allocations() - before_second, 2u);
  EXPECT_GT(first_round, 20u);
  expect_valid(pool);
}

TEST(Clear, ForgetsTheRawRangesSoReleasingOneAfterwardsIsAViolation) {
  counting_resource records;
  arena_memory memory;
  pool64 pool(options_with(&records));
  memory.add_to(pool);
  auto small = pool.acquire_raw(64, 8, bufpool::greedy).value();
  auto large = pool.acquire_raw(100000, 8, bufpool::greedy).value();
  ASSERT_TRUE(pool.clear().has_value());
  memory.add_to(pool);  // the same memory, a new region: its ranges are all free
  bufpool_test::recording_violations violations;
  EXPECT_FALSE(pool.release_raw(small.pointer, 64, 8));
  EXPECT_FALSE(pool.release_raw(large.pointer, 100000, 8));
  EXPECT_EQ(bufpool_test::g_violations, 2);
  EXPECT_EQ(pool.stats().free_bytes, region_bytes);
  expect_valid(pool);
}

TEST(Clear, RefusesWhileASliceIsAliveAndChangesNothing) {
  arena_memory memory;
  pool64 pool(options_with(nullptr));
  memory.add_to(pool);
  auto raw = pool.acquire_raw(64, 8, bufpool::greedy).value();
  {
    auto slice = pool.acquire(1000).value();
    const auto before = pool.stats();
    const auto refused = pool.clear();
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error(), bufpool::errc::in_use);
    const auto after = pool.stats();
    EXPECT_EQ(after.live_slices, before.live_slices);
    EXPECT_EQ(after.used_bytes, before.used_bytes);
    EXPECT_EQ(after.regions, 1u);
    EXPECT_TRUE(pool.release_raw(raw.pointer, 64, 8));  // still live
  }
  EXPECT_TRUE(pool.clear().has_value());
  expect_valid(pool);
}

TEST(Clear, RefusesWhileAnExpansionIsPending) {
  pool64 pool(options_with(nullptr));
  {
    auto pending = pool.begin_expand(4096);
    ASSERT_TRUE(pending.has_value());
    const auto refused = pool.clear();
    ASSERT_FALSE(refused.has_value());
    EXPECT_EQ(refused.error(), bufpool::errc::in_use);
  }  // cancelled
  EXPECT_TRUE(pool.clear().has_value());
}

TEST(Clear, RefusesAClosedPool) {
  pool64 pool(options_with(nullptr));
  ASSERT_TRUE(pool.try_close().has_value());
  const auto refused = pool.clear();
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error(), bufpool::errc::pool_closed);
}

}  // namespace
