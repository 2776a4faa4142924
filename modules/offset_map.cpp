// SPDX-License-Identifier: MIT
// The pool's offset -> node map for raw ranges: its growth and reserve (the probes are inline
// in the interface).
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

}  // namespace bufpool::detail
