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
#include <new>
#include <string>
#include <utility>
export module bufpool.pmr;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import bufpool;
export import :options;
import :backends;
import :upstream_source;

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
  /// `how` is the strategy of its acquisitions: `greedy` (size classes, the fastest),
  /// `good_fit` (O(1) size bins, close to optimal's utilization) or `optimal` (exact best
  /// fit, the most a pool that cannot grow will hold); `fixed(...)` is a contract violation
  /// (greedy is used if the handler returns).
  template <borrowable_pool Pool>
  explicit pool_resource(Pool& pool, strategy how = bufpool::greedy)
      : upstream_(std::pmr::null_memory_resource()),
        options_{0, 1.0, 0, !std::same_as<typename Pool::mutex_type, bufpool::null_mutex>} {
    backend_ = make_backend<detail::borrowed_backend<Pool>>(
        pool,
        bufpool::detail::expects(
            how.kind != strategy_kind::fixed,
            "pool_resource over a user's pool: the strategy must be greedy, good_fit or optimal")
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
  /// upstream region; growth restarts at the initial size (LWG 3120). The pool's records
  /// keep their capacity, so a cycle like the last takes none from upstream per block.
  /// `retained_bytes = 0` gives everything back, records included, as the standard
  /// resources do. O(regions + records).
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
    if (!bufpool::detail::expects(bufpool::detail::is_power_of_two(alignment),
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
            bufpool::detail::is_power_of_two(alignment),
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
