// SPDX-License-Identifier: MIT
// bufpool.boost — a Boost.Container allocator (with in-place growth) and a
// boost::container::pmr::memory_resource over bufpool pools.
module;
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <limits>
#include <memory_resource>
#include <mutex>
#include <new>
#include <string>
#include <type_traits>
#include <unordered_map>

#include <boost/container/detail/allocation_type.hpp>
#include <boost/container/detail/multiallocation_chain.hpp>
#include <boost/container/detail/version_type.hpp>
#include <boost/container/pmr/global_resource.hpp>
#include <boost/container/pmr/memory_resource.hpp>
#include <boost/container/throw_exception.hpp>
export module bufpool.boost;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import bufpool;
import bufpool.pmr;

namespace bufpool::container::detail {

// Boost's allocation_command bits. Boost declares them with internal linkage, which the
// allocator template (instantiated in importers) must not name: mirrored and checked here.
inline constexpr unsigned allocate_new = 0x01;
inline constexpr unsigned expand_fwd = 0x02;
inline constexpr unsigned expand_bwd = 0x04;
inline constexpr unsigned shrink_in_place = 0x08;
inline constexpr unsigned nothrow_allocation = 0x10;
inline constexpr unsigned zero_memory = 0x20;
inline constexpr unsigned try_shrink_in_place = 0x40;
static_assert(allocate_new == boost::container::allocate_new &&
              expand_fwd == boost::container::expand_fwd &&
              expand_bwd == boost::container::expand_bwd &&
              shrink_in_place == boost::container::shrink_in_place &&
              nothrow_allocation == boost::container::nothrow_allocation &&
              zero_memory == boost::container::zero_memory &&
              try_shrink_in_place == boost::container::try_shrink_in_place);

// The default pool of each pool type (see set_default_pool): one per program, as a
// function template's static is.
template <class Pool>
std::atomic<Pool*>& default_pool_slot() noexcept {
  static std::atomic<Pool*> slot{nullptr};
  return slot;
}

// The violations of allocator::deallocate, in its own words.
inline constexpr bufpool::detail::release_rules deallocate_rules{
    "allocator::deallocate: the pointer is in none of the pool's regions (allocated by an "
    "allocator of another pool, or deallocated after the pool gave its memory back)",
    "allocator::deallocate: no live block of the pool starts at the pointer (deallocated twice "
    "or an interior pointer)",
    "allocator::deallocate: the count differs from the count given to allocate",
    "allocator::deallocate: the type's alignment differs from the block's (deallocated through "
    "an allocator of another type)"};

}  // namespace bufpool::container::detail

