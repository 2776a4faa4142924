// SPDX-License-Identifier: MIT
// bufpool.pmr — a std::pmr::memory_resource over a bufpool pool that reuses freed memory.
module;
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <new>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>
export module bufpool.pmr;

import bufpool;

export namespace bufpool::pmr {

/// How a pool_resource grows: the first region it asks upstream for, the factor each
/// following region grows by, and the largest region it asks for (a request larger than
/// the next region size still gets a region of its own size).
struct growth_options {
  std::size_t first_region_size = std::size_t{64} << 10;  ///< Bytes (rounded up to 4 KiB).
  double growth_factor = 2.0;                             ///< >= 1.
  std::size_t max_region_size = std::size_t{64} << 20;    ///< >= first_region_size.

  /// 1 <= first <= max, factor >= 1 (and not NaN).
  [[nodiscard]] constexpr bool valid() const noexcept {
    return first_region_size >= 1 && first_region_size <= max_region_size && growth_factor >= 1.0;
  }
};

/// A `std::pmr::memory_resource` over a `bufpool::buffer_pool<std::size_t>`: a drop-in
/// replacement for `std::pmr::monotonic_buffer_resource` (same constructor shapes,
/// `release()`, `upstream_resource()`) whose `deallocate` makes memory reusable at once.
///
/// Growth: when the pool has no room, the resource asks `upstream` for a new region
/// (geometric growth from the first region size, capped by the maximum; a larger request
/// gets a region of its own size) and expands the pool with it. Regions from upstream are
/// aligned to `region_alignment` and their sizes are multiples of it, so a pool offset
/// aligned to `a <= region_alignment` is an address aligned to `a`. Requests with a larger
/// alignment get a dedicated upstream allocation, given back by `deallocate`.
///
/// Buffer constructors: `(buffer, size)` uses the buffer as the first region whatever its
/// alignment (alignment is of absolute addresses). `(nullptr, size)` means "no buffer":
/// `size` is then only the first upstream region size (libc++'s behaviour). `(buffer, 0)`
/// means no buffer either.
///
/// Errors: allocation failure throws `std::bad_alloc`; an exception from upstream
/// propagates unchanged and leaves the resource as it was. Contract violations (violation
/// handler): null upstream (the default resource is used if the handler returns), an
/// alignment that is not a power of two (then `std::bad_alloc`), deallocating a pointer
/// this resource did not hand out or handed out and already took back (nothing changes).
///
/// Threads: allocate and deallocate may be called concurrently (the pool is thread-safe
/// and growth is serialized); `release()` and destruction must not overlap other calls.
///
/// ```
/// bufpool::pmr::pool_resource arena;  // was: std::pmr::monotonic_buffer_resource arena;
/// std::pmr::vector<int> v(&arena);
/// ```
class pool_resource : public std::pmr::memory_resource {
 public:
  using pool_type = buffer_pool<std::size_t>;

  /// Alignment of every region's base address and granularity of its size. Requests
  /// aligned to more than this are served by a dedicated upstream allocation.
  static constexpr std::size_t region_alignment = 4096;

  pool_resource() : pool_resource(growth_options{}, std::pmr::get_default_resource()) {}

  explicit pool_resource(std::pmr::memory_resource* upstream)
      : pool_resource(growth_options{}, upstream) {}

  /// `initial_size` is the size of the first region taken from upstream (0 means 1).
  explicit pool_resource(std::size_t initial_size,
                         std::pmr::memory_resource* upstream = std::pmr::get_default_resource())
      : pool_resource(with_first(initial_size), upstream) {}

  /// `buffer` (any alignment) becomes the first region; it is never given to upstream and
  /// stays the first region after release(). The first region taken from upstream then has
  /// `size` bytes (rounded up to region_alignment). `(nullptr, size)`: no buffer, `size` is
  /// only the first upstream region size. `(buffer, 0)`: no buffer.
  pool_resource(void* buffer, std::size_t size,
                std::pmr::memory_resource* upstream = std::pmr::get_default_resource())
      : pool_resource(with_first(size), upstream) {
    if (buffer != nullptr && size != 0) {
      buffer_ = static_cast<std::byte*>(buffer);
      buffer_size_ = size;
      add_buffer();
    }
  }

