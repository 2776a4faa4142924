// SPDX-License-Identifier: MIT
// bufpool.pmr:backends — what a pool_resource forwards to: a pool it owns and grows from its
// upstream, or a pool the user owns.
module;
#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <limits>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUFPOOL_PMR_ASAN 1
#endif
#endif
#if !defined(BUFPOOL_PMR_ASAN) && defined(__SANITIZE_ADDRESS__)
#define BUFPOOL_PMR_ASAN 1
#endif
#ifdef BUFPOOL_PMR_ASAN
#include <sanitizer/asan_interface.h>
#endif
export module bufpool.pmr:backends;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import bufpool;
import :options;
import :upstream_source;

namespace bufpool::pmr::detail {

using bufpool::detail::expects;

// The violations of a deallocation, in the words of the function the user called. The
// likely cause of a pointer the pool does not know is a container that outlived its
// resource's release(), which gives back everything at once.
inline constexpr bufpool::detail::release_rules deallocate_rules{
    "pool_resource::deallocate: the pointer is in none of this resource's memory (deallocated "
    "after release() or the resource's destruction, which give back every allocation, or "
    "allocated by another resource)",
    "pool_resource::deallocate: no live allocation of this resource starts at the pointer "
    "(deallocated twice, deallocated after release(), which gave back every allocation, or an "
    "interior pointer)",
    "pool_resource::deallocate: the size differs from the size given to allocate",
    "pool_resource::deallocate: the alignment differs from the alignment given to allocate"};

// What pool_resource forwards to: a pool it owns and grows, or a pool the user owns.
class backend {
 public:
  backend() = default;
  backend(const backend&) = delete;
  backend& operator=(const backend&) = delete;
  virtual ~backend() = default;
  virtual void* allocate(std::size_t bytes, std::size_t alignment) = 0;  // throws on failure
  virtual void deallocate(void* p, std::size_t bytes, std::size_t alignment) noexcept = 0;
  virtual void release() noexcept = 0;
  [[nodiscard]] virtual pool_stats stats() const = 0;
  [[nodiscard]] virtual std::expected<void, std::string> validate() const = 0;
  [[nodiscard]] virtual std::size_t kept_bytes() const = 0;
};
// What a region needs besides the bytes requested of it: one slab span of a small class (a
// page) and the rounding of a request to the alignment of max_align_t.
inline constexpr std::size_t first_span_room = region_alignment + alignof(std::max_align_t);
// A region release() keeps is in no pool while it waits for the next cycle: in
// AddressSanitizer builds it is unaddressable meanwhile, so that a use after release() is
// still reported; it is made addressable again before a pool or the upstream gets it.
inline void hide_waiting(void* p, std::size_t n) noexcept {
#ifdef BUFPOOL_PMR_ASAN
  __asan_poison_memory_region(p, n);
#else
  (void)p;
  (void)n;
#endif
}
inline void reveal_waiting(void* p, std::size_t n) noexcept {
#ifdef BUFPOOL_PMR_ASAN
  __asan_unpoison_memory_region(p, n);
#else
  (void)p;
  (void)n;
#endif
}
// A pool of std::size_t offsets that the resource owns and grows from upstream. `Mutex`
// locks the pool and the growth state (null_mutex when the resource is not thread-safe).
template <class Mutex>
class owning_backend final : public backend {
 public:
  using pool_type = buffer_pool<std::size_t, no_extra, no_handle, Mutex>;

  owning_backend(const resource_options& growth, std::pmr::memory_resource* upstream,
                 std::byte* buffer, std::size_t buffer_size)
      : source_(upstream),
        growth_(growth),
        next_size_(first_size()),
        buffer_(buffer),
        buffer_size_(buffer_size) {
    if (buffer_ != nullptr && upstream->is_equal(*std::pmr::null_memory_resource())) {
      const std::size_t reserve = records_reserve(buffer_size_);
      buffer_size_ -= reserve;
      source_.set_reserve(buffer_ + buffer_size_, reserve);
    }
    pool_.emplace(pool_options());  // allocates nothing
    if (buffer_ != nullptr) add_buffer();
  }