/// The `bufpool.boost` module: a Boost.Container allocator and a Boost pmr memory resource
/// over bufpool pools.
export namespace bufpool::container {

/// Makes `pool` the pool that default-constructed `allocator<T, Pool>`s (of every `T`) bind
/// to from now on, as `std::pmr::set_default_resource` does for polymorphic allocators;
/// null means none. Returns the previous default. Thread-safe.
///
/// Lifetime: an allocator binds when it is constructed and keeps that pool; setting another
/// default later moves no existing allocator or container. So the pool must outlive every
/// container built while it was the default: set it before building them, and reset it (or
/// set another) before destroying it.
///
/// ```
/// bufpool::buffer_pool<> pool;  // expanded with some memory
/// bufpool::container::set_default_pool(&pool);
/// boost::container::map<int, int, std::less<int>,
///                       bufpool::container::allocator<std::pair<const int, int>>> m;
/// ```
template <class Pool = buffer_pool<>>
Pool* set_default_pool(Pool* pool) noexcept {
  return detail::default_pool_slot<Pool>().exchange(pool, std::memory_order_acq_rel);
}

/// The pool default-constructed `allocator<T, Pool>`s bind to (null if none). Thread-safe.
template <class Pool = buffer_pool<>>
[[nodiscard]] Pool* get_default_pool() noexcept {
  return detail::default_pool_slot<Pool>().load(std::memory_order_acquire);
}

/// The Boost.Container allocator: allocates `T` from a pool the user owns (any %buffer_pool
/// type as `Pool`); a valid std allocator and a Boost.Container version-2 allocator.
///
/// - Each allocation is a raw range of the pool aligned to `alignof(T)`; the pool does not
///   grow by itself, so a full pool makes `allocate` throw `std::bad_alloc` (in builds
///   without exceptions, Boost's hook `boost::container::throw_bad_alloc` is called). The
///   pool is unchanged by a failed call. `max_size()` is what the pool's offset integer and
///   options allow; a count above it (or whose byte size overflows) is `std::bad_alloc`.
/// - The pool aligns offsets; an address is aligned as well only when the region's base
///   address is aligned to `alignof(T)`. A block whose address would not be aligned (a
///   region at `buffer + 1` for `double`, or a `std::vector<std::byte>` region for an
///   `alignas(32)` type) is never handed out: it goes back and `allocate` throws
///   `std::bad_alloc`. Give such pools regions aligned to the largest `alignof(T)` used.
/// - Default construction binds to the pool set with set_default_pool<Pool>() (see there
///   for the lifetime rules), so `boost::container::map<K, V, C, allocator<...>> m;` works.
///   With no default pool the allocator has no pool: it allocates nothing (`allocate`
///   throws `std::bad_alloc`, `max_size()` is 0) and compares equal to other pool-less ones.
/// - `allocation_command` (Boost's extended interface): `expand_fwd` grows the block in
///   place when the range after it is free (so `boost::container::vector` grows without
///   moving its elements), `shrink_in_place` gives a block's tail back, `allocate_new`
///   allocates, `nothrow_allocation` returns null instead of throwing, `zero_memory` zeroes
///   a new block. `expand_bwd` is never granted (the engine keeps a block's offset), so
///   Boost falls back to forward expansion or a new block. `size(p)` is the block's size.
/// - Copies (and rebinds) compare equal iff they use the same pool. Every propagation
///   trait is true: a container that takes another's contents by assignment, move or swap
///   takes its allocator too, so memory always goes back to the pool it came from.
/// - Misuse is a contract violation that changes nothing: deallocating a pointer that is
///   not a live block of this allocator's pool (another pool, twice, interior), or with
///   another count than allocated.
///
/// ```
/// bufpool::buffer_pool<> pool;  // expanded with some memory
/// boost::container::vector<int, bufpool::container::allocator<int>> v(&pool);
/// ```
template <class T, class Pool = buffer_pool<>>
class allocator {
  static_assert(!std::is_const_v<T> && !std::is_reference_v<T>, "allocate objects");

 public:
  using value_type = T;                    ///< The type of the objects allocated.
  using pointer = T*;                      ///< A plain pointer to `T`.
  using const_pointer = const T*;          ///< A plain pointer to const `T`.
  using size_type = std::size_t;           ///< Object counts.
  using difference_type = std::ptrdiff_t;  ///< Pointer differences.
  using pool_type = Pool;                  ///< The pool the memory comes from.
  using propagate_on_container_copy_assignment = std::true_type;  ///< True: see the class notes.
  using propagate_on_container_move_assignment = std::true_type;  ///< True: see the class notes.
  using propagate_on_container_swap = std::true_type;             ///< True: see the class notes.
  using is_always_equal = std::false_type;  ///< False: equal only over the same pool.
  /// Boost.Container's marker for the extended (version 2) interface.
  using version = boost::container::dtl::version_type<allocator, 2>;
  /// Boost's list of blocks, for allocate_individual() and deallocate_individual().
  using multiallocation_chain = boost::container::dtl::transform_multiallocation_chain<
      boost::container::dtl::basic_multiallocation_chain<void*>, T>;

  /// Rebinding: `rebind<U>::other` allocates `U` from the same pool.
  template <class U>
  struct rebind {
    using other = allocator<U, Pool>;  ///< The allocator of `U` over the same `Pool`.
  };
  /// \fn allocator(Pool& pool)
  /// As allocator(Pool*), from a reference.

  /// An allocator over the default pool of `Pool`, get_default_pool<Pool>(), as it is now
  /// (null: no pool; see the class notes).
  allocator() noexcept : pool_(get_default_pool<Pool>()) {}
  /// An allocator over `pool` (which must outlive every container using it; null: no pool).
  allocator(Pool* pool) noexcept : pool_(pool) {}   // NOLINT(google-explicit-constructor)
  allocator(Pool& pool) noexcept : pool_(&pool) {}  // NOLINT(google-explicit-constructor)
  /// The allocator of `T` over `other`'s pool (a rebind).
  template <class U>
  allocator(const allocator<U, Pool>& other) noexcept  // NOLINT(google-explicit-constructor)
      : pool_(other.pool()) {}

