// SPDX-License-Identifier: MIT
// bufpool.pmr: pool_resource as a std::pmr::memory_resource (shapes, growth, alignment, misuse).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <forward_list>
#include <limits>
#include <list>
#include <map>
#include <memory_resource>
#include <mutex>
#include <new>
#include <ostream>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>
import bufpool;
import bufpool.pmr;

#include "records_only_resource.hpp"

#include "arena.hpp"
#include "violations.hpp"

namespace {

using bufpool::pmr::pool_resource;
using bufpool::pmr::resource_options;

constexpr std::size_t R = pool_resource::region_alignment;

static_assert(!std::is_copy_constructible_v<pool_resource>);
static_assert(!std::is_copy_assignable_v<pool_resource>);
static_assert(std::is_base_of_v<std::pmr::memory_resource, pool_resource>);

struct upstream_error : std::runtime_error {
  upstream_error() : std::runtime_error("upstream failed") {}
};

// An upstream that records every request, checks that each deallocation matches an
// allocation (pointer, bytes, alignment) and can be told to throw. The counts and byte totals
// are of the resource's memory (regions and dedicated allocations, aligned to at least
// region_alignment); its own records, which it takes from upstream too at smaller
// alignments, are counted apart (records_outstanding_bytes()).
class counting_resource final : public std::pmr::memory_resource {
 public:
  // records_apart = false: every request counts as memory (an upstream of another resource).
  explicit counting_resource(bool records_apart = true) : records_apart_(records_apart) {}
  bool is_memory(std::size_t alignment) const {
    return !records_apart_ || alignment >= bufpool::pmr::pool_resource::region_alignment;
  }
  std::size_t records_outstanding_bytes() const {
    std::scoped_lock lock(mutex_);
    return records_outstanding_;
  }
  std::size_t record_allocations() const {
    std::scoped_lock lock(mutex_);
    return record_requests_;
  }

  struct request {
    std::size_t bytes;
    std::size_t alignment;
  };

  std::size_t allocations() const {
    std::scoped_lock lock(mutex_);
    return requests_.size();
  }
  std::vector<request> requests() const {
    std::scoped_lock lock(mutex_);
    return requests_;
  }
  std::size_t outstanding_bytes() const {
    std::scoped_lock lock(mutex_);
    return outstanding_;
  }
  std::size_t outstanding_blocks() const {  // of memory and records
    std::scoped_lock lock(mutex_);
    return live_.size();
  }
  std::size_t peak_bytes() const {
    std::scoped_lock lock(mutex_);
    return peak_;
  }
  std::size_t mismatches() const {
    std::scoped_lock lock(mutex_);
    return mismatches_;
  }
  // Every later allocation throws upstream_error (or std::bad_alloc) until allowed again.
  void fail(bool custom = true) {
    std::scoped_lock lock(mutex_);
    failing_ = true;
    custom_ = custom;
  }
  void allow() {
    std::scoped_lock lock(mutex_);
    failing_ = false;
  }

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    std::scoped_lock lock(mutex_);
    if (failing_) {
      if (custom_) throw upstream_error();
      throw std::bad_alloc();
    }
    void* p = std::pmr::new_delete_resource()->allocate(bytes, alignment);
    live_[p] = {bytes, alignment};
    if (!is_memory(alignment)) {
      ++record_requests_;
      records_outstanding_ += bytes;
      return p;
    }
    requests_.push_back({bytes, alignment});
    outstanding_ += bytes;
    peak_ = std::max(peak_, outstanding_);
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    std::scoped_lock lock(mutex_);
    const auto it = live_.find(p);
    if (it == live_.end() || it->second.bytes != bytes || it->second.alignment != alignment) {
      ++mismatches_;
      return;
    }
    live_.erase(it);
    (is_memory(alignment) ? outstanding_ : records_outstanding_) -= bytes;
    std::pmr::new_delete_resource()->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }

  mutable std::mutex mutex_;
  std::vector<request> requests_;
  std::map<void*, request> live_;
  std::size_t outstanding_ = 0;
  std::size_t records_outstanding_ = 0;
  std::size_t record_requests_ = 0;
  std::size_t peak_ = 0;
  std::size_t mismatches_ = 0;
  bool failing_ = false;
  bool custom_ = true;
  bool records_apart_;
};

using bufpool_test::g_last_violation;
using bufpool_test::g_violations;
using bufpool_test::recording_violations;
using bufpool_test::records_only_resource;

std::uintptr_t address(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p);
}

bool inside(const void* p, std::size_t n, const void* begin, std::size_t size) {
  return address(p) >= address(begin) && address(p) + n <= address(begin) + size;
}

void expect_valid(const pool_resource& r) {
  const auto v = r.validate();
  EXPECT_TRUE(v.has_value()) << v.error();
}

// ---- constructor shapes --------------------------------------------------------------

TEST(PoolResource, DefaultConstructorUsesTheDefaultResourceAsUpstream) {
  counting_resource up;
  std::pmr::memory_resource* old = std::pmr::set_default_resource(&up);
  {
    pool_resource r;
    EXPECT_EQ(r.upstream_resource(), &up);
    void* p = r.allocate(100);
    EXPECT_EQ(up.allocations(), 1u);
    r.deallocate(p, 100);
  }
  std::pmr::set_default_resource(old);
  EXPECT_EQ(up.outstanding_bytes(), 0u);
  EXPECT_EQ(up.mismatches(), 0u);
}

TEST(PoolResource, UpstreamConstructorTakesNothingUntilTheFirstAllocation) {
  counting_resource up;
  pool_resource r(&up);
  EXPECT_EQ(r.upstream_resource(), &up);
  EXPECT_EQ(up.allocations(), 0u);
  void* p = r.allocate(1);
  ASSERT_EQ(up.allocations(), 1u);
  EXPECT_EQ(up.requests()[0].bytes, resource_options{}.first_region_size);
  EXPECT_EQ(up.requests()[0].alignment, R);
  r.deallocate(p, 1);
}

TEST(PoolResource, InitialSizeAndASpanOfRoomAreTheFirstUpstreamRegionRoundedToRegionAlignment) {
  counting_resource up;
  pool_resource r(10000, &up);
  void* p = r.allocate(1);
  ASSERT_EQ(up.allocations(), 1u);
  EXPECT_EQ(up.requests()[0].bytes, 16384u);  // 10000 + 4096 + 16 rounded up to 4 KiB
  EXPECT_EQ(up.requests()[0].alignment, R);
  r.deallocate(p, 1);
}

TEST(PoolResource, InitialSizeConstructorWithoutUpstreamUsesTheDefaultResource) {
  counting_resource up;
  std::pmr::memory_resource* old = std::pmr::set_default_resource(&up);
  {
    pool_resource r(std::size_t{5000});
    EXPECT_EQ(r.upstream_resource(), &up);
    r.deallocate(r.allocate(10), 10);
    ASSERT_EQ(up.allocations(), 1u);
    EXPECT_EQ(up.requests()[0].bytes, 12288u);  // 5000 + 4096 + 16 rounded up to 4 KiB
  }
  std::pmr::set_default_resource(old);
  EXPECT_EQ(up.outstanding_bytes(), 0u);
}

// Drop-in fidelity item 3: like monotonic_buffer_resource(initial_size), the first region
// holds initial_size bytes of requests, even after a small request has taken a slab span.
struct initial_sizes {
  std::size_t first;
  std::size_t last;
  std::size_t step;
  friend std::ostream& operator<<(std::ostream& out, const initial_sizes& b) {
    return out << b.first << ".." << b.last << " step " << b.step;
  }
};

class PoolResourceInitialSize : public ::testing::TestWithParam<initial_sizes> {};