  ~owning_backend() override { free_all(); }

  void* allocate(std::size_t bytes, std::size_t alignment) override {
    if (alignment > region_alignment) return allocate_dedicated(bytes, alignment);
    if (auto r = pool_->acquire_raw(bytes, alignment, bufpool::greedy)) return r->pointer;
    return allocate_growing(bytes, alignment);
  }

  void deallocate(void* p, std::size_t bytes, std::size_t alignment) noexcept override {
    if (alignment > region_alignment)
      deallocate_dedicated(p, bytes, alignment);
    else  // foreign pointers and wrong sizes or alignments are reported by the pool
      pool_->release_raw(static_cast<const void*>(p), bytes, alignment, deallocate_rules);
  }

  // O(regions + records): the pool is emptied at once (buffer_pool::clear(), which keeps
  // its records' capacity for the next cycle unless nothing is to be kept), not range by
  // range. Kept regions wait outside
  // the new pool and join it only when a cycle runs out of room (allocate_growing), so the
  // ones still waiting at the next release() are exactly those that cycle did not need:
  // no counter on the allocation path is needed to know what a cycle used.
  void release() noexcept override {
    std::scoped_lock lock(mutex_);
    // Of the regions recent cycles used, the largest up to retained_bytes move to the front.
    // Regions of one size stay in the order growth took them, so that add_kept() gives
    // them back in that order and a cycle like the last lays out its blocks as it did (the
    // same addresses, no page the last cycle left untouched).
    std::ranges::sort(blocks_, [](const block& a, const block& b) {
      return a.size != b.size ? a.size > b.size : a.order < b.order;
    });
    std::size_t kept = 0;
    std::size_t kept_bytes = 0;
    for (std::size_t i = 0; i < blocks_.size(); ++i) {
      block& b = blocks_[i];
      b.idle = b.in_pool ? 0 : b.idle + 1;  // cycles in a row that did not need it
      if (b.idle <= growth_.idle_cycles && b.size <= growth_.retained_bytes - kept_bytes) {
        kept_bytes += b.size;
        std::swap(b, blocks_[kept++]);
      }
    }
    free_all(kept, growth_.retained_bytes != 0);  // the rest, the excess included, goes back
    for (std::size_t i = 0; i < kept; ++i) {
      if (blocks_[i].in_pool) hide_waiting(blocks_[i].pointer, blocks_[i].size);
      blocks_[i].in_pool = false;
    }
    waiting_bytes_ = kept_bytes;
    source_.restore_reserve();  // the blocks it lent were regions of the pool just emptied
    if (!pool_) pool_.emplace(pool_options());  // allocates nothing
    try {
      if (buffer_ != nullptr) add_buffer();
    } catch (...) {  // no room for the region's records: the buffer sits this cycle out
    }
    next_size_ = first_size();  // growth starts again (LWG 3120), kept regions first
  }

  [[nodiscard]] pool_stats stats() const override { return pool_->stats(); }
  [[nodiscard]] std::expected<void, std::string> validate() const override {
    return pool_->validate();
  }
  [[nodiscard]] std::size_t kept_bytes() const override {
    std::scoped_lock lock(mutex_);
    return waiting_bytes_;
  }

 private:
  struct block {
    void* pointer;
    std::size_t size;
    std::size_t alignment;
    bool in_pool;             // false: kept by release(), waiting outside the pool
    unsigned idle = 0;        // releases in a row whose cycle did not need it
    std::uint64_t order = 0;  // when growth took it (regions)
  };

  // Offsets carry the alignment, and the pool is never asked for more than
  // region_alignment. The minimum is 8 (a granule of 8 bytes): with 1, every odd size left
  // a tail of a few bytes as a free range of its own, and the resource ran 3-7x slower than
  // the core pool on the arena and scaling workloads (scripts/bench, W3 and W5).
  static constexpr std::size_t granule = 8;
  typename pool_type::options_type pool_options() noexcept {
    typename pool_type::options_type o;
    o.metadata = &source_;
    o.min_alignment = granule;
    o.max_alignment = region_alignment;
    o.slabs = true;          // small blocks: O(1) slots found by offset, no hash or engine node
    o.thread_caches = true;  // thread-safe: each thread its own slabs (no effect otherwise)
    return o;
  }

