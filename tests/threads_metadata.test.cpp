// SPDX-License-Identifier: MIT
// Thread caches and the `metadata` option: a pool's caches and their records come from the
// pool's resource, nothing of them outlives the pool, and pools end while threads that hold
// caches of them are still alive (run under the tsan preset in CI).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <new>
#include <random>
#include <thread>
#include <utility>
#include <vector>
import bufpool;

#include "counting_resource.hpp"
#include "page_aligned_pool.hpp"

namespace {

using pool_t = bufpool::buffer_pool<std::uint64_t>;
using raw_t = bufpool::raw_range<std::uint64_t>;
using holder_t = bufpool_test::page_aligned_pool<pool_t>;
using bufpool_test::counting_resource;

// A resource over a pool with thread caches: the records of one pool taken from another, so
// that the first pool's attach, owner notes and end call into the second one's caches.
class pool_resource_over final : public std::pmr::memory_resource {
 public:
  explicit pool_resource_over(pool_t& pool) : pool_(pool) {}

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    auto r = pool_.acquire_raw(bytes, alignment, bufpool::greedy);
    if (!r) throw std::bad_alloc();
    return r->pointer;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    EXPECT_TRUE(pool_.release_raw(static_cast<std::byte*>(p), bytes, alignment));
  }
  [[nodiscard]] bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }
  pool_t& pool_;
};

bufpool::basic_options<std::uint64_t> options_with(std::pmr::memory_resource* metadata) {
  auto o = bufpool_test::slab_options(true);
  o.metadata = metadata;
  return o;
}

// Takes and releases small slots, and hands some to `release_elsewhere`.
void churn(pool_t& pool, std::uint64_t seed, int steps, std::vector<raw_t>* handed = nullptr) {
  std::mt19937_64 rng(seed);
  std::vector<raw_t> mine;
  for (int step = 0; step < steps; ++step) {
    if (mine.empty() || rng() % 2 == 0) {
      auto r = pool.acquire_raw(8 + rng() % 2000, 8, bufpool::greedy);
      ASSERT_TRUE(r.has_value());
      mine.push_back(*r);
    } else {
      std::swap(mine[rng() % mine.size()], mine.back());
      if (handed != nullptr && rng() % 8 == 0)
        handed->push_back(mine.back());
      else
        EXPECT_TRUE(pool.release_raw(mine.back().pointer));
      mine.pop_back();
    }
  }
  for (const auto& r : mine) EXPECT_TRUE(pool.release_raw(r.pointer));
}

TEST(ThreadCachesMetadata, EveryRecordComesFromThePoolsResourceAndGoesBackAtItsEnd) {
  counting_resource counting;
  std::vector<std::byte> memory((std::size_t{4} << 20) + 4096);
  auto pool = std::make_unique<pool_t>(options_with(&counting));
  EXPECT_EQ(counting.allocations(), 0u) << "a pool's construction allocates no record";
  auto* base = memory.data() + (4096 - reinterpret_cast<std::uintptr_t>(memory.data()) % 4096);
  auto grow = pool->begin_expand(std::size_t{4} << 20);
  ASSERT_TRUE(grow.has_value());
  ASSERT_TRUE(std::move(*grow).initialize(base).has_value());

  // Three threads that exit while the pool lives, one of them leaving slots to the main
  // thread; a fourth that outlives the pool.
  std::vector<raw_t> handed[3];
  std::vector<std::thread> early;
  for (int id = 0; id < 3; ++id)
    early.emplace_back(
        [&, id] { churn(*pool, static_cast<std::uint64_t>(id), 3000, &handed[id]); });
  std::latch used(1);
  std::latch gone(1);
  std::thread late([&] {
    churn(*pool, 7, 3000);
    used.count_down();
    gone.wait();  // holds its cache of the pool until after the pool's end
  });
  for (auto& t : early) t.join();
  used.wait();
  for (const auto& list : handed)
    for (const auto& r : list) EXPECT_TRUE(pool->release_raw(r.pointer));
  churn(*pool, 9, 1000);  // the main thread holds a cache too
  EXPECT_GT(counting.allocations(), 0u) << "the caches' records come from the resource";
  EXPECT_GT(counting.live_bytes(), 0u);
  EXPECT_EQ(pool->stats().used_bytes, 0u);
  pool.reset();
  EXPECT_EQ(counting.live_bytes(), 0u) << "no record of a pool outlives it";
  gone.count_down();
  late.join();
  EXPECT_EQ(counting.live_bytes(), 0u);
}

