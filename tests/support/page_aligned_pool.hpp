// SPDX-License-Identifier: MIT
// The slab tests' options, and a pool over one heap block whose first region starts on a 4
// KiB boundary, so that offsets and addresses agree on alignment. Include after `import
// bufpool;` and <gtest/gtest.h>.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace bufpool_test {

// Slabs (optionally with thread caches) for 8-aligned requests of up to 4 KiB alignment.
inline bufpool::basic_options<std::uint64_t> slab_options(bool thread_caches = false) {
  bufpool::basic_options<std::uint64_t> o;
  o.min_alignment = 8;
  o.max_alignment = 4096;
  o.slabs = true;
  o.thread_caches = thread_caches;
  return o;
}

template <class Pool>
struct page_aligned_pool {
  page_aligned_pool(const typename Pool::options_type& options, std::size_t bytes)
      : memory(bytes + 4096), pool(options) {
    auto* base = memory.data() + (4096 - reinterpret_cast<std::uintptr_t>(memory.data()) % 4096);
    auto grow = pool.begin_expand(bytes);
    EXPECT_TRUE(grow.has_value());
    EXPECT_TRUE(std::move(*grow).initialize(base).has_value());
  }
  std::vector<std::byte> memory;
  Pool pool;
};

}  // namespace bufpool_test