  static constexpr std::size_t largest_region = ~(region_alignment - 1);

  std::size_t first_size() const noexcept {
    return round_up(growth_.first_region_size).value_or(largest_region);
  }

  // The largest size of a region grown geometrically (never below the first size).
  std::size_t max_size() const noexcept {
    return std::max(round_up(growth_.max_region_size).value_or(largest_region), first_size());
  }

  // The user's buffer as a region. Its offsets are made congruent to its addresses modulo
  // region_alignment: the region starts at the buffer's address rounded down and ends at
  // its end rounded up, and the two pads (memory that is not ours, never touched) are held
  // by slices for as long as the region lives. Upstream regions, aligned and sized in
  // multiples of region_alignment, cannot overlap the pads. Its records are taken first: if
  // they cannot be had (std::bad_alloc or the upstream's exception), nothing changed.
  void add_buffer() {
    const auto address = reinterpret_cast<std::uintptr_t>(buffer_);
    const std::size_t head = address % region_alignment;
    const auto total = round_up(head + buffer_size_);
    if (!total || buffer_size_ > *total) return;  // cannot be addressed: not used
    // The pads end and start on the pool's granule: the buffer's bytes that share a granule
    // with the memory around it are left unused.
    const std::size_t begin = (head + granule - 1) & ~(granule - 1);
    const std::size_t end = (head + buffer_size_) & ~(granule - 1);
    if (end <= begin) return;    // too small to hold one granule: not used
    pool_->reserve_metadata(3);  // the region and its two pads: none of them allocates then
    auto grow = pool_->begin_expand(*total);
    if (!grow) return;
    const std::size_t offset = grow->offset();
    // The region starts before the buffer: form that address without pointer arithmetic
    // outside the buffer (the pool never dereferences it; the pad slices keep it unused).
    // Only the buffer's own bytes may be poisoned in AddressSanitizer builds.
    if (!std::move(*grow).initialize(reinterpret_cast<void*>(address - head), {},
                                     std::span<std::byte>(buffer_, buffer_size_)))
      return;
    if (begin != 0) head_pad_ = pool_->acquire(begin, 1, fixed(offset)).value();
    if (end != *total) tail_pad_ = pool_->acquire(*total - end, 1, fixed(offset + end)).value();
  }

  // Serialized growth: retry (another thread may have grown), else add a region that
  // holds the request, then retry in it.
  void* allocate_growing(std::size_t bytes, std::size_t alignment) {
    std::scoped_lock lock(mutex_);
    for (;;) {
      auto r = pool_->acquire_raw(bytes, alignment, bufpool::greedy);
      if (r) return r->pointer;
      if (r.error() != errc::out_of_memory) throw std::bad_alloc();
      const auto needed = round_up(bytes);
      if (!needed) throw std::bad_alloc();
      if (!add_kept(*needed) && !add_lent(*needed)) grow(std::max(next_size_, *needed));
    }
  }

  // Adds the smallest region kept by release() that holds `needed` bytes to the pool, as
  // growth would add a new one (the regions come back in the order growth took them: the
  // first of equal sizes, which release() keeps in that order).
  // False if there is none. Strong guarantee.
  bool add_kept(std::size_t needed) {
    block* best = nullptr;
    for (block& b : blocks_)
      if (!b.in_pool && b.size >= needed &&
          (best == nullptr || b.size < best->size ||
           (b.size == best->size && b.order < best->order)))
        best = &b;
    if (best == nullptr) return false;
    pool_->reserve_metadata(2);  // may throw: the region keeps waiting
    auto expansion = pool_->begin_expand(best->size);
    reveal_waiting(best->pointer, best->size);
    bool added = false;
    try {
      added = expansion && std::move(*expansion).initialize(best->pointer);
    } catch (...) {  // out of memory for the pool's records: the region keeps waiting
      hide_waiting(best->pointer, best->size);
      throw;
    }
    if (!added) {
      // Cannot happen with a size_t pool; if it did, the region goes back to upstream.
      source_.give_back(best->pointer, best->size, best->alignment);
      waiting_bytes_ -= best->size;
      *best = blocks_.back();
      blocks_.pop_back();
      return false;
    }
    best->in_pool = true;
    waiting_bytes_ -= best->size;
    if (best->size >= next_size_) next_size_ = grown(best->size);
    return true;
  }

