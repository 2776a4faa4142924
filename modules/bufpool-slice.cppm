// SPDX-License-Identifier: MIT
// bufpool:slice — expansion handles (two-phase growth) and slices (RAII owners of a range, with
// guards).
module;
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include "build_flags.hpp"
export module bufpool:slice;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :contracts;
import :engine;
import :errors;
import :options;
import :regions;
import :types;

export namespace bufpool {

/// A reserved, pending range of offsets. `initialize()` publishes it as a region; destroying
/// the handle without initializing cancels the reservation.
template <class Pool>
class expansion_handle {
 public:
  using integer = typename Pool::integer;        ///< The pool's offset integer.
  using extra_type = typename Pool::extra_type;  ///< The pool's per-region user value.

  /// Takes over `other`'s reservation; `other` then holds none.
  expansion_handle(expansion_handle&& other) noexcept
      : pool_(std::exchange(other.pool_, nullptr)), offset_(other.offset_), size_(other.size_) {}
  /// Cancels this handle's reservation (if any), then takes over `other`'s.
  expansion_handle& operator=(expansion_handle&& other) noexcept {
    if (this != &other) {
      cancel();
      pool_ = std::exchange(other.pool_, nullptr);
      offset_ = other.offset_;
      size_ = other.size_;
    }
    return *this;
  }
  ~expansion_handle() { cancel(); }

  /// First offset of the reserved range.
  [[nodiscard]] integer offset() const noexcept { return offset_; }
  /// Bytes reserved; `base` given to initialize() must point to at least this many.
  [[nodiscard]] integer size() const noexcept { return size_; }

  /// Publishes the range as a region backed by `base` (non-null, size() bytes, not
  /// overlapping another region) with the user's `extra`. Returns the region id.
  /// `memory` says whether AddressSanitizer builds may poison the region's free ranges.
  /// Errors (each also a contract violation): null_memory, overlapping_memory, handle_spent
  /// (initialized twice); and pool_closed (the memory was not adopted; the reservation is gone).
  std::expected<std::uint32_t, errc> initialize(void* base, extra_type extra = {},
                                                region_memory memory = region_memory::host) && {
    const auto address = reinterpret_cast<std::uintptr_t>(base);
    const std::uintptr_t end = memory == region_memory::host ? address + size_ : address;
    return std::move(*this).publish(base, std::move(extra), address, end);
  }

  /// As initialize(base, extra), where only the bytes of `host` (inside the region) are
  /// host memory that AddressSanitizer builds may poison: for a region that starts or ends
  /// in memory that is not the caller's (kept unused by slices that cover it).
  std::expected<std::uint32_t, errc> initialize(void* base, extra_type extra,
                                                std::span<std::byte> host) && {
    const auto begin = reinterpret_cast<std::uintptr_t>(host.data());
    return std::move(*this).publish(base, std::move(extra), begin, begin + host.size());
  }

 private:
  friend Pool;
  expansion_handle(Pool* pool, integer offset, integer size) noexcept
      : pool_(pool), offset_(offset), size_(size) {}
  std::expected<std::uint32_t, errc> publish(void* base, extra_type&& extra,
                                             std::uintptr_t host_begin,
                                             std::uintptr_t host_end) && {
    if (!detail::expects(pool_ != nullptr, "an expansion handle is initialized once"))
      return std::unexpected(errc::handle_spent);
    if (!detail::expects(base != nullptr, "a region's memory must not be null")) {
      cancel();
      return std::unexpected(errc::null_memory);
    }
    // If publishing throws (out of memory), the handle still holds the reservation.
    auto id =
        pool_->publish(offset_, size_, static_cast<std::byte*>(base), extra, host_begin, host_end);
    pool_ = nullptr;  // published, or cancelled by publish()
    return id;
  }

  void cancel() noexcept {
    if (pool_ != nullptr) std::exchange(pool_, nullptr)->cancel(offset_, size_);
  }

  Pool* pool_;
  integer offset_;
  integer size_;
};

/// An RAII owner of a range in a pool: movable, not copyable. Destruction gives the range
/// back (coalescing with free neighbours), unless a guard still holds it: then the pool
/// parks the range with its guard and frees it once the guard releases (collect()).
///
/// A moved-from slice is empty: size() 0, bytes() empty, data() null, destruction and
/// reclaim() do nothing.
template <class Pool, slice_guard Guard = no_guard>
class basic_slice {
 public:
  using pool_type = Pool;                        ///< The pool the slice comes from.
  using guard_type = Guard;                      ///< The guard it can carry (no_guard: none).
  using integer = typename Pool::integer;        ///< The pool's offset integer.
  using extra_type = typename Pool::extra_type;  ///< The pool's per-region user value.

