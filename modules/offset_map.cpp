// SPDX-License-Identifier: MIT
// The pool's offset -> node map for raw ranges: open addressing, backward-shift deletion.
module;
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory_resource>
#include <new>
#include <source_location>
#include <utility>
#include <vector>

#include "internal_assert.hpp"
module bufpool;

namespace bufpool::detail {

void offset_map::grow() {
  // The new table, from the same resource (so that the swap exchanges buffers only). A cell
  // keeps its home in 32 bits: 2^32 cells would be 64 GiB of table.
  const std::size_t cells = cells_.empty() ? 16 : 2 * cells_.size();
  if (cells > (std::size_t{1} << 32)) throw std::bad_alloc();
  meta_vector<cell> old(cells, cells_.get_allocator());
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
  const std::size_t h = home(key);
  std::size_t i = h;
  while (cells_[i].node != no_index) {
    BUFPOOL_ASSERT(cells_[i].key != key);  // each raw range's offset is entered once
    i = (i + 1) & (cells_.size() - 1);
  }
  cells_[i] = {key, node, static_cast<std::uint32_t>(h)};
  ++count_;
}

void offset_map::erase_cell(std::size_t i) noexcept {
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

}  // namespace bufpool::detail
