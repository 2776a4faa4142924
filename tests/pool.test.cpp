// SPDX-License-Identifier: MIT
// Unit tests of buffer_pool: one test per rule of SPEC.md section 3 (guards: guard.test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <span>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>
import bufpool;

namespace {

using pool32 = bufpool::buffer_pool<>;
using pool16 = bufpool::buffer_pool<std::uint16_t>;

// Publishes `memory` as a new region of `pool` with `extra`; returns the region's first offset.
template <class Pool>
typename Pool::integer add_region(Pool& pool, std::vector<std::byte>& memory,
                                  typename Pool::extra_type extra = {}) {
  auto grow = pool.begin_expand(memory.size());
  EXPECT_TRUE(grow.has_value());
  if (!grow) return 0;
  const auto at = grow->offset();
  EXPECT_TRUE(std::move(*grow).initialize(memory.data(), extra).has_value());
  return at;
}

template <class Pool>
void expect_valid(const Pool& pool) {
  const auto v = pool.validate();
  EXPECT_TRUE(v.has_value()) << v.error();
}

// A handle that records what it was asked to close.
struct recording_log {
  std::vector<bufpool::mmap_entries<std::uint32_t, int>> close_calls;
  std::vector<bufpool::mmap_entries<std::uint32_t, int>> close_all_calls;
};

struct closing_handle {
  std::shared_ptr<recording_log> log;
  void close(const bufpool::mmap_entries<std::uint32_t, int>& e) { log->close_calls.push_back(e); }
};

struct bulk_closing_handle {
  std::shared_ptr<recording_log> log;
  void close(const bufpool::mmap_entries<std::uint32_t, int>& e) { log->close_calls.push_back(e); }
  void close_all(const bufpool::mmap_entries<std::uint32_t, int>& e) {
    log->close_all_calls.push_back(e);
  }
};

struct flag_guard {
  std::shared_ptr<bool> done;
  bool try_release() const { return *done; }
};

// What the diagnostic hook received (it is a plain function pointer: no captures).
std::atomic<int> g_diagnostics{0};
std::string g_last_diagnostic;
void record_diagnostic(const char* message) {
  g_last_diagnostic = message;
  g_diagnostics.fetch_add(1);
}

std::atomic<int> g_violations{0};
std::string g_last_violation;
void record_violation(const bufpool::contract_violation& v) {
  g_last_violation = v.rule;
  g_violations.fetch_add(1);
}

// ---------------------------------------------------------------------------------------
// Integer

template <class Int>
void acquire_with_integer() {
  static_assert(bufpool::offset_integer<Int>);
  bufpool::buffer_pool<Int> pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto s = pool.acquire(100, 64);
  ASSERT_TRUE(s.has_value());
  static_assert(std::is_same_v<decltype(s->offset()), Int>);
  EXPECT_EQ(s->offset() % 64, 0u);
  EXPECT_EQ(s->size(), 100u);
  EXPECT_EQ(s->bytes().data(), memory.data() + s->offset());
}

TEST(OffsetInteger, AcceptsTheFourUnsignedTypes) {
  static_assert(!bufpool::offset_integer<int>);
  static_assert(!bufpool::offset_integer<std::uint8_t>);
  static_assert(!bufpool::offset_integer<std::int64_t>);
  acquire_with_integer<std::uint16_t>();
  acquire_with_integer<std::uint32_t>();
  acquire_with_integer<std::uint64_t>();
  acquire_with_integer<std::size_t>();
}

TEST(OffsetInteger, U16PoolUsesOffsetsUpTo65535) {
  pool16 pool;
  std::vector<std::byte> low(32768);
  std::vector<std::byte> high(32768);
  EXPECT_EQ(add_region(pool, low), 0u);
  EXPECT_EQ(add_region(pool, high), 32768u);
  auto top = pool.acquire(16, 16, bufpool::fixed(65520));  // the last 16 offsets: 65520..65535
  ASSERT_TRUE(top.has_value()) << bufpool::to_string(top.error());
  EXPECT_EQ(top->offset(), 65520u);
  EXPECT_EQ(top->capacity(), 16u);
  EXPECT_EQ(top->region_offset(), 32768u);
  EXPECT_EQ(top->bytes().data(), high.data() + (65520 - 32768));
  EXPECT_EQ(top->bytes().data() + 16, high.data() + high.size());
  top = {};
  auto whole = pool.acquire(32768, 32768, bufpool::fixed(32768));  // a whole region
  ASSERT_TRUE(whole.has_value());
  EXPECT_EQ(whole->capacity(), 32768u);
  EXPECT_EQ(pool.stats().free_bytes, 32768u);
  expect_valid(pool);
}

TEST(OffsetInteger, U64PoolReservesTheWholeOffsetRange) {
  bufpool::buffer_pool<std::uint64_t> pool;
  const std::uint64_t max = std::numeric_limits<std::uint64_t>::max();
  auto most = pool.begin_expand(max);  // offsets 0 .. max - 1
  ASSERT_TRUE(most.has_value());
  EXPECT_EQ(most->offset(), 0u);
  auto last = pool.begin_expand(1);  // offset max itself
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->offset(), max);
  auto none = pool.begin_expand(1);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error(), bufpool::errc::out_of_offset_space);
  expect_valid(pool);
}

TEST(OffsetInteger, OffsetOverflowIsAnErrorNotWrapAround) {
  pool16 pool;
  std::vector<std::byte> low(32768);
  std::vector<std::byte> high(32768);
  add_region(pool, low);
  add_region(pool, high);
  auto wrap = pool.acquire(32, 16, bufpool::fixed(65520));  // 65520 + 32 > 65536
  ASSERT_FALSE(wrap.has_value());
  EXPECT_EQ(wrap.error(), bufpool::errc::arithmetic_overflow);
  auto beyond = pool.acquire(16, 16, bufpool::fixed(65536));  // not representable in u16
  ASSERT_FALSE(beyond.has_value());
  auto too_big = pool.acquire(65536);  // larger than any u16 size
  ASSERT_FALSE(too_big.has_value());
  EXPECT_EQ(too_big.error(), bufpool::errc::too_large);
  EXPECT_EQ(pool.stats().used_bytes, 0u);
  expect_valid(pool);
}

// ---------------------------------------------------------------------------------------
// Options

