// SPDX-License-Identifier: MIT
// bufpool:offset_map — the pool's index of live raw ranges: offset -> engine node, open addressing.
module;
#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <vector>
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
  void insert(std::uint64_t key, std::uint32_t node);
  /// Room for `n` more entries, so that inserting them cannot throw.
  void reserve(std::size_t n);
  /// The node of `key`, or no_index.
  [[nodiscard]] std::uint32_t find(std::uint64_t key) const noexcept;
  bool erase(std::uint64_t key) noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  template <class F>
  void for_each(F&& f) const {
    for (const cell& c : cells_)
      if (c.node != no_index) f(c.key, c.node);
  }

 private:
  struct cell {
    std::uint64_t key = 0;
    std::uint32_t node = no_index;
  };
  [[nodiscard]] std::size_t home(std::uint64_t key) const noexcept;
  void grow();
  meta_vector<cell> cells_;  // size a power of two
  std::size_t count_ = 0;
};

}  // namespace detail

}  // namespace bufpool

#pragma GCC visibility pop