  basic_slice() noexcept = default;
  /// Takes over `o`'s range and guard; `o` becomes empty.
  basic_slice(basic_slice&& o) noexcept { take(o); }
  /// Gives this slice's range back (parked if its guard still holds), then takes over
  /// `o`'s range and guard; `o` becomes empty.
  basic_slice& operator=(basic_slice&& o) noexcept {
    if (this != &o) {
      return_range();
      take(o);
    }
    return *this;
  }
  basic_slice(const basic_slice&) = delete;
  basic_slice& operator=(const basic_slice&) = delete;
  ~basic_slice() { return_range(); }

  /// False for a moved-from or default-constructed slice.
  [[nodiscard]] explicit operator bool() const noexcept { return ref_ != pool_ref::none; }
  /// How the slice refers to its pool (pool_ref::none when empty).
  [[nodiscard]] pool_ref reference_kind() const noexcept { return ref_; }

  /// The slice's first offset in the pool (a multiple of its alignment).
  [[nodiscard]] integer offset() const noexcept { return offset_; }
  /// The bytes requested.
  [[nodiscard]] integer size() const noexcept { return size_; }
  /// The bytes reserved: >= size() when the pool rounded up.
  [[nodiscard]] integer capacity() const noexcept { return capacity_; }
  /// First offset of the region the slice lies in (kept in the slice: valid even once a weak
  /// slice's pool is gone). 0 for an empty (moved-from) slice.
  [[nodiscard]] integer region_offset() const noexcept { return region_offset_; }
  /// Bytes in that region (kept like region_offset()). 0 for an empty slice.
  [[nodiscard]] integer region_size() const noexcept { return region_size_; }
  /// The region's extra value. Asking an empty slice, or a weak slice whose pool is gone,
  /// is a contract violation (the region's data went with the pool): a default value then.
  [[nodiscard]] const extra_type& region_extra() const noexcept {
    static const extra_type none{};
    return detail::expects(region_ != nullptr && pool_is_alive(),
                           "region_extra() needs a live slice whose pool exists")
               ? region_->extra
               : none;
  }

  /// False for a weak slice whose pool has been destroyed, and in checked builds for a
  /// borrowed slice whose pool has been destroyed (a contract violation, reported then).
  [[nodiscard]] bool pool_is_alive() const noexcept {
    if (ref_ == pool_ref::weak) return !weak_.expired();
    if constexpr (checked_build)
      if (ref_ == pool_ref::borrowed) return detail::pool_registered(pool_, pool_id_);
    return true;
  }

  /// Mutable bytes (empty for an empty slice). Errors: access_denied while guarded (either
  /// mode), pool_gone.
  [[nodiscard]] std::expected<std::span<std::byte>, errc> try_bytes() noexcept {
    if (ref_ == pool_ref::none) return std::span<std::byte>{};
    if (auto e = access_error(true)) return std::unexpected(*e);
    return std::span<std::byte>(pointer(), size_);
  }
  /// Read-only bytes (empty for an empty slice). Errors: access_denied while guarded in
  /// exclusive mode, pool_gone.
  [[nodiscard]] std::expected<std::span<const std::byte>, errc> try_cbytes() const noexcept {
    if (ref_ == pool_ref::none) return std::span<const std::byte>{};
    if (auto e = access_error(false)) return std::unexpected(*e);
    return std::span<const std::byte>(pointer(), size_);
  }
  /// Grows or shrinks the slice in place to `size` bytes: its offset and data stay where
  /// they are; growing takes the start of the next range if that range is free and in the
  /// same region, shrinking gives the tail back to the pool. Errors, with nothing changed:
  /// empty_slice, pool_gone, in_use (guarded: I/O may be in flight),
  /// invalid_size, too_large, out_of_memory (no free room right after the slice).
  /// O(log n).
  [[nodiscard]] std::expected<void, errc> try_resize(std::uint64_t size) {
    if (ref_ == pool_ref::none) return std::unexpected(errc::empty_slice);
    auto keep = lock_pool();
    if (keep.pool == nullptr) return std::unexpected(errc::pool_gone);
    if (guard_) return std::unexpected(errc::in_use);
    auto capacity = keep.pool->resize(node_, size);
    if (!capacity) return std::unexpected(capacity.error());
    size_ = static_cast<integer>(size);
    capacity_ = *capacity;
    return {};
  }

