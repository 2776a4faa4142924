// SPDX-License-Identifier: MIT
// Multi-threaded soak and stress of one shared pool (run under the tsan preset in CI;
// scripts/soak SECONDS runs the soak for longer).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>
import bufpool;

namespace {

using pool_t = bufpool::buffer_pool<>;

// Stands in for an in-flight I/O: the memory is busy until `done` is set (by another thread).
struct io_guard {
  std::shared_ptr<std::atomic<bool>> done;
  bool try_release() const { return done->load(std::memory_order_acquire); }
};
using slice_t = pool_t::slice_type<io_guard>;

constexpr std::size_t region_size = 64 * 1024;
constexpr std::size_t region_count = 24;
constexpr int workers = 8;
constexpr int ops_per_phase = 1000;
constexpr int ci_phases = 12;  // 8 workers x 12k operations: seconds under TSan

// The soak's length: BUFPOOL_SOAK_SECONDS (scripts/soak) or, by default, ci_phases phases.
struct soak_length {
  double seconds = 0;  // 0: count phases instead
  int phases = ci_phases;
};
soak_length length_from_environment() {
  soak_length l;
  if (const char* s = std::getenv("BUFPOOL_SOAK_SECONDS"); s != nullptr && *s != '\0')
    l.seconds = std::strtod(s, nullptr);
  return l;
}

// The byte at index i of a slice filled for `cookie`: every slice gets its own pattern.
std::byte pattern(std::uint64_t cookie, std::size_t i) {
  std::uint64_t z = cookie + 0x9E3779B97F4A7C15u * (i / 8 + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return static_cast<std::byte>(static_cast<unsigned char>((z ^ (z >> 31)) >> ((i % 8) * 8)));
}
void fill(std::span<std::byte> b, std::uint64_t cookie) {
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = pattern(cookie, i);
}
bool holds(std::span<const std::byte> b, std::uint64_t cookie) {
  for (std::size_t i = 0; i < b.size(); ++i)
    if (b[i] != pattern(cookie, i)) return false;
  return true;
}

// A slice a worker owns, with the cookie its bytes carry and the worker that acquired it.
struct owned {
  slice_t slice;
  std::uint64_t cookie = 0;
  int owner = 0;
};

// An "I/O" in flight on a guarded slice's memory, completed by the completion thread.
struct io_request {
  std::shared_ptr<std::atomic<bool>> done;
  std::byte* data = nullptr;
  std::size_t size = 0;
  std::uint64_t cookie = 0;
  bool writes = false;  // exclusive guard: the I/O rewrites the memory; shared: it only reads it
};

struct shared_state {
  std::mutex m;
  std::condition_variable cv;
  std::deque<io_request> in_flight;
  std::vector<owned> handoff;  // slices a worker passed on for another worker to reclaim
  bool workers_done = false;
  // Held by the expander and the completer while they act, and by the quiescent check:
  // with the workers waiting at the phase barrier, nothing then changes the pool.
  std::mutex quiet;
  std::vector<std::vector<owned>> live = std::vector<std::vector<owned>>(workers);
  std::atomic<bool> finish{false};
};

struct counters {
  std::atomic<long> acquired[3] = {0, 0, 0};  // optimal, greedy, fixed
  std::atomic<long> released{0};              // slices given up by the worker holding them
  std::atomic<long> handed_off{0};            // ... of which passed to another worker
  std::atomic<long> reclaimed_elsewhere{0};   // handed-off slices given back by another worker
  std::atomic<long> guarded{0};
  std::atomic<long> parked{0};
  std::atomic<long> bad_cookie{0};
  std::atomic<long> unexpected{0};
  std::atomic<long> completed{0};
  std::atomic<long> regions{0};
  std::atomic<long> quiet_checks{0};
};

// Checks a slice's cookie through whichever view its guard allows.
bool cookie_intact(const owned& o) {
  auto r = o.slice.try_cbytes();
  return r.has_value() && holds(*r, o.cookie);
}

class worker {
 public:
  worker(pool_t& pool, shared_state& st, counters& c, int id)
      : pool_(pool),
        st_(st),
        c_(c),
        id_(id),
        live_(st.live[static_cast<std::size_t>(id)]),
        rng_(static_cast<std::uint64_t>(id) * 7919 + 1),
        next_cookie_(static_cast<std::uint64_t>(id) << 40) {}

  void run(std::barrier<std::function<void()>>& phase_end) {
    while (!st_.finish.load()) {
      for (int op = 0; op < ops_per_phase; ++op) step();
      phase_end.arrive_and_wait();
    }
    while (!live_.empty()) {
      owned o = std::move(live_.back());
      live_.pop_back();
      give_back(std::move(o));
    }
  }

 private:
  void step() {
    const std::uint64_t dice = rng_() % 100;
    if (dice < 50 && live_.size() < 48)
      acquire();
    else if (dice < 85 && !live_.empty())
      release();
    else if (dice < 97 && !live_.empty())
      start_io();
    else
      pool_.collect();
  }

  void acquire() {  // every strategy; fixed retries the last range this worker gave back
    const int kind = static_cast<int>(rng_() % 3);
    std::uint64_t size = 1 + rng_() % 1500;
    std::uint64_t align = std::uint64_t{1} << (rng_() % 10);
    bufpool::strategy how = kind == 0 ? bufpool::optimal : bufpool::greedy;
    if (kind == 2) {
      if (last_size_ == 0) return;
      how = bufpool::fixed(last_offset_);
      size = last_size_;
      align = 16;
    }
    auto s = pool_.acquire<io_guard>(size, align, how);
    if (!s) {
      const bufpool::errc want = kind == 2 ? bufpool::errc::occupied : bufpool::errc::out_of_memory;
      if (s.error() != want) ++c_.unexpected;
      return;
    }
    if (s->offset() % align != 0 || s->size() != size) ++c_.unexpected;
    ++c_.acquired[kind];
    if (kind == 2) last_size_ = 0;
    owned o{std::move(*s), ++next_cookie_, id_};
    fill(o.slice.bytes(), o.cookie);
    live_.push_back(std::move(o));
  }

  // Gives up a random slice: a quarter go to another worker, which reclaims them (and this
  // worker reclaims one that another worker handed off, if any).
  void release() {
    const std::size_t i = rng_() % live_.size();
    std::swap(live_[i], live_.back());
    owned o = std::move(live_.back());
    live_.pop_back();
    ++c_.released;
    std::optional<owned> adopted;
    {
      std::scoped_lock lock(st_.m);
      if (rng_() % 4 == 0) {
        st_.handoff.push_back(std::move(o));
        ++c_.handed_off;
      }
      const auto other = std::find_if(st_.handoff.begin(), st_.handoff.end(),
                                      [&](const owned& h) { return h.owner != id_; });
      if (other != st_.handoff.end()) {
        adopted = std::move(*other);
        *other = std::move(st_.handoff.back());
        st_.handoff.pop_back();
      }
    }
    if (o.slice) give_back(std::move(o));
    if (adopted) {
      ++c_.reclaimed_elsewhere;
      give_back(std::move(*adopted));
    }
  }

  // Gives one slice back the way its state allows; guarded ones may be parked.
  void give_back(owned o) {
    if (o.slice.is_guarded()) {
      if (rng_() % 2 == 0) {
        if (auto g = o.slice.try_unguard(); g.has_value()) {
          if (!holds(*o.slice.try_cbytes(), o.cookie)) ++c_.bad_cookie;
        } else if (g.error() != bufpool::errc::in_use) {
          ++c_.unexpected;
        }
      }
      if (o.slice.is_guarded()) {
        auto r = std::move(o.slice).reclaim();  // must be refused, slice handed back
        if (r.has_value() || r.error().code != bufpool::errc::in_use) {
          ++c_.unexpected;
          return;
        }
        ++c_.parked;  // destroyed while guarded (parked unless the I/O just finished)
        return;
      }
    } else if (!cookie_intact(o)) {
      ++c_.bad_cookie;
    }
    if (o.owner == id_) {
      last_offset_ = o.slice.offset();
      last_size_ = o.slice.size();
    }
    if (rng_() % 2 == 0 && !std::move(o.slice).reclaim().has_value()) ++c_.unexpected;
  }

  // Guards a slice for an I/O that the completion thread finishes later.
  void start_io() {
    owned& o = live_[rng_() % live_.size()];
    if (o.slice.is_guarded()) {
      auto second = o.slice.guard(io_guard{std::make_shared<std::atomic<bool>>(true)});
      if (second.has_value() || second.error().code != bufpool::errc::already_guarded)
        ++c_.unexpected;
      return;
    }
    if (!cookie_intact(o)) ++c_.bad_cookie;
    const std::span<std::byte> b = o.slice.bytes();
    const bool writes = rng_() % 2 == 0;
    auto done = std::make_shared<std::atomic<bool>>(false);
    const auto mode = writes ? bufpool::guard_mode::exclusive : bufpool::guard_mode::shared;
    if (!o.slice.guard(io_guard{done}, mode).has_value()) {
      ++c_.unexpected;
      return;
    }
    ++c_.guarded;
    {
      std::scoped_lock lock(st_.m);
      st_.in_flight.push_back({done, b.data(), b.size(), o.cookie, writes});
    }
    st_.cv.notify_one();
  }

  pool_t& pool_;
  shared_state& st_;
  counters& c_;
  int id_;
  std::vector<owned>& live_;
  std::mt19937_64 rng_;
  std::uint64_t next_cookie_;
  std::uint32_t last_offset_ = 0;
  std::uint32_t last_size_ = 0;
};

// Completes I/Os in arrival order, some time after they started, so guarded slices get
// destroyed (parked) while their I/O is still running.
void completer(pool_t& pool, shared_state& st, counters& c) {
  for (;;) {
    io_request r;
    {
      std::unique_lock lock(st.m);
      st.cv.wait(lock, [&] { return st.in_flight.size() >= 12 || st.workers_done; });
      if (st.in_flight.empty()) return;
      r = std::move(st.in_flight.front());
      st.in_flight.pop_front();
    }
    std::scoped_lock quiet(st.quiet);
    const std::span<std::byte> b(r.data, r.size);
    if (!holds(b, r.cookie)) ++c.bad_cookie;  // nobody reused the range while in flight
    if (r.writes) fill(b, r.cookie);          // the device writes the buffer
    r.done->store(true, std::memory_order_release);
    if (++c.completed % 8 == 0) pool.collect();
  }
}

// Keeps adding regions (and cancelling some reservations) while the workers run.
void expander(pool_t& pool, shared_state& st, std::vector<std::vector<std::byte>>& memory,
              counters& c, const std::atomic<bool>& stop) {
  for (std::size_t i = 1; i < memory.size() && !stop.load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::scoped_lock quiet(st.quiet);
    auto cancelled = pool.begin_expand(4096);  // becomes a gap below the next region
    auto grow = pool.begin_expand(memory[i].size());
    if (!grow || !cancelled) {
      ++c.unexpected;
      return;
    }
    cancelled = std::unexpected(bufpool::errc::invalid_size);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // "allocating" the memory
    if (!std::move(*grow).initialize(memory[i].data()).has_value()) ++c.unexpected;
    ++c.regions;
  }
}

// Reads statistics and validates the pool while everything else runs.
void observer(pool_t& pool, counters& c, const std::atomic<bool>& stop, std::string& failure) {
  while (!stop.load()) {
    const bufpool::pool_stats s = pool.stats();
    if (s.parked_slices > s.guarded_slices || s.guarded_slices > s.live_slices) ++c.unexpected;
    (void)pool.active_guard_count();
    (void)pool.region_statistics();
    if (auto v = pool.validate(); !v) {
      if (failure.empty()) failure = v.error();
      ++c.unexpected;
    }
    // validate() is O(ranges) under the pool's lock: pause so the workers are not starved.
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// Runs at the end of every phase, while every worker waits at the barrier and the expander
// and the completer are kept out: the pool's counts must then match what the threads hold.
void check_quiescent(pool_t& pool, shared_state& st, counters& c, std::string& failure) {
  std::scoped_lock lock(st.quiet, st.m);
  auto note = [&](const char* what) {
    ++c.unexpected;
    if (failure.empty()) failure = what;
  };
  if (auto v = pool.validate(); !v) note("validate() failed at a quiescent point");
  const bufpool::pool_stats s = pool.stats();
  std::size_t held = st.handoff.size();
  std::uint64_t held_bytes = 0;
  for (const owned& o : st.handoff) held_bytes += o.slice.capacity();
  for (const auto& w : st.live) {
    held += w.size();
    for (const owned& o : w) held_bytes += o.slice.capacity();
  }
  if (s.live_slices != held + s.parked_slices) note("live slices != held + parked");
  if (s.used_bytes < held_bytes) note("used bytes below the capacity the threads hold");
  if (s.used_bytes + s.free_bytes != static_cast<std::uint64_t>(c.regions.load()) * region_size)
    note("used + free != the regions' bytes");
  if (s.pending_bytes != 0) note("an expansion is pending at a quiescent point");
  ++c.quiet_checks;
}

TEST(Threads, SoakEightWorkersHandOffGuardExpandAndStayConsistent) {
  const soak_length length = length_from_environment();
  std::vector<std::vector<std::byte>> memory(region_count, std::vector<std::byte>(region_size));
  pool_t pool;
  shared_state st;
  counters c;
  std::atomic<bool> stop{false};
  std::string observer_failure;
  std::string quiet_failure;

  auto first = pool.begin_expand(region_size);  // the workers start with one region
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(std::move(*first).initialize(memory[0].data()).has_value());
  ++c.regions;
  const auto start = std::chrono::steady_clock::now();
  int phases = 0;
  std::barrier<std::function<void()>> phase_end(workers, [&]() noexcept {
    try {
      check_quiescent(pool, st, c, quiet_failure);
    } catch (...) {
      ++c.unexpected;
    }
    ++phases;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (length.seconds > 0 ? elapsed >= length.seconds : phases >= length.phases)
      st.finish.store(true);
  });
  std::thread grow([&] { expander(pool, st, memory, c, stop); });
  std::thread watch([&] { observer(pool, c, stop, observer_failure); });
  std::thread complete([&] { completer(pool, st, c); });
  std::vector<std::thread> work;
  for (int i = 0; i < workers; ++i)
    work.emplace_back([&, i] { worker(pool, st, c, i).run(phase_end); });
  for (auto& t : work) t.join();
  {
    std::scoped_lock lock(st.m);
    st.workers_done = true;
    for (auto& o : st.handoff)
      if (!o.slice.is_guarded() && !cookie_intact(o)) ++c.bad_cookie;
    st.handoff.clear();  // guarded ones park; the completer finishes their I/O
  }
  st.cv.notify_all();
  complete.join();
  stop.store(true);
  grow.join();
  watch.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  EXPECT_EQ(c.bad_cookie.load(), 0);
  EXPECT_EQ(c.unexpected.load(), 0) << observer_failure << quiet_failure;
  EXPECT_GE(c.quiet_checks.load(), phases);
  EXPECT_GT(c.acquired[0].load(), 0);
  EXPECT_GT(c.acquired[1].load(), 0);
  EXPECT_GT(c.acquired[2].load(), 0);
  EXPECT_GT(c.guarded.load(), 0);
  EXPECT_GT(c.parked.load(), 0);
  EXPECT_GT(c.reclaimed_elsewhere.load(), 0);
  // About a quarter of the slices given up are reclaimed by another thread.
  const double share = static_cast<double>(c.handed_off.load()) / static_cast<double>(c.released);
  EXPECT_GT(share, 0.2);
  EXPECT_LT(share, 0.3);
  EXPECT_EQ(c.completed.load(), c.guarded.load());

  pool.collect();  // every I/O has completed: every parked range comes back
  const bufpool::pool_stats s = pool.stats();
  const auto regions = static_cast<std::size_t>(c.regions.load());
  EXPECT_EQ(s.regions, regions);
  EXPECT_EQ(s.live_slices, 0u);
  EXPECT_EQ(s.used_bytes, 0u);
  EXPECT_EQ(s.guarded_slices, 0u);
  EXPECT_EQ(s.parked_slices, 0u);
  EXPECT_EQ(s.pending_bytes, 0u);
  EXPECT_EQ(s.free_bytes, regions * region_size);
  EXPECT_EQ(s.free_ranges, regions);  // each region coalesced back into one free range
  EXPECT_EQ(pool.active_guard_count(), 0u);
  const auto v = pool.validate();
  EXPECT_TRUE(v.has_value()) << v.error();
  RecordProperty("seconds", std::to_string(seconds));
  RecordProperty("phases", std::to_string(phases));
  std::printf(
      "soak: %d phases of %d operations on %d workers in %.1f s, %ld slices reclaimed "
      "on another thread, %ld I/Os, %ld parked\n",
      phases, ops_per_phase, workers, seconds, c.reclaimed_elsewhere.load(), c.completed.load(),
      c.parked.load());
}

// Raw ranges from 4 threads at once; each thread releases (by pointer) what its neighbour
// acquired, handed over through a locked queue, and checks the neighbour's byte pattern.
constexpr int raw_workers = 4;

// Each worker acquires raw ranges, fills them, and hands them to the next worker, which
// checks the contents and releases them: `how` greedy with slabs on takes slab slots.
void raw_handoff(bufpool::strategy how, bool slabs) {
  std::vector<std::byte> memory(std::size_t{1} << 22);
  pool_t::options_type options;
  options.slabs = slabs;
  pool_t pool(options);
  ASSERT_TRUE(pool.begin_expand(memory.size()).value().initialize(memory.data()));
  struct handoff {
    std::mutex lock;
    std::vector<bufpool::raw_range<std::uint32_t>> items;
  };
  std::vector<handoff> queues(raw_workers);
  std::atomic<int> mismatches{0};
  std::atomic<int> failures{0};
  auto run = [&](int id) {
    std::mt19937 rng(static_cast<unsigned>(id) * 7919u + 1u);
    handoff& mine = queues[static_cast<std::size_t>(id)];
    handoff& next = queues[static_cast<std::size_t>((id + 1) % raw_workers)];
    for (int op = 0; op < 5000; ++op) {
      auto r = pool.acquire_raw(1 + rng() % 256, std::uint64_t{1} << (rng() % 7), how);
      if (!r) {
        failures.fetch_add(1);
        continue;
      }
      std::fill_n(r->pointer, r->size, static_cast<std::byte>(id + 1));
      {
        std::scoped_lock l(next.lock);
        next.items.push_back(*r);
      }
      std::vector<bufpool::raw_range<std::uint32_t>> taken;
      {
        std::scoped_lock l(mine.lock);
        taken.swap(mine.items);
      }
      const auto expected = static_cast<std::byte>((id + raw_workers - 1) % raw_workers + 1);
      for (const auto& t : taken) {
        if (std::count(t.pointer, t.pointer + t.size, expected) != t.size) mismatches.fetch_add(1);
        if (!pool.release_raw(static_cast<const void*>(t.pointer))) failures.fetch_add(1);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int id = 0; id < raw_workers; ++id) threads.emplace_back(run, id);
  for (auto& t : threads) t.join();
  for (auto& q : queues)
    for (const auto& t : q.items) EXPECT_TRUE(pool.release_raw(std::uint64_t{t.offset}));
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(pool.stats().live_slices, 0u);
  const auto v = pool.validate();
  EXPECT_TRUE(v.has_value()) << v.error();
}

TEST(Threads, RawRangesAcquiredAndReleasedOnDifferentThreads) {
  raw_handoff(bufpool::optimal, false);
}

TEST(Threads, SlabSlotsAcquiredAndReleasedOnDifferentThreads) {
  raw_handoff(bufpool::greedy, true);
}

}  // namespace