  /// Growth from `options` (invalid options are a contract violation: defaults are used).
  explicit pool_resource(const growth_options& options,
                         std::pmr::memory_resource* upstream = std::pmr::get_default_resource())
      : upstream_(checked_upstream(upstream)),
        growth_(checked(options)),
        next_size_(first_size()),
        pool_(std::make_unique<pool_type>(pool_options())) {}

  pool_resource(const pool_resource&) = delete;
  pool_resource& operator=(const pool_resource&) = delete;

  ~pool_resource() override { free_all(); }

  /// Gives every region and dedicated allocation back to upstream, except the user's
  /// buffer, which stays the first region; the next region taken from upstream has the
  /// initial size again (LWG 3120). Every pointer handed out before is invalid afterwards.
  void release() {
    std::scoped_lock lock(mutex_);
    free_all();
    next_size_ = first_size();
    pool_ = std::make_unique<pool_type>(pool_options());
    if (buffer_ != nullptr) add_buffer();
  }

  [[nodiscard]] std::pmr::memory_resource* upstream_resource() const noexcept { return upstream_; }

  /// The growth options in use.
  [[nodiscard]] const growth_options& options() const noexcept { return growth_; }

  /// The pool behind the resource (for statistics and validation). A misaligned or oddly
  /// sized user buffer adds up to two permanent slices to its `live_slices`: they hold the
  /// bytes between the buffer and the region_alignment boundaries around it.
  [[nodiscard]] const pool_type& pool() const noexcept { return *pool_; }

 protected:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    if (!detail::expects(std::has_single_bit(alignment),
                         "pool_resource::allocate: the alignment must be a power of two"))
      throw std::bad_alloc();
    if (bytes == 0) bytes = 1;  // a unique, non-null pointer
    if (alignment > region_alignment) return allocate_dedicated(bytes, alignment);
    if (auto r = pool_->acquire_raw(bytes, alignment)) return r->pointer;
    return allocate_growing(bytes, alignment);
  }

  void do_deallocate(void* p, std::size_t, std::size_t alignment) override {
    if (!detail::expects(std::has_single_bit(alignment),
                         "pool_resource::deallocate: the alignment must be a power of two"))
      return;
    if (alignment > region_alignment) {
      deallocate_dedicated(p);
      return;
    }
    pool_->release_raw(static_cast<const void*>(p));  // misuse is reported by the pool
  }

  [[nodiscard]] bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override {
    return this == &other;
  }

 private:
  struct block {
    void* pointer;
    std::size_t size;
    std::size_t alignment;
  };

  static growth_options with_first(std::size_t first) noexcept {
    growth_options o;
    o.first_region_size = first == 0 ? 1 : first;
    if (o.max_region_size < o.first_region_size) o.max_region_size = o.first_region_size;
    return o;
  }

  static std::pmr::memory_resource* checked_upstream(std::pmr::memory_resource* upstream) {
    return detail::expects(upstream != nullptr, "pool_resource: the upstream must not be null")
               ? upstream
               : std::pmr::get_default_resource();
  }

  static growth_options checked(const growth_options& o) {
    return detail::expects(o.valid(),
                           "pool_resource growth options: 1 <= first <= max region size, "
                           "growth factor >= 1")
               ? o
               : growth_options{};
  }

  // Offsets carry the alignment: the pool's own minimum is 1 (pmr asks for what it needs)
  // and it is never asked for more than region_alignment.
  static pool_type::options_type pool_options() noexcept {
    pool_type::options_type o;
    o.min_alignment = 1;
    o.max_alignment = region_alignment;
    return o;
  }

