// SPDX-License-Identifier: MIT
// bufpool:engine — the offset engine: regions, free and used ranges, and their indexes.
// No pointers, no locks, no reads or writes of pool memory.
module;
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <expected>
#include <map>
#include <memory>
#include <memory_resource>
#include <optional>
#include <set>
#include <source_location>
#include <string>
#include <vector>

#include "internal_assert.hpp"
export module bufpool:engine;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :contracts;
import :errors;
import :metadata;
import :options;

namespace bufpool::detail {
// Defined in the internal partition bufpool:bptree, and used only inside the library: hidden
// from shared builds' exports although declared in an interface unit.
template <bool Maxima>
class [[gnu::visibility("hidden")]] bptree;

// Room for one more element, growing geometrically, so that the next push cannot throw:
// callers allocate first and change state after (strong guarantee).
template <class V>
void room_for_one(V& v) {
  if (v.size() == v.capacity()) v.reserve(std::max<std::size_t>(8, 2 * v.capacity()));
}
}  // namespace bufpool::detail

export namespace bufpool {

/// The engine's offset type; pools of narrower integers pass narrower limits.
using offset_t = std::uint64_t;
/// "No node / no region".
inline constexpr std::uint32_t no_index = ~std::uint32_t{0};

/// The limits the engine enforces, derived from a pool's options and offset integer.
struct engine_limits {
  offset_t last_offset = ~offset_t{0};  ///< The largest usable offset (the integer's max).
  offset_t min_size = 1;                ///< Smaller requests are raised to this size.
  offset_t max_size = ~offset_t{0};     ///< Larger requests fail with too_large.
  offset_t min_alignment = 16;          ///< Also the granule: capacities are multiples of it.
  offset_t max_alignment = offset_t{1} << 63;  ///< Larger alignments fail with alignment_too_big.
};

/// One acquired range.
struct engine_allocation {
  std::uint32_t node;    ///< Handle to give back to release().
  std::uint32_t region;  ///< Region id (index in publication order).
  offset_t offset;       ///< Start, a multiple of the alignment.
  offset_t capacity;     ///< >= the requested size.
};

/// Totals over the whole engine: O(log n + C) (C = cached ranges, see engine).
struct engine_stats {
  offset_t used_bytes = 0;      ///< In live (including parked) slices.
  offset_t free_bytes = 0;      ///< In free ranges of initialized regions.
  offset_t pending_bytes = 0;   ///< Reserved by expansions not yet initialized.
  offset_t largest_free = 0;    ///< Size of the largest free range.
  std::size_t free_ranges = 0;  ///< Number of free ranges.
  std::size_t used_ranges = 0;  ///< Number of used ranges (live allocations).
  std::size_t regions = 0;      ///< Number of published regions.
};

/// Totals for one region: O(1 + C) (C = cached ranges, see engine).
struct region_stats {
  offset_t offset = 0;          ///< First offset of the region.
  offset_t size = 0;            ///< Bytes in the region.
  offset_t used_bytes = 0;      ///< Bytes in its used ranges.
  offset_t free_bytes = 0;      ///< Bytes in its free ranges.
  std::size_t free_ranges = 0;  ///< Number of its free ranges.
  std::size_t used_ranges = 0;  ///< Number of its used ranges.
  /// Bytes of free slab slots (set by the pool when its option `slabs` is on; see
  /// pool_stats::spare_bytes). The engine counts the slabs as used ranges.
  offset_t spare_bytes = 0;
};

/// A range as seen by a walk over a region (for dumps and tests).
struct range_view {
  offset_t offset;             ///< First offset of the range.
  offset_t size;               ///< Bytes in the range.
  bool used;                   ///< True for a live allocation, false for a free range.
  std::uint8_t user_bits = 0;  ///< The caller's bits of a used range (engine::set_user_bits).
};

/// The allocation engine. Single-threaded; the pool adds locking.
///
/// Complexity (n = free ranges, R = regions, C = ranges in the size-class cache, at most
/// max_cached_ranges): allocate and release O(log n) for every strategy and alignment (exact
/// best fit for `optimal`), and O(1) when `greedy` reuses a cached range; a release that
/// overfills the cache flushes it, O(C log n) once per C releases; reserve/cancel O(log g) in
/// the number of gaps; publish O(log n + R).
///
/// Size classes (`greedy` only): a greedy request of at most class_limit() bytes gets the
/// capacity of its size class (detail::range_classes: whole granules up to 16, then 8 classes per
/// doubling, so at most 12.5% more), and when such a range is released it goes to a LIFO list of
/// its class (up to max_cached_per_class) instead of being coalesced and indexed; the next greedy
/// request of the class takes it back without touching either index. The cache is flushed
/// into the indexes (coalescing) when it holds more than 1/16 of the regions' bytes plus
/// 4 * class_limit(), or max_cached_ranges ranges; before any `optimal` or `fixed` request;
/// when a request finds no other room; and by trim(). Cached ranges are free: statistics,
/// region totals, ranges() and validate() describe the engine as if the cache were flushed.
///
/// The wilderness (`greedy` only): when greedy's best fit is the largest free range, and
/// larger than the current wilderness, it leaves the indexes; greedy requests that no indexed
/// range holds are carved off its front in O(1), and a range released next to it merges into
/// it in O(1). It is flushed into the indexes like the cache.
///
/// Free ranges are indexed by two B+trees of fanout 16: by size with per-alignment-level
/// maxima, and by last offset. The offset index serves `fixed` alone (coalescing follows the
/// ranges' links): it is made when the first fixed request comes, O(n log n) once, and kept
/// from then on. Metadata per range: one node (40 bytes); per free range one entry in each
/// index (<= 46 bytes each); per inner node of the size index 128 * L bytes,
/// where L is the number of distinct alignments above min_alignment asked for so far, plus
/// one, and never more than the limits allow. The first request at a new alignment computes
/// its maxima for the whole index, O(n) once.
///
/// Every record (range nodes, regions, gaps, indexes, size classes) is allocated from the
/// memory resource given at construction; constructing an engine allocates nothing.
class engine {
 public:
  /// An engine without regions or reserved offsets that enforces `limits`, whose records
  /// come from `metadata` (null: std::pmr::new_delete_resource()). Allocates nothing.
  explicit engine(const engine_limits& limits, std::pmr::memory_resource* metadata = nullptr);
  ~engine();
  /// Takes over the other engine's state and resource; the moved-from engine may only be
  /// destroyed or assigned to.
  engine(engine&&) noexcept;
  /// Replaces this engine's state with the other's, resource included (same rule for the
  /// moved-from one).
  engine& operator=(engine&&) noexcept;
  /// Forgets every region, range and reservation (none may be pending), as a new engine
  /// would have none, but keeps the capacity of its records (the range nodes, the lists of
  /// regions and the free-range indexes made so far): an engine given the same regions and
  /// requests again allocates no records for them. Allocates nothing.
  void clear() noexcept;