  // Not trivial on purpose: Boost.Container takes a trivially destructible allocator as a
  // sign that a moved-from container owns nothing (has_trivial_destructor_after_move) and
  // skips destroying it, but a moved-from boost::container::string may still own a block.
  ~allocator() {}  // NOLINT(modernize-use-equals-default)
  /// Another allocator over the same pool; the two compare equal.
  allocator(const allocator&) noexcept = default;
  /// Uses the other allocator's pool from now on.
  allocator& operator=(const allocator&) noexcept = default;

  /// The pool the memory comes from.
  [[nodiscard]] Pool* pool() const noexcept { return pool_; }

  /// The most objects one block can hold: the pool's `max_size` option (bounded by its
  /// offset integer) divided by `sizeof(T)`.
  [[nodiscard]] size_type max_size() const noexcept {
    if (pool_ == nullptr) return 0;
    const std::uint64_t bytes =
        std::min<std::uint64_t>(pool_->options().max_size, std::numeric_limits<Int>::max());
    return static_cast<size_type>(
        std::min<std::uint64_t>(bytes / sizeof(T), std::numeric_limits<size_type>::max()));
  }

  /// `n` objects' worth of memory. Throws std::bad_alloc when `n` is 0 or above max_size()
  /// or the pool has no room.
  [[nodiscard]] T* allocate(size_type n) {
    T* p = try_allocate(n, false);
    if (p == nullptr) throw_bad_alloc();
    return p;
  }

  /// Gives back the block at `p` (null: nothing). `n` must be the count the block was
  /// allocated with, or last resized to by allocation_command().
  void deallocate(T* p, size_type n) noexcept {
    if (p == nullptr) return;
    if (!has_pool("allocator::deallocate: an allocator without a pool allocated nothing")) return;
    pool_->release_raw(static_cast<const void*>(p), bytes_of(n), alignof(T),
                       detail::deallocate_rules);
  }

  // ---- Boost.Container version 2 ------------------------------------------------------

  /// Boost's extended request (see the class notes): expands or shrinks the block `reuse`
  /// in place, or allocates a new block, as `command` asks. `prefer_in_recvd_out_size` is
  /// the preferred count in and the count obtained out; `limit_size` is the least count
  /// acceptable (for a shrink, the most). Returns the block, or null if refused; throws
  /// std::bad_alloc only when `command` asks for a new block (without `nothrow_allocation`)
  /// and no block is returned.
  [[nodiscard]] T* allocation_command(unsigned command, size_type limit_size,
                                      size_type& prefer_in_recvd_out_size, T*& reuse) {
    const size_type preferred = std::max(prefer_in_recvd_out_size, limit_size);
    T* result = nullptr;
    if ((command & (detail::shrink_in_place | detail::try_shrink_in_place)) != 0) {
      result = shrink(command, limit_size, prefer_in_recvd_out_size, reuse);
    } else {
      if ((command & detail::expand_fwd) != 0 && reuse != nullptr)
        result = expand(limit_size, preferred, prefer_in_recvd_out_size, reuse);
      if (result == nullptr && (command & detail::allocate_new) != 0) {
        result = allocate_new(command, limit_size, preferred, prefer_in_recvd_out_size);
        if (result != nullptr) reuse = nullptr;
      }
      if (result == nullptr) reuse = nullptr;
    }
    // Only a failed allocation throws; a refused expansion or shrink is an answer.
    if (result == nullptr && (command & detail::allocate_new) != 0 &&
        (command & detail::nothrow_allocation) == 0)
      throw_bad_alloc();
    return result;
  }

  /// The number of objects the block at `p` holds (0 if `p` is not a live block).
  [[nodiscard]] size_type size(const T* p) const noexcept {
    if (pool_ == nullptr) return 0;
    const auto r = pool_->raw_at(p);
    return r ? static_cast<size_type>(r->size / sizeof(T)) : 0;
  }

