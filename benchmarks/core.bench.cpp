// SPDX-License-Identifier: MIT
// Core benchmark: cost of one release+acquire pair as the live set grows from 1k to 1M slices.
//
// Every benchmark keeps a constant live set of N slices (N = the benchmark's argument) and,
// per iteration, releases one random live slice and acquires a new one: mixed sizes
// (16 B .. 4 KiB, log-uniform) and mixed alignments (8 .. 4096, powers of two). The whole
// sequence of operations is generated up front from a fixed seed (the same trace for every
// variant of one N), so the timed loop only replays it. Variants:
//
//   locked_pool/<strategy>  bufpool::buffer_pool<std::uint64_t> (std::mutex)
//   local_pool/<strategy>   bufpool::local_buffer_pool<std::uint64_t> (no lock)
//                           (64-bit offsets: the 1M region is larger than 4 GiB; options
//                           min_alignment 8, max_alignment 4096, as the workload needs)
//   engine/<strategy>       the raw bufpool::engine (offsets only), for reference
//   malloc/posix_memalign   glibc, the baseline
//
// with <strategy> one of optimal, greedy and fixed. `fixed` builds the live set with
// `optimal`, then re-acquires each released slice at its own offset (pre-computed from the
// layout, before timing) with a size and alignment that the released range can hold.
//
// Each pool is backed by one anonymous mapping big enough for N slices of 4 KiB at 4 KiB
// alignment (untouched pages cost nothing); after every acquisition 8 bytes of the slice are
// written, as the malloc variant does, so that both pay for the memory they hand out.
// The live set is built once per benchmark (and reused across Google Benchmark's calls and
// repetitions of it), then churned before timing so the free ranges reach a steady state.
// Time per iteration = ns per pair (items_per_second = pairs per second). Counters:
// free_ranges (the n of O(log n), at the end of the run), extent_MiB (how far the live set
// spreads in the region after warm-up), rss_MiB (the process, now), slot_bytes (what the
// benchmark keeps per live slice: a slice object, an engine node id or a pointer).
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <expected>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>
import bufpool;