TEST(Options, DefaultsMatchTheSpec) {
  const bufpool::basic_options<std::uint32_t> o32;
  EXPECT_EQ(o32.min_size, 1u);
  EXPECT_EQ(o32.max_size, std::numeric_limits<std::uint32_t>::max());
  EXPECT_EQ(o32.min_alignment, alignof(std::max_align_t));
  EXPECT_EQ(o32.max_alignment, std::uint32_t{1} << 31);
  EXPECT_TRUE(o32.valid());
  const bufpool::basic_options<std::uint16_t> o16;
  EXPECT_EQ(o16.max_size, 65535u);
  EXPECT_EQ(o16.max_alignment, 32768u);
  const bufpool::basic_options<std::uint64_t> o64;
  EXPECT_EQ(o64.max_alignment, std::uint64_t{1} << 63);
}

TEST(Options, MinimumSizeAndAlignmentAreRaised) {
  bufpool::basic_options<std::uint32_t> o;
  o.min_size = 64;
  o.min_alignment = 128;
  pool32 pool(o);
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto a = pool.acquire(1, 1);
  auto b = pool.acquire(1, 1);
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(a->size(), 1u);
  EXPECT_GE(a->capacity(), 64u);
  EXPECT_EQ(a->offset() % 128, 0u);
  EXPECT_EQ(b->offset() % 128, 0u);
  EXPECT_NE(a->offset(), b->offset());
  EXPECT_GE(pool.stats().used_bytes, 128u);
}

TEST(Options, RequestsAboveTheMaximaAreErrors) {
  bufpool::basic_options<std::uint32_t> o;
  o.max_size = 1024;
  o.max_alignment = 256;
  pool32 pool(o);
  std::vector<std::byte> memory(8192);
  add_region(pool, memory);
  auto big = pool.acquire(1025);
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error(), bufpool::errc::too_large);
  auto aligned = pool.acquire(16, 512);
  ASSERT_FALSE(aligned.has_value());
  EXPECT_EQ(aligned.error(), bufpool::errc::alignment_too_big);
  EXPECT_TRUE(pool.acquire(1024, 256).has_value());
  EXPECT_EQ(pool.stats().live_slices, 0u);
}

// ---------------------------------------------------------------------------------------
// Strategies

// A pool over 4 KiB whose only used ranges are `ranges` (offset, size), taken with fixed():
// the free ranges between them are what a strategy test chooses from.
struct pool_with_holes {
  std::vector<std::byte> memory = std::vector<std::byte>(4096);
  pool32 pool;
  std::vector<pool32::slice> used;
  explicit pool_with_holes(std::initializer_list<std::pair<std::uint64_t, std::uint64_t>> ranges) {
    add_region(pool, memory);
    for (const auto& [offset, size] : ranges) {
      auto s = pool.acquire(size, 16, bufpool::fixed(offset));
      EXPECT_TRUE(s.has_value()) << "fixed(" << offset << ")";
      if (s) used.push_back(std::move(*s));
    }
  }
};

TEST(Strategy, OptimalPicksTheSmallestFittingFreeRange) {
  pool_with_holes h({{256, 64}, {832, 64}});  // free: [0,256) [320,832) [896,4096)
  pool32& pool = h.pool;
  auto mid = pool.acquire(300, 16, bufpool::optimal);
  ASSERT_TRUE(mid.has_value());
  EXPECT_EQ(mid->offset(), 320u);
  // Free now: [0,256) and [624,832) (208 bytes): 240 fits only the first.
  auto small = pool.acquire(240, 16, bufpool::optimal);
  ASSERT_TRUE(small.has_value());
  EXPECT_EQ(small->offset(), 0u);
  expect_valid(pool);
}

TEST(Strategy, OptimalFindsAnAlignedFitWheneverOneExists) {
  pool_with_holes h({{0, 16}, {1040, 1008}, {3072, 1024}});
  pool32& pool = h.pool;
  // Free: [16,1040) (1024 bytes, no 1024-aligned start that fits) and [2048,3072).
  auto s = pool.acquire(1024, 1024, bufpool::optimal);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->offset(), 2048u);
  auto none = pool.acquire(1024, 1024, bufpool::optimal);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error(), bufpool::errc::out_of_memory);
  expect_valid(pool);
}

// acquire() without a strategy takes good_fit, O(1): of two free ranges that hold 100 B at
// 256, it takes the one whose size is sure to (1 KiB), not the smallest (160 B), which is
// what optimal, asked for by name, takes.
TEST(Strategy, AcquireWithoutAStrategyTakesAGoodFitNotTheBestFit) {
  pool_with_holes h({{0, 512}, {672, 352}, {2048, 2048}});  // free: [512,672) and [1024,2048)
  pool32& pool = h.pool;
  auto by_default = pool.acquire(100, 256);
  ASSERT_TRUE(by_default.has_value());
  EXPECT_EQ(by_default->offset(), 1024u);
  auto raw = pool.acquire_raw(100, 256);
  ASSERT_TRUE(raw.has_value());
  EXPECT_EQ(raw->offset, 1280u);  // the same rule: the rest of the 1 KiB range
  auto best = pool.acquire(100, 256, bufpool::optimal);
  ASSERT_TRUE(best.has_value());
  EXPECT_EQ(best->offset(), 512u);
  EXPECT_TRUE(pool.release_raw(raw->offset));
  expect_valid(pool);
}

TEST(Strategy, GreedyReturnsAnAlignedNonOverlappingRange) {
  pool32 pool;
  std::vector<std::byte> memory(8192);
  add_region(pool, memory);
  std::vector<pool32::slice> slices;
  for (int i = 0; i < 8; ++i) {
    auto s = pool.acquire(300, 256, bufpool::greedy);
    ASSERT_TRUE(s.has_value()) << i;
    EXPECT_EQ(s->offset() % 256, 0u);
    for (const auto& o : slices)
      EXPECT_TRUE(s->offset() >= o.offset() + o.capacity() ||
                  o.offset() >= s->offset() + s->capacity());
    slices.push_back(std::move(*s));
  }
  expect_valid(pool);
}

TEST(Strategy, GreedyReusesAGivenBackRangeOfItsClassAndTrimCoalescesIt) {
  pool32 pool;
  std::vector<std::byte> memory(8192);
  add_region(pool, memory);
  auto a = pool.acquire_raw(100, 16, bufpool::greedy).value();
  auto b = pool.acquire_raw(100, 16, bufpool::greedy).value();
  EXPECT_EQ(a.capacity, 112u);  // its size class
  ASSERT_TRUE(pool.release_raw(a.offset));
  const auto before = pool.stats();
  EXPECT_EQ(before.free_ranges, 2u);  // the cached range counts as free, on its own here
  auto c = pool.acquire_raw(97, 16, bufpool::greedy).value();
  EXPECT_EQ(c.pointer, a.pointer);  // reused as it was
  ASSERT_TRUE(pool.release_raw(c.offset));
  pool.trim();
  EXPECT_EQ(pool.stats().free_bytes, before.free_bytes);
  EXPECT_EQ(pool.stats().free_ranges, before.free_ranges);
  ASSERT_TRUE(pool.release_raw(b.offset));
  EXPECT_EQ(pool.stats().free_ranges, 1u);
  EXPECT_EQ(pool.stats().largest_free, 8192u);
  expect_valid(pool);
}

