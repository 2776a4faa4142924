// SPDX-License-Identifier: MIT
// Thread caches (options `thread_caches`): each thread takes slots from slabs of its own and
// frees them without the pool's lock; slots released on another thread, thread exit, trim(),
// try_close() and the pool's end (run under the tsan preset in CI).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>
import bufpool;

#include "page_aligned_pool.hpp"
#include "violations.hpp"

namespace {

using pool_t = bufpool::buffer_pool<std::uint64_t>;
using raw_t = bufpool::raw_range<std::uint64_t>;
using bufpool_test::g_last_violation;
using bufpool_test::g_violations;
using bufpool_test::recording_violations;

// A pool with thread caches over one page-aligned heap block.
struct cached_pool : bufpool_test::page_aligned_pool<pool_t> {
  explicit cached_pool(std::size_t bytes = std::size_t{4} << 20)
      : page_aligned_pool(bufpool_test::slab_options(true), bytes) {}
};

void expect_valid(const pool_t& pool) {
  const auto v = pool.validate();
  EXPECT_TRUE(v.has_value()) << v.error();
}

// used + free + spare is every byte of the regions, and validate() passes (also while
// other threads work).
void expect_adds_up(const pool_t& pool) {
  const auto s = pool.stats();
  std::uint64_t total = 0;
  for (const auto& r : pool.region_statistics()) total += r.size;
  EXPECT_EQ(s.used_bytes + s.free_bytes + s.spare_bytes, total);
  expect_valid(pool);
}

// used + free + spare is every byte of the regions, and used is what the caller holds.
void expect_exact(const pool_t& pool, std::uint64_t held_bytes, std::size_t held) {
  const auto s = pool.stats();
  std::uint64_t total = 0;
  for (const auto& r : pool.region_statistics()) {
    EXPECT_EQ(r.used_bytes + r.free_bytes + r.spare_bytes, r.size);
    total += r.size;
  }
  EXPECT_EQ(s.used_bytes + s.free_bytes + s.spare_bytes, total);
  EXPECT_EQ(s.used_bytes, held_bytes);
  EXPECT_EQ(s.live_slices, held);
  expect_valid(pool);
}

// Everything released and trimmed: one free range per region, nothing spare.
void expect_all_back(pool_t& pool) {
  pool.trim();
  const auto s = pool.stats();
  EXPECT_EQ(s.used_bytes, 0u);
  EXPECT_EQ(s.spare_bytes, 0u);
  EXPECT_EQ(s.free_ranges, s.regions);
  expect_valid(pool);
}

// The span a slot lies in, as the map shows it: the used range that contains it.
std::set<std::uint64_t> slab_starts(const pool_t& pool, const std::vector<raw_t>& slots) {
  std::set<std::uint64_t> starts;
  for (const auto& r : pool.region_ranges(0))
    for (const auto& s : slots)
      if (r.used && s.offset >= r.offset && s.offset < r.offset + r.size) starts.insert(r.offset);
  return starts;
}

// A thread that takes `count` slots of `size` (and with them a cache of its own) and stays
// alive, holding that cache, until this object is destroyed.
class thread_holding_a_cache {
 public:
  thread_holding_a_cache(pool_t& pool, std::uint64_t size, std::size_t count = 1)
      : thread_([this, &pool, size, count] {
          for (std::size_t i = 0; i < count; ++i)
            slots.push_back(pool.acquire_raw(size, 8, bufpool::greedy).value());
          slot = slots.front();
          taken_.count_down();
          done_.wait();
        }) {
    taken_.wait();
  }
  ~thread_holding_a_cache() {
    done_.count_down();
    thread_.join();
  }
  thread_holding_a_cache(const thread_holding_a_cache&) = delete;
  thread_holding_a_cache& operator=(const thread_holding_a_cache&) = delete;
  std::vector<raw_t> slots;
  raw_t slot{};  // the first

