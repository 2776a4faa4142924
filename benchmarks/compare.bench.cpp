// SPDX-License-Identifier: MIT
// Comparative benchmark: bufpool against the allocators a user would pick instead, on the
// workloads W1..W8 and F_* of the benchmark issues, all through one small adapter interface.
//
// One source, several binaries: bufpool_compare holds glibc malloc, the std::pmr and
// boost::container::pmr resources and the bufpool contestants; bufpool_compare_<lib> is
// linked against a malloc replacement (mimalloc, jemalloc, tcmalloc) and holds only the
// malloc contestant, named after the library. scripts/bench runs them workload by
// workload (one process per workload, so malloc statistics start clean) and
// scripts/bench-report.py turns the JSON into tables, JSON lines and a plot.
//
// Every benchmark is named <workload>/<contestant> and runs once per repetition; the
// operation trace is generated (seeded) before timing and replayed. Every allocated block
// is touched once (8-byte write). Counters: ns_per_op (per alloc+free pair, or per
// operation where the workload says so), peak_bytes (bytes taken from the system or the
// upstream at the peak, beyond what the process held before the workload; 0 = unknown),
// live_bytes (peak bytes the workload held; F_*: held at the first failure), utilization
// (F_* only).
//
// Sizes (full / --quick): W1 10M / 300k pairs; W2 4M / 100k; W3, W3c 1M / 100k objects;
// W4 1M / 100k pairs; W5 400k / 50k pairs after building the live set; W6 500k / 50k pairs
// per thread; W7 4M / 1M push_backs, maps of 100k / 20k keys then 400k / 50k erase+insert
// steps, release() after every round and map; W8 400 / 80 requests of 1k..16k items each
// (containers filled, destroyed, then release()). The full run takes about 16 minutes on
// 2 cores today, most of it in bufpool's own rows.
//
// Fragmentation (F_*), for the contestants that can be confined to a fixed pool of 64 MiB /
// 16 MiB (touched before timing, as the monotonic buffers are): sizes log-uniform,
// alignment 8, 16..512 B (_small) or 4 KiB..256 KiB (_large). F_fill_* allocates only.
// F_churn_* allocates to half the pool, takes 1M / 100k steps of one random free and one
// allocation each (the live set hovers near half the pool), then allocates only. Every F_*
// run ends at its first failed allocation, in whichever phase it comes, and reports
// utilization (live bytes then over the pool size) and ns_per_op per operation (allocation
// or free).
//
// Memory: peak_bytes is the upstream's high-water mark of bytes held for the pmr resources
// (a counting upstream), malloc's own statistics for the malloc contestants. W8 also
// reports rss_bytes, the growth of the process's peak resident set (VmHWM after a reset,
// minus VmRSS before), honest only when each contestant runs in a fresh process, as
// scripts/bench runs W8.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <boost/container/map.hpp>
#include <boost/container/pmr/global_resource.hpp>
#include <boost/container/pmr/monotonic_buffer_resource.hpp>
#include <boost/container/pmr/synchronized_pool_resource.hpp>
#include <boost/container/pmr/unsynchronized_pool_resource.hpp>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(BUFPOOL_BENCH_MIMALLOC)
#include <mimalloc.h>
#elif defined(BUFPOOL_BENCH_JEMALLOC)
#include <jemalloc/jemalloc.h>
#elif defined(BUFPOOL_BENCH_TCMALLOC)
#include <gperftools/malloc_extension_c.h>
#endif
import bufpool;
import bufpool.pmr;
import bufpool.boost;