TEST(Strategy, FixedAcquiresExactlyAtTheOffsetOrFails) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto s = pool.acquire(100, 16, bufpool::fixed(2048));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->offset(), 2048u);
  EXPECT_EQ(s->bytes().data(), memory.data() + 2048);
  auto again = pool.acquire(16, 16, bufpool::fixed(2048));
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error(), bufpool::errc::occupied);
  auto misaligned = pool.acquire(16, 64, bufpool::fixed(2080));
  ASSERT_FALSE(misaligned.has_value());
  EXPECT_EQ(misaligned.error(), bufpool::errc::invalid_argument);
  expect_valid(pool);
}

// ---------------------------------------------------------------------------------------
// Expansion

TEST(Expansion, HandleReportsTheReservedOffsetAndSize) {
  pool32 pool;
  auto a = pool.begin_expand(4096);
  auto b = pool.begin_expand(100);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->offset(), 0u);
  EXPECT_EQ(a->size(), 4096u);
  EXPECT_EQ(b->offset(), 4096u);
  EXPECT_EQ(b->size(), 100u);
  EXPECT_EQ(pool.stats().pending_bytes, 4196u);
}

TEST(Expansion, ARegionStartingOffTheGranuleIsNotGivenARequestItCannotHoldAligned) {
  pool32 pool;  // granule 16
  std::vector<std::byte> first(300);
  std::vector<std::byte> second(256);
  add_region(pool, first);
  ASSERT_EQ(add_region(pool, second), 300u);  // 256 bytes, but 240 from offset 304 on
  auto s = pool.acquire(256, 16, bufpool::good_fit);
  ASSERT_TRUE(s.has_value()) << bufpool::to_string(s.error());
  EXPECT_EQ(s->offset(), 0u);
  expect_valid(pool);
}

TEST(Expansion, PendingRangeIsInvisibleToAcquire) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  auto grow = pool.begin_expand(memory.size());
  ASSERT_TRUE(grow.has_value());
  auto any = pool.acquire(16);
  ASSERT_FALSE(any.has_value());
  EXPECT_EQ(any.error(), bufpool::errc::out_of_memory);
  auto at = pool.acquire(16, 16, bufpool::fixed(0));
  ASSERT_FALSE(at.has_value());
  EXPECT_EQ(at.error(), bufpool::errc::out_of_range);
  EXPECT_EQ(pool.stats().pending_bytes, 4096u);
  EXPECT_EQ(pool.stats().regions, 0u);
  ASSERT_TRUE(std::move(*grow).initialize(memory.data()).has_value());
  EXPECT_EQ(pool.stats().pending_bytes, 0u);
  EXPECT_TRUE(pool.acquire(16, 16, bufpool::fixed(0)).has_value());
}

TEST(Expansion, DestroyingTheHandleCancelsTheReservation) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  {
    auto dropped = pool.begin_expand(8192);
  }
  EXPECT_EQ(pool.stats().pending_bytes, 0u);
  auto grow = pool.begin_expand(memory.size());
  ASSERT_TRUE(grow.has_value());
  EXPECT_EQ(grow->offset(), 0u);  // the cancelled offsets are handed out again
  auto moved = std::move(*grow);
  auto other = pool.begin_expand(16);
  ASSERT_TRUE(other.has_value());
  *other = std::move(moved);  // move assignment cancels the overwritten reservation
  EXPECT_EQ(pool.stats().pending_bytes, 4096u);
  ASSERT_TRUE(std::move(*other).initialize(memory.data()).has_value());
  EXPECT_EQ(pool.stats().pending_bytes, 0u);
  EXPECT_EQ(pool.stats().free_bytes, 4096u);
  expect_valid(pool);
}

TEST(Expansion, ReusesGapsOnceTheEndOfTheOffsetSpaceIsExhausted) {
  pool16 pool;
  std::vector<std::byte> memory(16384);
  auto a = pool.begin_expand(16384);
  auto b = pool.begin_expand(16384);
  auto c = pool.begin_expand(32768);  // the offset space is now full
  ASSERT_TRUE(a && b && c);
  ASSERT_TRUE(std::move(*a).initialize(memory.data()).has_value());
  std::vector<std::byte> top(32768);
  ASSERT_TRUE(std::move(*c).initialize(top.data()).has_value());
  b = std::unexpected(bufpool::errc::invalid_size);  // cancels [16384, 32768): a gap
  auto reuse = pool.begin_expand(8192);
  ASSERT_TRUE(reuse.has_value());
  EXPECT_EQ(reuse->offset(), 16384u);
  auto rest = pool.begin_expand(8192);
  ASSERT_TRUE(rest.has_value());
  EXPECT_EQ(rest->offset(), 24576u);
  expect_valid(pool);
}

TEST(Expansion, FailsWithOutOfOffsetSpaceWhenNothingFits) {
  pool16 pool;
  auto all = pool.begin_expand(65535);
  ASSERT_TRUE(all.has_value());
  auto one = pool.begin_expand(1);
  ASSERT_TRUE(one.has_value());
  EXPECT_EQ(one->offset(), 65535u);
  const bufpool::pool_stats before = pool.stats();
  auto none = pool.begin_expand(1);
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error(), bufpool::errc::out_of_offset_space);
  EXPECT_EQ(std::error_code(none.error()), std::errc::not_enough_memory);
  EXPECT_EQ(pool.stats().pending_bytes, before.pending_bytes);
  expect_valid(pool);
}

TEST(Expansion, ZeroSizeIsInvalid) {
  pool32 pool;
  auto zero = pool.begin_expand(0);
  ASSERT_FALSE(zero.has_value());
  EXPECT_EQ(zero.error(), bufpool::errc::invalid_size);
  EXPECT_EQ(pool.stats().pending_bytes, 0u);
}

TEST(Expansion, DoesNotBlockAcquisitionsWhileMemoryIsBeingAllocated) {
  pool32 pool;
  std::vector<std::byte> first(4096);
  add_region(pool, first);
  auto grow = pool.begin_expand(4096);  // the caller now "allocates" the backing memory
  ASSERT_TRUE(grow.has_value());
  auto s = pool.acquire(128);  // would deadlock if begin_expand kept the lock
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->region_offset(), 0u);
  s = {};
  std::vector<std::byte> second(4096);
  ASSERT_TRUE(std::move(*grow).initialize(second.data()).has_value());
  EXPECT_EQ(pool.stats().regions, 2u);
}