  /// Memory for one object: allocate(1).
  [[nodiscard]] T* allocate_one() { return allocate(1); }
  /// Gives back a block of allocate_one(): deallocate(p, 1).
  void deallocate_one(T* p) noexcept { deallocate(p, 1); }

  /// `n` blocks of one object each, pushed onto `chain`; all or nothing.
  void allocate_individual(std::size_t n, multiallocation_chain& chain) {
    multiallocation_chain got;
    try {
      for (std::size_t i = 0; i < n; ++i) got.push_front(allocate_one());
    } catch (...) {
      deallocate_individual(got);
      throw;
    }
    while (!got.empty()) chain.push_front(got.pop_front());
  }

  /// Gives back every block of `chain` (one object each), leaving it empty.
  void deallocate_individual(multiallocation_chain& chain) noexcept {
    while (!chain.empty()) deallocate_one(chain.pop_front());
  }

  /// True iff both allocators use the same pool.
  friend bool operator==(const allocator& a, const allocator& b) noexcept {
    return a.pool_ == b.pool_;
  }
  /// True iff `b` (an allocator of another type) uses the same pool.
  template <class U>
  friend bool operator==(const allocator& a, const allocator<U, Pool>& b) noexcept {
    return a.pool_ == b.pool();
  }

 private:
  using Int = typename Pool::integer;

  // std::bad_alloc, as the allocator requirements ask (Boost 1.83's own throw_bad_alloc
  // throws boost::container::bad_alloc, which is not one, unless
  // BOOST_CONTAINER_USE_STD_EXCEPTIONS); without exceptions, Boost's hook decides.
  [[noreturn]] static void throw_bad_alloc() {
#ifdef BOOST_NO_EXCEPTIONS
    boost::container::throw_bad_alloc();
#else
    throw std::bad_alloc();
#endif
  }

  // Bytes of n objects; n <= max_size() keeps it representable.
  static std::uint64_t bytes_of(size_type n) noexcept {
    return static_cast<std::uint64_t>(n) * sizeof(T);
  }

  // A violation (named by `rule`) when the allocator has no pool.
  bool has_pool(const char* rule) const noexcept {
    return bufpool::detail::expects(pool_ != nullptr, rule);
  }

  T* try_allocate(size_type n, bool zero) {
    if (n == 0 || n > max_size()) return nullptr;  // max_size() is 0 without a pool
    auto r = pool_->acquire_raw(bytes_of(n), alignof(T), bufpool::greedy);
    if (!r) return nullptr;
    // The offset is aligned; the address only if the region's base is: else refuse.
    if (reinterpret_cast<std::uintptr_t>(r->pointer) % alignof(T) != 0) {
      pool_->release_raw(static_cast<const void*>(r->pointer), bytes_of(n), alignof(T));
      return nullptr;
    }
    if (zero) std::memset(r->pointer, 0, static_cast<std::size_t>(bytes_of(n)));
    return reinterpret_cast<T*>(r->pointer);
  }

  T* allocate_new(unsigned command, size_type limit, size_type preferred, size_type& received) {
    const bool zero = (command & detail::zero_memory) != 0;
    for (const size_type n : {preferred, limit}) {
      if (T* p = try_allocate(n, zero)) {
        received = n;
        return p;
      }
    }
    return nullptr;
  }

  // Grows `reuse` in place to `preferred` objects, else to `limit`.
  T* expand(size_type limit, size_type preferred, size_type& received, T* reuse) {
    if (!has_pool("allocator::allocation_command: an allocator without a pool has no block "
                  "to expand"))
      return nullptr;
    const auto block = pool_->raw_at(reuse);
    if (!bufpool::detail::expects(block.has_value(),
                                  "allocator::allocation_command: the block to expand is not "
                                  "a live block of this allocator's pool"))
      return nullptr;
    const size_type current = static_cast<size_type>(block->size / sizeof(T));
    if (limit <= current) {  // already large enough
      received = current;
      return reuse;
    }
    for (const size_type n : {preferred, limit}) {
      if (n > max_size()) continue;
      if (pool_->resize_raw(static_cast<const void*>(reuse), bytes_of(n))) {
        received = n;
        return reuse;
      }
    }
    return nullptr;
  }

