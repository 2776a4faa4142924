// SPDX-License-Identifier: MIT
// bufpool.pmr — a std::pmr::memory_resource over a bufpool pool that reuses freed memory.
module;
#include <algorithm>
#include <bit>
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
#include <unordered_set>
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
export module bufpool.pmr;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import bufpool;

/// The `bufpool.pmr` module: a `std::pmr::memory_resource` backed by a bufpool pool.
export namespace bufpool::pmr {

/// How a pool_resource that owns its pool grows, and whether it locks: the first region
/// it asks upstream for, the factor each following region grows by, the largest region
/// it asks for (a request larger than the next region size still gets a region of its
/// own size), and thread safety.
struct resource_options {
  std::size_t first_region_size = std::size_t{64} << 10;  ///< Bytes (rounded up to 4 KiB).
  double growth_factor = 2.0;                             ///< >= 1.
  /// >= first_region_size. Growth stops doubling here, so the regions the resource holds
  /// exceed what it needs by at most about this much once it is past twice this size.
  std::size_t max_region_size = std::size_t{8} << 20;
  /// true: allocate and deallocate may be called from many threads at once (like
  /// `synchronized_pool_resource`). false: no locking, one thread at a time (like
  /// `monotonic_buffer_resource` and `unsynchronized_pool_resource`), and faster.
  bool thread_safe = true;
  /// The most bytes of upstream regions that release() keeps for the next cycle instead of
  /// giving them back, so that an arena loop (fill, release(), refill) reuses memory whose
  /// pages are already mapped: the largest regions first, among those recent cycles used
  /// (see idle_cycles). The default has no cap beyond that; 0 gives everything back, as the
  /// standard resources do. Destruction always gives everything back.
  std::size_t retained_bytes = std::numeric_limits<std::size_t>::max();
  /// A kept region that this many cycles in a row, plus the one ending, did not need is
  /// the excess: release() gives it back. 0 keeps only what the ending cycle used; the
  /// default keeps what any of the last 9 cycles used, so that an arena loop whose requests
  /// vary in size does not give its largest regions back after a few small requests and
  /// take (and fault in) new ones at the next large request.
  unsigned idle_cycles = 8;

  /// 1 <= first <= max, factor >= 1 (and not NaN).
  [[nodiscard]] constexpr bool valid() const noexcept {
    return first_region_size >= 1 && first_region_size <= max_region_size && growth_factor >= 1.0;
  }
};

/// A pool a pool_resource can be built over without owning it: any `buffer_pool`.
template <class Pool>
concept borrowable_pool =
    requires(Pool& p, const void* q, const bufpool::detail::release_rules& rules) {
      typename Pool::mutex_type;
      p.acquire_raw(std::uint64_t{1}, std::uint64_t{1}, bufpool::greedy);
      { p.release_raw(q, std::uint64_t{1}, std::uint64_t{1}) } -> std::same_as<bool>;
      { p.release_raw(q, std::uint64_t{1}, std::uint64_t{1}, rules) } -> std::same_as<bool>;
      { p.stats() } -> std::same_as<pool_stats>;
      { p.options().metadata } -> std::convertible_to<std::pmr::memory_resource*>;
    };

}  // namespace bufpool::pmr

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

inline constexpr std::size_t region_alignment = 4096;

// What a region needs besides the bytes requested of it: one slab span of a small class (a
// page) and the rounding of a request to the alignment of max_align_t.
inline constexpr std::size_t first_span_room = region_alignment + alignof(std::max_align_t);