// ---------------------------------------------------------------------------------------
// Regions

TEST(Region, ExtraValueIsVisibleFromSlices) {
  bufpool::buffer_pool<std::uint32_t, int> pool;
  std::vector<std::byte> a(4096);
  std::vector<std::byte> b(8192);
  add_region(pool, a, 7);
  add_region(pool, b, 9);
  auto in_a = pool.acquire(4000);
  auto in_b = pool.acquire(5000);
  ASSERT_TRUE(in_a && in_b);
  EXPECT_EQ(in_a->region_extra(), 7);
  EXPECT_EQ(in_a->region_offset(), 0u);
  EXPECT_EQ(in_a->region_size(), 4096u);
  EXPECT_EQ(in_b->region_extra(), 9);
  EXPECT_EQ(in_b->region_offset(), 4096u);
  EXPECT_EQ(in_b->region_size(), 8192u);
  EXPECT_EQ(in_b->bytes().data(), b.data() + (in_b->offset() - 4096));
  const auto regions = pool.regions();
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_EQ(regions[1].extra, 9);
  EXPECT_EQ(regions[1].pointer, b.data());
}

TEST(Region, SliceNeverSpansTwoRegions) {
  pool32 pool;
  std::vector<std::byte> a(4096);
  std::vector<std::byte> b(4096);
  add_region(pool, a);
  add_region(pool, b);  // offsets are contiguous, memory is not
  auto big = pool.acquire(6000);
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error(), bufpool::errc::out_of_memory);
  auto straddle = pool.acquire(256, 16, bufpool::fixed(4000));
  ASSERT_FALSE(straddle.has_value());
  EXPECT_EQ(straddle.error(), bufpool::errc::out_of_range);
  const bufpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.free_ranges, 2u);  // the two free regions never coalesce
  EXPECT_EQ(s.largest_free, 4096u);
}

TEST(Region, FreeRangesCoalesceWithinARegion) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  std::vector<pool32::slice> slices;
  for (int i = 0; i < 16; ++i) slices.push_back(*pool.acquire(256));
  EXPECT_EQ(pool.stats().free_ranges, 0u);
  std::mt19937 rng(5);
  std::shuffle(slices.begin(), slices.end(), rng);
  while (!slices.empty()) {
    slices.pop_back();
    expect_valid(pool);
  }
  EXPECT_EQ(pool.stats().free_ranges, 1u);
  EXPECT_EQ(pool.stats().largest_free, 4096u);
}

// ---------------------------------------------------------------------------------------
// Slices

TEST(Slice, ReportsOffsetSizeCapacityRegionAndBytes) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto s = pool.acquire(100, 64);
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(static_cast<bool>(*s));
  EXPECT_EQ(s->reference_kind(), bufpool::pool_ref::borrowed);
  EXPECT_EQ(s->offset() % 64, 0u);
  EXPECT_EQ(s->size(), 100u);
  EXPECT_GE(s->capacity(), 100u);
  EXPECT_EQ(s->capacity() % 16, 0u);
  EXPECT_EQ(s->region_offset(), 0u);
  EXPECT_EQ(s->region_size(), 4096u);
  const std::span<std::byte> w = s->bytes();
  EXPECT_EQ(w.data(), memory.data() + s->offset());
  EXPECT_EQ(w.size(), 100u);
  std::memset(w.data(), 0x5a, w.size());
  const std::span<const std::byte> r = s->cbytes();
  EXPECT_EQ(r.data(), w.data());
  EXPECT_EQ(r[99], std::byte{0x5a});
  EXPECT_EQ(s->data(), w.data());
  EXPECT_EQ(pool.stats().used_bytes, s->capacity());
}

TEST(Slice, DestructionReturnsTheRange) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  {
    auto s = pool.acquire(4096);
    ASSERT_TRUE(s.has_value());
  }
  EXPECT_EQ(pool.stats().free_bytes, 4096u);
  EXPECT_TRUE(pool.acquire(4096).has_value());
}

TEST(Slice, MovedFromSliceIsEmptyAndItsDestructionIsANoOp) {
  static_assert(!std::is_copy_constructible_v<pool32::slice>);
  static_assert(std::is_nothrow_move_constructible_v<pool32::slice>);
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto s = pool.acquire(100);
  ASSERT_TRUE(s.has_value());
  const auto offset = s->offset();
  pool32::slice moved = std::move(*s);
  EXPECT_FALSE(static_cast<bool>(*s));
  EXPECT_EQ(s->reference_kind(), bufpool::pool_ref::none);
  EXPECT_EQ(s->size(), 0u);
  EXPECT_EQ(s->capacity(), 0u);
  EXPECT_EQ(moved.offset(), offset);
  s = std::unexpected(bufpool::errc::invalid_size);  // destroys the moved-from slice
  EXPECT_EQ(pool.stats().live_slices, 1u);
  auto other = pool.acquire(200);
  ASSERT_TRUE(other.has_value());
  moved = std::move(*other);  // move assignment gives the old range back
  EXPECT_EQ(pool.stats().live_slices, 1u);
  EXPECT_EQ(moved.size(), 200u);
  expect_valid(pool);
}

TEST(SharedSlice, KeepsThePoolAlive) {
  std::vector<std::byte> memory(4096);
  auto pool = std::make_shared<pool32>();
  add_region(*pool, memory);
  auto s = pool32::acquire_shared(pool, 64);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->reference_kind(), bufpool::pool_ref::shared);
  std::weak_ptr<pool32> watch = pool;
  pool.reset();
  EXPECT_FALSE(watch.expired());
  EXPECT_TRUE(s->pool_is_alive());
  ASSERT_TRUE(s->try_bytes().has_value());
  s->bytes()[0] = std::byte{1};
  s = std::unexpected(bufpool::errc::invalid_size);
  EXPECT_TRUE(watch.expired());
}

TEST(SharedSlice, CanKeepAnObjectThatContainsThePoolAlive) {
  struct owner {
    std::vector<std::byte> memory = std::vector<std::byte>(4096);
    pool32 pool;
  };
  auto o = std::make_shared<owner>();
  add_region(o->pool, o->memory);
  std::shared_ptr<pool32> alias(o, &o->pool);
  auto s = pool32::acquire_shared(alias, 128);
  ASSERT_TRUE(s.has_value());
  std::weak_ptr<owner> watch = o;
  o.reset();
  alias.reset();
  ASSERT_FALSE(watch.expired());
  std::memset(s->bytes().data(), 0x11, 128);  // the owner's memory is still there
  s = std::unexpected(bufpool::errc::invalid_size);
  EXPECT_TRUE(watch.expired());
}