  /// Mutable bytes; using a guarded or dead slice is a contract violation (empty span).
  [[nodiscard]] std::span<std::byte> bytes() noexcept {
    auto b = try_bytes();
    return detail::expects(b.has_value(), "no data access through a guarded or dead slice")
               ? *b
               : std::span<std::byte>{};
  }
  /// Read-only bytes; refused (contract violation) while exclusively guarded or dead.
  [[nodiscard]] std::span<const std::byte> cbytes() const noexcept {
    auto b = try_cbytes();
    return detail::expects(b.has_value(), "no data access through a guarded or dead slice")
               ? *b
               : std::span<const std::byte>{};
  }
  /// bytes().data(): null for an empty slice, and for a guarded or dead one (a contract
  /// violation, as for bytes()).
  [[nodiscard]] std::byte* data() noexcept { return bytes().data(); }

  /// Whether the slice carries a guard.
  [[nodiscard]] bool is_guarded() const noexcept { return guard_.has_value(); }
  /// The access mode given with the guard (meaningful while is_guarded()).
  [[nodiscard]] guard_mode mode() const noexcept { return mode_; }

  /// Attaches `guard`. Errors (the guard comes back): already_guarded, pool_gone.
  std::expected<void, guard_error<Guard>> guard(Guard g, guard_mode m = guard_mode::exclusive)
    requires(!std::same_as<Guard, no_guard>)
  {
    if (guard_) return std::unexpected(guard_error<Guard>{errc::already_guarded, std::move(g)});
    auto keep = lock_pool();
    if (keep.pool == nullptr)
      return std::unexpected(guard_error<Guard>{errc::pool_gone, std::move(g)});
    guard_.emplace(std::move(g));
    mode_ = m;
    keep.pool->mark_guarded(node_, true);
    return {};
  }

  /// Moves the slice into one whose guard type is `G`, carrying `g`. Errors (slice and
  /// guard come back): already_guarded, pool_gone.
  template <slice_guard G>
  std::expected<basic_slice<Pool, G>, with_guard_error<basic_slice, G>> with_guard(
      G g, guard_mode m = guard_mode::exclusive) && {
    if (guard_ || ref_ == pool_ref::none)
      return std::unexpected(with_guard_error<basic_slice, G>{
          guard_ ? errc::already_guarded : errc::empty_slice, std::move(*this), std::move(g)});
    auto keep = lock_pool();
    if (keep.pool == nullptr)
      return std::unexpected(
          with_guard_error<basic_slice, G>{errc::pool_gone, std::move(*this), std::move(g)});
    basic_slice<Pool, G> out;
    out.take_fields(*this);
    out.guard_.emplace(std::move(g));
    out.mode_ = m;
    keep.pool->mark_guarded(out.node_, true);
    return out;
  }

  /// Asks the guard; if it releases, removes and returns it. Errors: not_guarded, in_use.
  std::expected<Guard, errc> try_unguard() {
    if (!guard_) return std::unexpected(errc::not_guarded);
    if (!static_cast<bool>(guard_->try_release())) return std::unexpected(errc::in_use);
    return take_guard();
  }

  /// Removes the guard without asking it: for callers who know the I/O has finished.
  /// Returns the guard, or nothing if the slice had none.
  std::optional<Guard> unguard_unchecked() noexcept {
    if (!guard_) return std::nullopt;
    return take_guard();
  }

  /// Gives the range back now. Error in_use while guarded: the slice comes back intact.
  std::expected<void, reclaim_error<basic_slice>> reclaim() && {
    if (guard_) return std::unexpected(reclaim_error<basic_slice>{errc::in_use, std::move(*this)});
    return_range();
    return {};
  }

 private:
  friend Pool;
  template <class P, slice_guard G>
  friend class basic_slice;

  using range = typename Pool::range;

  struct pool_lock {
    Pool* pool;
    std::shared_ptr<Pool> hold;
  };

