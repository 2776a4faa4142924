// SPDX-License-Identifier: MIT
// AddressSanitizer integration: free ranges of host regions are poisoned, acquired ranges
// are not, opaque memory is never touched, and memory is addressable again once the pool
// lets go of it. Every test skips outside ASan builds (the asan and fuzz presets).
#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <span>
#include <utility>
#include <vector>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUFPOOL_TEST_ASAN 1
#include <sanitizer/asan_interface.h>
#endif
#endif

import bufpool;
import bufpool.pmr;

#include "records_only_resource.hpp"

namespace {

#ifdef BUFPOOL_TEST_ASAN
bool poisoned(const void* p) {
  return __asan_address_is_poisoned(p) != 0;
}
// True if every byte of [p, p + n) is addressable.
bool addressable(const void* p, std::size_t n) {
  return __asan_region_is_poisoned(const_cast<void*>(p), n) == nullptr;
}
#define REQUIRE_ASAN() (void)0
#else
bool poisoned(const void*) {
  return false;
}
bool addressable(const void*, std::size_t) {
  return true;
}
#define REQUIRE_ASAN() GTEST_SKIP() << "needs an AddressSanitizer build (asan or fuzz preset)"
#endif

using pool32 = bufpool::buffer_pool<>;

// A pool over one 4 KiB heap block, 16-aligned; the block is freed after the pool.
struct host_pool {
  explicit host_pool(bufpool::region_memory kind = bufpool::region_memory::host) {
    auto grow = pool.begin_expand(memory.size());
    EXPECT_TRUE(grow.has_value());
    EXPECT_TRUE(std::move(*grow).initialize(memory.data(), {}, kind).has_value());
  }
  std::vector<std::byte> memory = std::vector<std::byte>(4096);
  pool32 pool;
};

TEST(AddressSanitizer, FreeRangesArePoisonedAndAcquiredRangesAreNot) {
  REQUIRE_ASAN();
  host_pool h;
  EXPECT_TRUE(poisoned(h.memory.data()));
  EXPECT_TRUE(poisoned(h.memory.data() + 4095));
  auto s = h.pool.acquire(100);
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(addressable(s->data(), s->capacity()));
  EXPECT_TRUE(poisoned(s->data() + s->capacity()));  // the free rest of the region
  std::byte* at = s->data();
  ASSERT_TRUE(std::move(*s).reclaim().has_value());
  EXPECT_TRUE(poisoned(at));
}

// BAD_INPUTS row 14: a read or write through a slice's memory after reclaim.
TEST(AddressSanitizerDeathTest, Row14UseAfterReclaimIsReportedAsUseAfterPoison) {
  REQUIRE_ASAN();
  host_pool h;
  auto s = h.pool.acquire(64);
  ASSERT_TRUE(s.has_value());
  volatile std::byte* at = s->data();
  ASSERT_TRUE(std::move(*s).reclaim().has_value());
  EXPECT_DEATH(at[8] = std::byte{1}, "use-after-poison");
}

// BAD_INPUTS row 15: a write past the end of a slice into the free space after it.
TEST(AddressSanitizerDeathTest, Row15OverflowIntoAFreeNeighbourIsReported) {
  REQUIRE_ASAN();
  host_pool h;
  auto s = h.pool.acquire(64);
  ASSERT_TRUE(s.has_value());
  volatile std::byte* at = s->data();
  const std::size_t past = s->capacity();
  EXPECT_DEATH(at[past] = std::byte{1}, "use-after-poison");
}

TEST(AddressSanitizer, NeighbouringLiveSlicesStayAddressableWhenOneIsReclaimed) {
  REQUIRE_ASAN();
  host_pool h;
  std::vector<pool32::slice> live;
  for (const std::size_t size : {1u, 7u, 8u, 9u, 24u, 100u, 3u})
    live.push_back(h.pool.acquire(size, 1).value());
  for (std::size_t i = 0; i < live.size(); i += 2)
    ASSERT_TRUE(std::move(live[i]).reclaim().has_value());
  for (std::size_t i = 1; i < live.size(); i += 2)
    EXPECT_TRUE(addressable(live[i].data(), live[i].size())) << "slice " << i;
}

TEST(AddressSanitizer, ResizeUnpoisonsWhatItGrowsIntoAndPoisonsWhatItGivesBack) {
  REQUIRE_ASAN();
  host_pool h;
  auto s = h.pool.acquire(64).value();
  ASSERT_TRUE(s.try_resize(1024).has_value());
  EXPECT_TRUE(addressable(s.data(), 1024));
  ASSERT_TRUE(s.try_resize(32).has_value());
  EXPECT_TRUE(addressable(s.data(), 32));
  EXPECT_TRUE(poisoned(s.data() + s.capacity()));
  EXPECT_TRUE(poisoned(s.data() + 1023));
}

TEST(AddressSanitizer, ParkedRangesStayAddressableUntilTheirGuardReleases) {
  REQUIRE_ASAN();
  struct flag_guard {
    const bool* done;
    bool try_release() const { return *done; }
  };
  host_pool h;
  bool done = false;
  std::byte* at = nullptr;
  {
    auto s = h.pool.acquire<flag_guard>(256).value();
    at = s.data();
    ASSERT_TRUE(s.guard(flag_guard{&done}).has_value());
  }  // parked: the I/O may still write into it
  EXPECT_TRUE(addressable(at, 256));
  EXPECT_EQ(h.pool.collect(), 0u);
  EXPECT_TRUE(addressable(at, 256));
  done = true;
  EXPECT_EQ(h.pool.collect(), 1u);
  EXPECT_TRUE(poisoned(at));
}

TEST(AddressSanitizer, RawRangesArePoisonedWhenReleased) {
  REQUIRE_ASAN();
  host_pool h;
  auto r = h.pool.acquire_raw(48, 16).value();
  EXPECT_TRUE(addressable(r.pointer, r.capacity));
  ASSERT_TRUE(h.pool.release_raw(r.pointer, 48, 16));
  EXPECT_TRUE(poisoned(r.pointer));
}

// With and without thread caches (whose slots are poisoned through the thread's copy of
// the region).
void slab_slots_are_addressable_only_while_live(bool thread_caches) {
  std::vector<std::byte> memory(std::size_t{1} << 16);
  pool32::options_type options;
  options.slabs = true;
  options.thread_caches = thread_caches;
  pool32 pool(options);
  ASSERT_TRUE(pool.begin_expand(memory.size()).value().initialize(memory.data()).has_value());
  auto a = pool.acquire_raw(48, 16, bufpool::greedy).value();
  auto b = pool.acquire_raw(48, 16, bufpool::greedy).value();
  EXPECT_TRUE(addressable(a.pointer, a.capacity));
  EXPECT_TRUE(addressable(b.pointer, b.capacity));
  EXPECT_TRUE(poisoned(b.pointer + b.capacity));  // the next slot is free
  ASSERT_TRUE(pool.release_raw(a.pointer, 48, 16));
  EXPECT_TRUE(poisoned(a.pointer));
  EXPECT_TRUE(addressable(b.pointer, b.capacity));
  ASSERT_TRUE(pool.release_raw(b.pointer, 48, 16));
  EXPECT_TRUE(poisoned(b.pointer));
}

TEST(AddressSanitizer, SlabSlotsAreAddressableOnlyWhileLive) {
  REQUIRE_ASAN();
  slab_slots_are_addressable_only_while_live(false);
}

TEST(AddressSanitizer, ThreadCachedSlabSlotsAreAddressableOnlyWhileLive) {
  REQUIRE_ASAN();
  slab_slots_are_addressable_only_while_live(true);
}

TEST(AddressSanitizer, OpaqueRegionsAreNeverPoisoned) {
  REQUIRE_ASAN();
  host_pool h(bufpool::region_memory::opaque);
  EXPECT_TRUE(addressable(h.memory.data(), h.memory.size()));
  auto s = h.pool.acquire(64).value();
  ASSERT_TRUE(std::move(s).reclaim().has_value());
  EXPECT_TRUE(addressable(h.memory.data(), h.memory.size()));
}

TEST(AddressSanitizer, OnlyTheGivenHostBytesOfARegionArePoisoned) {
  REQUIRE_ASAN();
  std::vector<std::byte> memory(4096);
  pool32 pool;
  auto grow = pool.begin_expand(memory.size()).value();
  const std::span<std::byte> host(memory.data() + 1024, 1024);
  ASSERT_TRUE(std::move(grow).initialize(memory.data(), {}, host).has_value());
  EXPECT_TRUE(addressable(memory.data(), 1024));
  EXPECT_TRUE(poisoned(memory.data() + 1024));
  EXPECT_TRUE(poisoned(memory.data() + 2047));
  EXPECT_TRUE(addressable(memory.data() + 2048, 2048));
}

TEST(AddressSanitizer, RegionsAreAddressableAgainOnceThePoolIsDestroyedOrClosed) {
  REQUIRE_ASAN();
  std::vector<std::byte> memory(4096);
  {
    pool32 pool;
    ASSERT_TRUE(pool.begin_expand(4096).value().initialize(memory.data()).has_value());
    EXPECT_TRUE(poisoned(memory.data()));
  }
  EXPECT_TRUE(addressable(memory.data(), memory.size()));
  pool32 pool;
  ASSERT_TRUE(pool.begin_expand(4096).value().initialize(memory.data()).has_value());
  EXPECT_TRUE(poisoned(memory.data()));
  ASSERT_TRUE(pool.try_close().has_value());
  EXPECT_TRUE(addressable(memory.data(), memory.size()));
}

// The resource's first region reaches past the user's buffer to 4 KiB boundaries: the
// memory around the buffer belongs to someone else and must never be poisoned.
TEST(AddressSanitizer, PmrBufferNeighboursAreNeverPoisoned) {
  REQUIRE_ASAN();
  alignas(4096) std::array<std::byte, 8192> around{};
  std::byte* buffer = around.data() + 1000;
  {
    bufpool_test::records_only_resource records;  // the buffer is too small for them
    bufpool::pmr::pool_resource r(buffer, 3000, &records);
    EXPECT_TRUE(addressable(around.data(), 1000));
    EXPECT_TRUE(addressable(around.data() + 4000, 4192));
    EXPECT_TRUE(poisoned(buffer + 1500));
    void* p = r.allocate(100, 8);
    EXPECT_TRUE(addressable(p, 100));
    r.deallocate(p, 100, 8);
    EXPECT_TRUE(poisoned(p));
  }
  EXPECT_TRUE(addressable(around.data(), around.size()));
}

// BAD_INPUTS row 33: release() with live allocations invalidates them (poisoned), and the
// resource is usable again.
TEST(AddressSanitizer, Row33PmrReleaseMakesLiveAllocationsUnaddressable) {
  REQUIRE_ASAN();
  alignas(64) std::array<std::byte, 4096> buffer{};
  bufpool_test::records_only_resource records;  // the buffer is too small for them
  bufpool::pmr::pool_resource r(buffer.data(), buffer.size(), &records);
  void* p = r.allocate(256, 16);
  EXPECT_TRUE(addressable(p, 256));
  r.release();
  EXPECT_TRUE(poisoned(p));
  void* q = r.allocate(256, 16);
  EXPECT_TRUE(addressable(q, 256));
  r.deallocate(q, 256, 16);
}

}  // namespace
