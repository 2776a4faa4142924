// SPDX-License-Identifier: MIT
// Releases that reach a thread cache, as the number of idle caches grows (0, 16, 64).
//
// A pool with slabs and thread caches; K idle threads each took one slot (so each holds a
// cache) and wait until the benchmark ends. Rows, time per acquire+release pair of 64 B:
//
//   remote/<K>     one thread acquires a batch of slots, another releases them by pointer:
//                  every release reaches the other thread's cache (timed: the releases).
//   remote_glibc   the same hand-off with malloc and free, the baseline.
//   by_offset/<K>  the benchmark's thread acquires a slot and releases it by offset: the
//                  offset carries no pointer, so the pool must find the cache that holds it.
//   own/<K>        the same pair released by pointer: the owner's fast path, for reference.
#include <benchmark/benchmark.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>
import bufpool;

namespace {

using pool_t = bufpool::buffer_pool<std::uint64_t>;

bufpool::basic_options<std::uint64_t> cached_options() {
  bufpool::basic_options<std::uint64_t> o;
  o.min_alignment = 8;
  o.max_alignment = 4096;
  o.slabs = true;
  o.thread_caches = true;
  return o;
}

// A pool over 64 MiB of page-aligned memory, and `idle` threads that hold a cache in it.
class pool_with_idle_caches {
 public:
  explicit pool_with_idle_caches(int idle) : memory_(new std::byte[(64 << 20) + 4096]) {
    auto* base = reinterpret_cast<std::byte*>(
        (reinterpret_cast<std::uintptr_t>(memory_.get()) + 4095) & ~std::uintptr_t{4095});
    auto grow = pool.begin_expand(std::size_t{64} << 20);
    if (!grow || !std::move(*grow).initialize(base)) std::abort();
    for (int i = 0; i < idle; ++i)
      threads_.emplace_back([this] {
        if (auto r = pool.acquire_raw(64, 8, bufpool::greedy)) (void)pool.release_raw(r->pointer);
        std::unique_lock lock(mutex_);
        ++attached_;
        changed_.notify_all();
        changed_.wait(lock, [this] { return done_; });
      });
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return attached_ == idle; });
  }
  ~pool_with_idle_caches() {
    {
      std::scoped_lock lock(mutex_);
      done_ = true;
    }
    changed_.notify_all();
    for (auto& t : threads_) t.join();
  }
  pool_with_idle_caches(const pool_with_idle_caches&) = delete;
  pool_with_idle_caches& operator=(const pool_with_idle_caches&) = delete;

  std::unique_ptr<std::byte[]> memory_;
  pool_t pool{cached_options()};

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int attached_ = 0;
  bool done_ = false;
  std::vector<std::thread> threads_;
};

void remote(benchmark::State& state) {
  pool_with_idle_caches p(static_cast<int>(state.range(0)));
  constexpr std::size_t batch = 1024;
  std::vector<void*> slots(batch);
  std::int64_t pairs = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::thread producer([&] {  // a cache of its own, and the slots in it
      for (auto& s : slots) s = p.pool.acquire_raw(64, 8, bufpool::greedy)->pointer;
    });
    producer.join();
    state.ResumeTiming();
    for (void* s : slots) benchmark::DoNotOptimize(p.pool.release_raw(s));
    pairs += batch;
  }
  state.SetItemsProcessed(pairs);
  state.counters["ns_per_release"] = benchmark::Counter(
      static_cast<double>(pairs), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// The same hand-off with glibc: one thread mallocs the batch, this one frees it.
void remote_glibc(benchmark::State& state) {
  constexpr std::size_t batch = 1024;
  std::vector<void*> slots(batch);
  std::int64_t pairs = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::thread producer([&] {
      for (auto& s : slots) {
        s = std::malloc(64);
        benchmark::DoNotOptimize(s);
      }
    });
    producer.join();
    state.ResumeTiming();
    for (void* s : slots) std::free(s);
    pairs += batch;
  }
  state.SetItemsProcessed(pairs);
  state.counters["ns_per_release"] = benchmark::Counter(
      static_cast<double>(pairs), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void by_offset(benchmark::State& state) {
  pool_with_idle_caches p(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    const auto r = p.pool.acquire_raw(64, 8, bufpool::greedy);
    benchmark::DoNotOptimize(p.pool.release_raw(r->offset));
  }
  state.SetItemsProcessed(state.iterations());
}

void own(benchmark::State& state) {
  pool_with_idle_caches p(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    const auto r = p.pool.acquire_raw(64, 8, bufpool::greedy);
    benchmark::DoNotOptimize(p.pool.release_raw(r->pointer));
  }
  state.SetItemsProcessed(state.iterations());
}

BENCHMARK(remote)->Arg(0)->Arg(16)->Arg(64)->UseRealTime();
BENCHMARK(remote_glibc)->UseRealTime();
BENCHMARK(by_offset)->Arg(0)->Arg(16)->Arg(64)->UseRealTime();
BENCHMARK(own)->Arg(0)->Arg(16)->Arg(64)->UseRealTime();

}  // namespace