TEST(WeakSlice, WorksAndGivesItsRangeBackWhileThePoolLives) {
  std::vector<std::byte> memory(4096);
  auto pool = std::make_shared<pool32>();
  add_region(*pool, memory);
  auto s = pool32::acquire_weak(pool, 64);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->reference_kind(), bufpool::pool_ref::weak);
  EXPECT_TRUE(s->pool_is_alive());
  EXPECT_EQ(pool.use_count(), 1);  // a weak slice does not own the pool
  ASSERT_TRUE(s->try_bytes().has_value());
  EXPECT_EQ(pool->stats().live_slices, 1u);
  s = std::unexpected(bufpool::errc::invalid_size);
  EXPECT_EQ(pool->stats().live_slices, 0u);
}

TEST(WeakSlice, RefusesDataAccessOnceThePoolIsGone) {
  std::vector<std::byte> memory(4096);
  auto pool = std::make_shared<pool32>();
  add_region(*pool, memory);
  auto s = pool32::acquire_weak<flag_guard>(pool, 64);
  ASSERT_TRUE(s.has_value());
  pool.reset();
  EXPECT_FALSE(s->pool_is_alive());
  auto w = s->try_bytes();
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error(), bufpool::errc::pool_gone);
  auto r = s->try_cbytes();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), bufpool::errc::pool_gone);
  auto done = std::make_shared<bool>(true);
  auto g = s->guard(flag_guard{done});
  ASSERT_FALSE(g.has_value());
  EXPECT_EQ(g.error().code, bufpool::errc::pool_gone);
  EXPECT_EQ(g.error().guard.done, done);
  s = std::unexpected(bufpool::errc::invalid_size);  // destruction does nothing (ASan: no UAF)
}

TEST(WeakSlice, KeepsItsRegionOffsetAndSizeButNotExtraOnceThePoolIsGone) {
  using pool_fd = bufpool::buffer_pool<std::uint32_t, int>;
  std::vector<std::byte> first(4096);
  std::vector<std::byte> second(8192);
  auto pool = std::make_shared<pool_fd>();
  ASSERT_TRUE(pool->begin_expand(first.size()).value().initialize(first.data(), 3));
  ASSERT_TRUE(pool->begin_expand(second.size()).value().initialize(second.data(), 7));
  auto s = pool_fd::acquire_weak(pool, 6000);  // only fits the second region
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->region_extra(), 7);
  pool.reset();  // the region records go with the pool; ASan would flag any read of them
  EXPECT_EQ(s->region_offset(), 4096u);
  EXPECT_EQ(s->region_size(), 8192u);
  g_violations = 0;
  const bufpool::violation_handler old = bufpool::set_violation_handler(&record_violation);
  EXPECT_EQ(s->region_extra(), 0);  // refused: a default value, never freed memory
  bufpool::set_violation_handler(old);
  EXPECT_EQ(g_violations.load(), 1);
  EXPECT_NE(g_last_violation.find("region_extra"), std::string::npos);
}

// ---------------------------------------------------------------------------------------
// Handles and closing

TEST(SliceResize, GrowsInPlaceWhenTheNextRangeIsFreeAndKeepsTheData) {
  std::vector<std::byte> memory(4096);
  pool32 pool;
  add_region(pool, memory);
  auto a = pool.acquire(1000);
  ASSERT_TRUE(a.has_value());
  const auto data = a->bytes().data();
  a->bytes()[999] = std::byte{42};
  ASSERT_TRUE(a->try_resize(3000).has_value());
  EXPECT_EQ(a->offset(), 0u);
  EXPECT_EQ(a->size(), 3000u);
  EXPECT_GE(a->capacity(), 3000u);
  EXPECT_EQ(a->bytes().data(), data);
  EXPECT_EQ(a->bytes().size(), 3000u);
  EXPECT_EQ(a->bytes()[999], std::byte{42});
  EXPECT_EQ(pool.stats().used_bytes, a->capacity());
  auto b = pool.acquire(16);  // takes the rest after a
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(a->try_resize(4000).error(), bufpool::errc::out_of_memory);
  EXPECT_EQ(a->size(), 3000u);  // nothing changed
  expect_valid(pool);
}

TEST(SliceResize, ShrinkGivesTheTailBackToThePool) {
  std::vector<std::byte> memory(4096);
  pool32 pool;
  add_region(pool, memory);
  auto a = pool.acquire(4096);
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(a->try_resize(100).has_value());
  EXPECT_EQ(a->size(), 100u);
  EXPECT_EQ(a->capacity(), 112u);
  EXPECT_EQ(pool.stats().free_bytes, 4096u - 112u);
  auto b = pool.acquire(3000);  // fits in the returned tail
  EXPECT_TRUE(b.has_value());
  expect_valid(pool);
}

TEST(SliceResize, GuardedEmptyAndDeadSlicesAreRefused) {
  std::vector<std::byte> memory(4096);
  auto pool = std::make_shared<pool32>();
  add_region(*pool, memory);
  auto done = std::make_shared<bool>(false);
  auto s = pool->acquire<flag_guard>(64);
  ASSERT_TRUE(s.has_value());
  ASSERT_TRUE(s->guard(flag_guard{done}).has_value());
  EXPECT_EQ(s->try_resize(128).error(), bufpool::errc::in_use);  // I/O may be in flight
  *done = true;
  ASSERT_TRUE(s->try_unguard().has_value());
  EXPECT_TRUE(s->try_resize(128).has_value());
  EXPECT_EQ(s->try_resize(0).error(), bufpool::errc::invalid_size);
  EXPECT_EQ(bufpool::buffer_pool<>::slice{}.try_resize(8).error(), bufpool::errc::empty_slice);
  s = std::unexpected(bufpool::errc::invalid_size);
  auto w = pool32::acquire_weak(pool, 64);
  ASSERT_TRUE(w.has_value());
  pool.reset();
  EXPECT_EQ(w->try_resize(128).error(), bufpool::errc::pool_gone);
}

TEST(Handle, CloseAllIsPreferredWhenThePoolIsDestroyed) {
  static_assert(bufpool::pool_handle<bulk_closing_handle, std::uint32_t, int>);
  auto log = std::make_shared<recording_log>();
  std::vector<std::byte> a(4096);
  std::vector<std::byte> b(4096);
  {
    bufpool::buffer_pool<std::uint32_t, int, bulk_closing_handle> pool({},
                                                                       bulk_closing_handle{log});
    add_region(pool, a, 3);
    add_region(pool, b, 4);
    auto s = pool.acquire(100);  // released before the pool
    EXPECT_TRUE(log->close_all_calls.empty());
  }
  EXPECT_TRUE(log->close_calls.empty());
  ASSERT_EQ(log->close_all_calls.size(), 1u);
  const auto& e = log->close_all_calls[0];
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].pool_offset, 0u);
  EXPECT_EQ(e[0].size, 4096u);
  EXPECT_EQ(e[0].pointer, a.data());
  EXPECT_EQ(e[0].extra, 3);
  EXPECT_EQ(e[1].pool_offset, 4096u);
  EXPECT_EQ(e[1].pointer, b.data());
  EXPECT_EQ(e[1].extra, 4);
}