TEST_P(PoolResourceInitialSize, OneByteThenTheRestOfInitialSizeTakeOneUpstreamRegion) {
  const initial_sizes band = GetParam();
  for (std::size_t alignment : {std::size_t{1}, alignof(std::max_align_t)}) {
    for (std::size_t size = band.first; size <= band.last; size += band.step) {
      counting_resource up;
      pool_resource r(size, &up);
      void* first = r.allocate(1, alignment);
      void* rest = size > 1 ? r.allocate(size - 1, alignment) : nullptr;
      ASSERT_EQ(up.allocations(), 1u) << "initial size " << size << ", alignment " << alignment;
      if (rest != nullptr) r.deallocate(rest, size - 1, alignment);
      r.deallocate(first, 1, alignment);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EverySizeToTwoPagesThenStrided, PoolResourceInitialSize,
                         ::testing::Values(initial_sizes{1, 8192, 1},
                                           initial_sizes{8193, 70'000, 7},
                                           initial_sizes{70'001, 1'000'000, 1009},
                                           initial_sizes{1'000'000, 1'000'000, 1}));

TEST(PoolResource, BufferIsUsedBeforeUpstream) {
  counting_resource up;
  alignas(64) std::byte buffer[1024];
  pool_resource r(buffer, sizeof buffer, &up);
  std::vector<void*> got;
  for (int i = 0; i < 8; ++i) {  // 8 x 128 = the whole buffer
    got.push_back(r.allocate(128, 8));
    EXPECT_TRUE(inside(got.back(), 128, buffer, sizeof buffer));
  }
  EXPECT_EQ(up.allocations(), 0u);
  void* more = r.allocate(128, 8);  // the buffer is full: upstream now
  EXPECT_FALSE(inside(more, 1, buffer, sizeof buffer));
  EXPECT_EQ(up.allocations(), 1u);
  r.deallocate(more, 128, 8);
  for (void* p : got) r.deallocate(p, 128, 8);
  expect_valid(r);
}

TEST(PoolResource, BufferConstructorWithoutUpstreamUsesTheDefaultResource) {
  counting_resource up;
  std::pmr::memory_resource* old = std::pmr::set_default_resource(&up);
  {
    std::byte buffer[256];
    pool_resource r(buffer, sizeof buffer);
    EXPECT_EQ(r.upstream_resource(), &up);
    void* p = r.allocate(64);
    EXPECT_TRUE(inside(p, 64, buffer, sizeof buffer));
    r.deallocate(p, 64);
  }
  std::pmr::set_default_resource(old);
}

// Drop-in fidelity item 4: a buffer with options (thread_safe = false, retained_bytes).
TEST(PoolResource, BufferWithOptionsUsesTheBufferFirstAndAppliesTheOptions) {
  counting_resource up;
  alignas(64) std::byte buffer[1024];
  resource_options o;
  o.first_region_size = 8192;
  o.max_region_size = 8192;
  o.thread_safe = false;
  o.retained_bytes = 8192;
  pool_resource r(buffer, sizeof buffer, o, &up);
  EXPECT_FALSE(r.options().thread_safe);
  EXPECT_EQ(r.options().retained_bytes, 8192u);
  EXPECT_EQ(r.upstream_resource(), &up);
  void* in_buffer = r.allocate(1024, 8);
  EXPECT_TRUE(inside(in_buffer, 1024, buffer, sizeof buffer));
  EXPECT_EQ(up.allocations(), 0u);
  void* more = r.allocate(100, 8);  // the buffer is full
  ASSERT_EQ(up.allocations(), 1u);
  EXPECT_EQ(up.requests()[0].bytes, 8192u);  // the options' first region, not 1024
  r.release();
  EXPECT_EQ(up.outstanding_bytes(), 8192u);  // retained for the next cycle
  EXPECT_TRUE(inside(r.allocate(1024, 8), 1024, buffer, sizeof buffer));  // the buffer again
  (void)r.allocate(100, 8);
  EXPECT_EQ(up.allocations(), 1u);  // from the retained region
  (void)more;
  expect_valid(r);
}

TEST(PoolResource, BufferWithOptionsWithoutUpstreamUsesTheDefaultResource) {
  counting_resource up;
  std::pmr::memory_resource* old = std::pmr::set_default_resource(&up);
  {
    std::byte buffer[256];
    resource_options o;
    o.thread_safe = false;
    pool_resource r(buffer, sizeof buffer, o);
    EXPECT_EQ(r.upstream_resource(), &up);
    EXPECT_FALSE(r.options().thread_safe);
    void* p = r.allocate(64);
    EXPECT_TRUE(inside(p, 64, buffer, sizeof buffer));
    r.deallocate(p, 64);
  }
  std::pmr::set_default_resource(old);
}

TEST(PoolResource, GrowthOptionsGiveGeometricRegionsCappedByTheMaximum) {
  counting_resource up;
  pool_resource r(resource_options{4096, 2.0, 16384}, &up);
  std::vector<void*> got;
  for (int i = 0; i < 8; ++i) got.push_back(r.allocate(4096, 4096));  // one region each
  std::vector<std::size_t> sizes;
  for (const auto& q : up.requests()) sizes.push_back(q.bytes);
  // 4 KiB, 8 KiB (holds 2), 16 KiB (holds 4), then capped at 16 KiB.
  EXPECT_EQ(sizes, (std::vector<std::size_t>{4096, 8192, 16384, 16384}));
  for (void* p : got) r.deallocate(p, 4096, 4096);
  expect_valid(r);
}

TEST(PoolResource, DefaultGrowthDoublesFrom64KiBToAnEightMiBCapSoRegionsFollowDemand) {
  counting_resource up;
  pool_resource r(&up);
  // 48 MiB in 64 KiB blocks: the upstream regions double from 64 KiB to 8 MiB, then stay
  // at 8 MiB, so the resource holds at most one region more than it needs.
  constexpr std::size_t block = std::size_t{64} << 10;
  constexpr std::size_t total = std::size_t{48} << 20;
  std::vector<void*> got;
  for (std::size_t n = 0; n < total; n += block) got.push_back(r.allocate(block, 8));
  std::vector<std::size_t> sizes;
  std::size_t held = 0;
  for (const auto& q : up.requests()) {
    sizes.push_back(q.bytes);
    held += q.bytes;
  }
  ASSERT_GE(sizes.size(), 9u);
  for (std::size_t i = 0; i < 8; ++i) EXPECT_EQ(sizes[i], block << i) << "region " << i;
  for (std::size_t i = 8; i < sizes.size(); ++i) EXPECT_EQ(sizes[i], std::size_t{8} << 20);
  EXPECT_EQ(resource_options{}.max_region_size, std::size_t{8} << 20);
  EXPECT_LE(held, total + (std::size_t{8} << 20));
  for (void* p : got) r.deallocate(p, block, 8);
  expect_valid(r);
}

TEST(PoolResource, RequestLargerThanTheNextRegionGetsARegionOfItsOwnSize) {
  counting_resource up;
  pool_resource r(resource_options{4096, 2.0, 1 << 20}, &up);
  void* big = r.allocate(100000, 16);
  ASSERT_EQ(up.allocations(), 1u);
  EXPECT_EQ(up.requests()[0].bytes, 102400u);  // 100000 rounded up to 4 KiB
  void* small = r.allocate(2000, 16);          // fits the big region's tail (2400 bytes)
  EXPECT_EQ(up.allocations(), 1u);
  void* next = r.allocate(4096, 16);  // the geometric sequence was not advanced
  ASSERT_EQ(up.allocations(), 2u);
  EXPECT_EQ(up.requests()[1].bytes, 4096u);
  r.deallocate(big, 100000, 16);
  r.deallocate(small, 2000, 16);
  r.deallocate(next, 4096, 16);
}

TEST(PoolResource, InvalidGrowthOptionsAreAContractViolationAndDefaultsAreUsed) {
  recording_violations rec;
  counting_resource up;
  pool_resource r(resource_options{8192, 0.5, 4096}, &up);
  EXPECT_EQ(g_violations, 1);
  EXPECT_EQ(r.options().first_region_size, resource_options{}.first_region_size);
  r.deallocate(r.allocate(8), 8);
}

// BAD_INPUTS row 29: null upstream is detected at construction.
TEST(PoolResource, Row29NullUpstreamIsAContractViolationAtConstruction) {
  recording_violations rec;
  pool_resource r(static_cast<std::pmr::memory_resource*>(nullptr));
  EXPECT_EQ(g_violations, 1);
  EXPECT_NE(g_last_violation.find("upstream"), std::string::npos);
  EXPECT_EQ(r.upstream_resource(), std::pmr::get_default_resource());  // if the handler returns
  std::byte buffer[64];
  pool_resource b(buffer, sizeof buffer, nullptr);
  EXPECT_EQ(g_violations, 2);
  pool_resource s(std::size_t{100}, nullptr);
  EXPECT_EQ(g_violations, 3);
}

// BAD_INPUTS row 28: (nullptr, size) is "no buffer, first upstream region of `size`".
TEST(PoolResource, Row28NullBufferWithSizeIsAFirstRegionSizeHint) {
  counting_resource up;
  pool_resource r(nullptr, 10000, &up);
  void* p = r.allocate(10);
  ASSERT_EQ(up.allocations(), 1u);
  EXPECT_EQ(up.requests()[0].bytes, 16384u);  // with a span of room, as initial_size
  r.deallocate(p, 10);
  r.release();  // still no buffer after release: only the region the cycle used is kept
  EXPECT_EQ(up.outstanding_bytes(), 16384u);
  EXPECT_EQ(r.kept_bytes(), 16384u);
  p = r.allocate(10);
  EXPECT_EQ(up.allocations(), 1u);
  EXPECT_EQ(r.kept_bytes(), 0u);
  r.deallocate(p, 10);
  resource_options o;
  o.first_region_size = 10000;
  o.retained_bytes = 0;
  pool_resource s(nullptr, 10000, o, &up);  // keeps nothing: upstream again after release
  p = s.allocate(10);
  s.deallocate(p, 10);
  s.release();
  EXPECT_EQ(up.outstanding_bytes(), 16384u);  // r's region only
  p = s.allocate(10);
  EXPECT_EQ(up.allocations(), 3u);
  EXPECT_EQ(up.requests()[2].bytes, 12288u);
  s.deallocate(p, 10);
}

// BAD_INPUTS row 29: a zero-sized buffer is no buffer.
TEST(PoolResource, Row29ZeroSizedBufferIsNoBuffer) {
  counting_resource up;
  std::byte buffer[64];
  pool_resource r(buffer, 0, &up);
  void* p = r.allocate(1, 1);
  EXPECT_FALSE(inside(p, 1, buffer, sizeof buffer));
  EXPECT_EQ(up.allocations(), 1u);
  r.deallocate(p, 1, 1);
}

// The pool's granule is 8 bytes: a buffer that holds no whole aligned granule is not used.
TEST(PoolResource, BufferWithoutAWholeGranuleIsNotUsed) {
  counting_resource up;
  alignas(16) std::byte buffer[16];
  pool_resource r(buffer + 1, 9, &up);  // [1, 10): no 8-aligned 8 bytes inside
  void* p = r.allocate(1, 1);
  EXPECT_FALSE(inside(p, 1, buffer, sizeof buffer));
  EXPECT_EQ(up.allocations(), 1u);
  r.deallocate(p, 1, 1);
  pool_resource s(buffer + 1, 15, &up);  // [1, 16) holds [8, 16)
  void* q = s.allocate(8, 8);
  EXPECT_EQ(q, static_cast<void*>(buffer + 8));
  s.deallocate(q, 8, 8);
}

// Drop-in fidelity item 7, as documented on the buffer constructors: only the bytes before
// the buffer's first 8-aligned address and after its last one are lost, never more.
TEST(PoolResource, BufferLosesOnlyTheBytesOutsideItsEightAlignedGranules) {
  alignas(64) static std::byte storage[256];
  for (std::size_t head = 0; head < 8; ++head) {
    for (std::size_t tail = 0; tail < 8; ++tail) {
      std::byte* buffer = storage + head;
      const std::size_t size = 128 - head - tail;  // [head, 128 - tail)
      const std::size_t usable = 128 - (head == 0 ? 0 : 8) - (tail == 0 ? 0 : 8);
      records_only_resource records;
      pool_resource r(buffer, size, &records);
      void* p = r.allocate(usable, 8);
      EXPECT_TRUE(inside(p, usable, buffer, size)) << head << " " << tail;
      EXPECT_THROW((void)r.allocate(1, 1), std::bad_alloc) << head << " " << tail;
      r.deallocate(p, usable, 8);
    }
  }
}

// BAD_INPUTS row 29: a misaligned buffer gives addresses aligned in absolute terms, and
// nothing outside the buffer.
TEST(PoolResource, Row29MisalignedBufferGivesAbsolutelyAlignedAddressesInsideIt) {
  counting_resource up;
  alignas(4096) static std::byte storage[4096 + 1200];
  for (const std::size_t skew : {std::size_t{1}, std::size_t{3}, std::size_t{4095}}) {
    std::byte* buffer = storage + skew;
    const std::size_t size = 1100;
    pool_resource r(buffer, size, &up);
    std::vector<std::pair<void*, std::size_t>> got;
    std::size_t from_buffer = 0;
    for (std::size_t align = 1; align <= 64; align *= 2) {
      for (int i = 0; i < 3; ++i) {
        void* p = r.allocate(24, align);
        EXPECT_EQ(address(p) % align, 0u) << "alignment " << align << " skew " << skew;
        if (inside(p, 24, buffer, size))
          ++from_buffer;
        else
          EXPECT_FALSE(inside(p, 1, storage, sizeof storage)) << "outside the buffer";
        got.emplace_back(p, align);
      }
    }
    EXPECT_GT(from_buffer, 10u);
    for (auto [p, align] : got) r.deallocate(p, 24, align);
    expect_valid(r);
  }
  EXPECT_EQ(up.outstanding_bytes(), 0u);
}

// ---- upstream exceptions -------------------------------------------------------------

TEST(PoolResource, Row32UpstreamExceptionPropagatesUnchangedAndTheResourceStaysUsable) {
  counting_resource up;
  pool_resource r(resource_options{4096, 2.0, 4096}, &up);
  void* first = r.allocate(4096, 16);  // fills the first region
  const auto before = r.stats();
  up.fail();
  EXPECT_THROW((void)r.allocate(16, 16), upstream_error);
  EXPECT_THROW((void)r.allocate(16, 8192), upstream_error);  // dedicated path too
  up.fail(false);
  EXPECT_THROW((void)r.allocate(16, 16), std::bad_alloc);
  const auto after = r.stats();
  EXPECT_EQ(after.regions, before.regions);
  EXPECT_EQ(after.used_bytes, before.used_bytes);
  EXPECT_EQ(after.free_bytes, before.free_bytes);
  EXPECT_EQ(after.pending_bytes, 0u);
  expect_valid(r);
  up.allow();
  void* second = r.allocate(16, 16);
  EXPECT_NE(second, nullptr);
  r.deallocate(first, 4096, 16);
  r.deallocate(second, 16, 16);
  void* again = r.allocate(4096, 16);  // the freed memory is there
  EXPECT_EQ(up.allocations(), 2u);
  r.deallocate(again, 4096, 16);
  expect_valid(r);
}

TEST(PoolResource, ExhaustedUpstreamGivesBadAlloc) {
  std::byte buffer[256];
  records_only_resource records;
  pool_resource r(buffer, sizeof buffer, &records);
  void* p = r.allocate(200);
  EXPECT_THROW((void)r.allocate(200), std::bad_alloc);
  r.deallocate(p, 200);
  EXPECT_NO_THROW(r.deallocate(r.allocate(200), 200));  // reusable at once
}

TEST(PoolResource, Row04HugeRequestGivesBadAllocNotATruncatedRange) {
  counting_resource up;
  pool_resource r(&up);
  EXPECT_THROW((void)r.allocate(std::numeric_limits<std::size_t>::max() - 10, 16), std::bad_alloc);
  EXPECT_EQ(up.outstanding_bytes(), 0u);
}

// Drop-in fidelity item 5 (BAD_INPUTS row 5): libstdc++'s aligned operator new rounds the
// size up to the alignment and wraps; such a size must never reach the upstream.
TEST(PoolResource, Row05SizeThatOverflowsWhenAlignedIsBadAllocWithoutAskingUpstream) {
  counting_resource up;
  pool_resource r(&up);
  constexpr std::size_t max = std::numeric_limits<std::size_t>::max();
  EXPECT_THROW((void)r.allocate(max - 100, 8192), std::bad_alloc);
  EXPECT_THROW((void)r.allocate(max - 8190, 8192), std::bad_alloc);
  EXPECT_THROW((void)r.allocate(max, 16), std::bad_alloc);
  EXPECT_THROW((void)r.allocate(max - 4000, 64), std::bad_alloc);  // its region size overflows
  EXPECT_EQ(up.allocations(), 0u);
  EXPECT_EQ(r.stats().live_slices, 0u);
  void* p = r.allocate(100, 8192);  // still usable
  EXPECT_EQ(address(p) % 8192, 0u);
  r.deallocate(p, 100, 8192);
  EXPECT_EQ(up.outstanding_bytes(), 0u);
}

// ---- alignment, size zero, identity --------------------------------------------------

TEST(PoolResource, EveryPointerIsAlignedForAlignmentsUpTo64KiB) {
  counting_resource up;
  pool_resource r(&up);
  std::vector<std::pair<void*, std::pair<std::size_t, std::size_t>>> got;
  for (std::size_t align = 1; align <= 65536; align *= 2) {
    for (const std::size_t bytes : {std::size_t{1}, std::size_t{7}, align, 3 * align + 5}) {
      void* p = r.allocate(bytes, align);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(address(p) % align, 0u) << "bytes " << bytes << " alignment " << align;
      std::memset(p, 0xAB, bytes);  // the memory is usable (ASan checks the bounds)
      got.push_back({p, {bytes, align}});
    }
  }
  for (auto& [p, shape] : got) r.deallocate(p, shape.first, shape.second);
  expect_valid(r);
  EXPECT_EQ(r.stats().live_slices, 0u);
  r.release();
  EXPECT_EQ(up.outstanding_bytes(), r.kept_bytes());  // dedicated blocks went back
  EXPECT_EQ(up.mismatches(), 0u);
}

TEST(PoolResource, AlignmentAboveRegionAlignmentUsesADedicatedUpstreamAllocation) {
  counting_resource up;
  pool_resource r(&up);
  void* p = r.allocate(100, 8192);
  ASSERT_EQ(up.allocations(), 1u);
  EXPECT_EQ(up.requests()[0].bytes, 100u);
  EXPECT_EQ(up.requests()[0].alignment, 8192u);
  EXPECT_EQ(address(p) % 8192, 0u);
  r.deallocate(p, 100, 8192);
  EXPECT_EQ(up.outstanding_bytes(), 0u);  // given back at once
  EXPECT_EQ(up.mismatches(), 0u);
}

TEST(PoolResource, Row01AllocateZeroReturnsUniqueNonNullPointers) {
  pool_resource r;
  std::set<void*> seen;
  std::vector<std::pair<void*, std::size_t>> got;
  for (const std::size_t align : {std::size_t{1}, std::size_t{16}, std::size_t{8192}}) {
    for (int i = 0; i < 50; ++i) {
      void* p = r.allocate(0, align);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(address(p) % align, 0u);
      EXPECT_TRUE(seen.insert(p).second) << "pointer handed out twice";
      got.emplace_back(p, align);
    }
  }
  for (auto [p, align] : got) r.deallocate(p, 0, align);
  EXPECT_EQ(r.stats().live_slices, 0u);
}

// BAD_INPUTS row 2: the standard's precondition; bad_alloc if the handler returns.
TEST(PoolResource, Row02NonPowerOfTwoAlignmentIsAViolationThenBadAlloc) {
  recording_violations rec;
  pool_resource r;
  int expected = 0;
  for (std::size_t align : std::vector<std::size_t>{3, 24, 0, 4097}) {  // runtime values
    EXPECT_THROW((void)r.allocate(8, align), std::bad_alloc) << align;
    EXPECT_EQ(g_violations, ++expected);
  }
  EXPECT_EQ(r.stats().live_slices, 0u);
}

TEST(PoolResource, IsEqualIsIdentity) {
  pool_resource a;
  pool_resource b;
  std::pmr::monotonic_buffer_resource m;
  EXPECT_TRUE(a.is_equal(a));
  EXPECT_TRUE(a == a);
  EXPECT_FALSE(a.is_equal(b));
  EXPECT_FALSE(b.is_equal(a));
  EXPECT_FALSE(a.is_equal(m));
  EXPECT_FALSE(a.is_equal(*std::pmr::new_delete_resource()));
}

// ---- release and destruction ---------------------------------------------------------

TEST(PoolResource, ReleaseWithNoRetentionReturnsAllUpstreamMemoryAndTheResourceIsUsableAgain) {
  counting_resource up;
  resource_options o{4096, 2.0, 1 << 20};
  o.retained_bytes = 0;  // as the standard resources do
  pool_resource r(o, &up);
  for (int i = 0; i < 20; ++i) (void)r.allocate(3000, 64);  // live allocations: allowed
  (void)r.allocate(10, 65536);
  EXPECT_GT(up.allocations(), 5u);
  r.release();
  EXPECT_EQ(up.outstanding_bytes(), 0u);  // its records (the list of regions) stay
  EXPECT_EQ(up.mismatches(), 0u);
  EXPECT_EQ(r.stats().regions, 0u);
  const std::size_t before = up.allocations();
  void* p = r.allocate(100, 16);
  ASSERT_EQ(up.allocations(), before + 1);
  EXPECT_EQ(up.requests().back().bytes, 4096u);  // growth starts again (LWG 3120)
  r.deallocate(p, 100, 16);
  expect_valid(r);
}

TEST(PoolResource, ReleaseKeepsTheLargestRegionsUpToRetainedBytesForTheNextCycle) {
  counting_resource up;
  resource_options o{4096, 2.0, 1 << 20};
  o.retained_bytes = 12288;  // holds the 8 KiB and 4 KiB regions, not the 16 KiB one
  pool_resource r(o, &up);
  for (int i = 0; i < 7; ++i) (void)r.allocate(3000, 8);  // regions of 4, 8 and 16 KiB
  ASSERT_EQ(up.allocations(), 3u);
  r.release();
  EXPECT_EQ(up.outstanding_bytes(), 12288u);  // 16 KiB went back: larger than what is left
  EXPECT_EQ(up.mismatches(), 0u);
  EXPECT_EQ(r.kept_bytes(), 12288u);
  EXPECT_EQ(r.stats().regions, 0u);                       // they join the pool when it needs them
  for (int i = 0; i < 3; ++i) (void)r.allocate(3000, 8);  // refilled from kept regions
  EXPECT_EQ(up.allocations(), 3u);
  EXPECT_EQ(r.kept_bytes(), 0u);
  EXPECT_EQ(r.stats().regions, 2u);
  expect_valid(r);
  o.retained_bytes = ~std::size_t{0};  // everything (the default)
  pool_resource all(o, &up);
  for (int i = 0; i < 7; ++i) (void)all.allocate(3000, 8);
  all.release();
  EXPECT_EQ(all.kept_bytes(), 4096u + 8192u + 16384u);
}  // destruction gives everything back

// Drop-in fidelity item 2: the defaults serve an arena loop. One request of an arena loop:
// `n` strings in a vector, then the containers go.
void serve(pool_resource& r, int n) {
  std::pmr::vector<std::pmr::string> v(&r);
  for (int i = 0; i < n; ++i) v.emplace_back(40 + i % 100, 'x');
}

TEST(PoolResource, DefaultReleaseKeepsWhatTheCycleUsedSoTheNextCycleTakesNothingFromUpstream) {
  counting_resource up;
  pool_resource r(&up);  // default options
  serve(r, 20000);
  const std::size_t taken = up.allocations();
  const std::size_t held = up.outstanding_bytes();
  EXPECT_GT(taken, 3u);
  r.release();
  EXPECT_EQ(up.outstanding_bytes(), held);  // nothing went back
  EXPECT_EQ(r.kept_bytes(), held);
  serve(r, 20000);  // the same cycle again: no page of it is new
  EXPECT_EQ(up.allocations(), taken);
  EXPECT_EQ(r.kept_bytes(), 0u);
  r.release();
  EXPECT_EQ(up.mismatches(), 0u);
  expect_valid(r);
}

// An arena cycle: objects of many sizes (slab slots, engine ranges, dedicated blocks), none
// deallocated before release().
void fill_arena(pool_resource& r, int n) {
  for (int i = 0; i < n; ++i) (void)r.allocate(16 + static_cast<std::size_t>(i) % 241, 8);
  for (int i = 0; i < n / 100; ++i) (void)r.allocate(5000 + 100 * static_cast<std::size_t>(i), 64);
  (void)r.allocate(100, 8192);
}

TEST(PoolResource, ReleaseKeepsThePoolsRecordsSoTheSameCycleAgainTakesNoRecordFromUpstream) {
  for (const bool thread_safe : {false, true}) {  // true: the records of a thread cache too
    counting_resource up;
    resource_options o;
    o.thread_safe = thread_safe;
    pool_resource r(o, &up);
    fill_arena(r, 30000);
    const std::size_t regions = r.stats().regions;
    const std::size_t first_cycle = up.record_allocations();
    r.release();
    const std::size_t records = up.record_allocations();
    const std::size_t held = up.records_outstanding_bytes();
    fill_arena(r, 30000);
    // A few per region (its record, its tables by offset of spans and of the caches owning
    // them), none per span, slot or range.
    const std::size_t taken = up.record_allocations() - records;
    EXPECT_LE(taken, 6 * regions) << thread_safe;
    EXPECT_LT(6 * regions, first_cycle / 2);
    expect_valid(r);
    r.release();
    EXPECT_EQ(up.records_outstanding_bytes(), held) << thread_safe;
    EXPECT_EQ(up.mismatches(), 0u);
  }
}

// Kept regions join the next cycle in the order the last one took them, equal sizes
// included, so a cycle like the last hands out the same addresses and touches no page the
// last one left untouched (the tail of its last region).
TEST(PoolResource, TheSameCycleAgainGetsTheSameAddresses) {
  counting_resource up;
  pool_resource r(resource_options{4096, 2.0, 16384}, &up);  // many regions of 16 KiB
  const auto cycle = [&] {
    std::vector<void*> v;
    for (std::size_t i = 0; i < 20000; ++i) v.push_back(r.allocate(16 + i % 241, 8));
    return v;
  };
  const std::vector<void*> first = cycle();
  ASSERT_GT(r.stats().regions, 100u);
  r.release();
  const std::size_t taken = up.allocations();
  EXPECT_EQ(cycle(), first);
  EXPECT_EQ(up.allocations(), taken);
  r.release();
  EXPECT_EQ(up.mismatches(), 0u);
}

TEST(PoolResource, WithoutRetentionReleaseGivesThePoolsRecordsBackToo) {
  counting_resource up;
  resource_options o;
  o.retained_bytes = 0;
  pool_resource r(o, &up);
  fill_arena(r, 30000);
  const std::size_t during = up.records_outstanding_bytes();
  r.release();
  EXPECT_LT(up.records_outstanding_bytes(), during / 8);
  const std::size_t records = up.record_allocations();
  fill_arena(r, 30000);
  EXPECT_GT(up.record_allocations(), records);  // taken again
  expect_valid(r);
}

TEST(PoolResource, DefaultReleaseGivesBackTheKeptRegionsNineCyclesInARowDidNotNeed) {
  counting_resource up;
  pool_resource r(&up);
  constexpr std::size_t first = resource_options{}.first_region_size;
  ASSERT_EQ(r.options().idle_cycles, 8u);
  serve(r, 20000);  // a large cycle: several regions
  r.release();
  const std::size_t large = up.outstanding_bytes();
  ASSERT_GT(large, first);
  for (unsigned cycle = 0; cycle < 8; ++cycle) {  // small ones: the smallest region is enough
    serve(r, 10);
    EXPECT_EQ(r.kept_bytes(), large - first);
    r.release();
    EXPECT_EQ(up.outstanding_bytes(), large) << cycle;  // still kept: idle for 8 or fewer
  }
  serve(r, 10);
  r.release();  // the ninth small cycle in a row: the excess goes back
  EXPECT_EQ(up.outstanding_bytes(), first);
  EXPECT_EQ(r.kept_bytes(), first);
  serve(r, 20000);  // large again: the kept region, then growth from upstream
  EXPECT_GT(up.outstanding_bytes(), first);
  EXPECT_EQ(up.mismatches(), 0u);
  expect_valid(r);
}

TEST(PoolResource, IdleCyclesZeroKeepsOnlyWhatTheEndingCycleUsed) {
  counting_resource up;
  resource_options o;
  o.idle_cycles = 0;
  pool_resource r(o, &up);
  serve(r, 20000);
  r.release();
  serve(r, 10);  // needs only the first region
  r.release();
  EXPECT_EQ(up.outstanding_bytes(), o.first_region_size);
  EXPECT_EQ(up.mismatches(), 0u);
}

TEST(PoolResource, ArenaLoopOfVaryingRequestsTakesFromUpstreamOnlyAtItsLargestRequest) {
  counting_resource up;
  pool_resource r(&up);
  std::mt19937 rng(11);
  serve(r, 16000);  // the largest request comes first
  r.release();
  const std::size_t taken = up.allocations();
  for (int cycle = 0; cycle < 60; ++cycle) {
    const int n = cycle % 4 == 3 ? 16000 : static_cast<int>(1000 + rng() % 15000);
    serve(r, n);
    EXPECT_EQ(up.allocations(), taken) << "cycle " << cycle;
    r.release();
  }
  EXPECT_EQ(up.mismatches(), 0u);
}

TEST(PoolResource, KeptRegionsRejoinInGrowthOrderThenGrowthContinuesGeometrically) {
  counting_resource up;
  pool_resource r(resource_options{4096, 2.0, 1 << 20}, &up);
  for (int i = 0; i < 7; ++i) (void)r.allocate(3000, 8);  // regions of 4, 8 and 16 KiB
  ASSERT_EQ(up.allocations(), 3u);
  r.release();
  EXPECT_EQ(r.kept_bytes(), 28672u);
  for (int i = 0; i < 8; ++i) (void)r.allocate(3000, 8);  // the same three hold 1 + 2 + 5
  EXPECT_EQ(up.allocations(), 3u);
  EXPECT_EQ(r.kept_bytes(), 0u);
  (void)r.allocate(3000, 8);  // full: the next region doubles the largest one
  ASSERT_EQ(up.allocations(), 4u);
  EXPECT_EQ(up.requests()[3].bytes, 32768u);
  void* big = r.allocate(100000, 8);  // larger than any: a region of its own size
  ASSERT_EQ(up.allocations(), 5u);
  EXPECT_EQ(up.requests()[4].bytes, 102400u);
  r.deallocate(big, 100000, 8);
  expect_valid(r);
}

TEST(PoolResource, DestructionGivesRetainedRegionsBack) {
  counting_resource up;
  {
    resource_options o;
    o.retained_bytes = ~std::size_t{0};
    pool_resource r(o, &up);
    (void)r.allocate(100, 8);
    r.release();
    EXPECT_GT(up.outstanding_bytes(), 0u);
  }
  EXPECT_EQ(up.outstanding_bytes(), 0u);
  EXPECT_EQ(up.mismatches(), 0u);
}

TEST(PoolResource, Row33ReleaseKeepsTheUserBufferAndResetsGrowth) {
  counting_resource up;
  std::byte buffer[2000];
  pool_resource r(buffer + 1, 1500, &up);
  for (int i = 0; i < 10; ++i) (void)r.allocate(500, 8);
  EXPECT_GT(up.allocations(), 0u);
  r.release();
  EXPECT_EQ(up.outstanding_bytes(), r.kept_bytes());
  const std::size_t before = up.allocations();
  void* p = r.allocate(500, 8);  // the buffer first, before the kept regions
  EXPECT_TRUE(inside(p, 500, buffer + 1, 1500));
  EXPECT_EQ(up.allocations(), before);
  r.deallocate(p, 500, 8);
  expect_valid(r);
}

TEST(PoolResource, DestructorReturnsAllUpstreamMemory) {
  counting_resource up;
  {
    pool_resource r(resource_options{4096, 2.0, 65536}, &up);
    for (int i = 0; i < 30; ++i) (void)r.allocate(2000, 32);
    (void)r.allocate(1, 16384);
  }
  EXPECT_GT(up.allocations(), 3u);
  EXPECT_EQ(up.outstanding_bytes(), 0u);
  EXPECT_EQ(up.mismatches(), 0u);
}

// ---- reuse ---------------------------------------------------------------------------

TEST(PoolResource, DeallocatedMemoryIsReusedAtOnce) {
  counting_resource up;
  pool_resource r(&up);
  void* p = r.allocate(1000, 16);
  r.deallocate(p, 1000, 16);
  void* q = r.allocate(1000, 16);
  EXPECT_EQ(q, p);
  r.deallocate(q, 1000, 16);
  EXPECT_EQ(up.allocations(), 1u);
}

TEST(PoolResource, UpstreamBytesStayBoundedUnderChurnUnlikeMonotonic) {
  counting_resource pool_up;
  counting_resource mono_up(false);
  pool_resource r(&pool_up);
  std::pmr::monotonic_buffer_resource m(&mono_up);
  std::mt19937 rng(42);
  std::uniform_int_distribution<std::size_t> size_of(1, 4096);
  std::vector<std::pair<void*, std::size_t>> live_r;
  std::vector<std::pair<void*, std::size_t>> live_m;
  for (int step = 0; step < 20000; ++step) {
    if (live_r.size() < 64) {
      const std::size_t n = size_of(rng);
      live_r.emplace_back(r.allocate(n, 16), n);
      live_m.emplace_back(m.allocate(n, 16), n);
    } else {
      const std::size_t i = std::uniform_int_distribution<std::size_t>(0, 63)(rng);
      r.deallocate(live_r[i].first, live_r[i].second, 16);
      m.deallocate(live_m[i].first, live_m[i].second, 16);
      live_r.erase(live_r.begin() + static_cast<std::ptrdiff_t>(i));
      live_m.erase(live_m.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  // At most 64 x 4 KiB live: a few regions suffice; monotonic keeps everything (~40 MB).
  EXPECT_LE(pool_up.peak_bytes(), std::size_t{1} << 20);
  EXPECT_GT(mono_up.peak_bytes(), std::size_t{16} << 20);
  for (auto [p, n] : live_r) r.deallocate(p, n, 16);
  expect_valid(r);
  EXPECT_EQ(r.stats().live_slices, 0u);
}

// ---- standard containers -------------------------------------------------------------

TEST(PoolResource, StandardContainersWorkOverTheResource) {
  counting_resource up;
  pool_resource r(&up);
  {
    std::pmr::vector<int> v(&r);
    for (int i = 0; i < 10000; ++i) v.push_back(i);
    std::pmr::map<int, std::pmr::string> m(&r);
    std::pmr::unordered_map<int, int> u(&r);
    std::pmr::list<double> l(&r);
    std::pmr::string s(&r);
    std::pmr::deque<int> d(&r);
    std::pmr::forward_list<int> f(&r);
    std::pmr::set<int> st(&r);
    std::pmr::unordered_set<int> us(&r);
    for (int i = 0; i < 1000; ++i) {
      m.emplace(i, std::pmr::string(static_cast<std::size_t>(i % 50) + 20, 'x'));
      u[i] = 2 * i;
      l.push_back(i * 0.5);
      s += "abc";
      (i % 2 == 0 ? d.push_back(i) : d.push_front(i));
      f.push_front(i);
      st.insert(999 - i);
      us.insert(3 * i);
    }
    EXPECT_EQ(d.front(), 999);
    EXPECT_EQ(d.back(), 998);
    EXPECT_EQ(f.front(), 999);
    EXPECT_EQ(*st.begin(), 0);
    EXPECT_EQ(st.size(), 1000u);
    EXPECT_EQ(us.count(2997), 1u);
    f.remove_if([](int x) { return x % 3 != 0; });
    EXPECT_EQ(std::distance(f.begin(), f.end()), 334);
    std::pmr::vector<std::pmr::string> nested(&r);
    for (int i = 0; i < 500; ++i) nested.emplace_back(static_cast<std::size_t>(40 + i % 7), 'y');
    EXPECT_EQ(nested.back().get_allocator().resource(), &r);  // uses-allocator construction
    EXPECT_EQ(m.at(7).get_allocator().resource(), &r);
    EXPECT_EQ(v[9999], 9999);
    EXPECT_EQ(m.at(42), std::pmr::string(62, 'x'));
    EXPECT_EQ(u.at(999), 1998);
    EXPECT_EQ(l.back(), 499.5);
    EXPECT_EQ(s.size(), 3000u);
    EXPECT_EQ(nested[3], std::pmr::string(43, 'y'));
    EXPECT_GT(r.stats().live_slices, 1000u);
    nested.erase(nested.begin(), nested.begin() + 250);
    EXPECT_EQ(nested[0], std::pmr::string(40 + 250 % 7, 'y'));
  }
  EXPECT_EQ(r.stats().live_slices, 0u);  // everything came back
  expect_valid(r);
}

// Scoped allocation: every level of a nested container draws from the same resource, and
// copies made inside the outer container take the outer container's resource.
TEST(PoolResource, NestedContainersUseTheResourceAtEveryLevel) {
  pool_resource r;
  pool_resource other;
  {
    using inner = std::pmr::vector<std::pmr::string>;
    std::pmr::map<std::pmr::string, inner> outer(&r);
    for (int i = 0; i < 200; ++i) {
      std::pmr::string key(30 + static_cast<std::size_t>(i % 5), 'k');
      key += std::to_string(i);
      auto& v = outer[key];
      for (int j = 0; j < 10; ++j) v.emplace_back(std::size_t{40}, static_cast<char>('a' + j));
    }
    for (const auto& [key, v] : outer) {
      EXPECT_EQ(key.get_allocator().resource(), &r);
      EXPECT_EQ(v.get_allocator().resource(), &r);
      for (const auto& str : v) EXPECT_EQ(str.get_allocator().resource(), &r);
    }
    inner foreign(&other);
    foreign.emplace_back(std::size_t{50}, 'z');
    auto& copy = outer.begin()->second;
    copy = foreign;  // assignment keeps the destination's allocator
    EXPECT_EQ(copy.get_allocator().resource(), &r);
    EXPECT_EQ(copy[0].get_allocator().resource(), &r);
    EXPECT_EQ(copy[0], std::pmr::string(50, 'z'));
    EXPECT_GT(r.stats().live_slices, 2000u);
  }
  EXPECT_EQ(r.stats().live_slices, 0u);
  expect_valid(r);
}

TEST(PoolResource, PolymorphicAllocatorAllocatesConstructsAndDestroysThroughTheResource) {
  counting_resource up;
  pool_resource r(&up);
  std::pmr::polymorphic_allocator<> alloc(&r);
  EXPECT_EQ(alloc.resource(), &r);
  auto* s = alloc.new_object<std::pmr::string>(std::size_t{100}, 'q');  // uses-allocator
  EXPECT_EQ(s->get_allocator().resource(), &r);
  EXPECT_EQ(r.stats().live_slices, 2u);  // the string object and its characters
  alloc.delete_object(s);
  void* raw = alloc.allocate_bytes(1000, 256);
  EXPECT_EQ(address(raw) % 256, 0u);
  alloc.deallocate_bytes(raw, 1000, 256);
  std::pmr::polymorphic_allocator<double> typed(&r);
  double* d = typed.allocate(10);
  EXPECT_EQ(address(d) % alignof(double), 0u);
  typed.deallocate(d, 10);
  EXPECT_EQ(r.stats().live_slices, 0u);
  EXPECT_EQ(up.allocations(), 1u);  // everything fit in the first region
  expect_valid(r);
}

// ---- options -------------------------------------------------------------------------

TEST(PoolResource, UnsynchronizedOptionServesOneThreadWithTheSameBehaviour) {
  counting_resource up;
  resource_options o{4096, 2.0, 1 << 16};
  o.thread_safe = false;
  pool_resource r(o, &up);
  EXPECT_FALSE(r.options().thread_safe);
  EXPECT_TRUE(pool_resource().options().thread_safe);  // the default locks
  std::mt19937 rng(7);
  std::vector<std::pair<void*, std::size_t>> live;
  for (int i = 0; i < 20000; ++i) {
    if (live.size() < 200 && rng() % 2 == 0) {
      const std::size_t n = 1 + rng() % 3000;
      live.emplace_back(r.allocate(n, 16), n);
    } else if (!live.empty()) {
      const std::size_t k = rng() % live.size();
      r.deallocate(live[k].first, live[k].second, 16);
      live[k] = live.back();
      live.pop_back();
    }
  }
  for (const auto& [p, n] : live) r.deallocate(p, n, 16);
  EXPECT_EQ(r.stats().live_slices, 0u);
  expect_valid(r);
  EXPECT_LE(up.peak_bytes(), std::size_t{2} << 20);  // reuse keeps upstream bounded
  r.release();
  EXPECT_EQ(up.outstanding_bytes(), r.kept_bytes());
}

// ---- misuse --------------------------------------------------------------------------

// BAD_INPUTS row 30: foreign, interior and double deallocation are reported, never corrupt.
TEST(PoolResource, Row30DeallocatingAForeignOrInteriorPointerIsAViolationThatChangesNothing) {
  recording_violations rec;
  pool_resource r;
  pool_resource other;
  void* mine = r.allocate(64, 16);
  const auto before = r.stats();
  int on_stack = 0;
  r.deallocate(&on_stack, sizeof on_stack, alignof(int));
  EXPECT_EQ(g_violations, 1);
  void* theirs = other.allocate(64, 16);
  r.deallocate(theirs, 64, 16);
  EXPECT_EQ(g_violations, 2);
  r.deallocate(static_cast<std::byte*>(mine) + 16, 48, 16);  // interior
  EXPECT_EQ(g_violations, 3);
  r.deallocate(theirs, 64, 8192);  // not a dedicated allocation of this resource
  EXPECT_EQ(g_violations, 4);
  const auto after = r.stats();
  EXPECT_EQ(after.live_slices, before.live_slices);
  EXPECT_EQ(after.used_bytes, before.used_bytes);
  r.deallocate(mine, 64, 16);
  EXPECT_EQ(g_violations, 4);
  r.deallocate(mine, 64, 16);  // twice
  EXPECT_EQ(g_violations, 5);
  other.deallocate(theirs, 64, 16);
  EXPECT_EQ(g_violations, 5);
  expect_valid(r);
}

// Drop-in fidelity item 6: with monotonic_buffer_resource, whose deallocate does nothing, a
// container may outlive release(); here that deallocation is a violation, reported in the
// words of the function the user called and naming release().
TEST(PoolResource, DeallocatingAfterReleaseIsReportedAsPoolResourceDeallocateNamingRelease) {
  recording_violations rec;
  pool_resource r;
  {
    std::pmr::vector<int> outlives(&r);
    outlives.assign(1000, 7);
    r.release();
  }  // the vector gives its (released) block back
  ASSERT_EQ(g_violations, 1);
  EXPECT_TRUE(g_last_violation.starts_with("pool_resource::deallocate:")) << g_last_violation;
  EXPECT_NE(g_last_violation.find("release()"), std::string::npos) << g_last_violation;
  EXPECT_EQ(g_last_violation.find("release_raw"), std::string::npos) << g_last_violation;

  void* p = r.allocate(64, 16);
  r.deallocate(p, 64, 16);
  r.deallocate(p, 64, 16);  // twice
  EXPECT_EQ(g_violations, 2);
  EXPECT_TRUE(g_last_violation.starts_with("pool_resource::deallocate: no live allocation"))
      << g_last_violation;
  p = r.allocate(64, 16);
  r.deallocate(p, 32, 16);
  EXPECT_TRUE(g_last_violation.starts_with("pool_resource::deallocate: the size differs"))
      << g_last_violation;
  r.deallocate(p, 64, 16);
  EXPECT_EQ(g_violations, 3);
  expect_valid(r);
}

// BAD_INPUTS row 31: a deallocation that names another size or alignment than the
// allocation is reported (in every build) and the memory stays allocated.
TEST(PoolResource, Row31DeallocatingWithAnotherSizeOrAlignmentIsAViolationThatChangesNothing) {
  recording_violations rec;
  counting_resource up;
  pool_resource r(&up);
  void* p = r.allocate(100, 16);
  void* big = r.allocate(100, 8192);  // a dedicated upstream allocation
  const auto before = r.stats();
  r.deallocate(p, 96, 16);
  EXPECT_EQ(g_violations, 1);
  EXPECT_NE(g_last_violation.find("size differs"), std::string::npos);
  r.deallocate(p, 100, 8);
  EXPECT_EQ(g_violations, 2);
  EXPECT_NE(g_last_violation.find("alignment differs"), std::string::npos);
  r.deallocate(big, 64, 8192);
  EXPECT_EQ(g_violations, 3);
  r.deallocate(big, 100, 16384);
  EXPECT_EQ(g_violations, 4);
  EXPECT_EQ(r.stats().live_slices, before.live_slices);
  EXPECT_EQ(r.stats().used_bytes, before.used_bytes);
  EXPECT_EQ(up.mismatches(), 0u);  // nothing wrong reached upstream
  r.deallocate(p, 100, 16);
  r.deallocate(big, 100, 8192);
  EXPECT_EQ(g_violations, 4);
  EXPECT_EQ(r.stats().live_slices, 0u);
  expect_valid(r);
}

// ---- over a pool the user owns -------------------------------------------------------

using user_pool = bufpool_test::arena;

TEST(PoolResource, OverAUserPoolAllocatesInsideItAndNeverGrowsIt) {
  user_pool u(1 << 16);
  pool_resource r(u.pool);
  EXPECT_EQ(r.upstream_resource(), std::pmr::null_memory_resource());
  EXPECT_TRUE(r.options().thread_safe);  // as the pool is
  std::pmr::vector<int> v(&r);
  for (int i = 0; i < 1000; ++i) v.push_back(i);
  EXPECT_TRUE(inside(v.data(), v.size() * sizeof(int), u.memory, u.size));
  EXPECT_EQ(u.pool.stats().live_slices, 1u);
  EXPECT_EQ(u.pool.stats().regions, 1u);
  EXPECT_THROW(v.reserve(1 << 20), std::bad_alloc);  // full: no growth, no upstream
  EXPECT_EQ(v.size(), 1000u);
  EXPECT_EQ(u.pool.stats().regions, 1u);
  void* a = r.allocate(10, 1024);
  EXPECT_EQ(address(a) % 1024, 0u);
  r.deallocate(a, 10, 1024);
  v = std::pmr::vector<int>(&r);
  EXPECT_EQ(u.pool.stats().live_slices, 0u);
  expect_valid(r);
}

TEST(PoolResource, OverAUserPoolOptimalAndGoodFitPackToTheGranuleAndGreedyRoundsToItsClass) {
  user_pool u(1 << 16);
  pool_resource fast(u.pool);  // greedy: 1000 bytes take their size class, 1024
  void* a = fast.allocate(1000, 8);
  EXPECT_EQ(u.pool.stats().used_bytes, 1024u);
  pool_resource tight(u.pool, bufpool::optimal);  // exact best fit: 1008 (the granule)
  void* b = tight.allocate(1000, 8);
  EXPECT_EQ(u.pool.stats().used_bytes, 1024u + 1008u);
  pool_resource good(u.pool, bufpool::good_fit);  // O(1) bins, no size class: 1008 too
  void* c = good.allocate(1000, 8);
  EXPECT_EQ(u.pool.stats().used_bytes, 1024u + 2 * 1008u);
  good.deallocate(c, 1000, 8);
  tight.deallocate(b, 1000, 8);
  fast.deallocate(a, 1000, 8);
  EXPECT_EQ(u.pool.stats().used_bytes, 0u);
  expect_valid(fast);
}

TEST(PoolResource, OverAUserPoolAFixedStrategyIsAViolationAndGreedyIsUsed) {
  recording_violations rec;
  user_pool u(1 << 16);
  pool_resource r(u.pool, bufpool::fixed(0));
  EXPECT_EQ(g_violations, 1);
  EXPECT_NE(g_last_violation.find("greedy, good_fit or optimal"), std::string::npos);
  void* a = r.allocate(64, 8);
  void* b = r.allocate(64, 8);  // fixed(0) would have failed: greedy was used
  r.deallocate(a, 64, 8);
  r.deallocate(b, 64, 8);
  EXPECT_EQ(u.pool.stats().live_slices, 0u);
}

TEST(PoolResource, OverAUserPoolReleaseGivesBackOnlyWhatTheResourceAllocated) {
  user_pool u(1 << 16);
  auto theirs = u.pool.acquire(512);  // the owner's own slice
  ASSERT_TRUE(theirs.has_value());
  {
    pool_resource r(u.pool);
    for (int i = 0; i < 20; ++i) (void)r.allocate(100, 8);
    EXPECT_EQ(u.pool.stats().live_slices, 21u);
    r.release();
    EXPECT_EQ(u.pool.stats().live_slices, 1u);
    (void)r.allocate(100, 8);
    EXPECT_EQ(u.pool.stats().live_slices, 2u);
  }  // destruction releases too
  EXPECT_EQ(u.pool.stats().live_slices, 1u);
  EXPECT_EQ(theirs->size(), 512u);
}

TEST(PoolResource, Row30Row31OverAUserPoolForeignOrWronglySizedDeallocationIsAViolation) {
  recording_violations rec;
  user_pool u(1 << 16);
  pool_resource a(u.pool);
  pool_resource b(u.pool);
  void* from_b = b.allocate(64, 8);
  a.deallocate(from_b, 64, 8);  // same pool, another resource
  EXPECT_EQ(g_violations, 1);
  void* mine = a.allocate(64, 8);
  a.deallocate(mine, 32, 8);
  EXPECT_EQ(g_violations, 2);
  EXPECT_NE(g_last_violation.find("size differs"), std::string::npos);
  EXPECT_EQ(u.pool.stats().live_slices, 2u);
  a.deallocate(mine, 64, 8);
  b.deallocate(from_b, 64, 8);
  EXPECT_EQ(g_violations, 2);
  EXPECT_EQ(u.pool.stats().live_slices, 0u);
}

TEST(PoolResource, OverAUserPoolWithALessAlignedRegionBaseIsAViolationThenBadAlloc) {
  recording_violations rec;
  alignas(64) static std::byte memory[4096 + 8];
  bufpool::local_buffer_pool<> pool;
  auto grow = pool.begin_expand(4096);
  ASSERT_TRUE(grow.has_value());
  ASSERT_TRUE(std::move(*grow).initialize(memory + 8).has_value());  // base only 8-aligned
  pool_resource r(pool);
  EXPECT_FALSE(r.options().thread_safe);  // a local pool does not lock
  void* p = r.allocate(64, 8);
  EXPECT_EQ(g_violations, 0);
  EXPECT_THROW((void)r.allocate(64, 64), std::bad_alloc);
  EXPECT_EQ(g_violations, 1);
  EXPECT_NE(g_last_violation.find("less aligned"), std::string::npos);
  EXPECT_EQ(pool.stats().live_slices, 1u);  // the refused range went back
  r.deallocate(p, 64, 8);
}

TEST(PoolResource, OverAUserPoolWithSixteenBitOffsetsRefusesWhatItCannotAddress) {
  alignas(4096) static std::byte memory[1 << 15];
  bufpool::local_buffer_pool<std::uint16_t> pool;
  auto grow = pool.begin_expand(sizeof memory);
  ASSERT_TRUE(grow.has_value());
  ASSERT_TRUE(std::move(*grow).initialize(memory).has_value());
  pool_resource r(pool);
  EXPECT_THROW((void)r.allocate(std::size_t{1} << 20, 8), std::bad_alloc);  // never truncated
  void* p = r.allocate(1000, 16);
  EXPECT_TRUE(inside(p, 1000, memory, sizeof memory));
  r.deallocate(p, 1000, 16);
  EXPECT_EQ(pool.stats().live_slices, 0u);
}

// ---- threads -------------------------------------------------------------------------

// BAD_INPUTS row 34: backed by the thread-safe pool, so concurrent use is allowed.
TEST(PoolResource, Row34ThreadSafeResourceServesFourThreadsConcurrently) {
  counting_resource up;
  pool_resource r(resource_options{4096, 2.0, 1 << 18}, &up);
  std::vector<std::thread> threads;
  std::vector<int> errors(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&r, &errors, t] {
      std::mt19937 rng(static_cast<std::uint32_t>(t));
      struct live {
        unsigned char* p;
        std::size_t n;
        std::size_t align;
        unsigned char tag;
      };
      std::vector<live> mine;
      for (int step = 0; step < 3000; ++step) {
        if (mine.size() < 32 && rng() % 3 != 0) {
          const std::size_t n = 1 + rng() % 2000;
          const std::size_t align = std::size_t{1} << (rng() % 14);  // 1 .. 8 KiB
          auto* p = static_cast<unsigned char*>(r.allocate(n, align));
          if (reinterpret_cast<std::uintptr_t>(p) % align != 0)
            ++errors[static_cast<std::size_t>(t)];
          const auto tag = static_cast<unsigned char>(rng());
          std::memset(p, tag, n);
          mine.push_back({p, n, align, tag});
        } else if (!mine.empty()) {
          const std::size_t i = rng() % mine.size();
          const live l = mine[i];
          for (std::size_t k = 0; k < l.n; ++k)
            if (l.p[k] != l.tag) {  // another thread wrote here: overlapping ranges
              ++errors[static_cast<std::size_t>(t)];
              break;
            }
          r.deallocate(l.p, l.n, l.align);
          mine[i] = mine.back();
          mine.pop_back();
        }
      }
      for (const live& l : mine) r.deallocate(l.p, l.n, l.align);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors, std::vector<int>(4, 0));
  EXPECT_EQ(r.stats().live_slices, 0u);
  expect_valid(r);
  r.release();
  EXPECT_EQ(up.outstanding_bytes(), r.kept_bytes());
  EXPECT_EQ(up.mismatches(), 0u);
}

TEST(PoolResource, OverAThreadSafeUserPoolFourThreadsShareOneResource) {
  user_pool u(std::size_t{1} << 20);
  pool_resource r(u.pool);
  std::vector<std::thread> threads;
  std::vector<int> errors(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&r, &errors, t] {
      std::pmr::vector<std::pmr::string> strings(&r);
      for (int i = 0; i < 2000; ++i) {
        strings.emplace_back(static_cast<std::size_t>(20 + i % 100), static_cast<char>('a' + t));
        if (i % 3 == 0) strings.erase(strings.begin());
      }
      for (const auto& s : strings)
        if (s.find_first_not_of(static_cast<char>('a' + t)) != std::pmr::string::npos)
          ++errors[static_cast<std::size_t>(t)];
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors, std::vector<int>(4, 0));
  EXPECT_EQ(u.pool.stats().live_slices, 0u);
  expect_valid(r);
}

}  // namespace

// ---- a buffer with the null upstream: the records live in the buffer ---------------------

namespace {
// Allocates blocks of `n` bytes until the resource throws std::bad_alloc; returns them.
std::vector<void*> fill(pool_resource& r, std::size_t n) {
  std::vector<void*> blocks;
  try {
    for (;;) blocks.push_back(r.allocate(n, 8));
  } catch (const std::bad_alloc&) {
  }
  return blocks;
}
}  // namespace

TEST(PoolResource, NullUpstreamKeepsTheRecordsInTheBufferAndLendsTheirUnusedRoomToAllocations) {
  // Half the buffer is set aside for the records at first; blocks of 1000 bytes need few
  // records, so most of that half is lent to the pool as it runs out of room.
  static std::vector<std::byte> buffer(std::size_t{1} << 20);
  for (const bool thread_safe : {false, true}) {
    resource_options o;
    o.thread_safe = thread_safe;
    pool_resource r(buffer.data(), buffer.size(), o, std::pmr::null_memory_resource());
    for (int cycle = 0; cycle < 2; ++cycle) {
      const std::vector<void*> blocks = fill(r, 1000);
      for (void* p : blocks) EXPECT_TRUE(inside(p, 1000, buffer.data(), buffer.size()));
      EXPECT_GT(blocks.size() * 1000, buffer.size() * 85 / 100)
          << "cycle " << cycle << ", thread_safe " << thread_safe;
      expect_valid(r);
      for (void* p : blocks) r.deallocate(p, 1000, 8);
      r.release();  // the lent room goes back to the records, and is lent again
    }
  }
}

TEST(PoolResource, NullUpstreamSmallBlocksShareTheBufferWithTheirSlotRecords) {
  // Blocks of 64 bytes: every slot has a record of its own, in the buffer too.
  static std::vector<std::byte> buffer(std::size_t{4} << 20);
  pool_resource r(buffer.data(), buffer.size(), std::pmr::null_memory_resource());
  const std::vector<void*> blocks = fill(r, 64);
  EXPECT_GT(blocks.size() * 64, buffer.size() * 3 / 4);
  for (void* p : blocks) r.deallocate(p, 64, 8);
  expect_valid(r);
}

TEST(PoolResource, NullUpstreamBufferTooSmallForTheRecordsThrowsBadAllocAtConstruction) {
  std::byte buffer[512];
  EXPECT_THROW(pool_resource(buffer, sizeof buffer, std::pmr::null_memory_resource()),
               std::bad_alloc);
}