// clear() while threads hold caches of the pool: every cache is emptied and stays with its
// thread, which fills it again without taking records per span or slot.
TEST(ThreadCachesMetadata, ClearEmptiesEveryThreadsCacheAndItsThreadRefillsWithoutNewRecords) {
  counting_resource counting;
  constexpr std::size_t bytes = std::size_t{4} << 20;
  holder_t h(options_with(&counting), bytes);
  std::byte* const base =
      h.memory.data() + (4096 - reinterpret_cast<std::uintptr_t>(h.memory.data()) % 4096);
  auto fill = [&](std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 3000; ++i)  // about 1.5 MiB
      EXPECT_TRUE(h.pool.acquire_raw(8 + rng() % 1000, 8, bufpool::greedy).has_value());
  };
  std::latch filled(2);
  std::latch cleared(1);
  std::latch refilled(2);
  std::vector<std::thread> threads;
  for (std::uint64_t id = 0; id < 2; ++id)
    threads.emplace_back([&, id] {
      fill(id);
      filled.count_down();
      cleared.wait();
      fill(id + 10);
      refilled.count_down();
    });
  filled.wait();
  ASSERT_TRUE(h.pool.clear().has_value());
  EXPECT_EQ(h.pool.stats().live_slices, 0u);
  EXPECT_EQ(h.pool.stats().regions, 0u);
  auto grow = h.pool.begin_expand(bytes);
  ASSERT_TRUE(grow.has_value());
  ASSERT_TRUE(std::move(*grow).initialize(base).has_value());
  const std::size_t before = counting.allocations();
  cleared.count_down();
  refilled.wait();
  // Per cache, the region's table of spans; the region's table of owners.
  EXPECT_LE(counting.allocations() - before, 8u);
  const auto v = h.pool.validate();
  EXPECT_TRUE(v.has_value()) << v.error();
  for (auto& t : threads) t.join();
}

// One thread keeps alternating between more pools than it remembers as recent: each call
// still reaches the thread's own cache of that pool, attached once.
TEST(ThreadCachesMetadata, AThreadAlternatingBetweenManyPoolsKeepsOneCacheInEach) {
  counting_resource counting;
  std::vector<std::unique_ptr<holder_t>> pools;
  for (int i = 0; i < 7; ++i)
    pools.push_back(std::make_unique<holder_t>(options_with(&counting), std::size_t{1} << 20));
  std::thread([&] {
    std::vector<std::pair<std::size_t, raw_t>> kept;
    for (int round = 0; round < 200; ++round)
      for (std::size_t i = 0; i < pools.size(); ++i) {
        const std::size_t k = (i * 3 + static_cast<std::size_t>(round)) % pools.size();
        kept.emplace_back(k, pools[k]->pool.acquire_raw(64, 8, bufpool::greedy).value());
      }
    for (auto& h : pools) {
      // 200 slots of 64 bytes in each pool: the thread's one cache there fills 4 slabs of 64.
      std::size_t used_ranges = 0;
      for (const auto& r : h->pool.region_ranges(0)) used_ranges += r.used ? 1 : 0;
      EXPECT_EQ(used_ranges, 4u);
    }
    for (const auto& [k, r] : kept) EXPECT_TRUE(pools[k]->pool.release_raw(r.pointer, 64, 8));
  }).join();
  for (auto& h : pools) EXPECT_EQ(h->pool.stats().used_bytes, 0u);
  pools.clear();
  EXPECT_EQ(counting.live_bytes(), 0u);
}