// The part of a user's buffer that keeps an owning resource's records when its upstream is
// the null resource (upstream_source), in whole cache lines: half the buffer, which it lends
// back to the pool as the pool runs out of room (upstream_source::lend).
inline std::size_t records_reserve(std::size_t buffer_size) noexcept {
  return buffer_size / 2 & ~std::size_t{63};
}

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
// The reserve is a bump area with a list of freed blocks reused first fit: records are few,
// and they are freed and allocated again in the same sizes cycle after cycle.
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

  // O(regions): the pool is replaced, not emptied range by range. Kept regions wait outside
  // the new pool and join it only when a cycle runs out of room (allocate_growing), so the
  // ones still waiting at the next release() are exactly those that cycle did not need:
  // no counter on the allocation path is needed to know what a cycle used.
  void release() noexcept override {
    std::scoped_lock lock(mutex_);
    // Of the regions recent cycles used, the largest up to retained_bytes move to the front.
    std::ranges::sort(blocks_, std::ranges::greater{}, &block::size);
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
    free_all(kept);  // the rest, the excess included, goes back
    for (std::size_t i = 0; i < kept; ++i) {
      if (blocks_[i].in_pool) hide_waiting(blocks_[i].pointer, blocks_[i].size);
      blocks_[i].in_pool = false;
    }
    waiting_bytes_ = kept_bytes;
    source_.restore_reserve();      // the blocks it lent were in the pool just destroyed
    pool_.emplace(pool_options());  // allocates nothing
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
    bool in_pool;       // false: kept by release(), waiting outside the pool
    unsigned idle = 0;  // releases in a row whose cycle did not need it
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
  // growth would add a new one (the regions come back in the order growth took them).
  // False if there is none. Strong guarantee.
  bool add_kept(std::size_t needed) {
    block* best = nullptr;
    for (block& b : blocks_)
      if (!b.in_pool && b.size >= needed && (best == nullptr || b.size < best->size)) best = &b;
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
    blocks_.push_back({memory, size, region_alignment, true});
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

  // Gives everything back to upstream (the pool first: it may hold raw ranges, which is
  // allowed, but not the pad slices, which borrow it).
  // Destroys the pool and gives every upstream block back but the first `keep` regions.
  void free_all(std::size_t keep = 0) noexcept {
    head_pad_.reset();
    tail_pad_.reset();
    pool_.reset();
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
  std::size_t waiting_bytes_ = 0;  // of the blocks kept by release(), not in the pool yet
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

export namespace bufpool::pmr {

/// The std::pmr resource: a `std::pmr::memory_resource` over a bufpool pool, a drop-in
/// replacement for `std::pmr::monotonic_buffer_resource` and the pool resources (same
/// constructor shapes, `release()`, `upstream_resource()`) whose `deallocate` makes memory
/// reusable at once.
///
/// **Owning** (every constructor but the last): the resource owns a
/// `buffer_pool<std::size_t>` and grows it. When the pool has no room, the resource adds a
/// region an earlier release() kept (see release()), else asks `upstream` for a new region
/// (geometric growth from the first region size, capped by the maximum; a larger request
/// gets a region of its own size) and expands the pool with it. Regions from upstream are aligned
/// to `region_alignment` and their sizes are multiples of it, so a pool offset aligned to `a <=
/// region_alignment` is an address aligned to `a`. Requests with a larger alignment get a dedicated
/// upstream allocation, given back by `deallocate`.
///
/// **Over a user's pool** (`pool_resource(pool)`): the resource allocates raw ranges from
/// a pool the user owns and expands (shared memory, device memory, ...). It never grows
/// the pool and never calls an upstream (`upstream_resource()` is the null resource): a
/// full pool throws `std::bad_alloc`. The pool's regions must start at addresses aligned
/// at least as much as the alignments requested (a violation otherwise). `release()`
/// gives back exactly what this resource allocated; so does destruction. The pool must
/// outlive the resource. Thread safety follows the pool: a `buffer_pool` is thread-safe, a
/// `local_buffer_pool` is not.
///
/// Records: every byte the resource uses comes from its upstream, the records that keep
/// track of its memory included (they are asked for at alignments below region_alignment).
/// Constructing it allocates nothing but, over a buffer, the records of the buffer's region;
/// release() cannot fail. Over a buffer whose upstream is
/// the null resource the records live at the end of the buffer: half of it is set aside for
/// them and lent back to allocations, as they run out of room, as far as the records leave it
/// unused (a buffer too small for the first records makes the constructor throw
/// std::bad_alloc).
///
/// Buffer constructors: `(buffer, size)` uses the buffer as the first region whatever its
/// alignment (alignment is of absolute addresses). `(nullptr, size)` means "no buffer":
/// `size` is then only the first upstream region size (libc++'s behaviour). `(buffer, 0)`
/// means no buffer either.
///
/// Errors: allocation failure throws `std::bad_alloc`; an exception from upstream
/// propagates unchanged and leaves the resource as it was. Contract violations (violation
/// handler; checked in every build, they cost a lookup the deallocation does anyway):
/// null upstream (the default resource is used if the handler returns), an alignment that
/// is not a power of two (then `std::bad_alloc`), deallocating a pointer this resource did
/// not hand out or already took back, or with a size or alignment other than the
/// allocation's (nothing changes: the memory stays allocated).
///
/// Threads: with `resource_options::thread_safe` (the default), allocate and deallocate may
/// be called concurrently; `release()` and destruction must not overlap other calls.
///
/// ```
/// bufpool::pmr::pool_resource arena;  // was: std::pmr::monotonic_buffer_resource arena;
/// std::pmr::vector<int> v(&arena);
/// ```
class pool_resource : public std::pmr::memory_resource {
 public:
  /// Alignment of every upstream region's base address and granularity of its size.
  /// Requests aligned to more than this are served by a dedicated upstream allocation.
  static constexpr std::size_t region_alignment = detail::region_alignment;

  pool_resource() : pool_resource(resource_options{}, std::pmr::get_default_resource()) {}

  /// Default growth and locking (resource_options{}), with regions taken from `upstream`.
  explicit pool_resource(std::pmr::memory_resource* upstream)
      : pool_resource(resource_options{}, upstream) {}

  /// As with monotonic_buffer_resource, the first region taken from upstream holds
  /// `initial_size` bytes of requests (0 means 1): it has `initial_size` bytes plus a page
  /// for the slab span of small requests, rounded up to region_alignment.
  explicit pool_resource(std::size_t initial_size,
                         std::pmr::memory_resource* upstream = std::pmr::get_default_resource())
      : pool_resource(with_first(initial_size), upstream) {}

  /// `buffer` (any alignment) becomes the first region; it is never given to upstream and
  /// stays the first region after release(). The first region taken from upstream then
  /// holds `size` bytes of requests, as with pool_resource(initial_size). `(nullptr, size)`:
  /// no buffer, `size` is only the first upstream region's room. `(buffer, 0)`: no buffer.
  ///
  /// The pool hands out memory in granules of 8 bytes at 8-aligned addresses: the bytes of
  /// the buffer before its first 8-aligned address and after its last one (at most 7 at
  /// each end) are never used, and a buffer that holds no whole aligned granule is not used
  /// at all. An 8-aligned buffer whose size is a multiple of 8 loses nothing.
  pool_resource(void* buffer, std::size_t size,
                std::pmr::memory_resource* upstream = std::pmr::get_default_resource())
      : pool_resource(with_first(size), upstream, buffer, size) {}

  /// As pool_resource(buffer, size, upstream), with growth, locking and retention from
  /// `options` (invalid growth options are a contract violation: the default growth is
  /// used): the first region taken from upstream has `options.first_region_size` bytes, not
  /// `size`. The buffer loses the same bytes at its ends as above.
  ///
  /// ```
  /// static std::byte buffer[1 << 16];
  /// bufpool::pmr::resource_options o;
  /// o.thread_safe = false;
  /// bufpool::pmr::pool_resource arena(buffer, sizeof buffer, o);
  /// ```
  pool_resource(void* buffer, std::size_t size, const resource_options& options,
                std::pmr::memory_resource* upstream = std::pmr::get_default_resource())
      : pool_resource(options, upstream, buffer, size) {}

  /// Growth and locking from `options` (invalid growth options are a contract violation:
  /// the default growth is used).
  explicit pool_resource(const resource_options& options,
                         std::pmr::memory_resource* upstream = std::pmr::get_default_resource())
      : pool_resource(options, upstream, nullptr, 0) {}

  /// Over a pool the user owns (see the class notes): never grows it, never calls upstream.
  /// `how` is the strategy of its acquisitions: `greedy` (size classes, the fastest) or
  /// `optimal` (exact best fit, the most a pool that cannot grow will hold); `fixed(...)`
  /// is a contract violation (greedy is used if the handler returns).
  template <borrowable_pool Pool>
  explicit pool_resource(Pool& pool, strategy how = bufpool::greedy)
      : upstream_(std::pmr::null_memory_resource()),
        options_{0, 1.0, 0, !std::same_as<typename Pool::mutex_type, bufpool::null_mutex>} {
    backend_ = make_backend<detail::borrowed_backend<Pool>>(
        pool, bufpool::detail::expects(
                  how.kind != strategy_kind::fixed,
                  "pool_resource over a user's pool: the strategy must be greedy or optimal")
                  ? how
                  : bufpool::greedy);
  }

  pool_resource(const pool_resource&) = delete;
  pool_resource& operator=(const pool_resource&) = delete;
  ~pool_resource() override { backend_->~backend(); }

  /// Ends a cycle: every pointer handed out before is invalid afterwards (a container that
  /// still holds one must not use or deallocate it, even to destroy itself).
  ///
  /// Owning: the user's buffer stays the first region; dedicated allocations go back to
  /// upstream; of the regions taken from upstream, those that the ending cycle or one of
  /// the `options().idle_cycles` before it used stay for the next cycle, the largest first,
  /// up to `options().retained_bytes` (by default all of them), and the rest goes back.
  /// With the defaults, an arena loop takes memory from upstream only when a cycle needs
  /// more than the last 9 did, and gives back what 9 cycles in a row did not need. Kept
  /// regions join the pool when it runs out of room, smallest first, before any new
  /// upstream region; growth restarts at the initial size (LWG 3120).
  /// `retained_bytes = 0` gives everything back, as the standard resources do. O(regions).
  ///
  /// Over a user's pool: gives back every range this resource allocated.
  void release() { backend_->release(); }

  /// Bytes of upstream regions that release() kept and the pool has not needed since (0
  /// over a user's pool). They are not in stats() until the pool takes them.
  [[nodiscard]] std::size_t kept_bytes() const { return backend_->kept_bytes(); }

  /// The upstream resource; the null resource for a resource over a user's pool.
  [[nodiscard]] std::pmr::memory_resource* upstream_resource() const noexcept { return upstream_; }

  /// The options in use (over a user's pool: zero growth, and thread_safe as the pool is).
  [[nodiscard]] const resource_options& options() const noexcept { return options_; }

  /// Statistics of the pool behind the resource. An owning resource with a misaligned or
  /// oddly sized user buffer counts up to two permanent slices in `live_slices`: they hold
  /// the bytes between the buffer and the region_alignment boundaries around it.
  [[nodiscard]] pool_stats stats() const { return backend_->stats(); }

  /// Checks the pool behind the resource (buffer_pool::validate()).
  [[nodiscard]] std::expected<void, std::string> validate() const { return backend_->validate(); }

 protected:
  /// allocate(): `bytes` (0 counts as 1, so the pointer is unique) aligned to `alignment`.
  /// An alignment that is not a power of two is a contract violation, then std::bad_alloc;
  /// a size that overflows when rounded up to `alignment` is std::bad_alloc at once (the
  /// upstream is not asked).
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    if (!bufpool::detail::expects(std::has_single_bit(alignment),
                                  "pool_resource::allocate: the alignment must be a power of two"))
      throw std::bad_alloc();
    // A size that cannot be rounded up to its alignment is refused here: an upstream may
    // round it itself, wrap around and return a block far too small.
    if (bytes > std::numeric_limits<std::size_t>::max() - (alignment - 1)) throw std::bad_alloc();
    return backend_->allocate(bytes == 0 ? 1 : bytes, alignment);  // 0: a unique pointer
  }

  /// deallocate(): gives back a block do_allocate() returned, with the same size and
  /// alignment (misuse: see the class notes; a bad alignment is a violation too).
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    if (!bufpool::detail::expects(
            std::has_single_bit(alignment),
            "pool_resource::deallocate: the alignment must be a power of two"))
      return;
    backend_->deallocate(p, bytes == 0 ? 1 : bytes, alignment);
  }

  /// Equal only to itself: memory goes back to the resource that handed it out.
  [[nodiscard]] bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

 private:
  pool_resource(const resource_options& options, std::pmr::memory_resource* upstream, void* buffer,
                std::size_t size)
      : upstream_(checked_upstream(upstream)), options_(checked(options)) {
    auto* b = buffer != nullptr && size != 0 ? static_cast<std::byte*>(buffer) : nullptr;
    if (options_.thread_safe)
      backend_ = make_backend<detail::owning_backend<bufpool::adaptive_mutex>>(options_, upstream_,
                                                                               b, size);
    else
      backend_ =
          make_backend<detail::owning_backend<bufpool::null_mutex>>(options_, upstream_, b, size);
  }

  // Every backend lives in the resource itself: constructing one takes nothing from any
  // heap (an owning backend's records come from its upstream, see upstream_source).
  static constexpr std::size_t backend_room =
      std::max(sizeof(detail::owning_backend<bufpool::adaptive_mutex>),
               sizeof(detail::owning_backend<bufpool::null_mutex>));
  static constexpr std::size_t backend_alignment =
      std::max(alignof(detail::owning_backend<bufpool::adaptive_mutex>),
               alignof(detail::owning_backend<bufpool::null_mutex>));
  template <class Backend, class... Args>
  detail::backend* make_backend(Args&&... args) {
    static_assert(sizeof(Backend) <= backend_room && alignof(Backend) <= backend_alignment,
                  "the backend must fit the resource's room for it");
    return ::new (static_cast<void*>(backend_storage_)) Backend(std::forward<Args>(args)...);
  }

  // The options of an `initial_size` (or buffer size) constructor. As with
  // monotonic_buffer_resource, the first region holds `first` bytes of requests: it has room
  // besides for the slab span the first small request takes and for rounding to granules.
  static resource_options with_first(std::size_t first) noexcept {
    constexpr std::size_t room = detail::first_span_room;
    resource_options o;
    o.first_region_size =
        first > std::numeric_limits<std::size_t>::max() - room ? first : first + room;
    if (o.max_region_size < o.first_region_size) o.max_region_size = o.first_region_size;
    return o;
  }

  static std::pmr::memory_resource* checked_upstream(std::pmr::memory_resource* upstream) {
    return bufpool::detail::expects(upstream != nullptr,
                                    "pool_resource: the upstream must not be null")
               ? upstream
               : std::pmr::get_default_resource();
  }

  static resource_options checked(const resource_options& o) {
    if (bufpool::detail::expects(o.valid(),
                                 "pool_resource growth options: 1 <= first <= max region size, "
                                 "growth factor >= 1"))
      return o;
    resource_options fallback;
    fallback.thread_safe = o.thread_safe;
    fallback.retained_bytes = o.retained_bytes;
    fallback.idle_cycles = o.idle_cycles;
    return fallback;
  }

  std::pmr::memory_resource* upstream_;
  resource_options options_;
  alignas(backend_alignment) std::byte backend_storage_[backend_room];
  detail::backend* backend_ = nullptr;
};

}  // namespace bufpool::pmr

#pragma GCC visibility pop
