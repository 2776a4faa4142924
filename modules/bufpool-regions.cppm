// SPDX-License-Identifier: MIT
// bufpool:regions — a pool's initialized regions: their records, the searches by address and
// by offset, and the AddressSanitizer poisoning of their host memory.
module;
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory_resource>
#include <optional>
#include <utility>
#include <vector>

#include "build_flags.hpp"
export module bufpool:regions;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :engine;
import :metadata;
import :options;

export namespace bufpool {

namespace detail {

// What a pool keeps of one initialized region. A region never changes once initialized, so a
// thread cache may keep a copy.
template <offset_integer Int, class Extra>
struct region_info {
  Int offset;
  Int size;
  std::byte* base;
  [[no_unique_address]] Extra extra;
  // The addresses [host_begin, host_end) are ordinary host memory the pool may poison in
  // AddressSanitizer builds; the rest of the region is never poisoned.
  std::uintptr_t host_begin = 0;
  std::uintptr_t host_end = 0;
};

// Where an address lies in the pool: its offset and its region's id.
struct location {
  std::uint64_t offset;
  std::uint32_t region;
};

// Region ids sorted by where each region starts (its base address, or its first offset):
// finds the one region that may hold a position in O(log regions) without reading any
// memory. Its records come from the memory resource given at construction.
class start_index {
 public:
  // An empty index whose records come from `metadata` (null: std::pmr::new_delete_resource()).
  // Allocates nothing.
  explicit start_index(std::pmr::memory_resource* metadata = nullptr) noexcept
      : by_start_(metadata_or_default(metadata)) {}
  // Room for one more region, so that the insert() that follows cannot throw.
  void reserve_one() { room_for_one(by_start_); }
  void clear() noexcept { by_start_.clear(); }
  void insert(std::uint64_t start, std::uint32_t id) {
    by_start_.insert(std::upper_bound(by_start_.begin(), by_start_.end(), std::pair{start, id}),
                     {start, id});
  }
  // The (start, id) of the region that starts last at or below `at`, or null if none does.
  [[nodiscard]] const std::pair<std::uint64_t, std::uint32_t>* last_at_or_below(
      std::uint64_t at) const noexcept {
    if (by_start_.empty()) return nullptr;
    // A binary search whose steps are conditional moves, not branches (a release's region is
    // as random as the releases).
    const auto* e = by_start_.data();
    for (std::size_t n = by_start_.size(); n > 1;) {
      const std::size_t half = n / 2;
      e = BUFPOOL_UNPREDICTABLE(e[half].first <= at) ? e + half : e;
      n -= half;
    }
    return e->first <= at ? e : nullptr;
  }

 private:
  meta_vector<std::pair<std::uint64_t, std::uint32_t>> by_start_;
};

// The regions by base address: where a pointer lies. A direct-mapped table of hints in front
// of the search remembers, per block of 2 MiB of addresses, the region last found there:
// releases by pointer mostly land in regions found before, and a hint costs a bounds check
// where the search costs a step per doubling of the regions. A hint is only trusted once its
// region's bounds hold the address (regions never overlap), so a block shared by two regions
// or a slot that two blocks share costs the search, never a wrong answer.
class address_index {
 public:
  explicit address_index(std::pmr::memory_resource* metadata = nullptr) noexcept
      : by_base_(metadata) {}
  void reserve_one() { by_base_.reserve_one(); }
  void clear() noexcept {
    by_base_.clear();
    hints_.fill(hint{});  // region ids are given again after a clear
  }
  void insert(std::uintptr_t base, std::uint32_t id) { by_base_.insert(base, id); }
  // The offset and region of `pointer` among `regions` (by id, pointer-like), or nothing if
  // it is in none of them. Notes the region found as its block's hint: callers hold the lock
  // that guards this index.
  template <class Regions>
  [[nodiscard]] std::optional<location> locate(const Regions& regions,
                                               const void* pointer) const noexcept {
    const auto address = reinterpret_cast<std::uintptr_t>(pointer);
    const std::uintptr_t block = address >> hint_block_log2;
    hint& h = hints_[block % hint_count];
    if (h.block == block)
      if (const auto at = in_region(regions, h.region, address)) return at;
    const auto* at = by_base_.last_at_or_below(address);
    if (at == nullptr) return std::nullopt;
    const auto found = in_region(regions, at->second, address);
    if (found) h = {block, at->second};
    return found;
  }

 private:
  template <class Regions>
  static std::optional<location> in_region(const Regions& regions, std::uint32_t id,
                                           std::uintptr_t address) noexcept {
    const auto& region = *regions[id];
    const std::uint64_t delta = address - reinterpret_cast<std::uintptr_t>(region.base);
    if (delta >= region.size) return std::nullopt;
    return location{std::uint64_t{region.offset} + delta, id};
  }

  struct hint {
    std::uintptr_t block = ~std::uintptr_t{0};  // address >> hint_block_log2: none yet
    std::uint32_t region = 0;
  };
  static constexpr unsigned hint_block_log2 = 21;
  static constexpr std::size_t hint_count = 64;
  start_index by_base_;
  mutable std::array<hint, hint_count> hints_{};
};

// The regions by first offset: which one holds an offset.
class offset_index {
 public:
  explicit offset_index(std::pmr::memory_resource* metadata = nullptr) noexcept
      : by_offset_(metadata) {}
  void reserve_one() { by_offset_.reserve_one(); }
  void clear() noexcept { by_offset_.clear(); }
  void insert(std::uint64_t offset, std::uint32_t id) { by_offset_.insert(offset, id); }
  // The id of the region among `regions` (by id, pointer-like) that holds `offset`, or
  // nothing if none does.
  template <class Regions>
  [[nodiscard]] std::optional<std::uint32_t> locate(const Regions& regions,
                                                    std::uint64_t offset) const noexcept {
    const auto* at = by_offset_.last_at_or_below(offset);
    if (at == nullptr || offset - at->first >= regions[at->second]->size) return std::nullopt;
    return at->second;
  }

 private:
  start_index by_offset_;
};

// Whether this build poisons free host memory (AddressSanitizer builds).
inline constexpr bool poisoning = BUFPOOL_POISONING != 0;

// AddressSanitizer builds: makes [offset, offset + size) of region `r` unaddressable
// (`poison`) or addressable again, limited to the region's host memory. Nothing otherwise.
template <class Region>
void set_poisoned([[maybe_unused]] const Region& r, [[maybe_unused]] std::uint64_t offset,
                  [[maybe_unused]] std::uint64_t size, [[maybe_unused]] bool poison) noexcept {
#ifdef BUFPOOL_ASAN
  const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(r.base) + (offset - r.offset);
  const std::uintptr_t begin = std::max(at, r.host_begin);
  const std::uintptr_t end = std::min(at + size, r.host_end);
  if (begin >= end) return;
  if (poison)
    __asan_poison_memory_region(reinterpret_cast<const void*>(begin), end - begin);
  else
    __asan_unpoison_memory_region(reinterpret_cast<const void*>(begin), end - begin);
#endif
}
// A range that becomes free: later use through a stale pointer is reported.
template <class Region>
void poison(const Region& r, std::uint64_t offset, std::uint64_t size) noexcept {
  set_poisoned(r, offset, size, true);
}
// A range handed out (or memory handed back to its owner): addressable again.
template <class Region>
void unpoison(const Region& r, std::uint64_t offset, std::uint64_t size) noexcept {
  set_poisoned(r, offset, size, false);
}

}  // namespace detail

}  // namespace bufpool

#pragma GCC visibility pop