 private:
  std::latch taken_{1};
  std::latch done_{1};
  std::thread thread_;
};

TEST(ThreadCaches, EachThreadTakesItsSlotsFromSlabsOfItsOwn) {
  cached_pool h;
  std::vector<raw_t> got[2];
  std::barrier both(2);
  auto take = [&](int id) {
    for (int i = 0; i < 8; ++i) {
      got[id].push_back(h.pool.acquire_raw(64, 8, bufpool::greedy).value());
      both.arrive_and_wait();  // the two threads alternate requests of the same class
    }
  };
  std::thread a(take, 0);
  std::thread b(take, 1);
  a.join();
  b.join();
  const auto mine = slab_starts(h.pool, got[0]);
  const auto theirs = slab_starts(h.pool, got[1]);
  EXPECT_EQ(mine.size(), 1u);
  EXPECT_EQ(theirs.size(), 1u);
  EXPECT_NE(*mine.begin(), *theirs.begin());
  expect_exact(h.pool, 16 * 64, 16);
  for (const auto& list : got)
    for (const auto& r : list) EXPECT_TRUE(h.pool.release_raw(r.pointer, 64, 8));
  expect_all_back(h.pool);
}

TEST(ThreadCaches, AThreadsOwnSlotsAreReleasedAndReusedOnItsCache) {
  cached_pool h;
  std::thread t([&] {
    std::vector<std::pair<raw_t, std::uint64_t>> live;  // with its alignment
    std::mt19937_64 rng(3);
    std::uint64_t held = 0;
    for (int step = 0; step < 20000; ++step) {
      if (live.empty() || rng() % 2 == 0) {
        const std::uint64_t size = 1 + rng() % 4096;
        const std::uint64_t align = std::uint64_t{1} << (rng() % 8);
        auto r = h.pool.acquire_raw(size, align, bufpool::greedy);
        ASSERT_TRUE(r.has_value());
        ASSERT_EQ(r->offset % align, 0u);
        live.emplace_back(*r, align);
        held += r->capacity;
      } else {
        std::swap(live[rng() % live.size()], live.back());
        const auto [r, align] = live.back();
        live.pop_back();
        ASSERT_TRUE(rng() % 4 == 0 ? h.pool.release_raw(r.pointer)
                                   : h.pool.release_raw(r.pointer, r.size, align));
        held -= r.capacity;
      }
      if (step % 2000 == 0) expect_exact(h.pool, held, live.size());
    }
    for (const auto& [r, align] : live) ASSERT_TRUE(h.pool.release_raw(r.pointer));
  });
  t.join();
  expect_all_back(h.pool);
}

TEST(ThreadCaches, SlotsReleasedOnAnotherThreadGoBackToTheirOwnersSlabs) {
  cached_pool h;
  std::vector<raw_t> handed;
  std::latch taken(1);
  std::latch released(1);
  std::thread owner([&] {
    for (int i = 0; i < 40; ++i)
      handed.push_back(h.pool.acquire_raw(100, 16, bufpool::greedy).value());
    taken.count_down();
    released.wait();  // the owner is alive while another thread releases its slots
    expect_exact(h.pool, 0, 0);
    // The owner reuses what was released for it.
    auto again = h.pool.acquire_raw(100, 16, bufpool::greedy).value();
    EXPECT_TRUE(h.pool.release_raw(again.pointer, 100, 16));
  });
  taken.wait();
  expect_exact(h.pool, 40 * 112, 40);
  for (std::size_t i = 0; i < handed.size(); ++i) {
    const auto& r = handed[i];
    if (i % 3 == 0)
      EXPECT_TRUE(h.pool.release_raw(r.pointer, 100, 16));
    else if (i % 3 == 1)
      EXPECT_TRUE(h.pool.release_raw(r.pointer));
    else
      EXPECT_TRUE(h.pool.release_raw(std::uint64_t{r.offset}, 100, 16));
  }
  released.count_down();
  owner.join();
  expect_all_back(h.pool);
}

TEST(ThreadCaches, ThreadExitGivesEmptySlabsBackAndLeavesLiveSlotsUsable) {
  cached_pool h;
  raw_t kept{};
  std::thread t([&] {
    std::vector<raw_t> slots;
    for (const std::uint64_t size : {24U, 200U, 1000U, 3000U})
      slots.push_back(h.pool.acquire_raw(size, 8, bufpool::greedy).value());
    kept = slots[1];
    for (const auto& r : slots)
      if (r.offset != kept.offset) EXPECT_TRUE(h.pool.release_raw(r.pointer, r.size, 8));
  });
  t.join();
  // Only the slab with the live slot stays: the other three went back at the thread's exit.
  const auto s = h.pool.stats();
  EXPECT_EQ(s.live_slices, 1u);
  EXPECT_EQ(s.used_bytes, kept.capacity);
  std::size_t used_ranges = 0;
  for (const auto& r : h.pool.region_ranges(0)) used_ranges += r.used ? 1 : 0;
  EXPECT_EQ(used_ranges, 1u);
  expect_exact(h.pool, kept.capacity, 1);
  auto at = h.pool.raw_at(kept.pointer);
  ASSERT_TRUE(at.has_value());
  EXPECT_EQ(at->size, 200u);
  EXPECT_TRUE(h.pool.release_raw(kept.pointer, 200, 8));
  expect_all_back(h.pool);
}

// Destroyed at its thread's exit after the thread's list of caches (it is constructed
// first, so destroyed last): it releases its slot and takes and releases another one.
struct late_user {
  pool_t* pool = nullptr;
  raw_t slot{};
  bool released = false;
  bool reacquired = false;
  std::atomic<int>* done = nullptr;
  ~late_user() {
    if (pool == nullptr) return;
    released = pool->release_raw(slot.pointer, 64, 8);
    if (auto again = pool->acquire_raw(64, 8, bufpool::greedy)) {
      reacquired = pool->release_raw(again->pointer, 64, 8);
    }
    done->store((released ? 1 : 0) + (reacquired ? 2 : 0));
  }
};

TEST(ThreadCaches, AThreadLocalsDestructorUsesThePoolAfterTheThreadsCachesAreGone) {
  cached_pool h;
  std::atomic<int> done{-1};
  std::thread t([&] {
    thread_local late_user user;  // constructed before the thread's first pool call
    user.pool = &h.pool;
    user.done = &done;
    user.slot = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  });
  t.join();
  EXPECT_EQ(done.load(), 3);  // released on the exited cache, then served by the pool's slabs
  expect_all_back(h.pool);
}

TEST(ThreadCaches, TheNextThreadTakesOverTheSlabsOfOneThatExited) {
  cached_pool h;
  std::vector<raw_t> kept;
  for (int n = 0; n < 40; ++n) {  // 40 threads one after another, each keeping 4 slots
    std::thread t([&] {
      for (int i = 0; i < 4; ++i)
        kept.push_back(h.pool.acquire_raw(64, 8, bufpool::greedy).value());
    });
    t.join();
  }
  // 160 slots of 64 bytes: 3 slabs of 64 slots when each thread fills the slabs the last
  // one left, not a slab per thread.
  EXPECT_EQ(slab_starts(h.pool, kept).size(), 3u);
  expect_exact(h.pool, 160 * 64, 160);
  for (const auto& r : kept) EXPECT_TRUE(h.pool.release_raw(r.pointer, 64, 8));
  expect_all_back(h.pool);
}

TEST(ThreadCaches, TrimGivesBackTheEmptySlabsOfLiveThreads) {
  cached_pool h;
  std::latch emptied(1);
  std::latch trimmed(1);
  std::thread t([&] {
    for (const std::uint64_t size : {16U, 512U, 4096U}) {
      auto r = h.pool.acquire_raw(size, 8, bufpool::greedy).value();
      EXPECT_TRUE(h.pool.release_raw(r.pointer, size, 8));
    }
    emptied.count_down();
    trimmed.wait();
    auto r = h.pool.acquire_raw(512, 8, bufpool::greedy);  // the cache works on after trim
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE(h.pool.release_raw(r->pointer, 512, 8));
  });
  emptied.wait();
  EXPECT_GT(h.pool.stats().spare_bytes, 0u);  // each class keeps its empty slab
  h.pool.trim();
  const auto s = h.pool.stats();
  EXPECT_EQ(s.spare_bytes, 0u);
  EXPECT_EQ(s.free_ranges, 1u);
  trimmed.count_down();
  t.join();
  expect_all_back(h.pool);
}

// Which thread acquired the slot a misuse test names, and so which path its releases take.
enum class acquired_by {
  this_thread,  // the owner's path, in this thread's cache
  // A thread that stays alive, holding its cache, and from which this thread has released
  // a slot already: the path through the cache released into last, without the pool's lock.
  another_thread,
};

// Misuse of a slot is reported and changes nothing, where the slot is named by
// `name(slot, delta)`: its pointer or its offset, plus delta bytes.
template <class Name>
void expect_misuse_reported(acquired_by who, Name name) {
  cached_pool h;
  recording_violations recording;
  std::optional<thread_holding_a_cache> other;
  raw_t r{};
  if (who == acquired_by::this_thread) {
    r = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  } else {
    other.emplace(h.pool, 64, 2);
    r = other->slots[0];
    EXPECT_TRUE(h.pool.release_raw(other->slots[1].pointer));
  }
  EXPECT_FALSE(h.pool.release_raw(name(r, 0), 48, 8));  // same class, another size
  EXPECT_NE(g_last_violation.find("size differs"), std::string::npos);
  EXPECT_FALSE(h.pool.release_raw(name(r, 0), 64, 16));
  EXPECT_NE(g_last_violation.find("alignment differs"), std::string::npos);
  EXPECT_FALSE(h.pool.release_raw(name(r, 8), 64, 8));  // inside the slot
  EXPECT_NE(g_last_violation.find("does not start a live raw range"), std::string::npos);
  EXPECT_EQ(g_violations, 3);
  expect_exact(h.pool, 64, 1);
  EXPECT_TRUE(h.pool.release_raw(name(r, 0), 64, 8));
  EXPECT_FALSE(h.pool.release_raw(name(r, 0), 64, 8));  // twice
  EXPECT_FALSE(h.pool.release_raw(name(r, 0)));
  EXPECT_EQ(g_violations, 5);
  other.reset();
  expect_all_back(h.pool);
}

auto by_pointer = [](const raw_t& r, int delta) { return r.pointer + delta; };
auto by_offset = [](const raw_t& r, int delta) {
  return std::uint64_t{r.offset} + static_cast<unsigned>(delta);
};

TEST(ThreadCaches, MisuseOnTheCachedPathIsReportedAndChangesNothing) {
  expect_misuse_reported(acquired_by::this_thread, by_pointer);
}

TEST(ThreadCaches, MisuseByOffsetOnTheCallersOwnCacheIsReportedAndChangesNothing) {
  expect_misuse_reported(acquired_by::this_thread, by_offset);
}

TEST(ThreadCaches, MisuseInTheCacheReleasedIntoLastIsReportedAndChangesNothing) {
  expect_misuse_reported(acquired_by::another_thread, by_pointer);
}

TEST(ThreadCaches, MisuseByOffsetInTheCacheReleasedIntoLastIsReportedAndChangesNothing) {
  expect_misuse_reported(acquired_by::another_thread, by_offset);
}

TEST(ThreadCaches, TryCloseTakesBackEveryThreadsSlabs) {
  cached_pool h;
  std::latch released(1);
  std::latch closed(1);
  std::thread t([&] {
    auto r = h.pool.acquire_raw(300, 8, bufpool::greedy).value();
    EXPECT_TRUE(h.pool.release_raw(r.pointer, 300, 8));
    released.count_down();
    closed.wait();
    // The thread's cache must not hand out memory of a closed pool.
    auto after = h.pool.acquire_raw(300, 8, bufpool::greedy);
    ASSERT_FALSE(after.has_value());
    EXPECT_EQ(after.error(), bufpool::errc::pool_closed);
  });
  released.wait();
  auto slot = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  const auto refused = h.pool.try_close();
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().live_slices, 1u);
  EXPECT_TRUE(h.pool.release_raw(slot.pointer, 64, 8));
  EXPECT_TRUE(h.pool.try_close().has_value());
  closed.count_down();
  t.join();
}

