// SPDX-License-Identifier: MIT
// Unit tests of the offset engine: strategies, alignment, coalescing, expansion bookkeeping.
#include <gtest/gtest.h>

#include <cstdint>
#include <expected>
import bufpool;

namespace {

bufpool::engine_limits limits_u32() {
  bufpool::engine_limits l;
  l.last_offset = UINT32_MAX;
  l.max_size = UINT32_MAX;
  l.min_alignment = 16;
  l.max_alignment = std::uint64_t{1} << 31;
  return l;
}

TEST(Engine, AllocatesFromPublishedRegionAndCoalescesBack) {
  bufpool::engine e(limits_u32());
  auto at = e.reserve(4096);
  ASSERT_TRUE(at.has_value());
  e.publish(*at, 4096);
  auto a = e.allocate(100, 1, bufpool::optimal);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->offset, 0u);
  EXPECT_EQ(a->capacity, 112u);
  ASSERT_TRUE(e.validate().has_value()) << e.validate().error();
  EXPECT_TRUE(e.release(a->node));
  EXPECT_EQ(e.stats().free_ranges, 1u);
  EXPECT_EQ(e.stats().free_bytes, 4096u);
  ASSERT_TRUE(e.validate().has_value()) << e.validate().error();
}

}  // namespace