  // Adds a block the records' reserve lends (see upstream_source::lend) that holds `needed`
  // bytes to the pool. False if it has none to lend. Strong guarantee.
  bool add_lent(std::size_t needed) {
    const std::size_t size = source_.lendable(needed);
    if (size == 0) return false;
    pool_->reserve_metadata(2);  // may throw: nothing is lent
    auto expansion = pool_->begin_expand(size);
    if (!expansion) return false;
    std::byte* const block = source_.lend(size);
    // Neither fails once the room is reserved and the size lendable; if one did, the
    // expansion is cancelled (its handle's destructor) and the block waits for release().
    return block != nullptr && std::move(*expansion).initialize(block);
  }

  // Takes a region of `size` bytes (a multiple of region_alignment) from upstream and adds
  // it to the pool. Strong guarantee: on any failure nothing changed.
  void grow(std::size_t size) {
    blocks_.reserve(blocks_.size() + 1);
    // The region and the acquisition that follows in it allocate nothing after this.
    pool_->reserve_metadata(2);
    void* memory = source_.take(size, region_alignment);  // may throw: propagates
    bool added = false;
    try {
      auto expansion = pool_->begin_expand(size);
      added = expansion && std::move(*expansion).initialize(memory);
    } catch (...) {  // out of memory for the pool's own records
      source_.give_back(memory, size, region_alignment);
      throw;
    }
    if (!added) {
      source_.give_back(memory, size, region_alignment);
      throw std::bad_alloc();
    }
    blocks_.push_back({memory, size, region_alignment, true, 0, regions_taken_++});
    if (size == next_size_) next_size_ = grown(next_size_);
  }

  std::size_t grown(std::size_t size) const noexcept {
    const double next = static_cast<double>(size) * growth_.growth_factor;
    if (!(next < static_cast<double>(max_size()))) return max_size();
    const auto rounded = round_up(static_cast<std::size_t>(next));
    return rounded && *rounded <= max_size() ? *rounded : max_size();
  }

  void* allocate_dedicated(std::size_t bytes, std::size_t alignment) {
    std::scoped_lock lock(mutex_);
    void* p = source_.take(bytes, alignment);  // may throw: propagates
    try {
      dedicated_.emplace(p, block{p, bytes, alignment, false});
    } catch (...) {
      source_.give_back(p, bytes, alignment);
      throw;
    }
    return p;
  }

  void deallocate_dedicated(void* p, std::size_t bytes, std::size_t alignment) noexcept {
    block b{};
    {
      std::scoped_lock lock(mutex_);
      const auto it = dedicated_.find(p);
      if (!expects(it != dedicated_.end(),
                   "pool_resource::deallocate: the pointer was not allocated here with this "
                   "alignment (foreign, interior, already deallocated, or deallocated after "
                   "release(), which gave back every allocation)"))
        return;
      if (!expects(it->second.size == bytes && it->second.alignment == alignment,
                   "pool_resource::deallocate: the size or alignment differs from the "
                   "allocation's"))
        return;
      b = it->second;
      dedicated_.erase(it);
    }
    source_.give_back(b.pointer, b.size, b.alignment);
  }