TEST(ThreadCaches, APoolDestroyedBeforeItsThreadsExitIsLeftAlone) {
  auto h = std::make_unique<cached_pool>();
  std::latch used(1);
  std::latch destroyed(1);
  std::thread t([&] {
    auto r = h->pool.acquire_raw(64, 8, bufpool::greedy).value();
    EXPECT_TRUE(h->pool.release_raw(r.pointer, 64, 8));
    used.count_down();
    destroyed.wait();
    // A new pool on the same thread gets a cache of its own.
    cached_pool other;
    auto s = other.pool.acquire_raw(64, 8, bufpool::greedy).value();
    EXPECT_TRUE(other.pool.release_raw(s.pointer, 64, 8));
    expect_all_back(other.pool);
  });  // exits after both pools are gone
  used.wait();
  h.reset();
  destroyed.count_down();
  t.join();
}

// Four threads acquire, hand over and release slots (their own and each other's) while the
// main thread reads statistics, maps, validates and trims.
TEST(ThreadCaches, StressWithHandoffsAndPoolWideOperations) {
  cached_pool h(std::size_t{16} << 20);
  constexpr int workers = 4;
  struct queue {
    std::mutex lock;
    std::vector<raw_t> items;
  };
  std::vector<queue> queues(workers);
  std::atomic<int> failures{0};
  std::atomic<int> running{workers};
  auto run = [&](int id) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 11);
    std::vector<raw_t> mine;
    for (int op = 0; op < 4000; ++op) {
      const auto pick = rng() % 8;
      if (pick < 4 || mine.empty()) {
        const std::uint64_t size = 1 + rng() % (rng() % 8 == 0 ? 8000 : 600);
        auto r = h.pool.acquire_raw(size, 8, bufpool::greedy);
        if (!r) {
          failures.fetch_add(1);
          continue;
        }
        std::fill_n(r->pointer, std::min<std::uint64_t>(r->size, 64), static_cast<std::byte>(id));
        mine.push_back(*r);
      } else if (pick < 6) {
        const raw_t r = mine.back();
        mine.pop_back();
        if (!h.pool.release_raw(r.pointer, r.size, 8)) failures.fetch_add(1);
      } else {
        queue& next = queues[static_cast<std::size_t>((id + 1) % workers)];
        std::scoped_lock l(next.lock);
        next.items.push_back(mine.back());
        mine.pop_back();
      }
      if (op % 64 == 0) {
        std::vector<raw_t> taken;
        {
          std::scoped_lock l(queues[static_cast<std::size_t>(id)].lock);
          taken.swap(queues[static_cast<std::size_t>(id)].items);
        }
        for (std::size_t i = 0; i < taken.size(); ++i)  // by pointer and by offset in turn
          if (!(i % 2 == 0 ? h.pool.release_raw(taken[i].pointer)
                           : h.pool.release_raw(std::uint64_t{taken[i].offset})))
            failures.fetch_add(1);
      }
    }
    for (const auto& r : mine)
      if (!h.pool.release_raw(r.pointer, r.size, 8)) failures.fetch_add(1);
    running.fetch_sub(1);
  };
  std::vector<std::thread> threads;
  for (int id = 0; id < workers; ++id) threads.emplace_back(run, id);
  int rounds = 0;
  while (running.load() != 0) {
    expect_adds_up(h.pool);
    if (++rounds % 4 == 0) h.pool.trim();
    if (rounds % 8 == 0) EXPECT_FALSE(h.pool.map().regions.empty());
  }
  for (auto& t : threads) t.join();
  for (auto& q : queues)
    for (const auto& r : q.items) EXPECT_TRUE(h.pool.release_raw(r.pointer));
  EXPECT_EQ(failures.load(), 0);
  expect_all_back(h.pool);
}