  /// The resource the engine's records come from.
  [[nodiscard]] std::pmr::memory_resource* metadata() const noexcept { return metadata_; }

  /// The limits given at construction.
  [[nodiscard]] const engine_limits& limits() const noexcept { return limits_; }

  /// Reserves `size` offsets: at the end of the used offset space, or in the smallest gap
  /// left by cancelled reservations when the end is exhausted. The span is pending.
  [[nodiscard]] std::expected<offset_t, errc> reserve(offset_t size);
  /// Gives a pending span back (it becomes a gap, or shrinks the used space).
  void cancel(offset_t offset, offset_t size) noexcept;
  /// Turns a pending span into a region with one free range; returns the region id.
  std::uint32_t publish(offset_t offset, offset_t size);

  /// Acquires `size` bytes aligned to `alignment` with the given strategy.
  [[nodiscard]] std::expected<engine_allocation, errc> allocate(offset_t size, offset_t alignment,
                                                                strategy how);
  /// Returns a range from allocate(); coalesces with free neighbours in its region.
  /// Returns false (and changes nothing) if `node` is not a live allocation.
  bool release(std::uint32_t node) noexcept;
  /// Grows or shrinks live range `node` in place so it holds `size` bytes, keeping its
  /// offset: growing takes the start of the next range of its region if that is free;
  /// shrinking gives the tail back (to a free next range, or as a new free range when the
  /// tail is at least a granule). Returns the new capacity. Errors, with nothing changed:
  /// not_live (not a live node), invalid_size, too_large, out_of_memory (the next
  /// range is not free or too small). O(log n).
  [[nodiscard]] std::expected<offset_t, errc> resize(std::uint32_t node, offset_t size);

