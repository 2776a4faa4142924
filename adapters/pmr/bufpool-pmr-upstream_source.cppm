// SPDX-License-Identifier: MIT
// bufpool.pmr:upstream_source — where an owning pool_resource's memory and records come from:
// serialized calls to its upstream, and the records' reserve in a buffer with a null upstream.
module;
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <new>
#include <optional>
export module bufpool.pmr:upstream_source;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import bufpool;

namespace bufpool::pmr::detail {

inline constexpr std::size_t region_alignment = 4096;

// The part of a user's buffer that keeps an owning resource's records when its upstream is
// the null resource (upstream_source), in whole cache lines: half the buffer, which it lends
// back to the pool as the pool runs out of room (upstream_source::lend).
inline std::size_t records_reserve(std::size_t buffer_size) noexcept {
  return buffer_size / 2 & ~std::size_t{63};
}
// `n` rounded up to a multiple of region_alignment, or nothing on overflow.
inline std::optional<std::size_t> round_up(std::size_t n) noexcept {
  if (n > std::numeric_limits<std::size_t>::max() - (region_alignment - 1)) return std::nullopt;
  return (n + region_alignment - 1) & ~(region_alignment - 1);
}
// Where an owning resource's memory comes from: every call to its upstream goes through
// here, serialized by `Mutex` (the pool calls it for records from several threads' caches at
// once, and an upstream need not be thread-safe), and the resource's own records (the
// pool's, the list of regions, the dedicated allocations' index) are allocated here too.
// Records come from a reserve at the end of the user's buffer when there is one (a resource
// whose upstream is the null resource has nowhere else to keep them), then from upstream.
// The reserve is a bump area that takes back its last block, with a list of freed blocks
// reused at their exact size: records are few, and they are freed and allocated again in the
// same sizes cycle after cycle.
template <class Mutex>
class upstream_source final : public std::pmr::memory_resource {
 public:
  explicit upstream_source(std::pmr::memory_resource* upstream) noexcept : upstream_(upstream) {}

  // Keeps records in [begin, begin + size) before asking upstream. Before any allocation.
  void set_reserve(std::byte* begin, std::size_t size) noexcept {
    reserve_begin_ = next_ = begin;
    reserve_end_ = full_end_ = begin + size;
  }

  // The size of the block lend() would give for a request of `bytes` (a multiple of
  // region_alignment): that, or half the reserve's unused room if that is more, provided the
  // room keeps a page for the records still to come besides. 0 if it cannot.
  std::size_t lendable(std::size_t bytes) noexcept {
    std::scoped_lock lock(mutex_);
    return lendable_locked(bytes);
  }
  // Lends the top `size` bytes of the reserve's unused room (a size lendable() gave) to the
  // pool: a block aligned to region_alignment that records do not use until
  // restore_reserve(). Null if records took that room meanwhile.
  std::byte* lend(std::size_t size) noexcept {
    std::scoped_lock lock(mutex_);
    if (size == 0 || lendable_locked(size) < size) return nullptr;
    const auto top = reinterpret_cast<std::uintptr_t>(reserve_end_) & ~(region_alignment - 1);
    reserve_end_ = reinterpret_cast<std::byte*>(top - size);
    return reserve_end_;
  }
  // Takes back every block lent: the pool that had them is gone.
  void restore_reserve() noexcept {
    std::scoped_lock lock(mutex_);
    reserve_end_ = full_end_;
  }

  // A region for the pool, or a dedicated allocation: always from upstream.
  void* take(std::size_t bytes, std::size_t alignment) {
    std::scoped_lock lock(mutex_);
    return upstream_->allocate(bytes, alignment);
  }
  void give_back(void* p, std::size_t bytes, std::size_t alignment) noexcept {
    std::scoped_lock lock(mutex_);
    upstream_->deallocate(p, bytes, alignment);
  }

 private:
  // A freed block of the reserve, kept in the block itself.
  struct free_block {
    free_block* next;
    std::size_t bytes;
  };
  static constexpr std::size_t grain = sizeof(free_block);

  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    std::scoped_lock lock(mutex_);
    if (void* p = from_reserve(bytes, alignment)) return p;
    return upstream_->allocate(bytes, alignment);
  }

  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) noexcept override {
    std::scoped_lock lock(mutex_);
    auto* at = static_cast<std::byte*>(p);
    if (at < reserve_begin_ || at >= reserve_end_)
      return upstream_->deallocate(p, bytes, alignment);
    if (at + rounded(bytes) == next_) {  // the last block taken: the bump area takes it back
      next_ = at;
      return;
    }
    free_ = ::new (p) free_block{free_, rounded(bytes)};
  }

  [[nodiscard]] bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

  std::size_t lendable_locked(std::size_t bytes) const noexcept {
    const auto top = reinterpret_cast<std::uintptr_t>(reserve_end_) & ~(region_alignment - 1);
    const auto low = reinterpret_cast<std::uintptr_t>(next_) + region_alignment;
    if (reserve_begin_ == nullptr || top < low) return 0;
    const std::size_t room = (top - low) & ~(region_alignment - 1);
    const std::size_t size = std::max(bytes, room / 2 & ~(region_alignment - 1));
    return size <= room ? size : 0;
  }

  static std::size_t rounded(std::size_t bytes) noexcept {
    return bytes <= grain ? grain : (bytes + grain - 1) & ~(grain - 1);
  }

  // A freed block of the same rounded size at `alignment`, else the bump area's next
  // bytes; null if neither has room.
  void* from_reserve(std::size_t bytes, std::size_t alignment) noexcept {
    if (reserve_begin_ == nullptr || bytes > std::size_t(reserve_end_ - reserve_begin_))
      return nullptr;
    const std::size_t size = rounded(bytes);
    for (free_block** link = &free_; *link != nullptr; link = &(*link)->next) {
      free_block* b = *link;
      if (b->bytes == size && reinterpret_cast<std::uintptr_t>(b) % alignment == 0) {
        *link = b->next;
        std::destroy_at(b);
        return b;
      }
    }
    const std::uintptr_t at = (reinterpret_cast<std::uintptr_t>(next_) + alignment - 1) &
                              ~(std::uintptr_t{alignment} - 1);
    const auto room = static_cast<std::uintptr_t>(reserve_end_ - next_);
    if (at - reinterpret_cast<std::uintptr_t>(next_) + size > room) return nullptr;
    next_ += (at - reinterpret_cast<std::uintptr_t>(next_)) + size;
    return reinterpret_cast<void*>(at);
  }

  std::pmr::memory_resource* upstream_;
  Mutex mutex_;
  std::byte* reserve_begin_ = nullptr;
  std::byte* reserve_end_ = nullptr;  // below full_end_ while blocks are lent
  std::byte* full_end_ = nullptr;
  std::byte* next_ = nullptr;
  free_block* free_ = nullptr;
};

}  // namespace bufpool::pmr::detail

#pragma GCC visibility pop