// The owner of a cache enters it without a read-modify-write while other threads seldom
// need it (see cache_lock): here two owners churn slots, each slot stamped with its owner
// and a serial number checked at release, while a monitor runs pool-wide operations and
// the owners now and then hand a slot to each other. The rates keep the owners on their
// fast path for much of the run; the other threads' entries may end the bias before its
// end, so the switch is exercised too. Two threads inside one cache at once would hand out
// a slot twice, lose one, or break the totals.
TEST(ThreadCaches, OwnersFastPathExcludesPoolWideOperationsAndOtherThreadsReleases) {
  cached_pool h(std::size_t{16} << 20);
  constexpr int owners = 2;
  struct stamp {
    std::uint64_t owner, serial;
  };
  struct handoff {
    std::mutex lock;
    std::vector<std::pair<raw_t, stamp>> items;
  };
  std::vector<handoff> inbox(owners);
  std::atomic<int> failures{0};
  std::atomic<int> running{owners};
  auto check = [&](const raw_t& r, const stamp& expected) {
    stamp seen{};
    std::memcpy(&seen, r.pointer, sizeof seen);
    if (seen.owner != expected.owner || seen.serial != expected.serial) failures.fetch_add(1);
  };
  auto owner = [&](int id) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 31);
    std::vector<std::pair<raw_t, stamp>> mine;
    for (std::uint64_t op = 0; op < 200000; ++op) {
      if (rng() % 2 == 0 || mine.empty()) {
        auto r = h.pool.acquire_raw(16 + rng() % 1000, 8, bufpool::greedy);
        if (!r) {
          failures.fetch_add(1);
          continue;
        }
        const stamp st{static_cast<std::uint64_t>(id), op};
        std::memcpy(r->pointer, &st, sizeof st);
        mine.emplace_back(*r, st);
      } else {
        const auto k = static_cast<std::size_t>(rng() % mine.size());
        std::swap(mine[k], mine.back());
        const auto [r, st] = mine.back();
        mine.pop_back();
        check(r, st);
        if (op % 1024 == 0) {  // to the other owner, who releases it on its thread
          handoff& other = inbox[static_cast<std::size_t>((id + 1) % owners)];
          std::scoped_lock l(other.lock);
          other.items.emplace_back(r, st);
        } else if (!h.pool.release_raw(r.pointer, r.size, 8)) {
          failures.fetch_add(1);
        }
      }
      if (op % 4096 == 0) {
        std::vector<std::pair<raw_t, stamp>> taken;
        {
          std::scoped_lock l(inbox[static_cast<std::size_t>(id)].lock);
          taken.swap(inbox[static_cast<std::size_t>(id)].items);
        }
        for (const auto& [r, st] : taken) {
          check(r, st);
          if (!h.pool.release_raw(r.pointer, r.size, 8)) failures.fetch_add(1);
        }
      }
    }
    for (const auto& [r, st] : mine) {
      check(r, st);
      if (!h.pool.release_raw(r.pointer, r.size, 8)) failures.fetch_add(1);
    }
    running.fetch_sub(1);
  };
  std::vector<std::thread> threads;
  for (int id = 0; id < owners; ++id) threads.emplace_back(owner, id);
  while (running.load() != 0) {
    expect_adds_up(h.pool);
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  for (auto& t : threads) t.join();
  for (auto& box : inbox)
    for (const auto& [r, st] : box.items) {
      check(r, st);
      EXPECT_TRUE(h.pool.release_raw(r.pointer));
    }
  EXPECT_EQ(failures.load(), 0);
  expect_all_back(h.pool);
}