  /// Flushes the size-class cache: every cached range is coalesced into the indexes.
  /// O(C log n).
  void trim() noexcept;
  /// The largest request `greedy` serves from size classes (0 if the granule is too large
  /// for classes).
  [[nodiscard]] offset_t class_limit() const noexcept { return class_limit_; }
  /// The capacity `greedy` gives a request of `size` bytes (raised to min_size) when a free
  /// range of that capacity is available: its size class, or `size` rounded up to the granule
  /// above class_limit().
  [[nodiscard]] offset_t class_capacity(offset_t size) const noexcept;
  /// Ranges held by the size-class cache (free, not yet coalesced). O(1).
  [[nodiscard]] std::size_t cached_ranges() const noexcept { return cached_ranges_; }
  /// Bytes in those ranges (part of stats().free_bytes). O(1).
  [[nodiscard]] offset_t cached_bytes() const noexcept { return cached_bytes_; }
  /// The most ranges the size-class cache holds before it is flushed.
  static constexpr std::size_t max_cached_ranges = 4096;
  /// The most ranges one size class holds; more are coalesced at once.
  static constexpr std::uint32_t max_cached_per_class = 64;

  /// Allocates room ahead for `nodes` more range records (an allocation takes at most two,
  /// a region or a resize one), and makes the indexes not made yet, so that the calls using
  /// them cannot throw; except an optimal or greedy request at a larger alignment than any
  /// before, which adds its level to the size index.
  void reserve_nodes(std::size_t nodes);

  /// Offset of a live node (no check beyond bounds; for the pool's slices).
  [[nodiscard]] offset_t node_offset(std::uint32_t node) const noexcept;
  /// Capacity of a live node (the same conditions).
  [[nodiscard]] offset_t node_size(std::uint32_t node) const noexcept;
  /// Whether `node` is a live allocation (false for free, unused or out-of-range nodes).
  [[nodiscard]] bool is_live(std::uint32_t node) const noexcept;

  /// Keeps a word of the caller's with live range `node` until it is released; the engine
  /// gives it no meaning. O(1). Inline, as the three below: a raw range's every acquire and
  /// release uses them.
  inline void set_user_word(std::uint32_t node, std::uint64_t word) noexcept {
    BUFPOOL_ASSERT(is_live(node));
    // The links a range needs only while free or cached hold the word while it is used.
    nodes_[node].link = static_cast<std::uint32_t>(word);
    nodes_[node].cprev = static_cast<std::uint32_t>(word >> 32);
  }
  /// The word set_user_word() last gave live range `node`.
  [[nodiscard]] inline std::uint64_t user_word(std::uint32_t node) const noexcept {
    return std::uint64_t{nodes_[node].link} | std::uint64_t{nodes_[node].cprev} << 32;
  }
  /// Keeps bits of the caller's with live range `node`, shown by ranges(); a range starts
  /// with none (0). The engine gives them no meaning. O(1).
  inline void set_user_bits(std::uint32_t node, std::uint8_t bits) noexcept {
    BUFPOOL_ASSERT(is_live(node));
    nodes_[node].user_bits = bits;
  }
  /// The bits set_user_bits() last gave live range `node` (0 if none).
  [[nodiscard]] inline std::uint8_t user_bits(std::uint32_t node) const noexcept {
    return nodes_[node].user_bits;
  }
  /// Spans reserved by begin_expand and neither initialized nor cancelled, in offset
  /// order, as (offset, size). O(R + g).
  [[nodiscard]] std::vector<std::pair<offset_t, offset_t>> pending_spans() const;

  /// The region containing `offset`, or no_index. O(log R).
  [[nodiscard]] std::uint32_t region_of(offset_t offset) const noexcept;
  /// Number of published regions; their ids are 0 .. region_count() - 1.
  [[nodiscard]] std::size_t region_count() const noexcept { return regions_.size(); }
  /// Totals of region `id` (which must be below region_count()). O(1 + C).
  [[nodiscard]] region_stats region(std::uint32_t id) const noexcept;
  /// The ranges of a region in offset order. O(ranges of the region).
  [[nodiscard]] std::vector<range_view> ranges(std::uint32_t region) const;

