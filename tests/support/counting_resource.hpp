// SPDX-License-Identifier: MIT
// A memory resource for a pool's records that counts what it hands out, for tests of where
// records come from and when they go back. Include after <gtest/gtest.h>.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory_resource>
#include <mutex>

namespace bufpool_test {

// Counts what it hands out and forwards to the global heap; thread-safe. Freed memory is
// overwritten, so that a record read after it is freed is likely to show.
class counting_resource final : public std::pmr::memory_resource {
 public:
  [[nodiscard]] std::size_t allocations() const {
    std::scoped_lock l(mutex_);
    return allocations_;
  }
  [[nodiscard]] std::size_t live_bytes() const {
    std::scoped_lock l(mutex_);
    return live_bytes_;
  }

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    void* p = std::pmr::new_delete_resource()->allocate(bytes, alignment);
    std::scoped_lock l(mutex_);
    ++allocations_;
    live_bytes_ += bytes;
    return p;
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    {
      std::scoped_lock l(mutex_);
      EXPECT_GE(live_bytes_, bytes);
      live_bytes_ -= bytes;
    }
    std::fill_n(static_cast<std::byte*>(p), bytes, std::byte{0xdd});
    std::pmr::new_delete_resource()->deallocate(p, bytes, alignment);
  }
  [[nodiscard]] bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }
  mutable std::mutex mutex_;
  std::size_t allocations_ = 0;
  std::size_t live_bytes_ = 0;
};

}  // namespace bufpool_test