// A forked child uses the pool it inherited, with its thread's cache: a pool-wide operation
// there needs the heavy barrier too, in a process that did not register for it itself.
TEST(ThreadCaches, AForkedChildUsesItsThreadsCacheAndPoolWideOperations) {
  cached_pool h;
  auto kept = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  const pid_t child = fork();
  ASSERT_NE(child, -1);
  if (child == 0) {
    auto r = h.pool.acquire_raw(64, 8, bufpool::greedy);
    const bool ok = r && h.pool.stats().live_slices == 2 && h.pool.release_raw(r->pointer) &&
                    h.pool.release_raw(kept.pointer) && h.pool.stats().live_slices == 0 &&
                    h.pool.validate().has_value();
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(h.pool.release_raw(kept.pointer));
  expect_all_back(h.pool);
}

// A release by offset finds the slot in the caller's own cache first, and in another
// thread's cache otherwise; a second release of either is reported, whichever cache it
// would reach.
TEST(ThreadCaches, ReleaseByOffsetFindsTheCallersOwnCacheAndOtherThreadsCaches) {
  cached_pool h;
  const raw_t mine = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
  raw_t theirs{};
  std::thread([&] { theirs = h.pool.acquire_raw(64, 8, bufpool::greedy).value(); }).join();
  {
    thread_holding_a_cache keeper(h.pool, 128);  // a third cache, alive meanwhile
    EXPECT_TRUE(h.pool.release_raw(mine.offset));
    EXPECT_TRUE(h.pool.release_raw(theirs.offset));
    bufpool_test::recording_violations rec;
    EXPECT_FALSE(h.pool.release_raw(mine.offset));
    EXPECT_FALSE(h.pool.release_raw(theirs.offset));
    EXPECT_EQ(bufpool_test::g_violations, 2);
    EXPECT_TRUE(h.pool.release_raw(keeper.slot.pointer));
  }
  expect_all_back(h.pool);
}

// A release from another thread goes straight to the cache noted as the span's owner; the
// note is only a hint: after trim() gives a span back and another thread's cache takes the
// same memory, releases still reach the right cache, and a stale one reports the misuse.
TEST(ThreadCaches, ReleasesFromOtherThreadsReachTheSpansCurrentOwner) {
  cached_pool h;
  thread_holding_a_cache first_owner(h.pool, 64);  // alive: its cache is not handed on
  const raw_t stale = first_owner.slot;
  EXPECT_TRUE(h.pool.release_raw(stale.pointer));  // from this thread: reaches first_owner's
  h.pool.trim();                                   // its emptied span goes back
  raw_t second{};
  std::thread([&] { second = h.pool.acquire_raw(64, 8, bufpool::greedy).value(); }).join();
  EXPECT_EQ(second.offset, stale.offset) << "the same memory, now in another cache";
  {
    bufpool_test::recording_violations rec;
    raw_t other{};
    std::thread([&] { other = h.pool.acquire_raw(64, 8, bufpool::greedy).value(); }).join();
    EXPECT_TRUE(h.pool.release_raw(second.pointer));
    EXPECT_FALSE(h.pool.release_raw(stale.pointer));  // released twice: reported
    EXPECT_TRUE(h.pool.release_raw(other.pointer));
    EXPECT_EQ(bufpool_test::g_violations, 1);
  }
  expect_all_back(h.pool);
}

// A pool lock that counts the acquisitions of the calling thread.
struct counting_mutex {
  static inline thread_local int taken = 0;
  void lock() {
    mutex.lock();
    ++taken;
  }
  void unlock() { mutex.unlock(); }
  bool try_lock() {
    if (!mutex.try_lock()) return false;
    ++taken;
    return true;
  }
  std::mutex mutex;
};

// A thread that releases what another thread acquired (a consumer of one producer's
// buffers) remembers the cache it released into: its next releases there, by pointer or by
// offset, take that cache's lock alone, not the pool's.
TEST(ThreadCaches, ReleasesIntoTheCacheReleasedIntoLastDoNotTakeThePoolsLock) {
  using counted_pool =
      bufpool::buffer_pool<std::uint64_t, bufpool::no_extra, bufpool::no_handle, counting_mutex>;
  bufpool_test::page_aligned_pool<counted_pool> h(bufpool_test::slab_options(true), 1 << 20);
  std::vector<raw_t> slots;
  std::latch taken(1);
  std::latch released(1);
  std::thread producer([&] {
    for (int i = 0; i < 32; ++i)
      slots.push_back(h.pool.acquire_raw(64, 8, bufpool::greedy).value());
    taken.count_down();
    released.wait();  // alive, holding its cache
  });
  taken.wait();
  EXPECT_TRUE(h.pool.release_raw(slots[0].pointer));  // the first finds the cache via the pool
  counting_mutex::taken = 0;
  for (std::size_t i = 1; i < slots.size(); ++i)
    EXPECT_TRUE(i % 2 == 0 ? h.pool.release_raw(slots[i].pointer, 64, 8)
                           : h.pool.release_raw(std::uint64_t{slots[i].offset}, 64, 8));
  EXPECT_EQ(counting_mutex::taken, 0);
  released.count_down();
  producer.join();
  EXPECT_EQ(h.pool.stats().used_bytes, 0u);
  EXPECT_TRUE(h.pool.validate().has_value());
}

// Releases on other threads than the acquisitions, while the caches they reach change hands:
// producers acquire slots and hand them over, and exit every few hundred slots (their caches,
// still holding slots, wait for the next thread); two consumers release what they are handed
// (by pointer and by offset in turn, from whichever producer: the cache each remembers keeps
// changing) and take slots of their own, so a consumer may attach a cache it released into
// before. Meanwhile this thread checks, trims and reads the totals. Nothing may be lost or
// released twice.
TEST(ThreadCaches, ReleasesAcrossThreadsStayExactWhileTheirCachesChangeHands) {
  cached_pool h(std::size_t{16} << 20);
  struct {
    std::mutex lock;
    std::vector<raw_t> items;
  } handed;
  std::atomic<int> failures{0};
  std::atomic<int> producing{3};
  auto produce = [&](int id) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 101);
    for (int generation = 0; generation < 6; ++generation)
      std::thread([&] {  // a thread of its own per generation: each exit detaches its cache
        for (int i = 0; i < 300; ++i) {
          const std::uint64_t size = 1 + rng() % 700;
          auto r = h.pool.acquire_raw(size, 8, bufpool::greedy);
          if (!r) {
            failures.fetch_add(1);
            continue;
          }
          std::scoped_lock l(handed.lock);
          handed.items.push_back(*r);
        }
      })
          .join();
    producing.fetch_sub(1);
  };
  auto consume = [&](int id) {
    std::mt19937_64 rng(static_cast<std::uint64_t>(id) + 7);
    std::size_t released = 0;
    for (;;) {
      const bool produced_all = producing.load() == 0;  // before looking: then empty is final
      raw_t r{};
      {
        std::scoped_lock l(handed.lock);
        if (!handed.items.empty()) {
          const std::size_t k = rng() % handed.items.size();  // any producer's
          r = handed.items[k];
          handed.items[k] = handed.items.back();
          handed.items.pop_back();
        }
      }
      if (r.pointer == nullptr) {
        if (produced_all) return;
        std::this_thread::yield();
        continue;
      }
      const bool ok = ++released % 2 == 0 ? h.pool.release_raw(r.pointer, r.size, 8)
                                          : h.pool.release_raw(std::uint64_t{r.offset}, r.size, 8);
      if (!ok) failures.fetch_add(1);
      if (rng() % 16 == 0) {  // a slot of its own now and then
        auto mine = h.pool.acquire_raw(64, 8, bufpool::greedy);
        if (!mine || !h.pool.release_raw(mine->pointer, 64, 8)) failures.fetch_add(1);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int id = 0; id < 3; ++id) threads.emplace_back(produce, id);
  for (int id = 0; id < 2; ++id) threads.emplace_back(consume, id);
  for (int rounds = 0; producing.load() != 0; ++rounds) {
    expect_adds_up(h.pool);
    if (rounds % 4 == 0) h.pool.trim();
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(handed.items.empty());
  EXPECT_EQ(failures.load(), 0);
  expect_all_back(h.pool);
}

// Once other threads' entries end a cache lock's bias, the owner's fast path stays closed:
// an owner that read "biased" just before the end and was preempted before it marked itself
// inside must not find the path open, because later lockers no longer revoke it or wait.
TEST(CacheLock, OwnersFastPathStaysClosedOnceTheBiasHasEnded) {
  if (!bufpool::detail::heavy_barrier_available()) GTEST_SKIP() << "no bias without membarrier";
  bufpool::detail::cache_lock lock;
  ASSERT_TRUE(lock.biased());
  int entries = 0;
  while (lock.biased() && entries < 1000) {
    lock.lock();
    EXPECT_TRUE(lock.owner_path_revoked()) << "another thread inside: the path is closed";
    lock.unlock();
    ++entries;
    if (lock.biased()) EXPECT_FALSE(lock.owner_path_revoked()) << "reopened while biased";
  }
  ASSERT_FALSE(lock.biased()) << "the bias ends after enough entries by other threads";
  EXPECT_TRUE(lock.owner_path_revoked());
  {
    bufpool::detail::owner_scope owner(lock);  // takes the mutex now
  }
  lock.lock();
  lock.unlock();
  EXPECT_TRUE(lock.owner_path_revoked());
}

// The mutex of a cache lock is released with a plain store and has no sleepers to wake: it
// must still exclude, including waiters that have gone past spinning and yielding to naps
// (one thread now and then holds it for a millisecond), and each waiter must get in.
TEST(SpinMutex, ExcludesEveryOtherThreadIncludingWaitersThatNap) {
  bufpool::detail::spin_mutex mutex;
  std::uint64_t counter = 0;  // protected by `mutex` alone
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  constexpr int threads = 4;
  constexpr int entries = 20000;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (int i = 0; i < entries; ++i) {
        if (i % 2 == 0) {
          mutex.lock();
        } else {
          while (!mutex.try_lock()) std::this_thread::yield();
        }
        if (inside.fetch_add(1, std::memory_order_relaxed) != 0) overlaps.fetch_add(1);
        counter = counter + 1;
        if (t == 0 && i % 4000 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        inside.fetch_sub(1, std::memory_order_relaxed);
        mutex.unlock();
      }
    });
  for (auto& w : workers) w.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(counter, std::uint64_t{threads} * entries);
}

// The switch-off under contention: an owner and two other threads update one counter that
// only the lock protects, over locks whose bias ends midway; no update may be lost and no two
// threads may be inside at once.
TEST(CacheLock, ExcludesOtherThreadsWhileItsBiasEndsUnderContention) {
  for (int round = 0; round < 20; ++round) {
    bufpool::detail::cache_lock lock;
    std::uint64_t counter = 0;  // protected by `lock` alone
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};
    auto critical = [&] {
      if (inside.fetch_add(1, std::memory_order_relaxed) != 0) overlaps.fetch_add(1);
      counter = counter + 1;
      inside.fetch_sub(1, std::memory_order_relaxed);
    };
    constexpr int owner_entries = 200000;
    constexpr int other_entries = 2000;
    std::thread owner([&] {
      for (int i = 0; i < owner_entries; ++i) {
        bufpool::detail::owner_scope scope(lock);
        critical();
      }
    });
    std::vector<std::thread> others;
    for (int t = 0; t < 2; ++t)
      others.emplace_back([&] {
        for (int i = 0; i < other_entries; ++i) {
          lock.lock();
          critical();
          lock.unlock();
        }
      });
    owner.join();
    for (auto& t : others) t.join();
    EXPECT_EQ(overlaps.load(), 0) << "round " << round;
    EXPECT_EQ(counter, std::uint64_t{owner_entries} + 2 * other_entries) << "round " << round;
  }
}

