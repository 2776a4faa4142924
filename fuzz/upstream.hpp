// SPDX-License-Identifier: MIT
// The pmr resource's upstream: counts what it hands out, refuses beyond a budget, checks returns.
// Memory (regions and dedicated blocks, aligned to region_alignment or more) is counted apart
// from the resource's records, which it takes from upstream too at smaller alignments.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory_resource>
#include <new>
#include "bounds.hpp"
#include "report.hpp"
import bufpool.pmr;

namespace {

struct upstream_refused {};  // thrown beyond the budget; must propagate unchanged

class counting_upstream final : public std::pmr::memory_resource {
 public:
  struct snapshot {
    u64 outstanding;
    std::size_t allocations;
    std::size_t refusals;  // of memory
    std::size_t record_refusals;
  };

  counting_upstream() = default;
  counting_upstream(const counting_upstream&) = delete;
  counting_upstream& operator=(const counting_upstream&) = delete;
  ~counting_upstream() override {
    for (const auto& [address, b] : live_)
      ::operator delete(reinterpret_cast<void*>(address), std::align_val_t{b.alignment});
  }

  [[nodiscard]] snapshot now() const noexcept {
    return {outstanding_, allocations_, refusals_, record_refusals_};
  }
  [[nodiscard]] u64 outstanding() const noexcept { return outstanding_; }  // memory
  [[nodiscard]] std::size_t blocks() const noexcept { return memory_blocks_; }
  [[nodiscard]] u64 records_outstanding() const noexcept { return records_; }

  // Whether [p, p + n) lies inside one live upstream allocation.
  [[nodiscard]] bool contains(const void* p, u64 n) const {
    const auto a = reinterpret_cast<std::uintptr_t>(p);
    auto it = live_.upper_bound(a);
    if (it == live_.begin()) return false;
    --it;
    return a - it->first < it->second.bytes && n <= it->second.bytes - (a - it->first);
  }

 private:
  struct block {
    std::size_t bytes;
    std::size_t alignment;
  };

  static bool is_memory(std::size_t alignment) noexcept {
    return alignment >= bufpool::pmr::pool_resource::region_alignment;
  }

  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    if (bytes > upstream_budget - outstanding_ - records_) {
      ++(is_memory(alignment) ? refusals_ : record_refusals_);
      throw upstream_refused{};
    }
    void* p = ::operator new(bytes, std::align_val_t{alignment});
    live_.emplace(reinterpret_cast<std::uintptr_t>(p), block{bytes, alignment});
    if (is_memory(alignment)) {
      outstanding_ += bytes;
      ++memory_blocks_;
      ++allocations_;
    } else {
      records_ += bytes;
    }
    return p;
  }

  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    const auto it = live_.find(reinterpret_cast<std::uintptr_t>(p));
    expect(it != live_.end() && it->second.bytes == bytes && it->second.alignment == alignment,
           "upstream: deallocate matches a live allocation", "pointer ", p, " bytes ", bytes,
           " alignment ", alignment);
    live_.erase(it);
    if (is_memory(alignment)) {
      outstanding_ -= bytes;
      --memory_blocks_;
    } else {
      records_ -= bytes;
    }
    ::operator delete(p, std::align_val_t{alignment});
  }

  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::map<std::uintptr_t, block> live_;
  u64 outstanding_ = 0;
  u64 records_ = 0;
  std::size_t memory_blocks_ = 0;
  std::size_t allocations_ = 0;  // of memory
  std::size_t refusals_ = 0;
  std::size_t record_refusals_ = 0;
};

}  // namespace