  /// Totals over the whole engine (see engine_stats).
  [[nodiscard]] engine_stats stats() const noexcept;

  /// Checks every invariant (coverage, coalescing, tree order, balance and aggregates,
  /// counters, gaps). Returns a description of the first broken one.
  [[nodiscard]] std::expected<void, std::string> validate() const;

 private:
  // One range of a region, free or used; physical neighbours make coalescing O(1).
  struct node {
    offset_t offset = 0;
    offset_t size = 0;
    std::uint32_t prev = no_index;    // previous range in the same region
    std::uint32_t next = no_index;    // next range in the same region
    std::uint32_t region = no_index;  //
    // While unused: link is the free-list link. While cached: the class list's links; while
    // free, the bin's (link the next, cprev the previous). While
    // used: set_user_word()'s word (low half in link).
    std::uint32_t link = no_index;
    std::uint32_t cprev = no_index;
    std::uint8_t state = 0;      // node_unused, node_free, node_used or node_cached
    std::uint8_t user_bits = 0;  // set_user_bits(), while used
    // One field for two states, so that the node keeps its 40 bytes: while free, the size bin
    // it is linked in (bin_link), read when it leaves or changes bin; while used, whether
    // greedy acquired it (it may then be cached when released).
    union {
      std::uint16_t bin = 0;
      std::uint16_t greedy;
    };
  };
  static_assert(sizeof(node) == 40, "a node's fields pack into 40 bytes");
  struct region_rec {
    offset_t offset = 0;
    offset_t size = 0;
    std::uint32_t first = no_index;  // lowest range
    offset_t used_bytes = 0;
    offset_t free_bytes = 0;
    std::size_t used_ranges = 0;
    std::size_t free_ranges = 0;
  };
  std::uint32_t new_node();
  [[gnu::noinline]] std::uint32_t append_node();  // new_node() when none is on the free list
  void free_node(std::uint32_t n) noexcept;
  // Gives back a node new_node() returned and nothing links yet (a failed allocation).
  void drop_new_node(std::uint32_t n) noexcept;
  void link_before(std::uint32_t m, std::uint32_t n) noexcept;
  void unlink(std::uint32_t m) noexcept;

  // Free-range bookkeeping: the indexes and the counters (engine_bins.inl).
  void add_free(std::uint32_t n);
  void remove_free(std::uint32_t n) noexcept;
  void resize_free(std::uint32_t n, offset_t offset, offset_t size) noexcept;

  [[nodiscard]] std::uint32_t find_containing(offset_t offset) const noexcept;

  // The size-class cache.
  [[nodiscard]] unsigned class_index(offset_t capacity) const noexcept;
  void cache_push(std::uint32_t n) noexcept;
  void cache_unlink(std::uint32_t n) noexcept;
  std::uint32_t coalesce(std::uint32_t n) noexcept;
  engine_allocation take_cached(std::uint32_t n) noexcept;
  std::optional<engine_allocation> greedy_fit(offset_t len, offset_t align, unsigned level);
  engine_allocation carve_wild(offset_t start, offset_t len);
  [[nodiscard]] offset_t fit_capacity(offset_t avail, offset_t len) const noexcept;
  engine_allocation mark_used(std::uint32_t n, offset_t start, offset_t capacity,
                              bool by_greedy) noexcept;
  // What the cache changes in the coalesced view of a region (or of all, no_index): its
  // bytes, how many fewer ranges there are once merged, and the largest merged range that
  // holds a cached one.
  struct cache_view {
    offset_t bytes = 0;
    std::size_t ranges = 0;
    std::size_t merges = 0;
    offset_t largest = 0;
  };
  [[nodiscard]] cache_view view_of_cache(std::uint32_t region) const noexcept;
  [[nodiscard]] bool is_free(std::uint32_t n) const noexcept;
  std::expected<engine_allocation, errc> carve(std::uint32_t n, offset_t start, offset_t size);
  // Makes the size bins and the size-class lists, with the first node (construction
  // allocates nothing). Strong guarantee.
  void make_indexes();
  // Makes the size index from the free ranges (the first optimal or greedy request), or the
  // offset index (the first fixed request). Strong guarantee.
  void index_sizes();
  void index_offsets();