  basic_slice(Pool* pool, pool_ref ref, const std::shared_ptr<Pool>& owner, const range& r)
      : pool_(pool),
        ref_(ref),
        region_(r.region),
        data_(r.region->base + (r.offset - r.region->offset)),
        region_offset_(r.region->offset),
        region_size_(r.region->size),
        node_(r.node),
        offset_(r.offset),
        size_(r.size),
        capacity_(r.capacity),
        pool_id_(pool->checked_id_) {
    if (ref == pool_ref::shared) strong_ = owner;
    if (ref == pool_ref::weak) weak_ = owner;
  }

  std::byte* pointer() const noexcept { return data_; }

  std::optional<errc> access_error(bool write) const noexcept {
    if (ref_ == pool_ref::none) return errc::empty_slice;
    if (!pool_is_alive()) return errc::pool_gone;
    if (guard_ && (write || mode_ == guard_mode::exclusive)) return errc::access_denied;
    return std::nullopt;
  }

  pool_lock lock_pool() const noexcept {
    switch (ref_) {
      case pool_ref::borrowed:  // checked builds: nullptr once the pool is gone
        return {pool_is_alive() ? pool_ : nullptr, nullptr};
      case pool_ref::shared:
        return {pool_, nullptr};
      case pool_ref::weak: {
        auto p = weak_.lock();
        return {p ? pool_ : nullptr, std::move(p)};
      }
      case pool_ref::none:
        break;
    }
    return {nullptr, nullptr};
  }

  Guard take_guard() noexcept {
    Guard g = std::move(*guard_);
    guard_.reset();
    if (auto keep = lock_pool(); keep.pool != nullptr) keep.pool->mark_guarded(node_, false);
    return g;
  }

  template <class G>
  void take_fields(basic_slice<Pool, G>& o) noexcept {
    pool_ = o.pool_;
    strong_ = std::move(o.strong_);
    weak_ = std::move(o.weak_);
    ref_ = std::exchange(o.ref_, pool_ref::none);
    region_ = std::exchange(o.region_, nullptr);
    data_ = std::exchange(o.data_, nullptr);
    region_offset_ = std::exchange(o.region_offset_, 0);
    region_size_ = std::exchange(o.region_size_, 0);
    node_ = std::exchange(o.node_, no_index);
    offset_ = std::exchange(o.offset_, 0);
    size_ = std::exchange(o.size_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
    pool_id_ = std::exchange(o.pool_id_, 0);
  }

  void take(basic_slice& o) noexcept {
    take_fields(o);
    guard_ = std::move(o.guard_);
    o.guard_.reset();
    mode_ = o.mode_;
  }

  // Returns the range to the pool, or parks it with its guard if the guard holds.
  void return_range() noexcept {
    if (ref_ == pool_ref::none) return;
    auto keep = lock_pool();
    if (keep.pool != nullptr) {
      // Uncount first: validate() may run concurrently and requires borrowed <= live.
      if (ref_ == pool_ref::borrowed) keep.pool->borrowed_.fetch_sub(1);
      if (guard_ && !static_cast<bool>(guard_->try_release())) {
        keep.pool->park(node_, std::move(*guard_));  // still counted as guarded
      } else {
        if (guard_) keep.pool->guarded_.fetch_sub(1);
        keep.pool->release(node_);
      }
    }
    guard_.reset();
    strong_.reset();
    weak_.reset();
    ref_ = pool_ref::none;
    region_ = nullptr;
    data_ = nullptr;
    node_ = no_index;
    offset_ = size_ = capacity_ = region_offset_ = region_size_ = 0;
  }

  Pool* pool_ = nullptr;
  std::shared_ptr<Pool> strong_;
  std::weak_ptr<Pool> weak_;
  pool_ref ref_ = pool_ref::none;
  guard_mode mode_ = guard_mode::exclusive;
  const detail::region_info<integer, extra_type>* region_ = nullptr;  // owned by the pool
  std::byte* data_ = nullptr;
  integer region_offset_ = 0;
  integer region_size_ = 0;
  std::uint32_t node_ = no_index;
  integer offset_ = 0;
  integer size_ = 0;
  integer capacity_ = 0;
  std::uint64_t pool_id_ = 0;  // checked builds: the pool's registry id
  std::optional<Guard> guard_;
};

}  // namespace bufpool

#pragma GCC visibility pop