namespace {

constexpr std::uint64_t trace_seed = 0x62756670'6f6f6c31;  // "bufpool1"
constexpr std::size_t trace_steps = std::size_t{1} << 20;  // replayed cyclically
// Churn before timing: at least as many steps as live slices, so the layout (and the pages
// the slices touch) reaches steady state before timing; with fewer, 1M timings still
// page-faulted into fresh memory and varied by +-30% between runs.
constexpr std::size_t min_warmup_steps = std::size_t{1} << 17;
constexpr std::size_t warmup_steps(std::size_t live) {
  return std::max(min_warmup_steps, live);
}
constexpr unsigned min_align_log2 = 3;   // 8
constexpr unsigned max_align_log2 = 12;  // 4096
constexpr double min_size = 16;
constexpr double max_size = 4096;
constexpr std::int64_t live_sizes[] = {1'000, 10'000, 100'000, 1'000'000};

// One release+acquire pair: release slot `victim`, then acquire `size` bytes aligned to
// 2^align_log2 (at `offset` for the fixed strategy) into that slot.
struct op {
  std::uint64_t offset = 0;
  std::uint32_t victim = 0;
  std::uint16_t size = 0;
  std::uint8_t align_log2 = 0;
};

// The pre-generated workload of one live-set size.
struct trace {
  std::vector<op> initial;  // the N acquisitions that build the live set (victim = slot)
  std::vector<op> steps;    // the churn, replayed cyclically
};

const trace& trace_for(std::size_t live) {
  static std::map<std::size_t, std::unique_ptr<trace>> cache;
  auto& t = cache[live];
  if (t) return *t;
  t = std::make_unique<trace>();
  std::mt19937_64 rng(trace_seed ^ live);
  std::uniform_real_distribution<double> log_size(std::log(min_size), std::log(max_size));
  std::uniform_int_distribution<unsigned> align_log2(min_align_log2, max_align_log2);
  std::uniform_int_distribution<std::uint32_t> victim(0, static_cast<std::uint32_t>(live - 1));
  auto draw = [&](std::uint32_t slot) {
    const double s = std::clamp(std::round(std::exp(log_size(rng))), min_size, max_size);
    return op{0, slot, static_cast<std::uint16_t>(s), static_cast<std::uint8_t>(align_log2(rng))};
  };
  t->initial.reserve(live);
  for (std::size_t i = 0; i < live; ++i) t->initial.push_back(draw(static_cast<std::uint32_t>(i)));
  t->steps.reserve(trace_steps);
  for (std::size_t i = 0; i < trace_steps; ++i) t->steps.push_back(draw(victim(rng)));
  return *t;
}

enum class kind { optimal, greedy, good_fit, fixed };

constexpr const char* name_of(kind k) {
  switch (k) {
    case kind::optimal:
      return "optimal";
    case kind::greedy:
      return "greedy";
    case kind::good_fit:
      return "good_fit";
    case kind::fixed:
      return "fixed";
  }
  return "?";
}

constexpr bufpool::strategy strategy_of(kind k, const op& o) {
  switch (k) {
    case kind::optimal:
      return bufpool::optimal;
    case kind::greedy:
      return bufpool::greedy;
    case kind::good_fit:
      return bufpool::good_fit;
    case kind::fixed:
      return bufpool::fixed(o.offset);
  }
  return bufpool::optimal;
}

// 8 bytes written into every slice handed out, by every variant.
inline void touch(std::byte* p, std::uint64_t value) noexcept {
  std::memcpy(p, &value, sizeof value);
  benchmark::ClobberMemory();
}

// One anonymous, lazily committed mapping that backs a pool's single region.
class mapping {
 public:
  explicit mapping(std::size_t bytes) : size_(bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
  }
  mapping(const mapping&) = delete;
  mapping& operator=(const mapping&) = delete;
  ~mapping() {
    if (base_ != nullptr) ::munmap(base_, size_);
  }
  [[nodiscard]] std::byte* base() const noexcept { return base_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
};

double mib(std::uint64_t bytes) {
  return static_cast<double>(bytes) / (1024.0 * 1024.0);
}

std::uint64_t extent_of(const std::vector<bufpool::range_view>& ranges) {
  std::uint64_t end = 0;
  for (const auto& r : ranges)
    if (r.used) end = r.offset + r.size;
  return end;
}

// Resident memory of the whole process now, in MiB.
double rss_mib() {
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return mib(static_cast<std::uint64_t>(resident) * 4096);
}

// Room for N slices of 4 KiB at 4 KiB alignment, plus headroom for fragmentation.
std::size_t region_bytes(std::size_t live) {
  return live * 8192 + (std::size_t{64} << 20);
}

// A live set, its workload and its replay position; one exists at a time (see fixture_for).
class fixture {
 public:
  fixture() = default;
  fixture(const fixture&) = delete;
  fixture& operator=(const fixture&) = delete;
  virtual ~fixture() = default;

  std::string error;             // set when the setup failed
  const std::vector<op>* ops{};  // the churn to replay
  std::size_t pos = 0;           // next op
  double extent = -1;            // MiB spanned by the live set after warm-up (pools)

 protected:
  // For `fixed`: re-acquire each released slot at its own offset, clamped to the slot's
  // original capacity and to the alignment its offset has. Returns the rewritten churn.
  static std::vector<op> fixed_ops(const std::vector<op>& steps,
                                   const std::vector<std::uint64_t>& home,
                                   const std::vector<std::uint64_t>& capacity) {
    std::vector<op> out(steps);
    for (op& o : out) {
      const std::uint64_t at = home[o.victim];
      o.offset = at;
      o.size = static_cast<std::uint16_t>(std::min<std::uint64_t>(o.size, capacity[o.victim]));
      const auto offset_align =
          static_cast<unsigned>(std::countr_zero(at | (1u << max_align_log2)));
      o.align_log2 = static_cast<std::uint8_t>(std::min<unsigned>(o.align_log2, offset_align));
    }
    return out;
  }
};

// The one live fixture (shared by every fixture type), rebuilt only when another benchmark
// (variant or N) starts; the previous live set and its memory are freed first.
std::unique_ptr<fixture> current;
std::string current_key;

template <class F>
F& fixture_for(const std::string& key, std::size_t live) {
  if (current_key != key) {
    current.reset();
    current_key = key;
    current = std::make_unique<F>(live);
  }
  return static_cast<F&>(*current);
}

// Churns `f` through `n` ops outside timing (warm-up).
template <class F>
bool churn(F& f, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (!f.step((*f.ops)[f.pos])) return false;
    if (++f.pos == f.ops->size()) f.pos = 0;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// bufpool::buffer_pool (locked or local).

template <class Pool, kind K>
class pool_fixture final : public fixture {
 public:
  explicit pool_fixture(std::size_t live)
      : memory_(region_bytes(live)), pool_(pool_options()), slots_(live) {
    if (memory_.base() == nullptr) {
      error = "mmap of the region failed";
      return;
    }
    auto grow = pool_.begin_expand(memory_.size());
    if (!grow || !std::move(*grow).initialize(memory_.base())) {
      error = "pool expansion failed";
      return;
    }
    const trace& t = trace_for(live);
    constexpr kind build = K == kind::fixed ? kind::optimal : K;
    for (const op& o : t.initial) {
      auto s = pool_.acquire(o.size, std::uint64_t{1} << o.align_log2, strategy_of(build, o));
      if (!s) {
        error = std::string("setup acquire failed: ") + bufpool::to_string(s.error());
        return;
      }
      touch(s->data(), o.size);
      slots_[o.victim] = std::move(*s);
    }
    if constexpr (K == kind::fixed) {
      std::vector<std::uint64_t> home(live), capacity(live);
      for (std::size_t i = 0; i < live; ++i) {
        home[i] = slots_[i].offset();
        capacity[i] = slots_[i].capacity();
      }
      fixed_ = fixed_ops(t.steps, home, capacity);
      ops = &fixed_;
    } else {
      ops = &t.steps;
    }
    if (!churn(*this, warmup_steps(live))) error = "warm-up acquire failed";
  }

  bool step(const op& o) {
    slots_[o.victim] = {};  // release
    auto s = pool_.acquire(o.size, std::uint64_t{1} << o.align_log2, strategy_of(K, o));
    if (!s) [[unlikely]]
      return false;
    touch(s->data(), o.size);
    slots_[o.victim] = std::move(*s);
    return true;
  }

  [[nodiscard]] double free_ranges() const {
    return static_cast<double>(pool_.stats().free_ranges);
  }
  // One past the highest used byte of the region, in MiB: how far the live set spreads.
  [[nodiscard]] double extent_mib() const { return mib(extent_of(pool_.region_ranges(0))); }
  static constexpr double slot_bytes = sizeof(typename Pool::slice);

 private:
  static typename Pool::options_type pool_options() {
    typename Pool::options_type o;
    o.min_alignment = std::uint64_t{1} << min_align_log2;
    o.max_alignment = std::uint64_t{1} << max_align_log2;
    return o;
  }

  // Declaration order matters: slices go first, then the pool, then its memory.
  mapping memory_;
  Pool pool_;
  std::vector<typename Pool::slice> slots_;
  std::vector<op> fixed_;
};

// ---------------------------------------------------------------------------------------
// The raw engine: offsets only; the fixture adds the region's base to touch the memory.

template <kind K>
class engine_fixture final : public fixture {
 public:
  explicit engine_fixture(std::size_t live)
      : memory_(region_bytes(live)),
        engine_(bufpool::engine_limits{~std::uint64_t{0}, 1, ~std::uint64_t{0},
                                       std::uint64_t{1} << min_align_log2,
                                       std::uint64_t{1} << max_align_log2}),
        slots_(live, bufpool::no_index) {
    if (memory_.base() == nullptr) {
      error = "mmap of the region failed";
      return;
    }
    auto at = engine_.reserve(memory_.size());
    if (!at || *at != 0) {
      error = "engine reserve failed";
      return;
    }
    engine_.publish(*at, memory_.size());
    const trace& t = trace_for(live);
    constexpr kind build = K == kind::fixed ? kind::optimal : K;
    std::vector<std::uint64_t> home, capacity;
    if constexpr (K == kind::fixed) {
      home.resize(live);
      capacity.resize(live);
    }
    for (const op& o : t.initial) {
      auto a = engine_.allocate(o.size, std::uint64_t{1} << o.align_log2, strategy_of(build, o));
      if (!a) {
        error = std::string("setup allocate failed: ") + bufpool::to_string(a.error());
        return;
      }
      touch(memory_.base() + a->offset, o.size);
      slots_[o.victim] = a->node;
      if constexpr (K == kind::fixed) {
        home[o.victim] = a->offset;
        capacity[o.victim] = a->capacity;
      }
    }
    if constexpr (K == kind::fixed) {
      fixed_ = fixed_ops(t.steps, home, capacity);
      ops = &fixed_;
    } else {
      ops = &t.steps;
    }
    if (!churn(*this, warmup_steps(live))) error = "warm-up allocate failed";
  }

  bool step(const op& o) {
    engine_.release(slots_[o.victim]);
    auto a = engine_.allocate(o.size, std::uint64_t{1} << o.align_log2, strategy_of(K, o));
    if (!a) [[unlikely]]
      return false;
    touch(memory_.base() + a->offset, o.size);
    slots_[o.victim] = a->node;
    return true;
  }

  [[nodiscard]] double free_ranges() const {
    return static_cast<double>(engine_.stats().free_ranges);
  }
  [[nodiscard]] double extent_mib() const { return mib(extent_of(engine_.ranges(0))); }
  static constexpr double slot_bytes = sizeof(std::uint32_t);

 private:
  mapping memory_;
  bufpool::engine engine_;
  std::vector<std::uint32_t> slots_;
  std::vector<op> fixed_;
};

// ---------------------------------------------------------------------------------------
// glibc: posix_memalign + free.

class malloc_fixture final : public fixture {
 public:
  explicit malloc_fixture(std::size_t live) : slots_(live, nullptr) {
    const trace& t = trace_for(live);
    for (const op& o : t.initial) {
      void* p = nullptr;
      if (::posix_memalign(&p, std::size_t{1} << o.align_log2, o.size) != 0) {
        error = "setup posix_memalign failed";
        return;
      }
      touch(static_cast<std::byte*>(p), o.size);
      slots_[o.victim] = p;
    }
    ops = &t.steps;
    if (!churn(*this, warmup_steps(live))) error = "warm-up posix_memalign failed";
  }
  ~malloc_fixture() override {
    for (void* p : slots_) std::free(p);
    ::malloc_trim(0);  // give the heap back before the next benchmark builds its live set
  }

  bool step(const op& o) {
    std::free(slots_[o.victim]);
    void* p = nullptr;
    if (::posix_memalign(&p, std::size_t{1} << o.align_log2, o.size) != 0) [[unlikely]] {
      slots_[o.victim] = nullptr;
      return false;
    }
    touch(static_cast<std::byte*>(p), o.size);
    slots_[o.victim] = p;
    return true;
  }

  [[nodiscard]] double free_ranges() const { return 0; }
  [[nodiscard]] double extent_mib() const { return 0; }
  static constexpr double slot_bytes = sizeof(void*);

 private:
  std::vector<void*> slots_;
};

// ---------------------------------------------------------------------------------------
// The timed loop, shared by every variant.

template <class F>
void run(benchmark::State& state, const std::string& name) {
  const auto live = static_cast<std::size_t>(state.range(0));
  F& f = fixture_for<F>(name + "/" + std::to_string(live), live);
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  const std::vector<op>& ops = *f.ops;
  std::size_t pos = f.pos;
  for (auto _ : state) {
    if (!f.step(ops[pos])) [[unlikely]] {
      state.SkipWithError("acquire failed during the timed loop");
      break;
    }
    if (++pos == ops.size()) pos = 0;
  }
  f.pos = pos;
  state.SetItemsProcessed(state.iterations());
  state.counters["live"] = static_cast<double>(live);
  state.counters["free_ranges"] = f.free_ranges();
  if (f.extent < 0) f.extent = f.extent_mib();  // O(ranges): once per live set
  state.counters["extent_MiB"] = f.extent;
  state.counters["slot_bytes"] = F::slot_bytes;
  state.counters["rss_MiB"] = rss_mib();
}

template <class F>
void add(const std::string& name) {
  auto* b = benchmark::RegisterBenchmark(name.c_str(),
                                         [name](benchmark::State& state) { run<F>(state, name); });
  for (const std::int64_t n : live_sizes) b->Arg(n);
  b->Unit(benchmark::kNanosecond);
}

template <kind K>
void add_strategy() {
  const std::string s = name_of(K);
  add<pool_fixture<bufpool::buffer_pool<std::uint64_t>, K>>("locked_pool/" + s);
  add<pool_fixture<bufpool::local_buffer_pool<std::uint64_t>, K>>("local_pool/" + s);
  add<engine_fixture<K>>("engine/" + s);
}

const bool registered = [] {
  add_strategy<kind::optimal>();
  add_strategy<kind::greedy>();
  add_strategy<kind::good_fit>();
  add_strategy<kind::fixed>();
  add<malloc_fixture>("malloc/posix_memalign");
  return true;
}();

}  // namespace
