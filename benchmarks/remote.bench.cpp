// SPDX-License-Identifier: MIT
// Releases that reach a thread cache, as the number of idle caches grows (0, 16, 64).
//
// A pool with slabs and thread caches; K idle threads each took one slot (so each holds a
// cache) and wait until the benchmark ends. Rows, time per release of 64 B:
//
//   W8_remote/bufpool-caches[-<K>-idle]   one thread acquires a batch of slots, another
//                  releases them by pointer: every release reaches the other thread's cache
//                  (timed: the releases). scripts/bench reports these rows (workload W8_remote).
//   W8_remote/glibc   the same hand-off with malloc and free, the baseline.
//   by_offset/<K>  the benchmark's thread acquires a slot and releases it by offset: the
//                  offset carries no pointer, so the pool must find the cache that holds it
//                  (timed: the pair).
//   own/<K>        the same pair released by pointer: the owner's fast path, for reference.
#include <benchmark/benchmark.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
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

// One thread acquires a batch with acquire(), this one releases it with release(): every
// release crosses threads. Only the releases are timed.
template <class Acquire, class Release>
void hand_off(benchmark::State& state, Acquire acquire, Release release) {
  constexpr std::size_t batch = 1024;
  std::vector<void*> slots(batch);
  double seconds = 0;
  std::int64_t pairs = 0;
  for (auto _ : state) {
    std::thread producer([&] {  // with a cache of its own, in the pool
      for (auto& s : slots) {
        s = acquire();
        benchmark::DoNotOptimize(s);
      }
    });
    producer.join();
    const auto start = std::chrono::steady_clock::now();
    for (void* s : slots) release(s);
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state.SetIterationTime(took);
    seconds += took;
    pairs += batch;
  }
  state.SetItemsProcessed(pairs);
  state.counters["ns_per_op"] = seconds * 1e9 / static_cast<double>(pairs);
}

void remote(benchmark::State& state, int idle) {
  pool_with_idle_caches p(idle);
  hand_off(
      state,
      [&] { return static_cast<void*>(p.pool.acquire_raw(64, 8, bufpool::greedy)->pointer); },
      [&](void* s) { benchmark::DoNotOptimize(p.pool.release_raw(s)); });
}

// The same hand-off with glibc's malloc and free, the baseline.
void remote_glibc(benchmark::State& state) {
  hand_off(state, [] { return std::malloc(64); }, [](void* s) { std::free(s); });
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

// Named <workload>/<contestant>, as scripts/bench-report.py reads them.
const bool remote_registered = [] {
  for (const int idle : {0, 16, 64}) {
    const std::string name = "W8_remote/bufpool-caches" +
                             (idle == 0 ? std::string() : "-" + std::to_string(idle) + "-idle");
    benchmark::RegisterBenchmark(name.c_str(), [idle](benchmark::State& state) {
      remote(state, idle);
    })->UseManualTime();
  }
  benchmark::RegisterBenchmark("W8_remote/glibc", remote_glibc)->UseManualTime();
  return true;
}();
BENCHMARK(by_offset)->Arg(0)->Arg(16)->Arg(64)->UseRealTime();
BENCHMARK(own)->Arg(0)->Arg(16)->Arg(64)->UseRealTime();

}  // namespace

// As every benchmark binary scripts/bench runs, it takes --quick (its rows are short already:
// the same in both runs).
int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i)
    if (std::strcmp(argv[i], "--quick") != 0) args.push_back(argv[i]);
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