// A handle whose close_all asks the pool for its statistics: called with the pool's lock
// held, that would deadlock or fail.
struct stats_asking_handle {
  std::shared_ptr<recording_log> log;
  std::shared_ptr<std::function<void()>> on_close = std::make_shared<std::function<void()>>();
  void close(const bufpool::mmap_entries<std::uint32_t, int>& e) { log->close_calls.push_back(e); }
  void close_all(const bufpool::mmap_entries<std::uint32_t, int>& e) {
    log->close_all_calls.push_back(e);
    if (*on_close) (*on_close)();
  }
};

TEST(Handle, ClearGivesEveryRegionToCloseAllWithoutThePoolsLockAndThePoolTakesNewOnes) {
  auto log = std::make_shared<recording_log>();
  std::vector<std::byte> a(4096);
  std::vector<std::byte> b(8192);
  std::size_t regions_seen = 99;
  stats_asking_handle handle{log};
  bufpool::buffer_pool<std::uint32_t, int, stats_asking_handle> pool({}, handle);
  *handle.on_close = [&] { regions_seen = pool.stats().regions; };
  add_region(pool, a, 3);
  add_region(pool, b, 4);
  auto raw = pool.acquire_raw(100);
  ASSERT_TRUE(raw.has_value());
  ASSERT_TRUE(pool.clear().has_value());
  ASSERT_EQ(log->close_all_calls.size(), 1u);
  const auto& e = log->close_all_calls[0];
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].pointer, a.data());
  EXPECT_EQ(e[0].extra, 3);
  EXPECT_EQ(e[1].pointer, b.data());
  EXPECT_EQ(e[1].extra, 4);
  EXPECT_EQ(regions_seen, 0u);            // the handle ran after the pool was emptied, unlocked
  EXPECT_EQ(add_region(pool, b, 5), 0u);  // offsets start again
  EXPECT_TRUE(pool.acquire(8000).has_value());
  expect_valid(pool);
  *handle.on_close = nullptr;  // the destructor's close_all must not ask a pool it destroys
}

TEST(Handle, CloseIsUsedWhenThereIsNoCloseAll) {
  auto log = std::make_shared<recording_log>();
  std::vector<std::byte> a(4096);
  {
    bufpool::buffer_pool<std::uint32_t, int, closing_handle> pool({}, closing_handle{log});
    add_region(pool, a, 5);
  }
  ASSERT_EQ(log->close_calls.size(), 1u);
  ASSERT_EQ(log->close_calls[0].size(), 1u);
  EXPECT_EQ(log->close_calls[0][0].extra, 5);
}

TEST(Handle, EntriesListInitializedRegionsOnly) {
  auto log = std::make_shared<recording_log>();
  std::vector<std::byte> a(4096);
  std::vector<std::byte> c(1024);
  bufpool::buffer_pool<std::uint32_t, int, closing_handle> pool({}, closing_handle{log});
  add_region(pool, a, 1);
  auto pending = pool.begin_expand(2048);
  ASSERT_TRUE(pending.has_value());
  add_region(pool, c, 3);
  auto closed = pool.try_close();
  ASSERT_TRUE(closed.has_value());
  ASSERT_EQ(closed->entries.size(), 2u);
  EXPECT_EQ(closed->entries[0].pool_offset, 0u);
  EXPECT_EQ(closed->entries[0].size, 4096u);
  EXPECT_EQ(closed->entries[0].pointer, a.data());
  EXPECT_EQ(closed->entries[0].extra, 1);
  EXPECT_EQ(closed->entries[1].pool_offset, 6144u);
  EXPECT_EQ(closed->entries[1].size, 1024u);
  EXPECT_EQ(closed->entries[1].pointer, c.data());
  EXPECT_EQ(closed->entries[1].extra, 3);
  ASSERT_TRUE(closed->handle.has_value());
  EXPECT_EQ(closed->handle->log, log);
  EXPECT_TRUE(log->close_calls.empty());  // the caller now owns the handle
}

TEST(Close, TryCloseReturnsHandleAndEntriesAndLaterCallsFail) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto closed = pool.try_close();
  ASSERT_TRUE(closed.has_value());
  EXPECT_EQ(closed->entries.size(), 1u);
  EXPECT_TRUE(pool.is_closed());
  auto s = pool.acquire(16);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), bufpool::errc::pool_closed);
  auto g = pool.begin_expand(16);
  ASSERT_FALSE(g.has_value());
  EXPECT_EQ(g.error(), bufpool::errc::pool_closed);
  auto again = pool.try_close();
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, bufpool::errc::pool_closed);
}

TEST(Close, InitializingAfterCloseIsRefused) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  auto grow = pool.begin_expand(4096);
  ASSERT_TRUE(grow.has_value());
  ASSERT_TRUE(pool.try_close().has_value());
  auto r = std::move(*grow).initialize(memory.data());
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), bufpool::errc::pool_closed);
  EXPECT_TRUE(pool.regions().empty());
}

TEST(Close, TryCloseIsRefusedWhileSlicesLive) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto s = pool.acquire(16);
  ASSERT_TRUE(s.has_value());
  auto refused = pool.try_close();
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, bufpool::errc::in_use);
  EXPECT_EQ(refused.error().live_slices, 1u);
  EXPECT_EQ(refused.error().guarded_slices, 0u);
  EXPECT_FALSE(pool.is_closed());
  EXPECT_TRUE(pool.acquire(16).has_value());  // nothing changed
  s = std::unexpected(bufpool::errc::invalid_size);
  EXPECT_TRUE(pool.try_close().has_value());
}

TEST(Close, TryCloseIsRefusedWhileASliceIsGuarded) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto done = std::make_shared<bool>(false);
  {
    auto s = pool.acquire<flag_guard>(16);
    ASSERT_TRUE(s.has_value());
    ASSERT_TRUE(s->guard(flag_guard{done}).has_value());
    auto live = pool.try_close();
    ASSERT_FALSE(live.has_value());
    EXPECT_EQ(live.error().guarded_slices, 1u);
  }  // parked
  auto parked = pool.try_close();
  ASSERT_FALSE(parked.has_value());
  EXPECT_EQ(parked.error().code, bufpool::errc::in_use);
  EXPECT_EQ(parked.error().guarded_slices, 1u);
  *done = true;
  EXPECT_EQ(pool.collect(), 1u);
  EXPECT_TRUE(pool.try_close().has_value());
}

