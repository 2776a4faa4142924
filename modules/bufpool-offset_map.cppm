// SPDX-License-Identifier: MIT
// bufpool:offset_map — the pool's index of live raw ranges: offset -> engine node, open addressing.
module;
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory_resource>
#include <source_location>
#include <vector>

#include "internal_assert.hpp"
export module bufpool:offset_map;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :engine;
import :metadata;

export namespace bufpool {

namespace detail {

// Offset -> engine node of the live raw ranges (the size and alignment they were acquired
// with are kept with the node: see buffer_pool's raw_alignment_bits): open addressing with linear
// probing and backward-shift deletion, so lookups and erases are O(1) expected and nothing is
// allocated except when the table grows (at half load). 16 bytes per cell, from the memory
// resource given at construction.
class offset_map {
 public:
  /// An empty map whose cells come from `metadata` (null: std::pmr::new_delete_resource()).
  /// Allocates nothing.
  explicit offset_map(std::pmr::memory_resource* metadata = nullptr) noexcept
      : cells_(metadata_or_default(metadata)) {}
  /// Enters `key`, which must not be in the map. Inline (every raw acquisition calls it);
  /// growing the table is not.
  [[gnu::always_inline]] inline void insert(std::uint64_t key, std::uint32_t node) {
    if (2 * (count_ + 1) > cells_.size()) grow();  // keep the load at most one half
    BUFPOOL_ASSERT(node != no_index && 2 * (count_ + 1) <= cells_.size());
    const std::size_t h = home(key);
    std::size_t i = h;
    while (cells_[i].node != no_index) {
      BUFPOOL_ASSERT(cells_[i].key != key);  // each raw range's offset is entered once
      i = (i + 1) & (cells_.size() - 1);
    }
    cells_[i] = {key, node, static_cast<std::uint32_t>(h)};
    ++count_;
  }
  /// Room for `n` more entries, so that inserting them cannot throw.
  void reserve(std::size_t n);
  /// The node of `key`, or no_index.
  [[nodiscard]] std::uint32_t find(std::uint64_t key) const noexcept {
    const std::size_t c = find_cell(key);
    return c == no_cell ? no_index : cells_[c].node;
  }
  bool erase(std::uint64_t key) noexcept {
    const std::size_t c = find_cell(key);
    if (c == no_cell) return false;
    erase_cell(c);
    return true;
  }
  /// The cell that holds `key`, or no_cell: for a lookup followed by an erase (node_at(),
  /// then erase_cell()) with one probe. A cell stays valid until the map next changes.
  static constexpr std::size_t no_cell = ~std::size_t{0};
  [[nodiscard]] inline std::size_t find_cell(std::uint64_t key) const noexcept {
    if (cells_.empty()) return no_cell;
    // A free cell ends every probe: the load stays at most one half.
    for (std::size_t i = home(key);; i = (i + 1) & (cells_.size() - 1)) {
      if (cells_[i].node == no_index) return no_cell;
      if (cells_[i].key == key) return i;
    }
  }
  [[nodiscard]] inline std::uint32_t node_at(std::size_t cell) const noexcept {
    return cells_[cell].node;
  }
  /// Removes the entry of `cell` (from find_cell()). Inline, as insert().
  [[gnu::always_inline]] inline void erase_cell(std::size_t i) noexcept {
    BUFPOOL_ASSERT(i < cells_.size() && cells_[i].node != no_index && count_ != 0);
    const std::size_t mask = cells_.size() - 1;
    // Backward shift: pull later cells of the probe run into the hole while their home
    // does not lie cyclically in (hole, cell], so every key stays reachable from its home.
    for (std::size_t j = i;;) {
      j = (j + 1) & mask;
      if (cells_[j].node == no_index) break;
      const std::size_t h = cells_[j].home;
      const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
      if (!stays) {
        // The entry moves towards its home, never past it: it stays reachable.
        BUFPOOL_ASSERT(((i - h) & mask) < ((j - h) & mask));
        cells_[i] = cells_[j];
        i = j;
      }
    }
    cells_[i].node = no_index;
    --count_;
  }
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  /// Removes every entry, keeping the cells. O(cells).
  void clear() noexcept {
    std::fill(cells_.begin(), cells_.end(), cell{});
    count_ = 0;
  }
  template <class F>
  void for_each(F&& f) const {
    for (const cell& c : cells_)
      if (c.node != no_index) f(c.key, c.node);
  }

 private:
  struct cell {
    std::uint64_t key = 0;
    std::uint32_t node = no_index;
    std::uint32_t home = 0;  // home(key), kept so that erasing does not hash the cells it moves
  };
  // A 64-bit mix (the finalizer of MurmurHash3): offsets are multiples of the alignment, so
  // their low bits alone would crowd a few cells.
  [[nodiscard]] inline std::size_t home(std::uint64_t key) const noexcept {
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return static_cast<std::size_t>(key) & (cells_.size() - 1);
  }
  [[gnu::noinline]] void grow();
  meta_vector<cell> cells_;  // size a power of two
  std::size_t count_ = 0;
};

}  // namespace detail

}  // namespace bufpool

#pragma GCC visibility pop