namespace {

// ---- scale -------------------------------------------------------------------------------

bool g_quick = false;
std::size_t scaled(std::size_t full, std::size_t quick) {
  return g_quick ? quick : full;
}

// ---- the system's view of memory ---------------------------------------------------------

// Bytes the malloc in this binary holds from the system now.
std::int64_t malloc_system_bytes() {
#if defined(BUFPOOL_BENCH_MIMALLOC)
  std::size_t elapsed, user, sys, rss, peak_rss, commit, peak_commit, faults;
  mi_process_info(&elapsed, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
  return static_cast<std::int64_t>(commit);
#elif defined(BUFPOOL_BENCH_JEMALLOC)
  std::uint64_t epoch = 1;
  std::size_t len = sizeof epoch;
  mallctl("epoch", &epoch, &len, &epoch, len);
  std::size_t mapped = 0;
  len = sizeof mapped;
  mallctl("stats.mapped", &mapped, &len, nullptr, 0);
  return static_cast<std::int64_t>(mapped);
#elif defined(BUFPOOL_BENCH_TCMALLOC)
  std::size_t heap = 0;
  std::size_t unmapped = 0;
  MallocExtension_GetNumericProperty("generic.heap_size", &heap);
  MallocExtension_GetNumericProperty("tcmalloc.pageheap_unmapped_bytes", &unmapped);
  return static_cast<std::int64_t>(heap - unmapped);
#else
  const struct mallinfo2 m = mallinfo2();
  return static_cast<std::int64_t>(m.arena + m.hblkhd);
#endif
}

#if defined(BUFPOOL_BENCH_MIMALLOC)
constexpr const char* malloc_name = "mimalloc";
#elif defined(BUFPOOL_BENCH_JEMALLOC)
constexpr const char* malloc_name = "jemalloc";
#elif defined(BUFPOOL_BENCH_TCMALLOC)
constexpr const char* malloc_name = "tcmalloc";
#else
constexpr const char* malloc_name = "glibc";
#endif

// What the process held before the first workload ran (after its trace was built).
std::int64_t malloc_baseline() {
  static const std::int64_t baseline = malloc_system_bytes();
  return baseline;
}

// ---- upstreams that count ----------------------------------------------------------------

struct byte_counter {
  std::atomic<std::int64_t> current{0};
  std::atomic<std::int64_t> peak{0};
  void add(std::size_t n) {
    const auto now = current.fetch_add(static_cast<std::int64_t>(n)) + static_cast<std::int64_t>(n);
    auto p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
  }
  void sub(std::size_t n) { current.fetch_sub(static_cast<std::int64_t>(n)); }
};

class counting_std_upstream final : public std::pmr::memory_resource {
 public:
  byte_counter bytes;

 private:
  void* do_allocate(std::size_t n, std::size_t a) override {
    void* p = std::pmr::new_delete_resource()->allocate(n, a);
    bytes.add(n);
    return p;
  }
  void do_deallocate(void* p, std::size_t n, std::size_t a) override {
    bytes.sub(n);
    std::pmr::new_delete_resource()->deallocate(p, n, a);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
};

class counting_boost_upstream final : public boost::container::pmr::memory_resource {
 public:
  byte_counter bytes;

 private:
  void* do_allocate(std::size_t n, std::size_t a) override {
    void* p = ::operator new(n, std::align_val_t{std::max(a, alignof(std::max_align_t))});
    bytes.add(n);
    return p;
  }
  void do_deallocate(void* p, std::size_t n, std::size_t a) override {
    bytes.sub(n);
    ::operator delete(p, std::align_val_t{std::max(a, alignof(std::max_align_t))});
  }
  bool do_is_equal(const boost::container::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
};

// ---- the adapter interface ---------------------------------------------------------------

// Everything a workload needs from a contestant.
class contestant {
 public:
  contestant() = default;
  contestant(const contestant&) = delete;
  contestant& operator=(const contestant&) = delete;
  virtual ~contestant() = default;
  virtual void* allocate(std::size_t n, std::size_t align) = 0;  // throws std::bad_alloc
  virtual void deallocate(void* p, std::size_t n, std::size_t align) = 0;
  // Gives everything back at once; false if the contestant has no such operation.
  virtual bool release() { return false; }
  // The contestant as a std::pmr resource (for the container workloads).
  virtual std::pmr::memory_resource* resource() = 0;
  // Bytes taken from the system or upstream beyond the baseline; -1 if unknown.
  virtual std::int64_t system_bytes() = 0;
};

// A std::pmr view of any contestant.
class contestant_resource final : public std::pmr::memory_resource {
 public:
  explicit contestant_resource(contestant& c) : c_(c) {}

 private:
  void* do_allocate(std::size_t n, std::size_t a) override { return c_.allocate(n, a); }
  void do_deallocate(void* p, std::size_t n, std::size_t a) override { c_.deallocate(p, n, a); }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
  contestant& c_;
};

class malloc_contestant final : public contestant {
 public:
  void* allocate(std::size_t n, std::size_t align) override {
    void* p = align <= alignof(std::max_align_t)
                  ? std::malloc(n)
                  : std::aligned_alloc(align, (n + align - 1) & ~(align - 1));
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void deallocate(void* p, std::size_t, std::size_t) override { std::free(p); }
  std::pmr::memory_resource* resource() override { return &view_; }
  std::int64_t system_bytes() override { return malloc_system_bytes() - malloc_baseline(); }

 private:
  contestant_resource view_{*this};
};

// A std::pmr resource over a counting upstream (or a fixed buffer first).
template <class Resource>
class std_pmr_contestant final : public contestant {
 public:
  template <class... A>
  explicit std_pmr_contestant(std::size_t buffer_size, A&&... a)
      : buffer_(buffer_size), r_(make(std::forward<A>(a)...)) {}
  void* allocate(std::size_t n, std::size_t align) override { return r_->allocate(n, align); }
  void deallocate(void* p, std::size_t n, std::size_t align) override {
    r_->deallocate(p, n, align);
  }
  bool release() override {
    if constexpr (requires(Resource& r) { r.release(); }) {
      r_->release();
      return true;
    }
    return false;
  }
  std::pmr::memory_resource* resource() override { return r_.get(); }
  std::int64_t system_bytes() override {
    return static_cast<std::int64_t>(buffer_.size()) + up_.bytes.peak.load();
  }

 private:
  template <class... A>
  std::unique_ptr<Resource> make(A&&... a) {
    // Over a buffer: nothing else (the buffer is sized for the workload; F_* needs a bound).
    if constexpr (std::is_same_v<Resource, std::pmr::monotonic_buffer_resource>) {
      if (!buffer_.empty())
        return std::make_unique<Resource>(buffer_.data(), buffer_.size(),
                                          std::pmr::null_memory_resource());
    }
    return std::make_unique<Resource>(std::forward<A>(a)..., &up_);
  }
  counting_std_upstream up_;
  std::vector<std::byte> buffer_;
  std::unique_ptr<Resource> r_;
};

// A boost::container::pmr resource, seen through a std::pmr bridge for the containers.
template <class Resource>
class boost_pmr_contestant final : public contestant {
 public:
  explicit boost_pmr_contestant(std::size_t buffer_size) : buffer_(buffer_size), r_(make()) {}
  void* allocate(std::size_t n, std::size_t align) override { return r_->allocate(n, align); }
  void deallocate(void* p, std::size_t n, std::size_t align) override {
    r_->deallocate(p, n, align);
  }
  bool release() override {
    r_->release();
    return true;
  }
  std::pmr::memory_resource* resource() override { return &view_; }
  std::int64_t system_bytes() override {
    return static_cast<std::int64_t>(buffer_.size()) + up_.bytes.peak.load();
  }

 private:
  std::unique_ptr<Resource> make() {
    if constexpr (std::is_same_v<Resource, boost::container::pmr::monotonic_buffer_resource>) {
      if (!buffer_.empty())
        return std::make_unique<Resource>(buffer_.data(), buffer_.size(),
                                          boost::container::pmr::null_memory_resource());
    }
    return std::make_unique<Resource>(&up_);
  }
  counting_boost_upstream up_;
  std::vector<std::byte> buffer_;
  std::unique_ptr<Resource> r_;
  contestant_resource view_{*this};
};

// The core pool through its raw API with one strategy: `greedy` (the fast one, with size
// classes and slabs, as bufpool.pmr and bufpool.boost use), `good_fit` (O(1) size bins, no
// classes) or `optimal` (exact best fit), in a fixed pool (F_*) or grown as bufpool.pmr grows
// by default
// (resource_options: 64 KiB first, doubling up to 8 MiB; a larger request gets its own
// region) from a counting upstream, 4 KiB-aligned so offsets and addresses agree on
// alignment.
template <class Pool>
class bufpool_contestant final : public contestant {
 public:
  bufpool_contestant(bufpool::strategy how, std::size_t fixed_size) : how_(how) {
    if (fixed_size != 0) grow(fixed_size, true);
    fixed_ = fixed_size != 0;
  }
  ~bufpool_contestant() override {
    pool_.reset();
    for (const auto& [p, n] : regions_) up_.deallocate(p, n, 4096);
  }
  // One try inline, growth out of line (as bufpool.pmr's resource does it), so that the
  // compiler does not set up the growth loop's state on every call.
  void* allocate(std::size_t n, std::size_t align) override {
    if (auto r = pool_->acquire_raw(n, align, how_)) return r->pointer;
    return allocate_growing(n, align);
  }
  [[gnu::noinline]] void* allocate_growing(std::size_t n, std::size_t align) {
    for (;;) {
      if (fixed_) throw std::bad_alloc();
      std::scoped_lock lock(grow_mutex_);
      if (auto r = pool_->acquire_raw(n, align, how_)) return r->pointer;
      const std::size_t needed = (n + 4095) & ~std::size_t{4095};
      grow(std::max(next_, needed));
      if (needed <= next_)
        next_ =
            std::min(static_cast<std::size_t>(static_cast<double>(next_) * growth_.growth_factor),
                     growth_.max_region_size);
    }
  }
  void deallocate(void* p, std::size_t n, std::size_t align) override {
    pool_->release_raw(static_cast<const void*>(p), n, align);
  }
  std::pmr::memory_resource* resource() override { return &view_; }
  std::int64_t system_bytes() override { return up_.bytes.peak.load(); }

 private:
  static typename Pool::options_type options() {
    typename Pool::options_type o;
    o.min_alignment = 8;
    o.max_alignment = 4096;
    o.slabs = true;
    o.thread_caches = true;  // buffer_pool: each thread its own slabs
    return o;
  }
  // A fixed pool is touched whole here, before timing, as the monotonic contestants' buffers
  // are (zeroed vectors): the fixed-pool rows then compare allocators, not first-touch faults.
  void grow(std::size_t size, bool touch_now = false) {
    void* memory = up_.allocate(size, 4096);
    if (touch_now) std::memset(memory, 0, size);
    regions_.emplace_back(memory, size);
    (void)pool_->begin_expand(size).value().initialize(memory).value();
  }
  counting_std_upstream up_;
  std::vector<std::pair<void*, std::size_t>> regions_;
  std::unique_ptr<Pool> pool_ = std::make_unique<Pool>(options());
  std::mutex grow_mutex_;
  static constexpr bufpool::pmr::resource_options growth_{};
  std::size_t next_ = growth_.first_region_size;
  bool fixed_ = false;
  bufpool::strategy how_;
  contestant_resource view_{*this};
};

// bufpool.pmr's resource, owning and growing with its default options (or over a fixed pool
// for F_*).
class bufpool_pmr_contestant final : public contestant {
 public:
  explicit bufpool_pmr_contestant(bool thread_safe, std::size_t fixed_size = 0) {
    if (fixed_size != 0) {
      memory_ = up_.allocate(fixed_size, 4096);
      std::memset(memory_, 0, fixed_size);  // touched before timing, as the fixed core pool
      fixed_size_ = fixed_size;
      (void)fixed_pool_.begin_expand(fixed_size).value().initialize(memory_).value();
      r_ = std::make_unique<bufpool::pmr::pool_resource>(fixed_pool_, bufpool::optimal);
    } else {
      bufpool::pmr::resource_options o;  // the defaults a user gets without tuning
      o.thread_safe = thread_safe;
      r_ = std::make_unique<bufpool::pmr::pool_resource>(o, &up_);
    }
  }
  ~bufpool_pmr_contestant() override {
    r_.reset();
    if (memory_ != nullptr) up_.deallocate(memory_, fixed_size_, 4096);
  }
  void* allocate(std::size_t n, std::size_t align) override { return r_->allocate(n, align); }
  void deallocate(void* p, std::size_t n, std::size_t align) override {
    r_->deallocate(p, n, align);
  }
  bool release() override {
    r_->release();
    return true;
  }
  std::pmr::memory_resource* resource() override { return r_.get(); }
  std::int64_t system_bytes() override { return up_.bytes.peak.load(); }

 private:
  counting_std_upstream up_;
  void* memory_ = nullptr;
  std::size_t fixed_size_ = 0;
  bufpool::local_buffer_pool<std::size_t> fixed_pool_;
  std::unique_ptr<bufpool::pmr::pool_resource> r_;
};

// ---- contestants by name -----------------------------------------------------------------

struct contestant_info {
  std::string name;
  bool thread_safe;    // may be shared by threads
  bool reuses;         // frees make memory reusable (monotonic does not)
  bool fixed_capable;  // can run inside a fixed 64 MiB pool (F_*)
  bool uses_buffer;    // a monotonic resource over a buffer sized for the workload
  std::function<std::unique_ptr<contestant>(std::size_t buffer_or_pool_size)> make;
};

namespace bpmr = boost::container::pmr;

std::vector<contestant_info> contestants() {
  std::vector<contestant_info> v;
  v.push_back({malloc_name, true, true, false, false,
               [](std::size_t) { return std::make_unique<malloc_contestant>(); }});
#if !defined(BUFPOOL_BENCH_MIMALLOC) && !defined(BUFPOOL_BENCH_JEMALLOC) && \
    !defined(BUFPOOL_BENCH_TCMALLOC)
  v.push_back({"std-monotonic", false, false, false, false, [](std::size_t) {
                 return std::make_unique<std_pmr_contestant<std::pmr::monotonic_buffer_resource>>(
                     0);
               }});
  v.push_back({"std-monotonic-buffer", false, false, true, true, [](std::size_t n) {
                 return std::make_unique<std_pmr_contestant<std::pmr::monotonic_buffer_resource>>(
                     n);
               }});
  v.push_back(
      {"std-unsync-pool", false, true, false, false, [](std::size_t) {
         return std::make_unique<std_pmr_contestant<std::pmr::unsynchronized_pool_resource>>(0);
       }});
  v.push_back({"std-sync-pool", true, true, false, false, [](std::size_t) {
                 return std::make_unique<std_pmr_contestant<std::pmr::synchronized_pool_resource>>(
                     0);
               }});
  v.push_back({"boost-monotonic", false, false, false, false, [](std::size_t) {
                 return std::make_unique<boost_pmr_contestant<bpmr::monotonic_buffer_resource>>(0);
               }});
  v.push_back({"boost-monotonic-buffer", false, false, true, true, [](std::size_t n) {
                 return std::make_unique<boost_pmr_contestant<bpmr::monotonic_buffer_resource>>(n);
               }});
  v.push_back({"boost-unsync-pool", false, true, false, false, [](std::size_t) {
                 return std::make_unique<boost_pmr_contestant<bpmr::unsynchronized_pool_resource>>(
                     0);
               }});
  v.push_back({"boost-sync-pool", true, true, false, false, [](std::size_t) {
                 return std::make_unique<boost_pmr_contestant<bpmr::synchronized_pool_resource>>(0);
               }});
  using local_pool = bufpool::local_buffer_pool<std::size_t>;
  v.push_back({"bufpool-local", false, true, true, false, [](std::size_t fixed) {
                 return std::make_unique<bufpool_contestant<local_pool>>(bufpool::greedy, fixed);
               }});
  v.push_back({"bufpool-local-optimal", false, true, true, false, [](std::size_t fixed) {
                 return std::make_unique<bufpool_contestant<local_pool>>(bufpool::optimal, fixed);
               }});
  v.push_back({"bufpool-local-good", false, true, true, false, [](std::size_t fixed) {
                 return std::make_unique<bufpool_contestant<local_pool>>(bufpool::good_fit, fixed);
               }});
  v.push_back({"bufpool-locked", true, true, true, false, [](std::size_t fixed) {
                 return std::make_unique<bufpool_contestant<bufpool::buffer_pool<std::size_t>>>(
                     bufpool::greedy, fixed);
               }});
  v.push_back({"bufpool-pmr", true, true, true, false, [](std::size_t fixed) {
                 return std::make_unique<bufpool_pmr_contestant>(true, fixed);
               }});
  v.push_back({"bufpool-pmr-unsync", false, true, false, false,
               [](std::size_t) { return std::make_unique<bufpool_pmr_contestant>(false); }});
#endif
  return v;
}

// ---- traces and measurement ---------------------------------------------------------------

using clock_type = std::chrono::steady_clock;

struct result {
  double seconds = 0;
  double ops = 0;
  std::int64_t peak_bytes = -1;
  std::int64_t live_bytes = 0;
  double utilization = -1;
  std::int64_t rss_bytes = -1;  // peak resident growth of the process (W8), -1 = not measured
};

void report(benchmark::State& state, const result& r) {
  state.SetIterationTime(r.seconds);
  state.counters["ns_per_op"] = r.seconds * 1e9 / r.ops;
  state.counters["ops"] = r.ops;
  state.counters["peak_bytes"] = static_cast<double>(std::max<std::int64_t>(r.peak_bytes, 0));
  state.counters["live_bytes"] = static_cast<double>(r.live_bytes);
  if (r.utilization >= 0) state.counters["utilization"] = r.utilization;
  if (r.rss_bytes >= 0) state.counters["rss_bytes"] = static_cast<double>(r.rss_bytes);
}

inline void touch(void* p) {
  std::uint64_t v = reinterpret_cast<std::uintptr_t>(p);
  std::memcpy(p, &v, sizeof v);
  benchmark::DoNotOptimize(p);
}

// Log-uniform sizes in [lo, hi].
std::size_t log_uniform(std::mt19937_64& rng, std::size_t lo, std::size_t hi) {
  std::uniform_real_distribution<double> d(std::log(static_cast<double>(lo)),
                                           std::log(static_cast<double>(hi) + 1));
  return std::clamp<std::size_t>(static_cast<std::size_t>(std::exp(d(rng))), lo, hi);
}

// A churn trace: the initial live set, then per step the slot to free and the new block.
struct churn_trace {
  std::vector<std::uint32_t> sizes;    // initial live set, then one per step
  std::vector<std::uint16_t> aligns;   // same indexing
  std::vector<std::uint32_t> victims;  // one per step
  std::size_t live = 0;
  std::int64_t peak_live_bytes = 0;
};

churn_trace make_churn(std::uint64_t seed, std::size_t live, std::size_t steps, std::size_t lo,
                       std::size_t hi, bool log_sizes, bool mixed_align) {
  std::mt19937_64 rng(seed);
  churn_trace t;
  t.live = live;
  const std::size_t total = live + steps;
  t.sizes.resize(total);
  t.aligns.resize(total);
  t.victims.resize(steps);
  static constexpr std::uint16_t align_choices[] = {8, 64, 256, 4096};
  for (std::size_t i = 0; i < total; ++i) {
    t.sizes[i] = static_cast<std::uint32_t>(log_sizes ? log_uniform(rng, lo, hi)
                                                      : lo + rng() % (hi - lo + 1));
    t.aligns[i] = mixed_align ? align_choices[rng() % 4] : std::uint16_t{8};
  }
  std::int64_t now = 0;
  std::vector<std::uint32_t> slot_size(live);
  for (std::size_t i = 0; i < live; ++i) now += slot_size[i] = t.sizes[i];
  t.peak_live_bytes = now;
  for (std::size_t s = 0; s < steps; ++s) {
    const auto v = static_cast<std::uint32_t>(rng() % live);
    t.victims[s] = v;
    now += static_cast<std::int64_t>(t.sizes[live + s]) - slot_size[v];
    slot_size[v] = t.sizes[live + s];
    t.peak_live_bytes = std::max(t.peak_live_bytes, now);
  }
  return t;
}

struct block {
  void* p;
  std::uint32_t size;
  std::uint16_t align;
};

// Builds the live set (untimed), replays the steps (timed), frees everything.
// The measured part of a churn: one free and one allocation per step. A function of its own
// so that scripts/instructions can count its instructions alone (callgrind --toggle-collect).
[[gnu::noinline]] void churn_steps(contestant& c, const churn_trace& t, std::vector<block>& slots) {
  const std::size_t steps = t.victims.size();
  for (std::size_t s = 0; s < steps; ++s) {
    block& b = slots[t.victims[s]];
    c.deallocate(b.p, b.size, b.align);
    const std::size_t k = t.live + s;
    b = {c.allocate(t.sizes[k], t.aligns[k]), t.sizes[k], t.aligns[k]};
    touch(b.p);
  }
}

result run_churn(contestant& c, const churn_trace& t) {
  std::vector<block> slots(t.live);
  for (std::size_t i = 0; i < t.live; ++i) {
    slots[i] = {c.allocate(t.sizes[i], t.aligns[i]), t.sizes[i], t.aligns[i]};
    touch(slots[i].p);
  }
  const std::size_t steps = t.victims.size();
  const auto start = clock_type::now();
  churn_steps(c, t, slots);
  const auto stop = clock_type::now();
  result r;
  r.seconds = std::chrono::duration<double>(stop - start).count();
  r.ops = static_cast<double>(steps);
  r.peak_bytes = c.system_bytes();
  r.live_bytes = t.peak_live_bytes;
  for (const block& b : slots) c.deallocate(b.p, b.size, b.align);
  return r;
}

// ---- workloads -----------------------------------------------------------------------------

constexpr std::uint64_t seed = 0x62656e6368'2021ULL;

void skip(benchmark::State& state, const char* why) {
  for (auto _ : state) state.SkipWithError(why);
}

void churn_workload(benchmark::State& state, const contestant_info& info, std::size_t live,
                    std::size_t steps, std::size_t lo, std::size_t hi, bool log_sizes,
                    bool mixed_align, std::uint64_t trace_seed) {
  if (!info.reuses) return skip(state, "never reuses memory: churn would grow without bound");
  static std::map<std::uint64_t, churn_trace> traces;
  auto it = traces.find(trace_seed);
  if (it == traces.end())
    it = traces
             .emplace(trace_seed,
                      make_churn(trace_seed, live, steps, lo, hi, log_sizes, mixed_align))
             .first;
  (void)malloc_baseline();
  for (auto _ : state) {
    auto c = info.make(0);
    report(state, run_churn(*c, it->second));
  }
}

// W3 / W3c: n objects of 16..256 B, optionally half of them freed early, then release all.
struct arena_trace {
  std::vector<std::uint16_t> sizes;
  std::vector<std::int32_t> free_before;  // per step: index of an earlier object to free, or -1
  std::int64_t peak_live_bytes = 0;
};

arena_trace make_arena(std::size_t n, bool churn) {
  std::mt19937_64 rng(seed + (churn ? 3 : 2));
  arena_trace t;
  t.sizes.resize(n);
  t.free_before.assign(n, -1);
  std::vector<std::int32_t> live;
  std::int64_t now = 0;
  for (std::size_t i = 0; i < n; ++i) {
    t.sizes[i] = static_cast<std::uint16_t>(16 + rng() % 241);
    if (churn && i % 2 == 1 && !live.empty()) {  // free a random live object every other step
      const std::size_t k = rng() % live.size();
      t.free_before[i] = live[k];
      now -= t.sizes[static_cast<std::size_t>(live[k])];
      live[k] = live.back();
      live.pop_back();
    }
    live.push_back(static_cast<std::int32_t>(i));
    now += t.sizes[i];
    t.peak_live_bytes = std::max(t.peak_live_bytes, now);
  }
  return t;
}

// One arena cycle: allocate (and free early), then give everything back. Timed whole.
result arena_cycle(contestant& c, const arena_trace& t, std::vector<void*>& ptrs) {
  const std::size_t n = t.sizes.size();
  const auto start = clock_type::now();
  for (std::size_t i = 0; i < n; ++i) {
    if (const auto f = t.free_before[i]; f >= 0) {
      const auto k = static_cast<std::size_t>(f);
      c.deallocate(ptrs[k], t.sizes[k], 8);
      ptrs[k] = nullptr;
    }
    ptrs[i] = c.allocate(t.sizes[i], 8);
    touch(ptrs[i]);
  }
  const std::int64_t peak = c.system_bytes();
  if (!c.release())
    for (std::size_t i = 0; i < n; ++i)
      if (ptrs[i] != nullptr) c.deallocate(ptrs[i], t.sizes[i], 8);
  const auto stop = clock_type::now();
  result r;
  r.seconds = std::chrono::duration<double>(stop - start).count();
  r.ops = static_cast<double>(n);
  r.peak_bytes = peak;
  r.live_bytes = t.peak_live_bytes;
  return r;
}

void arena_workload(benchmark::State& state, const contestant_info& info, bool churn, bool warm) {
  static std::map<bool, arena_trace> traces;
  auto it = traces.find(churn);
  if (it == traces.end())
    it = traces.emplace(churn, make_arena(scaled(1'000'000, 100'000), churn)).first;
  const arena_trace& t = it->second;
  (void)malloc_baseline();
  std::vector<void*> ptrs(t.sizes.size());
  // A buffer for the monotonic-over-buffer contestants: every byte the cycle asks for.
  const std::size_t buffer = info.uses_buffer ? t.sizes.size() * (256 + 16) : 0;
  for (auto _ : state) {
    auto c = info.make(buffer);
    if (warm) (void)arena_cycle(*c, t, ptrs);  // regions kept by release()
    report(state, arena_cycle(*c, t, ptrs));
  }
}

// W8: the per-request arena loop a server runs: each request fills a few pmr containers
// (a vector of strings, a map and an unordered_map over them) in the resource, the
// containers go, and release() gives the request's memory back (monotonic style). Requests
// vary in size (seeded), so a resource that keeps memory across release() keeps what the
// largest ones needed, and one that gives it all back takes it again every cycle.
struct request_trace {
  std::vector<std::uint32_t> items;    // per request
  std::vector<std::uint16_t> lengths;  // string lengths, cycled through
  std::size_t total_items = 0;
};

// Bytes held at once by the containers of one request, as the resource sees them.
class live_counter final : public std::pmr::memory_resource {
 public:
  std::int64_t now = 0;
  std::int64_t peak = 0;

 private:
  void* do_allocate(std::size_t n, std::size_t a) override {
    now += static_cast<std::int64_t>(n);
    peak = std::max(peak, now);
    return std::pmr::new_delete_resource()->allocate(n, a);
  }
  void do_deallocate(void* p, std::size_t n, std::size_t a) override {
    now -= static_cast<std::int64_t>(n);
    std::pmr::new_delete_resource()->deallocate(p, n, a);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
};

// One request over `r`; returns what `probe` says at its peak (before the containers go).
template <class Probe>
std::int64_t serve_request(std::pmr::memory_resource* r, const request_trace& t, std::size_t k,
                           std::size_t& cursor, Probe probe) {
  std::pmr::vector<std::pmr::string> names(r);
  std::pmr::map<std::uint32_t, std::pmr::string> by_id(r);
  std::pmr::unordered_map<std::uint32_t, std::uint32_t> counts(r);
  for (std::uint32_t i = 0; i < t.items[k]; ++i) {
    const std::uint16_t len = t.lengths[cursor++ % t.lengths.size()];
    names.emplace_back(len, static_cast<char>('a' + i % 26));
    by_id.emplace(i, names.back());
    ++counts[i % 1024];
  }
  benchmark::DoNotOptimize(names.data());
  return probe();
}

const request_trace& arena_loop_trace() {
  static const request_trace trace = [] {
    std::mt19937_64 rng(seed + 8);
    request_trace t;
    t.items.resize(scaled(400, 80));
    for (auto& n : t.items) n = static_cast<std::uint32_t>(1000 + rng() % 15001);  // 1k..16k
    t.lengths.resize(4096);
    for (auto& l : t.lengths) l = static_cast<std::uint16_t>(24 + rng() % 177);  // 24..200 B
    for (const auto n : t.items) t.total_items += n;
    return t;
  }();
  return trace;
}

// The bytes the largest request holds at once, measured through a counting resource. Run
// after the timed loop: the memory it takes and frees would otherwise be in malloc's heap
// before the contestant starts, and hide the contestant's own page faults and RSS.
std::int64_t arena_loop_live_bytes(const request_trace& t) {
  static const std::int64_t live = [&] {
    const std::size_t largest = static_cast<std::size_t>(
        std::max_element(t.items.begin(), t.items.end()) - t.items.begin());
    std::size_t cursor = 0;
    for (std::size_t k = 0; k < largest; ++k) cursor += t.items[k];  // its own strings
    live_counter counter;
    return serve_request(&counter, t, largest, cursor, [&] { return counter.peak; });
  }();
  return live;
}

// A field of /proc/self/status given in KiB, in bytes (Linux): "VmRSS:" is the resident set
// now, "VmHWM:" its peak since reset_peak_rss(). -1 if unknown.
std::int64_t status_bytes(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  std::int64_t kib = -1;
  const std::size_t n = std::strlen(field);
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::strncmp(line, field, n) == 0) kib = std::strtoll(line + n, nullptr, 10);
  std::fclose(f);
  return kib < 0 ? -1 : kib * 1024;
}
// Makes the peak resident set the current one (Linux 4.0 and later).
bool reset_peak_rss() {
  std::FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (f == nullptr) return false;
  const bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

void arena_loop_workload(benchmark::State& state, const contestant_info& info) {
  const request_trace& t = arena_loop_trace();
  (void)malloc_baseline();
  for (auto _ : state) {
    // Peak RSS is honest only in a fresh process per contestant (scripts/bench runs W8 so):
    // memory an earlier run gave back to malloc would be reused without new pages.
    const bool rss_known = reset_peak_rss();
    const std::int64_t rss_before = status_bytes("VmRSS:");
    auto c = info.make(info.uses_buffer ? std::size_t{64} << 20 : 0);  // holds any request
    std::int64_t peak = 0;
    std::size_t cursor = 0;
    const auto start = clock_type::now();
    for (std::size_t k = 0; k < t.items.size(); ++k) {
      peak = std::max(
          peak, serve_request(c->resource(), t, k, cursor, [&] { return c->system_bytes(); }));
      c->release();  // the containers are gone: give the request's memory back
    }
    const auto stop = clock_type::now();
    const std::int64_t rss_peak = status_bytes("VmHWM:");
    result r;
    r.seconds = std::chrono::duration<double>(stop - start).count();
    r.ops = static_cast<double>(t.total_items);
    r.peak_bytes = peak;
    r.live_bytes = arena_loop_live_bytes(t);
    if (rss_known && rss_before >= 0 && rss_peak >= 0) r.rss_bytes = rss_peak - rss_before;
    report(state, r);
  }
}

// W6: two threads doing W2, each with its own instance or sharing one.
void threads_workload(benchmark::State& state, const contestant_info& info, bool shared) {
  if (shared && !info.thread_safe) return skip(state, "not thread-safe: cannot be shared");
  if (!info.reuses) return skip(state, "never reuses memory: churn would grow without bound");
  static const churn_trace traces[2] = {
      make_churn(seed + 61, 10'000, scaled(500'000, 50'000), 16, 65536, true, false),
      make_churn(seed + 62, 10'000, scaled(500'000, 50'000), 16, 65536, true, false)};
  (void)malloc_baseline();
  for (auto _ : state) {
    std::unique_ptr<contestant> one = shared ? info.make(0) : nullptr;
    std::unique_ptr<contestant> own[2] = {shared ? nullptr : info.make(0),
                                          shared ? nullptr : info.make(0)};
    result parts[2];
    std::thread a([&] { parts[0] = run_churn(shared ? *one : *own[0], traces[0]); });
    std::thread b([&] { parts[1] = run_churn(shared ? *one : *own[1], traces[1]); });
    a.join();
    b.join();
    result r;
    // Both threads' timed replays overlap: the slower one is the wall time of the pairs.
    r.seconds = std::max(parts[0].seconds, parts[1].seconds);
    r.ops = parts[0].ops + parts[1].ops;
    // glibc's mallinfo2 sees only the main arena, not the threads' arenas: unknown there.
    r.peak_bytes = info.name == malloc_name ? -1
                   : shared                 ? one->system_bytes()
                                            : own[0]->system_bytes() + own[1]->system_bytes();
    r.live_bytes = traces[0].peak_live_bytes + traces[1].peak_live_bytes;
    report(state, r);
  }
}

// W7: std::pmr containers over the contestant, and boost::container::map.
void vector_workload(benchmark::State& state, const contestant_info& info) {
  const std::size_t n = scaled(4'000'000, 1'000'000);
  for (auto _ : state) {
    auto c = info.make(info.uses_buffer ? n * 4 * 4 : 0);
    const auto start = clock_type::now();
    for (int round = 0; round < 4; ++round) {
      {
        std::pmr::vector<std::uint32_t> v(c->resource());
        for (std::size_t i = 0; i < n / 4; ++i) v.push_back(static_cast<std::uint32_t>(i));
        benchmark::DoNotOptimize(v.data());
      }
      c->release();  // a cycle ends
    }
    const auto stop = clock_type::now();
    result r;
    r.seconds = std::chrono::duration<double>(stop - start).count();
    r.ops = static_cast<double>(n);
    r.peak_bytes = c->system_bytes();
    r.live_bytes = static_cast<std::int64_t>(n / 4 * 4);
    report(state, r);
  }
}

// Insert `live` keys, then erase one and insert another per step.
template <class Map>
result map_churn(Map& m, std::size_t live, std::size_t steps) {
  std::mt19937_64 rng(seed + 7);
  std::vector<std::uint64_t> keys(live);
  for (auto& k : keys) k = rng();
  std::vector<std::uint64_t> fresh(steps);
  for (auto& k : fresh) k = rng();
  std::vector<std::uint32_t> victims(steps);
  for (auto& v : victims) v = static_cast<std::uint32_t>(rng() % live);
  const auto start = clock_type::now();
  for (const auto k : keys) m.emplace(k, k);
  for (std::size_t s = 0; s < steps; ++s) {
    auto& k = keys[victims[s]];
    m.erase(k);
    k = fresh[s];
    m.emplace(k, k);
  }
  const auto stop = clock_type::now();
  result r;
  r.seconds = std::chrono::duration<double>(stop - start).count();
  r.ops = static_cast<double>(live + 2 * steps);
  return r;
}

template <class MakeMap>
void map_workload(benchmark::State& state, const contestant_info& info, MakeMap make_map) {
  const std::size_t live = scaled(100'000, 20'000);
  const std::size_t steps = scaled(400'000, 50'000);
  for (auto _ : state) {
    auto c = info.make(info.uses_buffer ? (live + steps) * 128 : 0);
    result r;
    {
      auto m = make_map(*c);
      r = map_churn(*m, live, steps);
    }
    c->release();  // the cycle ends (untimed, as the map's destruction)
    r.peak_bytes = c->system_bytes();
    r.live_bytes = static_cast<std::int64_t>(live * 48);  // ~48 B per node: an estimate
    report(state, r);
  }
}

// F_*: fragmentation inside a fixed pool, run until the first failed allocation. A row is a
// size range (small or large) and a pattern: `fill` allocates only; `churn` allocates to
// half the pool, then takes `churn_steps` steps that each free a random live block and
// allocate a new one (frees and allocations 50/50, so the live set hovers near half the
// pool while its holes scatter), then allocates only. The run ends at the first failure, in
// whichever phase it comes, so utilization (live bytes at that failure over the pool size)
// says how much of the pool the contestant could still fill.
struct fragmentation_case {
  const char* name;
  std::size_t pool;         // bytes
  std::size_t lo, hi;       // log-uniform sizes in [lo, hi], alignment 8
  std::size_t churn_steps;  // 0: fill
  std::uint64_t trace_seed;
};

// The operations, made before timing. A free names a position in the list of live blocks
// (removed by swapping the last one in), which evolves the same way for every contestant,
// so one trace serves all. The trace ends once its live bytes exceed the pool: no
// contestant can get that far, so every run ends at a failure.
struct fragmentation_trace {
  static constexpr std::uint32_t free_bit = std::uint32_t{1} << 31;
  std::vector<std::uint32_t> ops;  // an allocation's size, or free_bit | live position
  std::size_t max_live = 0;        // blocks live at most
};

fragmentation_trace make_fragmentation(const fragmentation_case& f) {
  std::mt19937_64 rng(f.trace_seed);
  fragmentation_trace t;
  std::vector<std::uint32_t> live;  // sizes, in the order the contestant's list will hold them
  std::uint64_t live_bytes = 0;
  auto allocate = [&] {
    const auto size = static_cast<std::uint32_t>(log_uniform(rng, f.lo, f.hi));
    t.ops.push_back(size);
    live.push_back(size);
    live_bytes += size;
    t.max_live = std::max(t.max_live, live.size());
  };
  auto free_one = [&] {
    const auto k = static_cast<std::uint32_t>(rng() % live.size());
    t.ops.push_back(fragmentation_trace::free_bit | k);
    live_bytes -= live[k];
    live[k] = live.back();
    live.pop_back();
  };
  if (f.churn_steps != 0) {
    while (live_bytes < f.pool / 2) allocate();        // fill to half
    for (std::size_t s = 0; s < f.churn_steps; ++s) {  // churn
      free_one();
      allocate();
    }
  }
  while (live_bytes <= f.pool) allocate();  // fill until no pool could hold it
  return t;
}

void fragmentation_workload(benchmark::State& state, const contestant_info& info,
                            const fragmentation_case& f) {
  if (!info.fixed_capable) return skip(state, "cannot be confined to a fixed pool");
  static std::map<std::string, fragmentation_trace> traces;
  auto it = traces.find(f.name);
  if (it == traces.end()) it = traces.emplace(f.name, make_fragmentation(f)).first;
  const fragmentation_trace& t = it->second;
  for (auto _ : state) {
    auto c = info.make(f.pool);
    std::vector<block> live(t.max_live);  // its pages touched now, not while timed
    live.clear();
    // A request no pool can hold, untimed, so that the failure that ends the timed part does
    // not also pay for the process's first exception (the unwinder's first use).
    try {
      (void)c->allocate(2 * f.pool, 8);
    } catch (const std::bad_alloc&) {
    }
    std::int64_t live_bytes = 0;
    std::size_t ops = 0;
    bool failed = false;
    const auto start = clock_type::now();
    for (const std::uint32_t op : t.ops) {
      if ((op & fragmentation_trace::free_bit) != 0) {
        block& b = live[op & ~fragmentation_trace::free_bit];
        c->deallocate(b.p, b.size, 8);
        live_bytes -= b.size;
        b = live.back();
        live.pop_back();
      } else {
        void* p = nullptr;
        try {
          p = c->allocate(op, 8);
        } catch (const std::bad_alloc&) {
          failed = true;  // the first failure ends the run
          break;
        }
        touch(p);
        live.push_back({p, op, 8});
        live_bytes += op;
      }
      ++ops;
    }
    const auto stop = clock_type::now();
    for (const block& b : live) c->deallocate(b.p, b.size, 8);
    if (!failed) {
      state.SkipWithError("the trace ended before the first failure");
      break;
    }
    result r;
    r.seconds = std::chrono::duration<double>(stop - start).count();
    r.ops = static_cast<double>(ops);
    r.peak_bytes = static_cast<std::int64_t>(f.pool);
    r.live_bytes = live_bytes;
    r.utilization = static_cast<double>(live_bytes) / static_cast<double>(f.pool);
    report(state, r);
  }
}

// ---- registration --------------------------------------------------------------------------

void register_all() {
  for (const contestant_info& info : contestants()) {
    auto reg = [&](const std::string& workload, auto fn) {
      benchmark::RegisterBenchmark((workload + "/" + info.name).c_str(),
                                   [info, fn](benchmark::State& s) { fn(s, info); })
          ->Iterations(1)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    };
    reg("W1", [](benchmark::State& s, const contestant_info& i) {
      churn_workload(s, i, 10'000, scaled(10'000'000, 300'000), 64, 64, false, false, seed + 1);
    });
    reg("W2", [](benchmark::State& s, const contestant_info& i) {
      churn_workload(s, i, 10'000, scaled(4'000'000, 100'000), 16, 65536, true, false, seed + 2);
    });
    reg("W3_warm",
        [](benchmark::State& s, const contestant_info& i) { arena_workload(s, i, false, true); });
    reg("W3_cold",
        [](benchmark::State& s, const contestant_info& i) { arena_workload(s, i, false, false); });
    reg("W3c",
        [](benchmark::State& s, const contestant_info& i) { arena_workload(s, i, true, true); });
    reg("W4", [](benchmark::State& s, const contestant_info& i) {
      churn_workload(s, i, 10'000, scaled(1'000'000, 100'000), 64, 16384, true, true, seed + 4);
    });
    const std::pair<const char*, std::size_t> sizes[] = {
        {"W5_1k", 1'000}, {"W5_10k", 10'000}, {"W5_100k", 100'000}, {"W5_1M", 1'000'000}};
    for (const auto& [name, live] : sizes) {
      const std::size_t n = live;
      reg(name, [n](benchmark::State& s, const contestant_info& i) {
        churn_workload(s, i, n, scaled(400'000, 50'000), 16, 4096, true, false, seed + 50 + n);
      });
    }
    reg("W6_per_thread",
        [](benchmark::State& s, const contestant_info& i) { threads_workload(s, i, false); });
    reg("W6_shared",
        [](benchmark::State& s, const contestant_info& i) { threads_workload(s, i, true); });
    reg("W7_vector", [](benchmark::State& s, const contestant_info& i) { vector_workload(s, i); });
    reg("W7_umap", [](benchmark::State& s, const contestant_info& i) {
      map_workload(s, i, [](contestant& c) {
        return std::make_unique<std::pmr::unordered_map<std::uint64_t, std::uint64_t>>(
            c.resource());
      });
    });
    reg("W7_map", [](benchmark::State& s, const contestant_info& i) {
      map_workload(s, i, [](contestant& c) {
        return std::make_unique<std::pmr::map<std::uint64_t, std::uint64_t>>(c.resource());
      });
    });
    reg("W7_boostmap", [](benchmark::State& s, const contestant_info& i) {
      map_workload(s, i, [](contestant& c) {
        using alloc =
            std::pmr::polymorphic_allocator<std::pair<const std::uint64_t, std::uint64_t>>;
        return std::make_unique<
            boost::container::map<std::uint64_t, std::uint64_t, std::less<>, alloc>>(
            alloc(c.resource()));
      });
    });
    reg("W8", [](benchmark::State& s, const contestant_info& i) { arena_loop_workload(s, i); });
    const std::size_t pool = scaled(std::size_t{64} << 20, std::size_t{16} << 20);
    const std::size_t steps = scaled(1'000'000, 100'000);
    const fragmentation_case fragmentation_cases[] = {
        {"F_fill_small", pool, 16, 512, 0, seed + 91},
        {"F_fill_large", pool, 4096, 262144, 0, seed + 92},
        {"F_churn_small", pool, 16, 512, steps, seed + 93},
        {"F_churn_large", pool, 4096, 262144, steps, seed + 94}};
    for (const fragmentation_case& f : fragmentation_cases)
      reg(f.name,
          [f](benchmark::State& s, const contestant_info& i) { fragmentation_workload(s, i, f); });
  }
#if !defined(BUFPOOL_BENCH_MIMALLOC) && !defined(BUFPOOL_BENCH_JEMALLOC) && \
    !defined(BUFPOOL_BENCH_TCMALLOC)
  // boost::container::map with bufpool's own Boost allocator over a growing core pool.
  benchmark::RegisterBenchmark(
      "W7_boostmap/bufpool-boost",
      [](benchmark::State& state) {
        using pool_t = bufpool::local_buffer_pool<std::size_t>;
        const std::size_t live = scaled(100'000, 20'000);
        const std::size_t steps = scaled(400'000, 50'000);
        for (auto _ : state) {
          counting_std_upstream up;
          // Room for the live nodes (48 bytes each) with slack; the allocator does not grow it.
          const std::size_t region = std::size_t{16} << 20;
          void* memory = up.allocate(region, 4096);
          pool_t pool;
          (void)pool.begin_expand(region).value().initialize(memory).value();
          using alloc =
              bufpool::container::allocator<std::pair<const std::uint64_t, std::uint64_t>, pool_t>;
          result r;
          {
            boost::container::map<std::uint64_t, std::uint64_t, std::less<>, alloc> m{alloc(pool)};
            r = map_churn(m, live, steps);
          }
          r.peak_bytes = up.bytes.peak.load();
          r.live_bytes = static_cast<std::int64_t>(
              live * 48);  // ~48 B per node: an estimate  // node estimate
          report(state, r);
          up.deallocate(memory, region, 4096);
        }
      })
      ->Iterations(1)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0)
      g_quick = true;
    else
      args.push_back(argv[i]);
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