// Threads use several pools each, in turns, and exit at their own pace; each pool ends as
// soon as the threads using it are done with it, on a thread of its own, while threads that
// still hold a cache of it go on with other pools or exit. Every pool's records come either
// from a counting resource or from another pool with thread caches.
void stress_pools_ending_while_their_threads_live(bool records_from_a_pool) {
  constexpr int rounds = 40;
  constexpr std::size_t pool_count = 5;
  constexpr int thread_count = 6;
  counting_resource counting;
  holder_t records(bufpool_test::slab_options(true), std::size_t{8} << 20);
  pool_resource_over records_resource(records.pool);
  std::pmr::memory_resource* const metadata =
      records_from_a_pool ? static_cast<std::pmr::memory_resource*>(&records_resource) : &counting;
  std::mt19937_64 plan(records_from_a_pool ? 101 : 17);
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::unique_ptr<holder_t>> pools;
    for (std::size_t i = 0; i < pool_count; ++i)
      pools.push_back(std::make_unique<holder_t>(options_with(metadata), std::size_t{4} << 20));
    // Which pools each thread uses, and how long; then how many threads use each pool.
    std::vector<std::vector<std::pair<std::size_t, int>>> uses(thread_count);
    std::vector<std::ptrdiff_t> users(pool_count, 0);
    for (auto& u : uses) {
      for (std::size_t i = 0; i < pool_count; ++i)
        if (plan() % 3 != 0) u.emplace_back(i, static_cast<int>(50 + plan() % 400));
      if (u.empty()) u.emplace_back(plan() % pool_count, 100);
      for (const auto& [i, steps] : u) ++users[i];
    }
    std::vector<std::unique_ptr<std::latch>> done;
    for (std::size_t i = 0; i < pool_count; ++i)
      done.push_back(std::make_unique<std::latch>(users[i]));
    std::atomic<int> failures{0};
    std::atomic<int> out_of_memory{0};
    std::atomic<int> left_used{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < thread_count; ++t)
      threads.emplace_back([&, t] {
        std::mt19937_64 rng(static_cast<std::uint64_t>(round * 100 + t));
        struct use {
          pool_t* pool;
          std::size_t index;
          int left;
          std::vector<raw_t> live;
        };
        std::vector<use> mine;
        for (const auto& [i, steps] : uses[static_cast<std::size_t>(t)])
          mine.push_back({&pools[i]->pool, i, steps, {}});
        while (!mine.empty()) {
          const std::size_t k = rng() % mine.size();
          use& u = mine[k];
          if (u.live.empty() || rng() % 2 == 0) {
            if (auto r = u.pool->acquire_raw(8 + rng() % 1500, 8, bufpool::greedy))
              u.live.push_back(*r);
            else
              out_of_memory.fetch_add(1);
          } else {
            if (!u.pool->release_raw(u.live.back().pointer)) failures.fetch_add(1);
            u.live.pop_back();
          }
          if (--u.left == 0) {  // done with this pool: it may end from now on
            for (const auto& r : u.live)
              if (!u.pool->release_raw(r.pointer)) failures.fetch_add(1);
            done[u.index]->count_down();
            mine.erase(mine.begin() + static_cast<std::ptrdiff_t>(k));
          }
        }
        if (rng() % 2 == 0) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 300));
      });
    std::vector<std::thread> enders;
    for (std::size_t i = 0; i < pool_count; ++i)
      enders.emplace_back([&, i] {
        while (!done[i]->try_wait()) {  // pool-wide operations while threads come and go
          const auto s = pools[i]->pool.stats();
          if (s.used_bytes > s.used_bytes + s.free_bytes + s.spare_bytes) failures.fetch_add(1);
          pools[i]->pool.trim();
          std::this_thread::yield();
        }
        if (pools[i]->pool.stats().used_bytes != 0) left_used.fetch_add(1);
        pools[i].reset();
      });
    for (auto& e : enders) e.join();
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0) << "round " << round;
    EXPECT_EQ(out_of_memory.load(), 0) << "round " << round;
    EXPECT_EQ(left_used.load(), 0) << "round " << round;
    EXPECT_EQ(counting.live_bytes(), 0u) << "round " << round;
  }
  EXPECT_EQ(records.pool.stats().used_bytes, 0u) << "every record went back to its pool";
}

TEST(ThreadCachesMetadata, StressPoolsEndingWhileThreadsHoldingTheirCachesLive) {
  stress_pools_ending_while_their_threads_live(false);
}

TEST(ThreadCachesMetadata, StressPoolsWhoseRecordsComeFromAPoolWithThreadCaches) {
  stress_pools_ending_while_their_threads_live(true);
}

}  // namespace

namespace {
// Grants allocations up to a budget of bytes, then throws std::bad_alloc.
class budget_resource final : public std::pmr::memory_resource {
 public:
  explicit budget_resource(std::size_t budget) : left_(budget) {}

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    std::scoped_lock l(mutex_);
    if (bytes > left_) throw std::bad_alloc();
    left_ -= bytes;
    return std::pmr::new_delete_resource()->allocate(bytes, alignment);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    std::scoped_lock l(mutex_);
    left_ += bytes;
    std::pmr::new_delete_resource()->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
  std::mutex mutex_;
  std::size_t left_;
};
}  // namespace

// A cache's new span needs engine records; when the resource refuses them, the acquisition
// fails as out of memory does (out_of_memory, or std::bad_alloc from a record it needs), and
// the pool is as before (it used to end the process: the span was taken in a function that
// must not throw).
TEST(ThreadCachesMetadata, AnAcquisitionWhoseRecordsRunOutFailsAndThePoolStaysValid) {
  for (std::size_t budget = std::size_t{16} << 10; budget <= (std::size_t{96} << 10);
       budget += std::size_t{8} << 10) {
    budget_resource records(budget);
    holder_t h(options_with(&records), std::size_t{4} << 20);
    std::vector<raw_t> taken;
    for (std::uint64_t n = 8;; n = n % 4000 + 24) {
      try {
        auto r = h.pool.acquire_raw(n, 8, bufpool::greedy);
        if (!r) {
          EXPECT_EQ(r.error(), bufpool::errc::out_of_memory) << "budget " << budget;
          break;
        }
        taken.push_back(*r);
      } catch (const std::bad_alloc&) {
        break;
      }
    }
    const auto v = h.pool.validate();
    EXPECT_TRUE(v.has_value()) << v.error();
    for (const raw_t& r : taken) EXPECT_TRUE(h.pool.release_raw(r.offset));
  }
}