// fork() while another thread is inside the pool (in its cache's fast path, holding the
// pool's lock, or locking every cache for stats()): the child gets every lock free and its
// pool consistent, so it can go on using it. A child that blocks is ended by its alarm.
TEST(ThreadCaches, AForkedChildCanUseThePoolWhileAnotherThreadWasInsideIt) {
  cached_pool h;
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      auto small = h.pool.acquire_raw(64, 8, bufpool::greedy);        // the cache's fast path
      auto large = h.pool.acquire_raw(64 << 10, 8, bufpool::greedy);  // the pool's lock
      if (small) (void)h.pool.release_raw(small->pointer);
      if (large) (void)h.pool.release_raw(large->pointer);
      if (i % 8 == 0) (void)h.pool.stats();  // every lock
    }
  });
  int stuck_or_failed = 0;
  for (int round = 0; round < 40; ++round) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    const pid_t child = fork();
    ASSERT_NE(child, -1);
    if (child == 0) {
      alarm(5);
      auto r = h.pool.acquire_raw(64, 8, bufpool::greedy);
      auto big = h.pool.acquire_raw(64 << 10, 8, bufpool::greedy);
      const bool ok = r && big && h.pool.stats().live_slices >= 2 &&
                      h.pool.release_raw(r->pointer) && h.pool.release_raw(big->pointer) &&
                      h.pool.validate().has_value();
      _exit(ok ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++stuck_or_failed;
  }
  stop = true;
  worker.join();
  EXPECT_EQ(stuck_or_failed, 0) << "children that blocked (killed by their alarm) or failed";
  expect_adds_up(h.pool);
}

TEST(ThreadCachesDeathTest, DoubleReleaseOnTheCachedPathAbortsWithTheRule) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        cached_pool h;
        auto r = h.pool.acquire_raw(64, 8, bufpool::greedy).value();
        (void)h.pool.release_raw(r.pointer, 64, 8);
        (void)h.pool.release_raw(r.pointer, 64, 8);
      },
      "does not start a live raw range");
}

}  // namespace