  // `n` rounded up to a multiple of region_alignment, or nothing on overflow.
  static std::optional<std::size_t> round_up(std::size_t n) noexcept {
    if (n > std::numeric_limits<std::size_t>::max() - (region_alignment - 1)) return std::nullopt;
    return (n + region_alignment - 1) & ~(region_alignment - 1);
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
  // multiples of region_alignment, cannot overlap the pads.
  void add_buffer() {
    const auto address = reinterpret_cast<std::uintptr_t>(buffer_);
    const std::size_t head = address % region_alignment;
    const auto total = round_up(head + buffer_size_);
    if (!total || buffer_size_ > *total) return;  // cannot be addressed: not used
    auto grow = pool_->begin_expand(*total);
    if (!grow) return;
    const std::size_t offset = grow->offset();
    // The region starts before the buffer: form that address without pointer arithmetic
    // outside the buffer (the pool never dereferences it; the pad slices keep it unused).
    if (!std::move(*grow).initialize(reinterpret_cast<void*>(address - head))) return;
    const std::size_t tail = *total - head - buffer_size_;
    if (head != 0) head_pad_ = pool_->acquire(head, 1, fixed(offset)).value();
    if (tail != 0) tail_pad_ = pool_->acquire(tail, 1, fixed(offset + head + buffer_size_)).value();
  }

  // Serialized growth: retry (another thread may have grown), else add a region that
  // holds the request, then retry in it.
  void* allocate_growing(std::size_t bytes, std::size_t alignment) {
    std::scoped_lock lock(mutex_);
    for (;;) {
      auto r = pool_->acquire_raw(bytes, alignment);
      if (r) return r->pointer;
      if (r.error() != errc::out_of_memory) throw std::bad_alloc();
      const auto needed = round_up(bytes);
      if (!needed) throw std::bad_alloc();
      grow(std::max(next_size_, *needed));
    }
  }

  // Takes a region of `size` bytes (a multiple of region_alignment) from upstream and adds
  // it to the pool. Strong guarantee: on any failure nothing changed.
  void grow(std::size_t size) {
    blocks_.reserve(blocks_.size() + 1);
    void* memory = upstream_->allocate(size, region_alignment);  // may throw: propagates
    auto expansion = pool_->begin_expand(size);
    if (!expansion || !std::move(*expansion).initialize(memory)) {
      upstream_->deallocate(memory, size, region_alignment);
      throw std::bad_alloc();
    }
    blocks_.push_back({memory, size, region_alignment});
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
    void* p = upstream_->allocate(bytes, alignment);  // may throw: propagates
    try {
      dedicated_.emplace(p, block{p, bytes, alignment});
    } catch (...) {
      upstream_->deallocate(p, bytes, alignment);
      throw;
    }
    return p;
  }

  void deallocate_dedicated(void* p) {
    block b{};
    {
      std::scoped_lock lock(mutex_);
      const auto it = dedicated_.find(p);
      if (!detail::expects(it != dedicated_.end(),
                           "pool_resource::deallocate: the pointer was not allocated here with "
                           "this alignment (foreign, interior or already deallocated)"))
        return;
      b = it->second;
      dedicated_.erase(it);
    }
    upstream_->deallocate(b.pointer, b.size, b.alignment);
  }

  // Gives everything back to upstream (the pool first: it may hold raw ranges, which is
  // allowed, but not the pad slices, which borrow it).
  void free_all() noexcept {
    head_pad_.reset();
    tail_pad_.reset();
    pool_.reset();
    for (const block& b : blocks_) upstream_->deallocate(b.pointer, b.size, b.alignment);
    blocks_.clear();
    for (const auto& [p, b] : dedicated_) upstream_->deallocate(b.pointer, b.size, b.alignment);
    dedicated_.clear();
  }

  std::pmr::memory_resource* upstream_;
  growth_options growth_;
  std::size_t next_size_;
  std::byte* buffer_ = nullptr;
  std::size_t buffer_size_ = 0;
  std::mutex mutex_;  // growth, blocks_ and dedicated_
  std::unique_ptr<pool_type> pool_;
  std::optional<pool_type::slice> head_pad_;
  std::optional<pool_type::slice> tail_pad_;
  std::vector<block> blocks_;
  std::unordered_map<void*, block> dedicated_;
};

}  // namespace bufpool::pmr