TEST(Close, DestroyingAPoolWithGuardedSlicesFreesNothingAndReportsIt) {
  auto log = std::make_shared<recording_log>();
  std::vector<std::byte> memory(4096);
  const auto before = g_diagnostics.load();
  const bufpool::diagnostic_handler old = bufpool::set_diagnostic_handler(&record_diagnostic);
  auto done = std::make_shared<bool>(false);
  {
    bufpool::buffer_pool<std::uint32_t, int, bulk_closing_handle> pool({},
                                                                       bulk_closing_handle{log});
    add_region(pool, memory, 1);
    auto s = pool.acquire<flag_guard>(64);
    ASSERT_TRUE(s.has_value());
    ASSERT_TRUE(s->guard(flag_guard{done}).has_value());
  }
  bufpool::set_diagnostic_handler(old);
  EXPECT_TRUE(log->close_all_calls.empty());
  EXPECT_TRUE(log->close_calls.empty());
  EXPECT_EQ(g_diagnostics.load(), before + 1);
  EXPECT_NE(g_last_diagnostic.find("1 slice(s) are guarded"), std::string::npos)
      << g_last_diagnostic;
}

TEST(Close, NoHandleAndNoExtraCostNothing) {
  static_assert(std::is_empty_v<bufpool::no_handle>);
  static_assert(std::is_empty_v<bufpool::no_extra>);
  struct bare {
    std::uint32_t offset;
    std::uint32_t size;
    std::byte* pointer;
  };
  static_assert(sizeof(bufpool::mmap_entry<std::uint32_t, bufpool::no_extra>) == sizeof(bare));
  EXPECT_TRUE((bufpool::pool_handle<bufpool::no_handle, std::uint32_t, bufpool::no_extra>));
}

// ---------------------------------------------------------------------------------------
// Errors

TEST(Errors, AreErrorCodesWithTheClosestStdErrc) {
  using bufpool::errc;
  const std::pair<errc, std::errc> table[] = {
      {errc::invalid_size, std::errc::invalid_argument},
      {errc::invalid_alignment, std::errc::invalid_argument},
      {errc::alignment_too_big, std::errc::invalid_argument},
      {errc::too_large, std::errc::value_too_large},
      {errc::out_of_memory, std::errc::not_enough_memory},
      {errc::invalid_argument, std::errc::invalid_argument},
      {errc::occupied, std::errc::address_in_use},
      {errc::out_of_range, std::errc::address_not_available},
      {errc::arithmetic_overflow, std::errc::value_too_large},
      {errc::out_of_offset_space, std::errc::not_enough_memory},
      {errc::pool_closed, std::errc::operation_not_permitted},
      {errc::in_use, std::errc::address_in_use},
      {errc::already_guarded, std::errc::file_exists},
      {errc::not_guarded, std::errc::invalid_argument},
      {errc::pool_gone, std::errc::operation_not_permitted},
      {errc::access_denied, std::errc::permission_denied},
      {errc::empty_slice, std::errc::invalid_argument},
      {errc::null_memory, std::errc::invalid_argument},
      {errc::overlapping_memory, std::errc::address_in_use},
      {errc::handle_spent, std::errc::invalid_argument},
      {errc::not_live, std::errc::invalid_argument},
  };
  for (const auto& [code, std_code] : table) {
    const std::error_code ec = code;
    EXPECT_EQ(ec, std_code) << bufpool::to_string(code);
    EXPECT_EQ(&ec.category(), &bufpool::bufpool_category());
  }
  EXPECT_NE(std::error_code(errc::out_of_memory), std::errc::address_in_use);
}

TEST(Errors, HaveStableDistinctMessagesAndACategoryName) {
  EXPECT_STREQ(bufpool::bufpool_category().name(), "bufpool");
  std::set<std::string> messages;
  constexpr int last = static_cast<int>(bufpool::errc::not_live);
  for (int c = 1; c <= last; ++c) {
    const auto code = static_cast<bufpool::errc>(c);
    const std::error_code ec = code;
    EXPECT_EQ(ec.message(), bufpool::to_string(code));
    EXPECT_EQ(ec.message().find("unknown"), std::string::npos) << c;
    messages.insert(ec.message());
  }
  EXPECT_EQ(messages.size(), std::size_t{last});  // each code states its own cause
  EXPECT_NE(std::error_code(static_cast<bufpool::errc>(last + 1)).message().find("unknown"),
            std::string::npos);
  EXPECT_EQ(std::error_code(bufpool::errc::out_of_offset_space).message(),
            "offset space exhausted");
}

// ---------------------------------------------------------------------------------------
// Statistics and validate()

TEST(Stats, TrackUsedFreePendingLargestAndCounts) {
  pool32 pool;
  std::vector<std::byte> a(4096);
  std::vector<std::byte> b(2048);
  add_region(pool, a);
  add_region(pool, b);
  auto pending = pool.begin_expand(1000);
  auto s1 = pool.acquire(1024, 16, bufpool::fixed(0));
  auto s2 = pool.acquire(100, 16, bufpool::fixed(2048));
  ASSERT_TRUE(s1 && s2);
  const bufpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.regions, 2u);
  EXPECT_EQ(s.used_bytes, 1024u + s2->capacity());
  EXPECT_EQ(s.free_bytes, 6144u - s.used_bytes);
  EXPECT_EQ(s.pending_bytes, 1000u);
  EXPECT_EQ(s.largest_free, 2048u);  // region b untouched
  EXPECT_EQ(s.free_ranges, 3u);      // [1024,2048) [2048+cap,4096) and region b
  EXPECT_EQ(s.live_slices, 2u);
  EXPECT_EQ(s.guarded_slices, 0u);
  EXPECT_EQ(s.parked_slices, 0u);
  expect_valid(pool);
}

TEST(Stats, PerRegionStatistics) {
  pool32 pool;
  std::vector<std::byte> a(4096);
  std::vector<std::byte> b(2048);
  add_region(pool, a);
  add_region(pool, b);
  auto s = pool.acquire(512, 16, bufpool::fixed(4096));
  ASSERT_TRUE(s.has_value());
  const auto regions = pool.region_statistics();
  ASSERT_EQ(regions.size(), 2u);
  EXPECT_EQ(regions[0].offset, 0u);
  EXPECT_EQ(regions[0].used_bytes, 0u);
  EXPECT_EQ(regions[0].free_bytes, 4096u);
  EXPECT_EQ(regions[1].offset, 4096u);
  EXPECT_EQ(regions[1].size, 2048u);
  EXPECT_EQ(regions[1].used_bytes, 512u);
  EXPECT_EQ(regions[1].free_bytes, 1536u);
  EXPECT_EQ(regions[1].used_ranges, 1u);
  EXPECT_EQ(regions[1].free_ranges, 1u);
  const auto ranges = pool.region_ranges(1);
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_TRUE(ranges[0].used);
  EXPECT_FALSE(ranges[1].used);
}

