// SPDX-License-Identifier: MIT
// Demo: a pool grown by two non-adjacent regions, slices, a guard that parks a range, stats.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <expected>
#include <memory>
#include <vector>
import bufpool;

namespace {

// Stands in for an in-flight I/O: the memory is busy until `done` is set.
struct io_guard {
  std::shared_ptr<bool> done;
  bool try_release() const { return *done; }
};

void print_stats(const char* when, const bufpool::buffer_pool<>& pool) {
  const bufpool::pool_stats s = pool.stats();
  std::printf(
      "%-28s used %6llu  free %6llu  free ranges %zu  largest free %6llu  live %zu  "
      "guarded %zu (parked %zu)\n",
      when, static_cast<unsigned long long>(s.used_bytes),
      static_cast<unsigned long long>(s.free_bytes), s.free_ranges,
      static_cast<unsigned long long>(s.largest_free), s.live_slices, s.guarded_slices,
      s.parked_slices);
}

}  // namespace

int main() {
  // Two separate allocations stand in for two mmap(2) results: not adjacent in memory.
  std::vector<std::byte> first(64 * 1024);
  std::vector<std::byte> second(256 * 1024);
  bufpool::buffer_pool<> pool;

  for (auto* memory : {&first, &second}) {
    auto grow = pool.begin_expand(memory->size());  // reserve offsets; lock not held later
    if (!grow) return 1;
    const auto at = grow->offset();
    if (!std::move(*grow).initialize(memory->data())) return 1;
    std::printf("region at offsets [%u, %zu) backed by %p\n", at, at + memory->size(),
                static_cast<void*>(memory->data()));
  }
  print_stats("after two expansions:", pool);

  // Slices: best fit, greedy, and one at a fixed offset; aligned offsets.
  auto a = pool.acquire(1000, 64, bufpool::optimal);
  auto b = pool.acquire<io_guard>(8192, 4096, bufpool::greedy);
  auto c = pool.acquire(512, 16, bufpool::fixed(32768));
  if (!a || !b || !c) return 1;
  std::printf("a: offset %u size %u capacity %u (region at %u)\n", a->offset(), a->size(),
              a->capacity(), a->region_offset());
  std::printf("b: offset %u size %u (4096-aligned)\nc: offset %u (fixed)\n", b->offset(), b->size(),
              c->offset());
  a->bytes()[0] = std::byte{42};

  // A fixed range that overlaps a live slice is refused with a reason.
  auto clash = pool.acquire(16, 16, bufpool::fixed(32768));
  std::printf("fixed(32768) again: %s\n", bufpool::to_string(clash.error()));
  print_stats("with three slices:", pool);

  // Guard b as if an I/O were reading into it, then drop it: the pool parks the range.
  auto done = std::make_shared<bool>(false);
  if (!b->guard(io_guard{done})) return 1;
  auto refused = std::move(*b).reclaim();
  std::printf("reclaim of guarded slice: %s\n",
              refused ? "ok" : bufpool::to_string(refused.error().code));
  {
    auto dropped = std::move(refused.error().slice);
  }
  print_stats("guarded slice dropped:", pool);

  *done = true;  // the I/O completed
  std::printf("collect() freed %zu range(s)\n", pool.collect());
  a = {};
  c = {};
  print_stats("all slices returned:", pool);
  std::printf("validate(): %s\n", pool.validate() ? "ok" : pool.validate().error().c_str());
  return 0;
}
