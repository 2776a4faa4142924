// SPDX-License-Identifier: MIT
// Fault injection: every memory allocation an operation makes is failed in turn (this test
// executable replaces the global operator new), and the region provider of the pmr
// resource fails at chosen calls. A failed call must leave the pool exactly as it was
// (statistics, ranges and validate()), report the failure to the caller, and leak nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/container/map.hpp>
#include <boost/container/vector.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <expected>
#include <functional>
#include <map>
#include <memory_resource>
#include <new>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

import bufpool;
import bufpool.pmr;
import bufpool.boost;

// ---- failing allocations -----------------------------------------------------------------

namespace {
// The number of allocations on this thread that still succeed; negative: no failure armed.
thread_local long g_allocations_left = -1;
thread_local bool g_failed = false;
// The global operator new calls of threads while they count them (g_counting).
std::atomic<long> g_global_allocations{0};
thread_local bool g_counting = false;

void* allocate_or_fail(std::size_t n, std::size_t alignment) {
  if (g_counting) g_global_allocations.fetch_add(1, std::memory_order_relaxed);
  if (g_allocations_left == 0) {
    g_allocations_left = -1;
    g_failed = true;
    throw std::bad_alloc();
  }
  if (g_allocations_left > 0) --g_allocations_left;
  if (n == 0) n = 1;
  void* p = alignment <= alignof(std::max_align_t)
                ? std::malloc(n)
                : std::aligned_alloc(alignment, (n + alignment - 1) / alignment * alignment);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

void* operator new(std::size_t n) {
  return allocate_or_fail(n, 1);
}
void* operator new[](std::size_t n) {
  return allocate_or_fail(n, 1);
}
void* operator new(std::size_t n, std::align_val_t a) {
  return allocate_or_fail(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a) {
  return allocate_or_fail(n, static_cast<std::size_t>(a));
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return allocate_or_fail(n, 1);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return allocate_or_fail(n, 1);
  } catch (...) {
    return nullptr;
  }
}
namespace {
thread_local long g_frees = 0;  // operator delete calls on this thread
void count_and_free(void* p) noexcept {
  if (p != nullptr) ++g_frees;
  std::free(p);
}
}  // namespace

void operator delete(void* p) noexcept {
  count_and_free(p);
}
void operator delete[](void* p) noexcept {
  count_and_free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  count_and_free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  count_and_free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  count_and_free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  count_and_free(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  count_and_free(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  count_and_free(p);
}

namespace {

using pool32 = bufpool::buffer_pool<>;

// Everything observable about a pool: totals and every range of every region.
struct snapshot {
  bufpool::pool_stats stats;
  std::vector<std::vector<bufpool::range_view>> ranges;
};

snapshot take(const pool32& pool) {
  snapshot s{pool.stats(), {}};
  for (std::size_t r = 0; r < s.stats.regions; ++r) s.ranges.push_back(pool.region_ranges(r));
  return s;
}

std::string describe(const bufpool::pool_stats& s) {
  return "used " + std::to_string(s.used_bytes) + ", free " + std::to_string(s.free_bytes) +
         ", pending " + std::to_string(s.pending_bytes) + ", free ranges " +
         std::to_string(s.free_ranges) + ", live " + std::to_string(s.live_slices) + ", guarded " +
         std::to_string(s.guarded_slices) + ", parked " + std::to_string(s.parked_slices) +
         ", regions " + std::to_string(s.regions);
}

bool same(const snapshot& a, const snapshot& b) {
  const auto& x = a.stats;
  const auto& y = b.stats;
  if (x.used_bytes != y.used_bytes || x.free_bytes != y.free_bytes ||
      x.pending_bytes != y.pending_bytes || x.largest_free != y.largest_free ||
      x.free_ranges != y.free_ranges || x.live_slices != y.live_slices ||
      x.guarded_slices != y.guarded_slices || x.parked_slices != y.parked_slices ||
      x.regions != y.regions || a.ranges.size() != b.ranges.size())
    return false;
  for (std::size_t r = 0; r < a.ranges.size(); ++r) {
    if (a.ranges[r].size() != b.ranges[r].size()) return false;
    for (std::size_t i = 0; i < a.ranges[r].size(); ++i) {
      const auto& p = a.ranges[r][i];
      const auto& q = b.ranges[r][i];
      if (p.offset != q.offset || p.size != q.size || p.used != q.used) return false;
    }
  }
  return true;
}

// Runs `op` with its 1st, 2nd, ... allocation failing until it completes without reaching
// the failing allocation. Every failed attempt must throw std::bad_alloc out of `op` (or
// not, for a noexcept operation that copes) and leave the pool as it was. Returns how many
// allocation points were failed.
int fail_each_allocation(const pool32& pool, const char* what, const std::function<void()>& op,
                         bool failure_throws = true) {
  for (int k = 0;; ++k) {
    const snapshot before = take(pool);
    g_failed = false;
    g_allocations_left = k;
    bool threw = false;
    try {
      op();
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    g_allocations_left = -1;
    if (!g_failed) {  // the operation made fewer than k + 1 allocations: it has completed
      EXPECT_FALSE(threw) << what;
      return k;
    }
    EXPECT_EQ(threw, failure_throws) << what << ": allocation " << k << " failed";
    const snapshot after = take(pool);
    EXPECT_TRUE(same(before, after)) << what << ": allocation " << k << " failed and the pool"
                                     << " changed\n  before: " << describe(before.stats)
                                     << "\n  after:  " << describe(after.stats);
    const auto v = pool.validate();
    EXPECT_TRUE(v.has_value()) << what << ": allocation " << k << ": " << v.error();
    if (::testing::Test::HasFailure()) return k;
  }
}

int g_diagnostics = 0;
void count_diagnostic(const char*) {
  ++g_diagnostics;
}

struct flag_guard {
  const bool* done;
  bool try_release() const { return *done; }
};

TEST(FaultInjection, EveryFailedAllocationInAPoolOperationLeavesThePoolUnchanged) {
  struct counting_diagnostics {  // outlives the pool: its destruction reports too
    bufpool::diagnostic_handler old = bufpool::set_diagnostic_handler(&count_diagnostic);
    ~counting_diagnostics() { bufpool::set_diagnostic_handler(old); }
  } diagnostics;
  std::vector<std::vector<std::byte>> memory(6, std::vector<std::byte>(1 << 16));
  pool32 pool;
  std::vector<pool32::slice_type<flag_guard>> slices;
  std::vector<bufpool::raw_range<std::uint32_t>> raws;
  slices.reserve(1000);  // the test's own bookkeeping must not allocate inside an operation
  raws.reserve(1000);
  std::size_t next_region = 0;
  int points = 0;
  auto expand = [&] {
    auto grow = pool.begin_expand(memory[next_region].size());
    if (!grow) throw std::bad_alloc();  // never: the offset space is large
    if (!std::move(*grow).initialize(memory[next_region].data())) FAIL();
    ++next_region;
  };
  points += fail_each_allocation(pool, "expand", expand);
  points += fail_each_allocation(pool, "expand", expand);
  // Enough ranges that the engine's indexes and node arrays grow while the test runs.
  for (int i = 0; i < 600; ++i) {
    points += fail_each_allocation(pool, "acquire", [&] {
      auto s = pool.acquire<flag_guard>(16 + static_cast<std::uint64_t>(i % 7) * 40, 16);
      if (s) slices.push_back(std::move(*s));
    });
    if (i % 3 == 0)
      points += fail_each_allocation(pool, "acquire_raw", [&] {
        auto r = pool.acquire_raw(24, 8);
        if (r) raws.push_back(*r);
      });
    if (i % 50 == 0 && next_region < memory.size())
      points += fail_each_allocation(pool, "expand", expand);
  }
  points += fail_each_allocation(pool, "cancelled expansion", [&] {
    auto a = pool.begin_expand(4096);
    auto b = pool.begin_expand(4096);
    if (!a || !b) throw std::bad_alloc();  // never: the offset space is large
    {
      auto first = std::move(*a);
    }  // a gap below b, which then joins it
  });
  // Guarded slices destroyed while their I/O runs are parked; collect() frees them later.
  // Out of memory, destruction (noexcept) keeps the range for good instead: still live
  // and guarded, never reused, reported once.
  bool done = false;
  std::size_t kept_for_good = 0;
  for (std::size_t i = 0; i < slices.size(); i += 4) {
    ASSERT_TRUE(slices[i].guard(flag_guard{&done}).has_value());
    if (i % 64 == 0) {
      points += fail_each_allocation(pool, "park without memory", [&] { slices[i] = {}; }, false);
      ++kept_for_good;
    } else {
      slices[i] = {};  // parked
    }
  }
  EXPECT_EQ(g_diagnostics, static_cast<int>(kept_for_good));
  done = true;
  points += fail_each_allocation(pool, "collect", [&] { pool.collect(); });
  for (std::size_t i = 1; i < slices.size(); i += 2)
    points += fail_each_allocation(pool, "resize", [&] { (void)slices[i].try_resize(200); });
  for (auto& s : slices)
    points += fail_each_allocation(pool, "reclaim", [&] { (void)std::move(s).reclaim(); });
  for (const auto& r : raws)
    points += fail_each_allocation(pool, "release_raw",
                                   [&] { pool.release_raw(std::uint64_t{r.offset}); });
  EXPECT_GT(points, 0);
  const bufpool::pool_stats s = pool.stats();
  EXPECT_EQ(s.live_slices, kept_for_good);
  EXPECT_EQ(s.guarded_slices, kept_for_good);
  EXPECT_EQ(s.parked_slices, 0u);
  RecordProperty("failed_allocations", std::to_string(points));
}

// ---- the pmr resource's region provider ---------------------------------------------------

// An upstream that counts what it gives out and fails the calls for memory (regions and
// dedicated blocks, aligned to at least region_alignment) it is told to. The resource's
// records, which come from upstream at smaller alignments, are counted apart.
class failing_upstream : public std::pmr::memory_resource {
 public:
  std::vector<long> fail_calls;  // 0-based indexes of allocate calls for memory that throw
  long calls = 0;
  std::size_t outstanding = 0;          // memory
  std::size_t records_outstanding = 0;  // the resource's records

 private:
  static bool is_memory(std::size_t alignment) {
    return alignment >= bufpool::pmr::pool_resource::region_alignment;
  }
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    if (is_memory(alignment)) {
      const long call = calls++;
      for (const long f : fail_calls)
        if (f == call) throw std::bad_alloc();
    }
    void* p = std::pmr::new_delete_resource()->allocate(bytes, alignment);
    (is_memory(alignment) ? outstanding : records_outstanding) += bytes;
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    (is_memory(alignment) ? outstanding : records_outstanding) -= bytes;
    std::pmr::new_delete_resource()->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
};

bool same_totals(const bufpool::pool_stats& x, const bufpool::pool_stats& y) {
  return x.used_bytes == y.used_bytes && x.free_bytes == y.free_bytes &&
         x.live_slices == y.live_slices && x.regions == y.regions && x.free_ranges == y.free_ranges;
}

TEST(FaultInjection, PmrRegionProviderFailingAtEachGrowthLeavesTheResourceUnchanged) {
  for (long fail_at = 0; fail_at < 8; ++fail_at) {
    failing_upstream up;
    up.fail_calls = {fail_at};
    {
      bufpool::pmr::pool_resource r(bufpool::pmr::resource_options{4096, 2.0, 1 << 16}, &up);
      std::vector<std::pair<void*, std::size_t>> live;
      int failures = 0;
      for (int i = 0; i < 400; ++i) {
        const std::size_t n = 64 + static_cast<std::size_t>(i % 13) * 100;
        const bufpool::pool_stats before = r.stats();
        const std::size_t held = up.outstanding;
        try {
          live.emplace_back(r.allocate(n, 16), n);
        } catch (const std::bad_alloc&) {
          ++failures;
          EXPECT_TRUE(same_totals(before, r.stats())) << "fail_at " << fail_at << ", i " << i;
          EXPECT_EQ(up.outstanding, held);
          const auto v = r.validate();
          EXPECT_TRUE(v.has_value()) << v.error();
        }
      }
      EXPECT_EQ(failures, 1) << "fail_at " << fail_at;  // the next attempt grows again
      for (const auto& [p, n] : live) r.deallocate(p, n, 16);
      EXPECT_EQ(r.stats().live_slices, 0u);
    }
    EXPECT_EQ(up.outstanding, 0u) << "fail_at " << fail_at;  // nothing leaked
    EXPECT_EQ(up.records_outstanding, 0u) << "fail_at " << fail_at;
  }
}

TEST(FaultInjection, PmrMetadataAllocationFailuresLeaveTheResourceUnchanged) {
  failing_upstream up;
  bufpool::pmr::pool_resource r(bufpool::pmr::resource_options{4096, 2.0, 1 << 16}, &up);
  struct block {
    void* p;
    std::size_t size;
    std::size_t alignment;
  };
  std::vector<block> live;
  live.reserve(1000);
  int points = 0;
  for (int i = 0; i < 300; ++i) {
    // Sizes and alignments that use regions, grow the pool and take dedicated blocks.
    const std::size_t n = 64 + static_cast<std::size_t>(i % 11) * 300;
    const std::size_t align = i % 10 == 0 ? 8192 : 16;
    for (int k = 0;; ++k) {
      const bufpool::pool_stats before = r.stats();
      const std::size_t held = up.outstanding;
      g_failed = false;
      g_allocations_left = k;
      void* p = nullptr;
      try {
        p = r.allocate(n, align);
      } catch (const std::bad_alloc&) {
      }
      g_allocations_left = -1;
      if (!g_failed || p != nullptr) {  // a slab's records failed: served without a slab
        ASSERT_NE(p, nullptr);
        live.push_back({p, n, align});
        const auto v = r.validate();
        ASSERT_TRUE(v.has_value()) << v.error();
        break;
      }
      ++points;
      ASSERT_EQ(p, nullptr) << "allocation " << k << " failed but allocate() succeeded";
      EXPECT_TRUE(same_totals(before, r.stats())) << "i " << i << ", allocation " << k;
      EXPECT_EQ(up.outstanding, held) << "i " << i << ", allocation " << k;
      const auto v = r.validate();
      ASSERT_TRUE(v.has_value()) << v.error();
    }
  }
  for (const block& b : live) r.deallocate(b.p, b.size, b.alignment);
  EXPECT_EQ(r.stats().live_slices, 0u);
  r.release();
  EXPECT_EQ(up.outstanding, r.kept_bytes());  // nothing leaked: only what the next cycle gets
  EXPECT_GT(points, 0);
}

// The Boost allocator's only own allocation is the pool's raw-range record: out of memory
// there, the container's operation throws and both the container and the pool are as
// before (Boost's vector and map give the strong guarantee for push_back and insert).
TEST(FaultInjection, BoostContainersSeeBadAllocAndThePoolStaysUnchanged) {
  std::vector<std::byte> memory(1 << 20);
  pool32 pool;
  ASSERT_TRUE(pool.begin_expand(memory.size()).value().initialize(memory.data()));
  using int_allocator = bufpool::container::allocator<int>;
  using pair_allocator = bufpool::container::allocator<std::pair<const int, int>>;
  boost::container::vector<int, int_allocator> v{int_allocator(pool)};
  boost::container::map<int, int, std::less<int>, pair_allocator> m{pair_allocator(pool)};
  int points = 0;
  for (int i = 0; i < 2000; ++i) {
    points += fail_each_allocation(pool, "vector push_back", [&] {
      const std::size_t before = v.size();
      try {
        v.push_back(i);
      } catch (const std::bad_alloc&) {
        EXPECT_EQ(v.size(), before);
        throw;
      }
    });
    points += fail_each_allocation(pool, "map insert", [&] {
      const std::size_t before = m.size();
      try {
        m.emplace(i, i);
      } catch (const std::bad_alloc&) {
        EXPECT_EQ(m.size(), before);
        throw;
      }
    });
    if (::testing::Test::HasFailure()) return;
  }
  for (int i = 0; i < 2000; ++i) EXPECT_EQ(v[static_cast<std::size_t>(i)], i);
  EXPECT_EQ(m.size(), 2000u);
  EXPECT_GT(points, 0);
}

}  // namespace

TEST(FaultInjection, SlabSpansReuseTheRecordsOfDroppedSpansOfTheirClassWithoutAllocating) {
  std::vector<std::byte> memory(1 << 20);
  bufpool::local_buffer_pool<std::uint64_t>::options_type o;
  o.min_alignment = 8;
  o.slabs = true;
  bufpool::local_buffer_pool<std::uint64_t> pool(o);
  ASSERT_TRUE(pool.begin_expand(memory.size()).value().initialize(memory.data()).has_value());
  std::vector<void*> live;
  live.reserve(3 * 64);
  // Three spans of 64-byte slots (64 per 4 KiB span), then all freed: two spans are dropped
  // and the class keeps one empty. Each later cycle makes two spans again, and they reuse
  // the dropped spans' records, so cycles allocate nothing (any allocation fails here, and
  // a slab that cannot get records sends the request to the engine path).
  const auto cycle = [&] {
    for (int i = 0; i < 3 * 64; ++i) {
      const auto r = pool.acquire_raw(64, 8, bufpool::greedy);
      ASSERT_TRUE(r.has_value());
      live.push_back(r->pointer);
    }
    ASSERT_EQ(pool.stats().spare_bytes, 0u);
    for (void* p : live) ASSERT_TRUE(pool.release_raw(p, 64, 8));
    live.clear();
  };
  cycle();
  g_failed = false;
  g_allocations_left = 0;
  for (int k = 0; k < 200; ++k) cycle();
  g_allocations_left = -1;
  EXPECT_FALSE(g_failed) << "a cycle allocated";
  EXPECT_TRUE(pool.validate().has_value());
}

// The first span in a region makes that region's table of cells; if the table's allocation
// fails, the request takes the engine path, and later lookups in the region must still
// find no span there (a table left half made was read out of bounds).
TEST(FaultInjection, AFailedFirstSpanInARegionLeavesItsLookupsWorking) {
  for (long k = 0; k < 16; ++k) {
    std::vector<std::byte> first(4096);  // room for one span of 64 slots of 64 bytes
    std::vector<std::byte> second(1 << 16);
    bufpool::local_buffer_pool<std::uint64_t>::options_type o;
    o.min_alignment = 8;
    o.slabs = true;
    bufpool::local_buffer_pool<std::uint64_t> pool(o);
    ASSERT_TRUE(pool.begin_expand(first.size()).value().initialize(first.data()).has_value());
    std::vector<void*> live;
    for (int i = 0; i < 64; ++i) live.push_back(pool.acquire_raw(64, 8, bufpool::greedy)->pointer);
    ASSERT_TRUE(pool.begin_expand(second.size()).value().initialize(second.data()).has_value());
    g_failed = false;
    g_allocations_left = k;  // the k-th allocation of the first span in the second region fails
    const auto r = pool.acquire_raw(64, 8, bufpool::greedy);
    g_allocations_left = -1;
    ASSERT_TRUE(r.has_value());  // a slot, or a range of the engine if the span failed
    EXPECT_TRUE(pool.validate().has_value()) << "failure at allocation " << k;
    EXPECT_TRUE(pool.release_raw(r->pointer, 64, 8)) << "failure at allocation " << k;
    for (void* p : live) ASSERT_TRUE(pool.release_raw(p, 64, 8));
    EXPECT_TRUE(pool.validate().has_value()) << "failure at allocation " << k;
  }
}

TEST(FaultInjection, PmrReleaseFreesMetadataInORegionsNotPerSlabSpan) {
  // An arena of 200 000 small objects fills about 8 000 slab spans in a few regions.
  // release() hands the regions to a new pool and frees the old pool's records: a bounded
  // number of blocks per region (tables, chunks), not a block or two per span.
  bufpool::pmr::resource_options o;
  o.thread_safe = false;
  o.retained_bytes = ~std::size_t{0};
  bufpool::pmr::pool_resource r(o, std::pmr::new_delete_resource());
  for (std::size_t i = 0; i < 200'000; ++i) (void)r.allocate(16 + i % 241, 8);
  const std::size_t regions = r.stats().regions;
  const long before = g_frees;
  r.release();
  const long frees = g_frees - before;
  EXPECT_LE(frees, static_cast<long>(16 * regions + 64)) << regions << " regions";
  EXPECT_EQ(r.stats().used_bytes, 0u);
  EXPECT_TRUE(r.validate().has_value());
}

// ---- no hidden heap use ------------------------------------------------------------------

namespace {

// An upstream that takes its memory from malloc, not from operator new, and counts what is
// outstanding.
class malloc_resource final : public std::pmr::memory_resource {
 public:
  long allocations = 0;
  long outstanding = 0;

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    const std::size_t a = std::max(alignment, alignof(std::max_align_t));
    void* p = std::aligned_alloc(a, (std::max<std::size_t>(bytes, 1) + a - 1) / a * a);
    if (p == nullptr) throw std::bad_alloc();
    ++allocations;
    ++outstanding;
    return p;
  }
  void do_deallocate(void* p, std::size_t, std::size_t) override {
    --outstanding;
    std::free(p);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
};

// Two cycles of what an arena loop does with a resource: containers of strings and a map
// filled and dropped, loose allocations of every size class, release() between cycles.
void arena_cycles(bufpool::pmr::pool_resource& r) {
  for (int cycle = 0; cycle < 2; ++cycle) {
    {
      std::pmr::vector<std::pmr::string> words(&r);
      std::pmr::map<int, std::pmr::string> index(&r);
      for (int i = 0; i < 300; ++i) {
        words.emplace_back("a word long enough to need memory of its own");
        index.emplace(i, words.back());
      }
    }
    std::array<std::pair<void*, std::size_t>, 512> loose{};  // not on the heap: counted
    for (std::size_t i = 0; i < loose.size(); ++i) {
      const std::size_t n = 1 + (i * 37) % 3000;
      loose[i] = {r.allocate(n, 8), n};
    }
    for (std::size_t i = 0; i < loose.size(); i += 2)
      r.deallocate(loose[i].first, loose[i].second, 8);
    r.release();
  }
}

}  // namespace

TEST(GlobalHeap, PmrResourceOverABufferWithNullUpstreamNeverCallsGlobalNew) {
  alignas(64) static std::byte buffer[4 << 20];
  for (const bool thread_safe : {true, false}) {
    bufpool::pmr::resource_options o;
    o.thread_safe = thread_safe;
    const long before = g_global_allocations.load();
    g_counting = true;
    {
      bufpool::pmr::pool_resource r(buffer, sizeof buffer, o, std::pmr::null_memory_resource());
      EXPECT_EQ(g_global_allocations.load() - before, 0)
          << "construction, thread_safe " << thread_safe;
      arena_cycles(r);
    }
    g_counting = false;
    EXPECT_EQ(g_global_allocations.load() - before, 0) << "thread_safe " << thread_safe;
  }
}

TEST(GlobalHeap, OwningPmrResourceTakesEveryByteFromItsUpstream) {
  for (const bool thread_safe : {true, false}) {
    bufpool::pmr::resource_options o;
    o.thread_safe = thread_safe;
    malloc_resource upstream;
    const long before = g_global_allocations.load();
    g_counting = true;
    {
      bufpool::pmr::pool_resource r(o, &upstream);
      EXPECT_EQ(upstream.allocations, 0) << "construction takes nothing";
      arena_cycles(r);
      g_counting = false;       // std::thread's own state is not the resource's
      std::thread other([&r] {  // a second thread's cache is a record too
        g_counting = true;
        std::pmr::vector<int> v(&r);
        for (int i = 0; i < 1000; ++i) v.push_back(i);
      });
      g_counting = true;
      other.join();
    }
    g_counting = false;
    EXPECT_EQ(g_global_allocations.load() - before, 0) << "thread_safe " << thread_safe;
    EXPECT_GT(upstream.allocations, 0);
    EXPECT_EQ(upstream.outstanding, 0) << "every byte went back";
  }
}