  // Shrinks `reuse` in place to `received` objects (at most `limit`); try_shrink_in_place
  // only reports whether it could.
  T* shrink(unsigned command, size_type limit, size_type& received, T* reuse) {
    if (reuse == nullptr || received == 0) return nullptr;
    if (!has_pool("allocator::allocation_command: an allocator without a pool has no block "
                  "to shrink"))
      return nullptr;
    const auto block = pool_->raw_at(reuse);
    if (!bufpool::detail::expects(block.has_value(),
                                  "allocator::allocation_command: the block to shrink is not a "
                                  "live block of this allocator's pool"))
      return nullptr;
    const size_type current = static_cast<size_type>(block->size / sizeof(T));
    if (received > limit || received > current) return nullptr;
    if ((command & detail::try_shrink_in_place) != 0) return reuse;
    if (!pool_->resize_raw(static_cast<const void*>(reuse), bytes_of(received))) return nullptr;
    return reuse;
  }

  Pool* pool_;
};

/// The Boost.Container pmr resource: a `boost::container::pmr::memory_resource`, over a Boost
/// upstream, for the `boost::container::pmr` container aliases.
///
/// It behaves as the std::pmr resource of bufpool.pmr, bufpool::pmr::pool_resource (same
/// constructors, growth, options, release(), misuse checks; see there), so the
/// `boost::container::pmr` container aliases live in a pool. The upstream is a Boost memory
/// resource.
class pool_resource : public boost::container::pmr::memory_resource {
 public:
  using upstream_type = boost::container::pmr::memory_resource;  ///< Base and upstream type.
  using options_type = bufpool::pmr::resource_options;           ///< Growth and locking options.
  /// Alignment and size granularity of upstream regions (as in bufpool::pmr::pool_resource).
  static constexpr std::size_t region_alignment = bufpool::pmr::pool_resource::region_alignment;

  pool_resource() : pool_resource(boost::container::pmr::get_default_resource()) {}
  /// Default growth and locking, with regions taken from `upstream`.
  explicit pool_resource(upstream_type* upstream) : bridge_(checked(upstream)), inner_(&bridge_) {}
  /// `initial_size` is the size of the first region taken from upstream (0 means 1).
  explicit pool_resource(std::size_t initial_size,
                         upstream_type* upstream = boost::container::pmr::get_default_resource())
      : bridge_(checked(upstream)), inner_(initial_size, &bridge_) {}
  /// `buffer` becomes the first region and `size` the first upstream region's size, as in
  /// bufpool::pmr::pool_resource(void*, std::size_t, std::pmr::memory_resource*).
  pool_resource(void* buffer, std::size_t size,
                upstream_type* upstream = boost::container::pmr::get_default_resource())
      : bridge_(checked(upstream)), inner_(buffer, size, &bridge_) {}
  /// `buffer` becomes the first region, with growth, locking and retention from `options`,
  /// as in bufpool::pmr::pool_resource(void*, std::size_t, const resource_options&,
  /// std::pmr::memory_resource*).
  pool_resource(void* buffer, std::size_t size, const options_type& options,
                upstream_type* upstream = boost::container::pmr::get_default_resource())
      : bridge_(checked(upstream)), inner_(buffer, size, options, &bridge_) {}
  /// Growth and locking from `options` (invalid growth options are a contract violation:
  /// the default growth is used).
  explicit pool_resource(const options_type& options,
                         upstream_type* upstream = boost::container::pmr::get_default_resource())
      : bridge_(checked(upstream)), inner_(options, &bridge_) {}
  /// Over a pool the user owns: never grows it; upstream_resource() is Boost's null
  /// resource.
  template <bufpool::pmr::borrowable_pool Pool>
  explicit pool_resource(Pool& pool)
      : bridge_(boost::container::pmr::null_memory_resource()), inner_(pool) {}

  pool_resource(const pool_resource&) = delete;
  pool_resource& operator=(const pool_resource&) = delete;
  ~pool_resource() override = default;