  // Empties the pool (it may hold raw ranges, which is allowed, but not the pad slices,
  // which borrow it) and gives every upstream block back but the first `keep` regions. The
  // pool is cleared if `keep_records` (it keeps its records' capacity), else destroyed.
  void free_all(std::size_t keep = 0, bool keep_records = false) noexcept {
    head_pad_.reset();
    tail_pad_.reset();
    if (!keep_records || !pool_->clear()) pool_.reset();  // clear(): no slice is left
    for (std::size_t i = keep; i < blocks_.size(); ++i) {
      if (!blocks_[i].in_pool) reveal_waiting(blocks_[i].pointer, blocks_[i].size);
      source_.give_back(blocks_[i].pointer, blocks_[i].size, blocks_[i].alignment);
    }
    blocks_.resize(keep);
    for (const auto& [p, b] : dedicated_) source_.give_back(b.pointer, b.size, b.alignment);
    dedicated_.clear();
  }

  upstream_source<Mutex> source_;  // first: every record below comes from it
  resource_options growth_;
  std::size_t next_size_;
  std::byte* buffer_;
  std::size_t buffer_size_;  // without the records' reserve
  mutable Mutex mutex_;      // growth, blocks_, waiting_bytes_ and dedicated_
  std::optional<pool_type> pool_;
  std::optional<typename pool_type::slice> head_pad_;
  std::optional<typename pool_type::slice> tail_pad_;
  std::pmr::vector<block> blocks_{&source_};
  std::size_t waiting_bytes_ = 0;    // of the blocks kept by release(), not in the pool yet
  std::uint64_t regions_taken_ = 0;  // from upstream, ever: the next region's order
  std::pmr::unordered_map<void*, block> dedicated_{&source_};
};

// A pool the user owns and expands. The resource never grows it; it remembers what it
// handed out so release() can give exactly that back. Locks as the pool does.
template <class Pool>
class borrowed_backend final : public backend {
 public:
  // What it remembers is a record of the pool's: it comes from the pool's metadata resource.
  borrowed_backend(Pool& pool, strategy how)
      : pool_(pool),
        how_(how),
        live_(bufpool::detail::metadata_or_default(pool.options().metadata)) {}

  ~borrowed_backend() override { release(); }

  void* allocate(std::size_t bytes, std::size_t alignment) override {
    auto r = pool_.acquire_raw(bytes, alignment, how_);
    if (!r) throw std::bad_alloc();
    void* p = r->pointer;
    // Offsets are aligned; addresses are too only if the region's base is.
    if (!expects(reinterpret_cast<std::uintptr_t>(p) % alignment == 0,
                 "pool_resource over a user's pool: a region's base address is less aligned "
                 "than the requested alignment")) {
      pool_.release_raw(static_cast<const void*>(p), bytes, alignment);
      throw std::bad_alloc();
    }
    try {
      std::scoped_lock lock(mutex_);
      live_.emplace(p, bytes);
    } catch (...) {
      pool_.release_raw(static_cast<const void*>(p), bytes, alignment);
      throw;
    }
    return p;
  }

  void deallocate(void* p, std::size_t bytes, std::size_t alignment) noexcept override {
    std::scoped_lock lock(mutex_);
    const auto it = live_.find(p);
    if (!expects(it != live_.end(),
                 "pool_resource::deallocate: the pointer was not allocated by this resource "
                 "(foreign, interior, already deallocated, or deallocated after release(), "
                 "which gave back every allocation)"))
      return;
    // A wrong size or alignment is reported by the pool, and nothing changes.
    if (pool_.release_raw(static_cast<const void*>(p), bytes, alignment, deallocate_rules))
      live_.erase(it);
  }

  void release() noexcept override {
    std::scoped_lock lock(mutex_);
    for (const auto& [p, bytes] : live_) pool_.release_raw(static_cast<const void*>(p));
    live_.clear();
  }

  [[nodiscard]] pool_stats stats() const override { return pool_.stats(); }
  [[nodiscard]] std::expected<void, std::string> validate() const override {
    return pool_.validate();
  }
  [[nodiscard]] std::size_t kept_bytes() const override { return 0; }

 private:
  Pool& pool_;
  strategy how_;
  mutable typename Pool::mutex_type mutex_;  // live_
  std::pmr::unordered_map<void*, std::size_t> live_;
};

}  // namespace bufpool::pmr::detail

#pragma GCC visibility pop