TEST(Stats, RandomChurnKeepsEveryInvariantAndRestoresTheInitialState) {
  pool32 pool;
  std::vector<std::byte> a(1 << 16);
  std::vector<std::byte> b(1 << 15);
  add_region(pool, a);
  add_region(pool, b);
  const bufpool::pool_stats initial = pool.stats();
  std::mt19937 rng(42);
  std::vector<pool32::slice> live;
  for (int i = 0; i < 2000; ++i) {
    if (live.empty() || rng() % 3 != 0) {
      const std::uint64_t size = 1 + rng() % 2000;
      const std::uint64_t align = std::uint64_t{1} << (rng() % 10);
      const bufpool::strategy how = rng() % 2 == 0 ? bufpool::optimal : bufpool::greedy;
      auto s = pool.acquire(size, align, how);
      if (s) {
        EXPECT_EQ(s->offset() % align, 0u);
        live.push_back(std::move(*s));
      } else {
        EXPECT_EQ(s.error(), bufpool::errc::out_of_memory);
      }
    } else {
      std::swap(live[rng() % live.size()], live.back());
      live.pop_back();
    }
    if (i % 97 == 0) expect_valid(pool);
  }
  std::shuffle(live.begin(), live.end(), rng);
  live.clear();
  const bufpool::pool_stats end = pool.stats();
  EXPECT_EQ(end.used_bytes, 0u);
  EXPECT_EQ(end.free_bytes, initial.free_bytes);
  EXPECT_EQ(end.free_ranges, initial.free_ranges);
  EXPECT_EQ(end.largest_free, initial.largest_free);
  expect_valid(pool);
}

// ---------------------------------------------------------------------------------------
// Contract violations

TEST(PoolDeathTest, DestroyingAPoolWithLiveBorrowedSlicesAborts) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        std::vector<std::byte> memory(4096);
        auto pool = std::make_unique<pool32>();
        add_region(*pool, memory);
        auto s = pool->acquire(16);
        pool.reset();
      },
      "borrowed slices outlive their pool");
}

TEST(PoolDeathTest, InitializeWithNullMemoryAborts) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        pool32 pool;
        auto grow = pool.begin_expand(4096);
        (void)std::move(*grow).initialize(nullptr);
      },
      "a region's memory must not be null");
}

TEST(PoolDeathTest, DestroyingAPoolWithAPendingExpansionAborts) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        auto pool = std::make_unique<pool32>();
        auto grow = pool->begin_expand(4096);
        pool.reset();  // the handle would cancel into a destroyed pool
      },
      "expansion handles must not outlive their pool");
}

TEST(PoolDeathTest, InvalidOptionsAbort) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  bufpool::basic_options<std::uint32_t> zero_min;
  zero_min.min_size = 0;
  EXPECT_DEATH({ pool32 pool(zero_min); }, "pool options");
  bufpool::basic_options<std::uint32_t> npot;
  npot.min_alignment = 24;
  EXPECT_DEATH({ pool32 pool(npot); }, "pool options");
  bufpool::basic_options<std::uint32_t> inverted;
  inverted.min_size = 128;
  inverted.max_size = 64;
  EXPECT_DEATH({ pool32 pool(inverted); }, "pool options");
  bufpool::basic_options<std::uint32_t> align_inverted;
  align_inverted.min_alignment = 512;
  align_inverted.max_alignment = 256;
  EXPECT_DEATH({ pool32 pool(align_inverted); }, "pool options");
}

TEST(Contract, NonAbortingHandlerObservesTheViolationInProcess) {
  const auto before = g_violations.load();
  const bufpool::violation_handler old = bufpool::set_violation_handler(&record_violation);
  pool32 pool;
  auto grow = pool.begin_expand(4096);
  ASSERT_TRUE(grow.has_value());
  auto r = std::move(*grow).initialize(nullptr);
  bufpool::set_violation_handler(old);
  EXPECT_EQ(g_violations.load(), before + 1);
  EXPECT_NE(g_last_violation.find("must not be null"), std::string::npos) << g_last_violation;
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), bufpool::errc::null_memory);
  const bufpool::pool_stats s = pool.stats();  // the reservation was given back
  EXPECT_EQ(s.pending_bytes, 0u);
  EXPECT_EQ(s.regions, 0u);
  expect_valid(pool);
}

TEST(Contract, EachMisuseAReturningHandlerLetsThroughFailsWithItsOwnCause) {
  const bufpool::violation_handler old = bufpool::set_violation_handler(&record_violation);
  const auto before = g_violations.load();
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);

  auto null_region = pool.begin_expand(4096);
  ASSERT_TRUE(null_region.has_value());
  EXPECT_EQ(std::move(*null_region).initialize(nullptr).error(), bufpool::errc::null_memory);

  auto overlapping = pool.begin_expand(4096);
  ASSERT_TRUE(overlapping.has_value());
  EXPECT_EQ(std::move(*overlapping).initialize(memory.data() + 100).error(),
            bufpool::errc::overlapping_memory);

  std::vector<std::byte> second(4096);
  auto twice = pool.begin_expand(4096);
  ASSERT_TRUE(twice.has_value());
  ASSERT_TRUE(std::move(*twice).initialize(second.data()).has_value());
  EXPECT_EQ(std::move(*twice).initialize(second.data()).error(), bufpool::errc::handle_spent);

  EXPECT_EQ(pool.resize_raw(std::uint64_t{40}, 8).error(), bufpool::errc::not_live);
  EXPECT_EQ(pool.resize_raw(static_cast<const void*>(&pool), 8).error(), bufpool::errc::not_live);
  bufpool::set_violation_handler(old);
  EXPECT_EQ(g_violations.load(), before + 5);  // each was also reported
  expect_valid(pool);
}

TEST(Contract, InvalidOptionsFallBackToDefaultsWhenTheHandlerReturns) {
  const bufpool::violation_handler old = bufpool::set_violation_handler(&record_violation);
  const auto before = g_violations.load();
  bufpool::basic_options<std::uint32_t> bad;
  bad.min_alignment = 3;
  pool32 pool(bad);
  bufpool::set_violation_handler(old);
  EXPECT_EQ(g_violations.load(), before + 1);
  EXPECT_EQ(pool.options().min_alignment, alignof(std::max_align_t));
}

}  // namespace
