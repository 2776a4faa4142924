// SPDX-License-Identifier: MIT
// An upstream for a pmr resource's records only: it refuses memory for regions, as the null
// resource does, so that a resource over a small buffer can keep its records, which would
// not fit there. Include after `import bufpool.pmr;`.
#pragma once

#include <cstddef>
#include <memory_resource>
#include <new>

namespace bufpool_test {

class records_only_resource final : public std::pmr::memory_resource {
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    // Regions and dedicated blocks are aligned to region_alignment at least; records less.
    if (alignment >= bufpool::pmr::pool_resource::region_alignment) throw std::bad_alloc();
    return std::pmr::new_delete_resource()->allocate(bytes, alignment);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    std::pmr::new_delete_resource()->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
};

}  // namespace bufpool_test