  // The size bins (engine_bins.inl): every free range is in the bin of the whole granules
  // it holds, found by two bit scans. good_fit() takes a range from the first non-empty bin
  // whose every range holds the aligned request, else one of the first few ranges of the bin
  // below that holds it.
  [[nodiscard]] static unsigned bin_of(offset_t granules) noexcept;
  [[nodiscard]] static offset_t bin_floor(unsigned bin) noexcept;
  [[nodiscard]] unsigned bin_of_range(offset_t offset, offset_t size) const noexcept;
  // Links or unlinks free node n in bin b, the bin of its range.
  void bin_link(std::uint32_t n, unsigned b) noexcept;
  void bin_unlink(std::uint32_t n) noexcept;
  [[nodiscard]] std::uint32_t good_fit(offset_t len, offset_t align) const noexcept;
  [[nodiscard]] offset_t largest_binned() const noexcept;
  [[nodiscard]] std::expected<void, std::string> validate_bins() const;

  engine_limits limits_;
  std::pmr::memory_resource* metadata_;  // where every record below comes from
  unsigned granule_log2_ = 0;
  unsigned levels_ = 1;

  detail::meta_vector<node> nodes_;
  std::uint32_t free_nodes_ = no_index;
  std::size_t reserved_ = 0;  // index room, in entries
  // Free ranges by (size, offset): null until the first optimal or greedy request needs it
  // (index_sizes), so that a pool served by good_fit alone pays for its bins only.
  detail::meta_ptr<detail::bptree<true>> sizes_;
  // Free ranges by last offset: null until the first fixed request needs it (index_offsets).
  detail::meta_ptr<detail::bptree<false>> offsets_;

  detail::meta_vector<region_rec> regions_;
  detail::meta_vector<std::pair<offset_t, std::uint32_t>> region_index_;  // sorted by offset

  // Offset space: [0, frontier_) has been handed out (or is a gap), unless space_full_.
  offset_t frontier_ = 0;
  bool space_full_ = false;
  using gap_map = std::pmr::map<offset_t, offset_t>;
  using gap_set = std::pmr::set<std::pair<offset_t, offset_t>>;
  gap_map gaps_;       // offset -> size, cancelled reservations
  gap_set gap_sizes_;  // (size, offset) of the same gaps
  offset_t pending_bytes_ = 0;
  std::size_t pending_spans_ = 0;
  // At least one spare node per index and pending span, so cancel() never allocates. A node
  // handle names an allocator but takes none when constructed: the wrapper keeps the vector
  // from constructing its elements with one.
  template <class Handle>
  struct spare {
    Handle handle;
  };
  detail::meta_vector<spare<gap_map::node_type>> spare_gaps_;
  detail::meta_vector<spare<gap_set::node_type>> spare_gap_sizes_;
  void keep_spare_gap_nodes();

  offset_t used_bytes_ = 0;
  offset_t free_bytes_ = 0;  // in the indexes (not the cache)
  std::size_t free_ranges_ = 0;
  std::size_t used_ranges_ = 0;

  offset_t class_limit_ = 0;
  struct class_list {
    std::uint32_t head = no_index;  // the last cached range
    std::uint32_t count = 0;
  };
  detail::meta_vector<class_list> classes_;  // per size class (empty until make_indexes())

  // The size bins: 8 per doubling of the size in granules (exact below 8 granules); a bin's
  // free ranges are a doubly linked list through their nodes' link (next) and cprev.
  static constexpr unsigned bin_count = 496;      // up to 2^64 granules
  detail::meta_vector<std::uint32_t> bin_heads_;  // empty until make_indexes()
  std::uint64_t bin_groups_ = 0;                  // bit k: bin_masks_[k] is not 0
  std::uint8_t bin_masks_[bin_count / 8] = {};    // bit j of k: bin 8k + j is not empty
  offset_t cached_bytes_ = 0;
  std::size_t cached_ranges_ = 0;
  std::uint32_t wild_ = no_index;  // the wilderness: a free range greedy carves from the front
};

}  // namespace bufpool

#pragma GCC visibility pop