  /// Ends a cycle as bufpool::pmr::pool_resource::release() does (by default it keeps the
  /// upstream regions the cycle used for the next one).
  void release() { inner_.release(); }
  /// Bytes release() kept that the pool has not needed since (see
  /// bufpool::pmr::pool_resource::kept_bytes()).
  [[nodiscard]] std::size_t kept_bytes() const { return inner_.kept_bytes(); }
  /// The upstream resource; Boost's null resource for a resource over a user's pool.
  [[nodiscard]] upstream_type* upstream_resource() const noexcept { return bridge_.upstream(); }
  /// The options in use (over a user's pool: zero growth, and thread_safe as the pool is).
  [[nodiscard]] const options_type& options() const noexcept { return inner_.options(); }
  /// Statistics of the pool behind the resource (see bufpool::pmr::pool_resource::stats()).
  [[nodiscard]] pool_stats stats() const { return inner_.stats(); }
  /// Checks the pool behind the resource (buffer_pool::validate()).
  [[nodiscard]] std::expected<void, std::string> validate() const { return inner_.validate(); }

 protected:
  /// allocate(): as bufpool::pmr::pool_resource (0 bytes count as 1; an alignment that is
  /// not a power of two is a contract violation, then std::bad_alloc).
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    return inner_.allocate(bytes, alignment);
  }
  /// deallocate(): gives back a block do_allocate() returned, with the same size and
  /// alignment (misuse is checked as in bufpool::pmr::pool_resource).
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    inner_.deallocate(p, bytes, alignment);
  }
  /// Equal only to itself: memory goes back to the resource that handed it out.
  [[nodiscard]] bool do_is_equal(const upstream_type& other) const noexcept override {
    return this == &other;
  }

 private:
  // Lets the std::pmr resource take its regions from a Boost upstream. Boost 1.83's
  // new_delete_resource (the default resource) ignores alignment, while a std::pmr
  // resource must return aligned memory: a misaligned block is replaced by a larger one
  // and an aligned pointer inside it, remembered out of band. Calls may come from several
  // threads (dedicated blocks are freed outside the resource's lock).
  class boost_upstream final : public std::pmr::memory_resource {
   public:
    explicit boost_upstream(upstream_type* upstream) noexcept : upstream_(upstream) {}
    [[nodiscard]] upstream_type* upstream() const noexcept { return upstream_; }

   private:
    struct padded_block {
      void* memory;
      std::size_t size;
    };

    void* do_allocate(std::size_t bytes, std::size_t alignment) override {
      if (!misaligns_.load(std::memory_order_relaxed)) {
        void* p = upstream_->allocate(bytes, alignment);
        if (reinterpret_cast<std::uintptr_t>(p) % alignment == 0) return p;
        upstream_->deallocate(p, bytes, alignment);
        misaligns_.store(true, std::memory_order_relaxed);
      }
      if (bytes > std::numeric_limits<std::size_t>::max() - alignment) throw std::bad_alloc();
      const std::size_t size = bytes + alignment;
      void* memory = upstream_->allocate(size, alignment);
      const auto address = reinterpret_cast<std::uintptr_t>(memory);
      void* aligned = static_cast<std::byte*>(memory) + (alignment - address % alignment);
      try {
        std::scoped_lock lock(mutex_);
        padded_.emplace(aligned, padded_block{memory, size});
      } catch (...) {
        upstream_->deallocate(memory, size, alignment);
        throw;
      }
      return aligned;
    }

    void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
      padded_block b{p, bytes};
      {
        std::scoped_lock lock(mutex_);
        if (const auto it = padded_.find(p); it != padded_.end()) {
          b = it->second;
          padded_.erase(it);
        }
      }
      upstream_->deallocate(b.memory, b.size, alignment);
    }

    // Boost's null resource stands for the standard one, which it equals: a resource over a
    // buffer whose upstream is null keeps its records in the buffer.
    [[nodiscard]] bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
      if (&o == std::pmr::null_memory_resource())
        return upstream_->is_equal(*boost::container::pmr::null_memory_resource());
      return this == &o;
    }

    upstream_type* upstream_;
    std::atomic<bool> misaligns_{false};
    std::mutex mutex_;
    std::unordered_map<void*, padded_block> padded_;
  };

  static upstream_type* checked(upstream_type* upstream) {
    return bufpool::detail::expects(upstream != nullptr,
                                    "pool_resource: the upstream must not be null")
               ? upstream
               : boost::container::pmr::get_default_resource();
  }

  boost_upstream bridge_;
  bufpool::pmr::pool_resource inner_;
};

}  // namespace bufpool::container

#pragma GCC visibility pop
