// SPDX-License-Identifier: MIT
// The pool's offset -> node map for raw ranges: open addressing, backward-shift deletion.
module;
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory_resource>
#include <source_location>
#include <utility>
#include <vector>

#include "internal_assert.hpp"
module bufpool;

namespace bufpool::detail {

// A 64-bit mix (the finalizer of MurmurHash3): offsets are multiples of the alignment, so
// their low bits alone would crowd a few cells.
std::size_t offset_map::home(std::uint64_t key) const noexcept {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  return static_cast<std::size_t>(key) & (cells_.size() - 1);
}

void offset_map::grow() {
  // The new table, from the same resource (so that the swap exchanges buffers only).
  meta_vector<cell> old(cells_.empty() ? 16 : 2 * cells_.size(), cells_.get_allocator());
  old.swap(cells_);
  const std::size_t count = count_;
  count_ = 0;
  for (const cell& c : old)
    if (c.node != no_index) insert(c.key, c.node);
  BUFPOOL_ASSERT(count_ == count);  // every entry moved, none twice
}

void offset_map::reserve(std::size_t n) {
  while (2 * (count_ + n) > cells_.size()) grow();
}

void offset_map::insert(std::uint64_t key, std::uint32_t node) {
  if (2 * (count_ + 1) > cells_.size()) grow();  // keep the load at most one half
  BUFPOOL_ASSERT(node != no_index && 2 * (count_ + 1) <= cells_.size());
  std::size_t i = home(key);
  while (cells_[i].node != no_index) {
    BUFPOOL_ASSERT(cells_[i].key != key);  // each raw range's offset is entered once
    i = (i + 1) & (cells_.size() - 1);
  }
  cells_[i] = {key, node};
  ++count_;
}

std::uint32_t offset_map::find(std::uint64_t key) const noexcept {
  if (cells_.empty()) return no_index;
  // A free cell ends every probe: the load stays at most one half.
  BUFPOOL_ASSERT(2 * count_ <= cells_.size());
  for (std::size_t i = home(key);; i = (i + 1) & (cells_.size() - 1)) {
    if (cells_[i].node == no_index || cells_[i].key == key) return cells_[i].node;
  }
}

bool offset_map::erase(std::uint64_t key) noexcept {
  if (cells_.empty()) return false;
  const std::size_t mask = cells_.size() - 1;
  std::size_t i = home(key);
  for (;; i = (i + 1) & mask) {
    if (cells_[i].node == no_index) return false;
    if (cells_[i].key == key) break;
  }
  // Backward shift: pull later cells of the probe run into the hole while their home
  // does not lie cyclically in (hole, cell], so every key stays reachable from its home.
  for (std::size_t j = i;;) {
    j = (j + 1) & mask;
    if (cells_[j].node == no_index) break;
    const std::size_t h = home(cells_[j].key);
    const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
    if (!stays) {
      // The entry moves towards its home, never past it: it stays reachable.
      BUFPOOL_ASSERT(((i - h) & mask) < ((j - h) & mask));
      cells_[i] = cells_[j];
      i = j;
    }
  }
  BUFPOOL_ASSERT(count_ != 0);
  cells_[i].node = no_index;
  --count_;
  return true;
}

}  // namespace bufpool::detail
