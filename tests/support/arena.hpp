// SPDX-License-Identifier: MIT
// A thread-safe bufpool::buffer_pool<> over one 4 KiB-aligned heap block, for the adapter
// tests. Include after <gtest/gtest.h> and `import bufpool;`.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

namespace bufpool_test {

struct arena {
  explicit arena(std::size_t bytes) : size(bytes) {
    auto grow = pool.begin_expand(size);
    EXPECT_TRUE(grow.has_value());
    EXPECT_TRUE(std::move(*grow).initialize(memory).has_value());
  }
  arena(const arena&) = delete;
  arena& operator=(const arena&) = delete;

  // True if `p` points into the block.
  [[nodiscard]] bool holds(const void* p) const {
    const auto* b = static_cast<const std::byte*>(p);
    const auto* m = static_cast<const std::byte*>(memory);
    return b >= m && b < m + size;
  }
  void expect_empty_and_valid() const {
    EXPECT_EQ(pool.stats().live_slices, 0u);
    const auto v = pool.validate();
    EXPECT_TRUE(v.has_value()) << v.error();
  }

  // Frees the block after the pool is gone (members are destroyed in reverse order).
  struct block_owner {
    void* block;
    ~block_owner() { ::operator delete(block, std::align_val_t{4096}); }
  };

  std::size_t size;
  void* memory = ::operator new(size, std::align_val_t{4096});
  block_owner owner{memory};
  bufpool::buffer_pool<> pool;
};

}  // namespace bufpool_test
