// SPDX-License-Identifier: MIT
// bufpool:pool — the buffer pool: regions, expansion, slices, guards, handles and closing.
module;
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

// AddressSanitizer builds poison the free ranges of host-memory regions (see poison_*).
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUFPOOL_ASAN 1
#endif
#endif
#if !defined(BUFPOOL_ASAN) && defined(__SANITIZE_ADDRESS__)
#define BUFPOOL_ASAN 1
#endif
#ifdef BUFPOOL_ASAN
#include <sanitizer/asan_interface.h>
#define BUFPOOL_POISONING 1
#else
#define BUFPOOL_POISONING 0
#endif
// Checked builds: debug builds, or any build with BUFPOOL_CHECKED defined (the CMake
// option of the same name; the asan preset turns it on).
#if !defined(NDEBUG) || defined(BUFPOOL_CHECKED)
#define BUFPOOL_CHECKED_BUILD 1
#else
#define BUFPOOL_CHECKED_BUILD 0
#endif
export module bufpool:pool;

import :contracts;
import :engine;
import :errors;
import :options;

/// The core library (`import bufpool;`): the offset engine, buffer pools with RAII slices and
/// guards, their options, error codes and contract checks.
export namespace bufpool {

/// True in checked builds (debug, or BUFPOOL_CHECKED): besides the contract checks every
/// build makes, a borrowed slice that outlives its pool finds out (pool_is_alive() false,
/// pool_gone errors, destruction does nothing) instead of touching freed memory.
inline constexpr bool checked_build = BUFPOOL_CHECKED_BUILD != 0;

/// The default `extra` of a region: nothing, and it takes no space.
struct no_extra {
  /// Always true: there is nothing to compare.
  friend constexpr bool operator==(no_extra, no_extra) noexcept = default;
};

/// What the pool knows about one initialized region; handed to a handle when it closes.
template <offset_integer Int, class Extra>
struct mmap_entry {
  Int pool_offset = 0;                  ///< First offset of the region in the pool's offset space.
  Int size = 0;                         ///< Bytes in the region.
  std::byte* pointer = nullptr;         ///< The memory given to initialize().
  [[no_unique_address]] Extra extra{};  ///< The user's value given to initialize().
};

/// Every initialized region of a pool, in the order they were initialized.
template <offset_integer Int, class Extra>
using mmap_entries = std::vector<mmap_entry<Int, Extra>>;

/// A handle frees a pool's regions: `close(entries)`, and optionally a faster `close_all`
/// used when the pool is destroyed.
template <class H, class Int, class Extra>
concept pool_handle =
    std::movable<H> && requires(H& h, const mmap_entries<Int, Extra>& e) { h.close(e); };

/// A handle that can also add regions: `grow(pool, min_bytes)` reserves offsets in `pool`,
/// provides memory for them and initializes the region, returning its id or the system's
/// error. Used by buffer_pool::grow() and by the `auto_expand` option.
template <class H, class Pool>
concept growing_handle = requires(H& h, Pool& pool, std::uint64_t n) {
  { h.grow(pool, n) } -> std::same_as<std::expected<std::uint32_t, std::error_code>>;
};

/// The handle of a pool that frees nothing itself (the user owns the regions' memory).
struct no_handle {
  /// Does nothing: the user frees the regions' memory.
  template <class Entries>
  void close(const Entries&) noexcept {}
};

/// A guard says a slice's memory may still be in use outside this program's control
/// (an in-flight I/O or DMA). `try_release()` returns true once it is safe to reuse.
template <class G>
concept slice_guard = std::move_constructible<G> && requires(G& g) {
  { g.try_release() } -> std::convertible_to<bool>;
};

/// The guard type of slices that carry none.
struct no_guard {
  /// Always true: nothing holds the range.
  constexpr bool try_release() noexcept { return true; }
};

/// A lock that does nothing: for pools used by one thread only (`local_buffer_pool`).
struct null_mutex {
  /// Does nothing.
  constexpr void lock() noexcept {}
  /// Does nothing.
  constexpr void unlock() noexcept {}
  /// Always succeeds.
  constexpr bool try_lock() noexcept { return true; }
};

/// The default lock of `buffer_pool`: one atomic word. An uncontended lock() and unlock()
/// are one atomic exchange each (a std::mutex costs about twice that); a contended lock()
/// spins for a short while (with the CPU's spin-wait hint) before it sleeps in
/// std::atomic::wait. The pool's critical sections are short and constant (a slab slot is a
/// few dozen instructions), so the holder is usually done before a sleep would even start.
// (In a module, a member function defined in its class is not implicitly inline: `inline`
// lets the importers inline lock() and unlock() instead of calling them.)
class adaptive_mutex {
 public:
  /// Spins up to 1000 times while the lock is held, then sleeps until it is released.
  inline void lock() noexcept {
    std::uint32_t seen = free;
    if (!state_.compare_exchange_strong(seen, held, std::memory_order_acquire,
                                        std::memory_order_relaxed)) [[unlikely]]
      wait_for_lock();
  }
  /// Releases the lock, waking one sleeper if there may be any.
  inline void unlock() noexcept {
    if (state_.exchange(free, std::memory_order_release) == contended) [[unlikely]]
      state_.notify_one();
  }
  /// Takes the lock if it is free.
  inline bool try_lock() noexcept {
    std::uint32_t seen = free;
    return state_.compare_exchange_strong(seen, held, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }

 private:
  static constexpr std::uint32_t free = 0;
  static constexpr std::uint32_t held = 1;
  static constexpr std::uint32_t contended = 2;  // held, and a thread may sleep on it
  // Out of line, so that an uncontended lock() is a few instructions where it is used.
  [[gnu::noinline]] void wait_for_lock() noexcept {
    std::uint32_t seen = free;
    for (int i = 0; i < 1000; ++i) {
      pause();
      seen = state_.load(std::memory_order_relaxed);
      if (seen == free && state_.compare_exchange_weak(seen, held, std::memory_order_acquire,
                                                       std::memory_order_relaxed))
        return;
    }
    // From here on the word says "held, maybe with sleepers", so unlock() wakes one.
    seen = state_.exchange(contended, std::memory_order_acquire);
    while (seen != free) {
      state_.wait(contended, std::memory_order_relaxed);
      seen = state_.exchange(contended, std::memory_order_acquire);
    }
  }
  static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
  alignas(64) std::atomic<std::uint32_t> state_{free};  // a cache line of its own
};

/// What a region's memory is, for AddressSanitizer builds: the pool poisons the free ranges
/// of host memory (a use after reclaim, or an overflow into a free neighbour, is reported)
/// and never touches the shadow of opaque memory.
enum class region_memory : std::uint8_t {
  host,    ///< Ordinary memory of this process (the default).
  opaque,  ///< Device, shared or borrowed memory that the pool must leave alone.
};

/// How a slice refers to its pool.
enum class pool_ref : std::uint8_t {
  none,      ///< An empty (moved-from) slice.
  borrowed,  ///< A plain pointer: the pool must outlive the slice (checked at destruction).
  shared,    ///< A std::shared_ptr keeps the pool alive.
  weak,      ///< A std::weak_ptr: the slice notices when the pool is gone.
};

/// Statistics of a whole pool.
struct pool_stats {
  std::uint64_t used_bytes = 0;  ///< Capacity of live slices, parked ones included.
  std::uint64_t free_bytes = 0;  ///< Free bytes in initialized regions.
  /// Free slots of slabs (options `slabs`): free, but only for requests of their size
  /// class. used_bytes + free_bytes + spare_bytes is the bytes of all initialized regions.
  std::uint64_t spare_bytes = 0;
  std::uint64_t pending_bytes = 0;  ///< Reserved by expansions not yet initialized.
  std::uint64_t largest_free = 0;   ///< The largest free range.
  std::size_t free_ranges = 0;      ///< Number of free ranges.
  std::size_t live_slices = 0;      ///< Used ranges, parked ones included.
  std::size_t guarded_slices = 0;   ///< Guarded slices, parked ones included.
  std::size_t parked_slices = 0;    ///< Destroyed while guarded, waiting for their guard.
  std::size_t regions = 0;          ///< Number of initialized regions.
};

/// An error that hands a slice back (reclaim of a guarded slice).
template <class Slice>
struct reclaim_error {
  errc code;    ///< Why reclaim() refused: in_use (the slice is guarded).
  Slice slice;  ///< The slice, unchanged.
};

/// An error that hands a rejected guard back.
template <class Guard>
struct guard_error {
  errc code;    ///< Why: already_guarded or pool_gone.
  Guard guard;  ///< The guard that was not attached.
};

/// An error from the by-value with_guard: the slice and the rejected guard come back.
template <class Slice, class Guard>
struct with_guard_error {
  errc code;    ///< Why: already_guarded, pool_gone or invalid_argument (empty slice).
  Slice slice;  ///< The slice, unchanged.
  Guard guard;  ///< The guard that was not attached.
};

/// A range acquired without an owning slice (acquire_raw): for adapters and C-style code.
/// The caller gives it back with release_raw(offset) or release_raw(pointer).
template <offset_integer Int>
struct raw_range {
  Int offset;          ///< First offset (a multiple of the alignment).
  Int size;            ///< Bytes requested.
  Int capacity;        ///< Bytes reserved (>= size).
  std::byte* pointer;  ///< The region's memory at `offset`.
};

/// The state of a range in a pool_map.
enum class range_state : std::uint8_t {
  free,     ///< Available.
  used,     ///< A live slice or raw range.
  guarded,  ///< A live slice with a guard (I/O in flight).
  parked,   ///< Destroyed while guarded: waits for its guard (collect()).
  spare,    ///< Free slots of a slab: only for requests of the slab's size class.
};

/// One range of a region in a pool_map.
struct map_range {
  std::uint64_t offset = 0;               ///< First offset of the range.
  std::uint64_t size = 0;                 ///< Bytes in the range.
  range_state state = range_state::free;  ///< What the range holds.
  /// Equal when every field is.
  friend bool operator==(const map_range&, const map_range&) = default;
};

/// One region in a pool_map, its ranges in offset order.
struct map_region {
  std::uint32_t id = 0;           ///< Region id (initialization order).
  std::uint64_t offset = 0;       ///< First offset of the region.
  std::uint64_t size = 0;         ///< Bytes in the region.
  std::vector<map_range> ranges;  ///< Its ranges, covering the region.
  /// Equal when every field is, ranges included.
  friend bool operator==(const map_region&, const map_region&) = default;
};

/// A span reserved by begin_expand() and not yet initialized.
struct map_span {
  std::uint64_t offset = 0;  ///< First offset of the span.
  std::uint64_t size = 0;    ///< Bytes in the span.
  /// Equal when offset and size are.
  friend bool operator==(const map_span&, const map_span&) = default;
};

/// A snapshot of a pool (buffer_pool::map()): what to_json() and to_svg() show.
struct pool_map {
  pool_stats stats;                 ///< The pool's statistics (buffer_pool::stats()).
  std::vector<map_region> regions;  ///< Every initialized region, by id.
  std::vector<map_span> pending;    ///< Pending expansions, in offset order.
};

/// The map as one JSON object: {"stats": {...}, "regions": [{"id", "offset", "size",
/// "ranges": [{"offset", "size", "state"}]}], "pending": [{"offset", "size"}]}, where state
/// is "free", "used", "guarded", "parked" or "spare". from_json() reads it back.
[[nodiscard]] std::string to_json(const pool_map& map);

/// Reads what to_json() wrote; invalid_argument (with nothing read) if it is not that.
[[nodiscard]] std::expected<pool_map, errc> from_json(std::string_view json);

/// The map as an SVG picture: one bar per region (and per pending span), all drawn to one
/// scale (bytes per pixel), ranges coloured by state, with a legend and the statistics.
/// A range too small to see at that scale is still drawn one pixel wide.
[[nodiscard]] std::string to_svg(const pool_map& map);

/// Why try_close() refused, with the counts that stood in the way.
struct close_error {
  errc code;                       ///< in_use or pool_closed
  std::size_t live_slices = 0;     ///< including parked ones
  std::size_t guarded_slices = 0;  ///< including parked ones
};

template <offset_integer Int, class Extra, class Handle, class Mutex>
class buffer_pool;

template <class Pool>
class expansion_handle;

template <class Pool, class Guard>
class basic_slice;

/// What try_close() hands back: the handle (if the pool had one) and every region.
template <offset_integer Int, class Extra, class Handle>
struct closed_pool {
  std::optional<Handle> handle;      ///< The pool's handle; empty if it had none.
  mmap_entries<Int, Extra> entries;  ///< Every region, in initialization order, to free.
};

namespace detail {

template <offset_integer Int, class Extra>
struct region_info {
  Int offset;
  Int size;
  std::byte* base;
  [[no_unique_address]] Extra extra;
  // The addresses [host_begin, host_end) are ordinary host memory the pool may poison in
  // AddressSanitizer builds; the rest of the region is never poisoned.
  std::uintptr_t host_begin = 0;
  std::uintptr_t host_end = 0;
};

// A guard the pool keeps for a slice destroyed while guarded.
struct parked_guard {
  virtual ~parked_guard() = default;
  virtual bool try_release() = 0;
};

template <class G>
struct parked_guard_of final : parked_guard {
  explicit parked_guard_of(G&& g) : guard(std::move(g)) {}
  bool try_release() override { return static_cast<bool>(guard.try_release()); }
  G guard;
};

struct parked_range {
  std::uint32_t node;
  std::unique_ptr<parked_guard> guard;
};

// Offset -> engine node of the live raw ranges (the size and alignment they were acquired
// with are kept with the node, engine::set_tag): open addressing with linear probing and
// backward-shift deletion, so lookups and erases are O(1) expected and nothing is
// allocated except when the table grows (at half load). 16 bytes per cell.
class offset_map {
 public:
  void insert(std::uint64_t key, std::uint32_t node);
  /// Room for `n` more entries, so that inserting them cannot throw.
  void reserve(std::size_t n);
  /// The node of `key`, or no_index.
  [[nodiscard]] std::uint32_t find(std::uint64_t key) const noexcept;
  bool erase(std::uint64_t key) noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  template <class F>
  void for_each(F&& f) const {
    for (const cell& c : cells_)
      if (c.node != no_index) f(c.key, c.node);
  }

 private:
  struct cell {
    std::uint64_t key = 0;
    std::uint32_t node = no_index;
  };
  [[nodiscard]] std::size_t home(std::uint64_t key) const noexcept;
  void grow();
  std::vector<cell> cells_;  // size a power of two
  std::size_t count_ = 0;
};

// The pool's slabs (options `slabs`): greedy raw ranges of up to 64 KiB are slots of spans,
// engine ranges of 4 .. 256 KiB (16 slots of up to 4 KiB, at least 4 KiB; 4 to 6 larger
// slots) cut into slots of one size class.
// Everything about a slot lives out of band: a span's free-slot bitmap (with a summary word,
// so the lowest free slot is two bit scans away) and per slot the size and alignment it was
// acquired with. A per-region table at 4 KiB granularity finds a slot's span from its offset
// in O(1), so a release reads a table cell, the span record and one bitmap word: no hash,
// no engine node.
//
// Spans need not start on a cell: each table cell (4 KiB of offsets) names the span that
// covers its first offset and the span that starts inside it, at most one of each.
// A release by pointer first asks a direct-mapped table of hints (one per 4 KiB page of the
// spans' peak bytes, 1024 to 65536), by 4 KiB page of addresses, for the span last found
// there: a hint is checked against the span record (a dropped span covers nothing), so it is
// never wrong, only missing, and a hit skips the search of the region by address and the
// offset table.
// Each size class lists its spans that have a free slot; a span whose slots are all free
// goes back to the engine unless it is the one empty span its class keeps.
class slabs {
 public:
  static constexpr std::uint64_t smallest_span = std::uint64_t{1} << 12;
  static constexpr std::uint64_t largest_small_slot = 4096;  // 16 slots per span up to here
  static constexpr std::uint64_t largest_slot = 65536;
  static constexpr std::uint64_t largest_alignment = 4096;  // spans are aligned to this
  static constexpr unsigned class_count = 64;
  static constexpr unsigned no_class = ~0U;

  // The class of a request of `size` bytes (>= 1) at `alignment` (a power of two, at least
  // the pool's granule): the smallest slot size that holds it and is a multiple of the
  // alignment (slots are multiples of 8 bytes: 8 .. 256, then 4 per doubling to 65536),
  // or no_class.
  [[nodiscard]] static unsigned class_of(std::uint64_t size, std::uint64_t alignment) noexcept;
  [[nodiscard]] static constexpr std::uint64_t slot_size(unsigned c) noexcept;
  // The bytes of a span of class c, a power of two: 16 slots of up to 4 KiB (at least 4
  // KiB), else 4 to 6 slots.
  [[nodiscard]] static inline std::uint64_t span_size(unsigned c) noexcept {
    const std::uint64_t slot = slot_size(c);
    return slot <= largest_small_slot ? std::max(smallest_span, std::bit_ceil(16 * slot))
                                      : std::bit_ceil(4 * slot);
  }

  struct slot {
    std::uint64_t offset;
    std::uint64_t capacity;
    std::uint32_t region;
    std::byte* address;  // the slot's memory
  };
  // A free slot of class c for `size` bytes at alignment 2^align_log2 (recorded for the
  // release's checks), or nothing if no span of the class has one. O(1).
  [[nodiscard]] std::optional<slot> take(unsigned c, std::uint64_t size,
                                         unsigned align_log2) noexcept;
  // Makes engine range `node`, [offset, offset + bytes) with bytes >= span_size(c) in region
  // `region` ([region_offset, region_offset + region_size)), whose memory starts at
  // `address`, a span of class c with every slot free. Allocates first: if it throws,
  // nothing changed.
  void add_span(unsigned c, std::uint64_t offset, std::uint64_t bytes, std::uint32_t node,
                std::uint32_t region, std::uint64_t region_offset, std::uint64_t region_size,
                std::byte* address);
  // The span containing `offset` (in region `region`, or no_index), or no_index. O(1).
  [[nodiscard]] std::uint32_t find(std::uint64_t offset, std::uint32_t region) const noexcept;
  // Notes span s, found by find(), as the hint for `address` (memory of the span).
  inline void note_hint(std::uintptr_t address, std::uint32_t s) noexcept {
    hints_[hint_of(address)] = {address >> hint_page_log2, s};
  }
  struct place {
    std::uint32_t span;
    std::uint32_t region;
    std::uint64_t offset;
  };
  // The span holding the memory at `address`, its region and the offset there, if the
  // hint of its page names that span; else nothing (ask find()). O(1).
  [[nodiscard]] std::optional<place> find_hinted(std::uintptr_t address) const noexcept;

  enum class verdict : std::uint8_t { ok, not_live, size, alignment };

  // Frees the slot at `offset` of span s, after checking that it starts a live slot and, if
  // `size` is not null, that size and alignment are those it was acquired with (nothing
  // changes otherwise). If the span becomes empty and its class already keeps one, the
  // span is dropped and `dropped` receives its engine node (else no_index).
  verdict give_back(std::uint32_t s, std::uint64_t offset, const std::uint64_t* size,
                    std::uint64_t alignment, std::uint32_t& dropped) noexcept;
  // The live slot at `offset` of span s: its recorded size and its capacity, or nothing.
  [[nodiscard]] std::optional<std::pair<std::uint64_t, std::uint64_t>> live_slot(
      std::uint32_t s, std::uint64_t offset) const noexcept;
  // Records a new size (at most the slot's capacity) for the live slot at `offset`.
  void set_size(std::uint32_t s, std::uint64_t offset, std::uint64_t size) noexcept;
  // Drops every empty span, calling give(node) for each (trim). O(spans).
  template <class F>
  void drop_empty(F&& give) noexcept {
    for (std::uint32_t s = 0; s < spans_.size(); ++s)
      if (spans_[s].slots != 0 && spans_[s].live == 0) give(drop(s));
  }
  // Calls f(offset, size, live) for the runs of span s in offset order: each live slot on
  // its own, free slots (and the tail no slot fits) merged.
  template <class F>
  void for_each_run(std::uint32_t s, F&& f) const {
    const span& x = spans_[s];
    std::uint64_t run = 0;  // bytes of the current free run
    for (std::uint32_t i = 0; i < x.slots; ++i) {
      const std::uint64_t at = x.offset + std::uint64_t{i} * x.slot;
      if (is_free(x, i)) {
        run += x.slot;
        continue;
      }
      if (run != 0) f(at - run, run, false);
      run = 0;
      f(at, std::uint64_t{x.slot}, true);
    }
    run += x.bytes - std::uint64_t{x.slots} * x.slot;
    if (run != 0) f(x.offset + x.bytes - run, run, false);
  }

  struct totals {
    std::uint64_t span_bytes = 0;  // bytes of the engine ranges the spans hold
    std::uint64_t live_bytes = 0;  // capacities of the live slots
    std::size_t spans = 0;
    std::size_t live_slots = 0;
  };
  // For the whole pool in O(1), or for one region in O(spans).
  [[nodiscard]] inline totals all() const noexcept { return totals_; }
  [[nodiscard]] totals of_region(std::uint32_t region) const noexcept;
  // Checks the spans against themselves and the engine's ranges. O(spans + slots).
  [[nodiscard]] std::expected<void, std::string> validate(const engine& e) const;

 private:
  struct span {
    std::uint64_t offset = 0;
    std::uint64_t bytes = 0;         // 0 while the record is unused
    std::byte* address = nullptr;    // the span's memory
    std::uint64_t summary = 0;       // bit w: free[w] has a free slot
    std::uint64_t* free = nullptr;   // bit i: slot i is free (records: see take_records())
    std::uint16_t* sizes = nullptr;  // per live slot: see set_record()
    std::uint32_t node = no_index;
    std::uint32_t region = no_index;
    std::uint32_t next = no_index;  // the class's list of spans with a free slot
    std::uint32_t prev = no_index;
    std::uint32_t slot = 0;     // slot size
    std::uint64_t inverse = 0;  // ceil(2^40 / slot): slot index = (delta * inverse) >> 40
    std::uint16_t slots = 0;    // 0 while the record is unused
    std::uint16_t live = 0;
    std::uint8_t cls = 0;
  };
  struct cell {
    std::uint32_t covering = no_index;  // the span covering the cell's first offset
    std::uint32_t starting = no_index;  // the span starting after it, inside the cell
  };
  static constexpr unsigned cell_log2 = 12;
  static constexpr unsigned chunk_log2 = 10;  // cells per chunk: 8 KiB, 4 MiB of offsets
  struct table {
    std::uint64_t first_cell = 0;
    std::vector<std::unique_ptr<cell[]>> chunks;  // made when a span first needs them
  };
  [[nodiscard]] static inline bool is_free(const span& x, std::uint32_t i) noexcept {
    return (x.free[i >> 6] >> (i & 63) & 1) != 0;
  }
  // The slot of span x at `delta` bytes from its start (exact for every delta below 2^24:
  // delta * (inverse * slot - 2^40) < 2^40), or x.slots if `delta` does not start one.
  [[nodiscard]] static inline std::uint32_t slot_index(const span& x,
                                                       std::uint64_t delta) noexcept {
    const auto i = static_cast<std::uint32_t>((delta * x.inverse) >> 40);
    return i < x.slots && std::uint64_t{i} * x.slot == delta ? i : x.slots;
  }
  // A live slot's record of the size and alignment it was acquired with: one uint16 for a
  // slot of up to 4 KiB (size - 1 | log2(alignment) << 12), two for a larger one.
  static inline void set_record(span& x, std::uint32_t i, std::uint64_t size,
                                unsigned align_log2) noexcept {
    if (x.slot <= largest_small_slot) {
      x.sizes[i] = static_cast<std::uint16_t>((size - 1) | std::uint64_t{align_log2} << 12);
    } else {
      x.sizes[2 * i] = static_cast<std::uint16_t>(size - 1);
      x.sizes[2 * i + 1] = static_cast<std::uint16_t>(align_log2);
    }
  }
  [[nodiscard]] static inline std::uint64_t recorded_size(const span& x, std::uint32_t i) noexcept {
    return x.slot <= largest_small_slot ? std::uint64_t{x.sizes[i] & 0xfffU} + 1
                                        : std::uint64_t{x.sizes[2 * i]} + 1;
  }
  [[nodiscard]] static inline std::uint64_t recorded_alignment(const span& x,
                                                               std::uint32_t i) noexcept {
    return std::uint64_t{1} << (x.slot <= largest_small_slot ? x.sizes[i] >> 12
                                                             : x.sizes[2 * i + 1]);
  }
  struct hint {
    std::uintptr_t page = ~std::uintptr_t{0};  // address >> hint_page_log2: none yet
    std::uint32_t span = no_index;
  };
  static constexpr unsigned hint_page_log2 = 12;
  // One hint per 4 KiB page of the spans' peak bytes, a power of two: 1024 (16 KiB, made with
  // the first span) to 65536 (1 MiB, for 256 MiB of spans).
  static constexpr unsigned hint_min_log2 = 10;
  static constexpr unsigned hint_max_log2 = 16;
  [[nodiscard]] inline std::size_t hint_of(std::uintptr_t address) const noexcept {
    return (address >> hint_page_log2) & hint_mask_;
  }
  // Makes the hint table cover `span_bytes` of spans (see hint_min_log2). Allocates; when
  // it grows, the old hints are dropped, as they only save searches.
  void cover_with_hints(std::uint64_t span_bytes);
  [[nodiscard]] cell* cell_of(std::uint32_t region, std::uint64_t offset) noexcept;
  [[nodiscard]] static std::size_t record_words(unsigned c) noexcept;
  [[nodiscard]] std::uint64_t* take_records(unsigned c);
  void point_table(std::uint32_t s, std::uint32_t value) noexcept;
  void link(std::uint32_t s) noexcept;
  void unlink(std::uint32_t s) noexcept;
  std::uint32_t drop(std::uint32_t s) noexcept;

  std::vector<span> spans_;
  std::vector<std::uint32_t> unused_;  // span records to reuse
  std::uint32_t partial_[class_count];
  std::uint8_t empty_[class_count] = {};  // empty spans kept per class (at most 1)
  std::vector<table> tables_;             // by region id
  totals totals_;
  // The spans' bitmaps and slot records live in chunks that are freed only with the slabs
  // (so that destroying them is O(chunks), not O(spans)); a dropped span's records wait in
  // its class's list for the next span of the class.
  struct chunk_delete {
    void operator()(std::byte* p) const noexcept { ::operator delete(p); }
  };
  std::vector<std::unique_ptr<std::byte, chunk_delete>> chunks_;
  std::byte* chunk_next_ = nullptr;
  std::size_t chunk_left_ = 0;
  std::uint64_t* spare_records_[class_count] = {};
  std::unique_ptr<hint[]> hints_;  // null until the first span
  std::size_t hint_mask_ = 0;      // hints - 1

 public:
  slabs() noexcept { std::fill(std::begin(partial_), std::end(partial_), no_index); }
};

// Slot sizes: 8 .. 256 in steps of 8 (classes 0 .. 31: small objects, the most numerous,
// waste under 8 bytes each), then 4 per doubling: 320, 384, 448, 512, 640, ... 4096
// (classes 32 .. 47), ... 65536 (class 63), so a slot is under 25% larger than a request
// above 256 bytes. The paths every acquisition and release take are defined here, inline.
constexpr std::uint64_t slabs::slot_size(unsigned c) noexcept {
  if (c < 32) return std::uint64_t{8} * (c + 1);
  const unsigned k = c - 32;
  return std::uint64_t{5 + k % 4} << (6 + k / 4);
}

inline unsigned slabs::class_of(std::uint64_t size, std::uint64_t alignment) noexcept {
  if (size > largest_slot || alignment > largest_alignment) return no_class;
  if (size > largest_small_slot) {  // size in (2^(b-1), 2^b]: 4 classes per doubling
    const auto b = static_cast<unsigned>(std::bit_width(size - 1));
    unsigned c = 32 + (b - 9) * 4 + static_cast<unsigned>((size - 1) >> (b - 3)) - 4;
    while (c < class_count && (slot_size(c) & (alignment - 1)) != 0) ++c;
    return c < class_count ? c : no_class;
  }
  // The smallest class that holds (size - 1) / 8 + 1 granules of 8 bytes.
  static constexpr auto by_granules = [] {
    std::array<std::uint8_t, largest_small_slot / 8> t{};
    unsigned c = 0;
    for (std::uint64_t g = 0; g < t.size(); ++g) {
      while (slot_size(c) < 8 * (g + 1)) ++c;
      t[g] = static_cast<std::uint8_t>(c);
    }
    return t;
  }();
  unsigned c = by_granules[(size - 1) >> 3];
  // Every slot size is a multiple of 8: only a larger alignment may need a larger class.
  if (alignment > 8)
    while (c < class_count && (slot_size(c) & (alignment - 1)) != 0) ++c;
  return c < class_count ? c : no_class;
}

[[gnu::always_inline]] inline std::optional<slabs::slot> slabs::take(unsigned c, std::uint64_t size,
                                                                     unsigned align_log2) noexcept {
  const std::uint32_t s = partial_[c];
  if (s == no_index) return std::nullopt;
  span& x = spans_[s];
  const auto w = static_cast<unsigned>(std::countr_zero(x.summary));
  std::uint64_t& word = x.free[w];
  const std::uint32_t i = w * 64 + static_cast<unsigned>(std::countr_zero(word));
  word &= word - 1;
  if (word == 0) x.summary &= ~(std::uint64_t{1} << w);
  set_record(x, i, size, align_log2);
  if (x.live++ == 0) --empty_[c];
  if (x.live == x.slots) unlink(s);
  totals_.live_bytes += x.slot;
  ++totals_.live_slots;
  return slot{x.offset + std::uint64_t{i} * x.slot, x.slot, x.region,
              x.address + std::size_t{i} * x.slot};
}

inline std::uint32_t slabs::find(std::uint64_t offset, std::uint32_t region) const noexcept {
  if (region >= tables_.size()) return no_index;
  const table& t = tables_[region];
  const std::uint64_t k = (offset >> cell_log2) - t.first_cell;
  if ((k >> chunk_log2) >= t.chunks.size()) return no_index;  // also: no span in the region
  const cell* chunk = t.chunks[k >> chunk_log2].get();
  if (chunk == nullptr) return no_index;
  const cell& c = chunk[k & ((1U << chunk_log2) - 1)];
  if (c.starting != no_index && offset >= spans_[c.starting].offset) return c.starting;
  if (c.covering != no_index && offset - spans_[c.covering].offset < spans_[c.covering].bytes)
    return c.covering;
  return no_index;
}

[[gnu::always_inline]] inline std::optional<slabs::place> slabs::find_hinted(
    std::uintptr_t address) const noexcept {
  if (!hints_) return std::nullopt;
  const hint& h = hints_[hint_of(address)];
  if (h.page != address >> hint_page_log2) return std::nullopt;
  const span& x = spans_[h.span];
  const std::uintptr_t delta = address - reinterpret_cast<std::uintptr_t>(x.address);
  if (delta >= x.bytes) return std::nullopt;
  return place{h.span, x.region, x.offset + delta};
}

[[gnu::always_inline]] inline slabs::verdict slabs::give_back(std::uint32_t s, std::uint64_t offset,
                                                              const std::uint64_t* size,
                                                              std::uint64_t alignment,
                                                              std::uint32_t& dropped) noexcept {
  dropped = no_index;
  span& x = spans_[s];
  const std::uint32_t i = slot_index(x, offset - x.offset);
  if (i == x.slots || is_free(x, i)) return verdict::not_live;
  if (size != nullptr) {
    if (*size != recorded_size(x, i)) return verdict::size;
    if (alignment != recorded_alignment(x, i)) return verdict::alignment;
  }
  x.free[i >> 6] |= std::uint64_t{1} << (i & 63);
  x.summary |= std::uint64_t{1} << (i >> 6);
  totals_.live_bytes -= x.slot;
  --totals_.live_slots;
  if (x.live-- == x.slots) link(s);
  if (x.live == 0 && ++empty_[x.cls] > 1) dropped = drop(s);
  return verdict::ok;
}

// Puts span s first in its class's list (the next take() uses it).
[[gnu::always_inline]] inline void slabs::link(std::uint32_t s) noexcept {
  span& x = spans_[s];
  x.prev = no_index;
  x.next = partial_[x.cls];
  if (x.next != no_index) spans_[x.next].prev = s;
  partial_[x.cls] = s;
}

[[gnu::always_inline]] inline void slabs::unlink(std::uint32_t s) noexcept {
  span& x = spans_[s];
  if (x.prev != no_index)
    spans_[x.prev].next = x.next;
  else
    partial_[x.cls] = x.next;
  if (x.next != no_index) spans_[x.next].prev = x.prev;
  x.next = x.prev = no_index;
}

// Whether heavy_barrier() works in this process (Linux membarrier, registered on first
// call); false in ThreadSanitizer builds, which cannot see the order it makes.
bool heavy_barrier_available() noexcept;
// Makes every running thread of the process pass a full memory barrier before it returns
// (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)). Only when heavy_barrier_available().
void heavy_barrier() noexcept;

// The lock of a thread cache, biased towards the thread that holds the cache (its owner):
// the owner enters with a store and a load, no atomic read-modify-write, so its
// acquisitions and releases do not wait for its own pending stores to drain. Any other
// thread (a release of one of the cache's slots elsewhere, an operation over the whole
// pool) takes the mutex, revokes the owner's fast path, makes a heavy barrier and waits
// for the owner to leave. This is Dekker's exclusion with asymmetric fences: the CPU may
// reorder the owner's store of owner_in_ after its load of revoked_, but the heavy barrier
// orders every running thread between the other thread's store of revoked_ and its load
// of owner_in_, so at least one of the two sees the other's store.
// A heavy barrier costs 0.3 us with no other thread running and 12 to 16 us with one (on
// the 2-CPU VM of the benchmarks), against about 7 ns an owner entry saves: once other
// threads have entered 64 times, and more than once per 4096 owner entries, the bias ends
// for good and the owner takes the mutex too, as every thread does where the heavy barrier
// is unavailable.
class cache_lock {
 public:
  cache_lock() noexcept : biased_(heavy_barrier_available()) {}

  // The owner. Returns whether it entered without the mutex (give it to owner_unlock()).
  [[gnu::always_inline]] inline bool owner_lock() noexcept {
    if (biased_.load(std::memory_order_relaxed)) [[likely]] {
      owner_in_.store(true, std::memory_order_relaxed);
      std::atomic_signal_fence(std::memory_order_seq_cst);  // the heavy barrier's other half
      if (!revoked_.load(std::memory_order_acquire)) [[likely]] {
        owner_entries_.store(owner_entries_.load(std::memory_order_relaxed) + 1,
                             std::memory_order_relaxed);
        return true;
      }
      owner_in_.store(false, std::memory_order_release);
    }
    mutex_.lock();
    return false;
  }
  [[gnu::always_inline]] inline void owner_unlock(bool fast) noexcept {
    if (fast)
      owner_in_.store(false, std::memory_order_release);
    else
      mutex_.unlock();
  }

  // Any other thread. Several caches can share one heavy barrier: begin_lock() each, one
  // heavy_barrier() if any of them returned true, then finish_lock() each.
  inline void lock() noexcept {
    if (begin_lock()) heavy_barrier();
    finish_lock();
  }
  inline void unlock() noexcept {
    revoked_.store(false, std::memory_order_release);
    mutex_.unlock();
  }
  // Takes the mutex and revokes the owner's fast path; true if a heavy barrier must follow.
  inline bool begin_lock() noexcept {
    mutex_.lock();
    if (!biased_.load(std::memory_order_relaxed)) return false;
    ++other_entries_;  // under the mutex
    if (other_entries_ > 64 &&
        other_entries_ * 4096 > owner_entries_.load(std::memory_order_relaxed))
      biased_.store(false, std::memory_order_relaxed);  // published by the barrier
    revoked_.store(true, std::memory_order_relaxed);
    return true;
  }
  // Waits until the owner is out of its fast path (after the heavy barrier).
  inline void finish_lock() noexcept {
    while (owner_in_.load(std::memory_order_acquire)) wait_for_owner();
  }

 private:
  [[gnu::noinline]] static void wait_for_owner() noexcept;

  adaptive_mutex mutex_;
  std::atomic<bool> biased_;
  std::atomic<bool> owner_in_{false};            // written by the owner only
  std::atomic<bool> revoked_{false};             // written under mutex_ only
  std::atomic<std::uint64_t> owner_entries_{0};  // written by the owner only
  std::uint64_t other_entries_ = 0;              // under mutex_
};

// The owner's side of a cache_lock, as a scope.
class owner_scope {
 public:
  [[gnu::always_inline]] inline explicit owner_scope(cache_lock& l) noexcept
      : lock_(l), fast_(l.owner_lock()) {}
  [[gnu::always_inline]] inline ~owner_scope() { lock_.owner_unlock(fast_); }
  owner_scope(const owner_scope&) = delete;
  owner_scope& operator=(const owner_scope&) = delete;

 private:
  cache_lock& lock_;
  bool fast_;
};

// Thread caches (options `thread_caches`): each thread that takes slots from a pool has
// slabs of its own there, behind a lock biased towards that thread (see cache_lock) that
// only the pool's operations over every slab ever contend for. The pool's part is in
// buffer_pool; these are the type-independent parts.
struct cache_base {
  cache_lock lock;        // taken before the pool's lock, never after
  bool attached = false;  // held by a live thread (else the next thread to come takes it)
};

// A pool's caches, shared with the threads that hold one of them, so that a thread that
// exits after the pool is gone finds out instead of touching it.
struct cache_registry_base {
  std::mutex mutex;        // attach, detach, operations over every cache, the pool's end
  bool pool_alive = true;  // false once the pool is destroyed
  std::uint64_t uid = 0;   // unique over the process's life, never 0
  cache_registry_base() = default;
  cache_registry_base(const cache_registry_base&) = delete;
  cache_registry_base& operator=(const cache_registry_base&) = delete;
  virtual ~cache_registry_base() = default;
  // The thread holding `cache` exits (mutex held, the pool alive): its empty slabs go back.
  virtual void detach(cache_base& cache) noexcept = 0;
};

inline std::atomic<std::uint64_t> next_registry_uid{1};

// The cache this thread used last, apart from the list below: trivially destructible and
// constant-initialized, so every acquisition and release reaches it without the check and
// call that a thread_local with a destructor costs on each use, and it stays readable
// while the thread's other thread_locals are destroyed.
struct last_cache {
  std::uint64_t uid = 0;  // its registry's uid (never 0)
  cache_base* cache = nullptr;
  bool exited = false;  // the list below is gone
};

inline constinit thread_local last_cache this_thread_last{};

// The caches this thread holds.
struct thread_caches_held {
  std::vector<std::pair<std::shared_ptr<cache_registry_base>, cache_base*>> held;
  thread_caches_held() = default;
  thread_caches_held(const thread_caches_held&) = delete;
  thread_caches_held& operator=(const thread_caches_held&) = delete;
  ~thread_caches_held() {
    this_thread_last = {0, nullptr, true};
    for (auto& [registry, cache] : held) {
      std::scoped_lock lock(registry->mutex);
      if (registry->pool_alive) registry->detach(*cache);
      cache->attached = false;
    }
  }
};

inline thread_local thread_caches_held this_thread_caches;

template <class H, class Entries>
concept has_close_all = requires(H& h, const Entries& e) { h.close_all(e); };

}  // namespace detail

/// A buffer pool: one space of offsets of type `Int`, backed by any number of
/// non-adjacent regions (each with a user `Extra` value), handing out RAII slices.
///
/// Thread safety: every member function may be called concurrently (with the default
/// `Mutex`); `local_buffer_pool` has no locking. The pool never reads or writes the
/// regions' memory.
///
/// Lifetime: the pool must not move (slices point to it). Destroying it while borrowed
/// slices are alive is a contract violation. Destroying it while any slice is guarded
/// frees nothing and reports the kept memory through the diagnostic handler; otherwise the
/// handle's `close_all` (or `close`) receives every region.
///
/// ```
/// bufpool::buffer_pool<> pool;
/// std::vector<std::byte> memory(1 << 20);
/// auto grow = pool.begin_expand(memory.size());
/// std::move(*grow).initialize(memory.data());
/// auto slice = pool.acquire(4096, 64, bufpool::optimal);  // 4 KiB at a 64-aligned offset
/// ```
template <offset_integer Int = std::uint32_t, class Extra = no_extra, class Handle = no_handle,
          class Mutex = adaptive_mutex>
class buffer_pool {
  static_assert(std::copy_constructible<Extra>, "a region's extra value must be copyable");
  static_assert(pool_handle<Handle, Int, Extra>,
                "Handle needs close(const mmap_entries<Int, Extra>&)");

 public:
  using integer = Int;                       ///< The offset integer.
  using mutex_type = Mutex;                  ///< The lock type (null_mutex: no locking).
  using extra_type = Extra;                  ///< The user's value kept with each region.
  using handle_type = Handle;                ///< What frees the regions' memory.
  using options_type = basic_options<Int>;   ///< The pool's options.
  using entry = mmap_entry<Int, Extra>;      ///< One initialized region.
  using entries = mmap_entries<Int, Extra>;  ///< What regions() returns and close() receives.
  using expansion = expansion_handle<buffer_pool>;  ///< What begin_expand() returns.
  /// A slice of this pool that can carry a guard of type `Guard`.
  template <class Guard = no_guard>
  using slice_type = basic_slice<buffer_pool, Guard>;
  using slice = basic_slice<buffer_pool, no_guard>;  ///< A slice that carries no guard.

  /// A pool with default options and no handle (the user frees the regions' memory).
  buffer_pool() : buffer_pool(options_type{}) {}

  /// A pool with the given options; invalid options are a contract violation.
  explicit buffer_pool(const options_type& options)
      : options_(checked(options)), engine_(limits_of(options_)) {
    if constexpr (checked_build) checked_id_ = detail::register_pool(this);
    if constexpr (can_cache) {
      if (options_.slabs && options_.thread_caches) {
        registry_ = std::make_shared<registry>();
        registry_->pool = this;
        registry_->uid = detail::next_registry_uid.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }

  /// A pool that owns `handle`, which frees the regions when the pool is destroyed.
  buffer_pool(const options_type& options, Handle handle) : buffer_pool(options) {
    handle_.emplace(std::move(handle));
  }

  buffer_pool(const buffer_pool&) = delete;
  buffer_pool& operator=(const buffer_pool&) = delete;

  ~buffer_pool() {
    if constexpr (checked_build) detail::unregister_pool(this);
    if (registry_ != nullptr) {  // threads that exit from now on leave the pool alone
      std::scoped_lock lock(registry_->mutex);
      registry_->pool_alive = false;
    }
    if (const std::size_t n = borrowed_.load(); n != 0) {
      const std::string rule = "borrowed slices outlive their pool: pool destroyed while " +
                               std::to_string(n) + " borrowed slice(s) are alive";
      detail::report_violation(rule.c_str());
    }
    detail::expects(engine_.stats().pending_bytes == 0,
                    "expansion handles must not outlive their pool: pool destroyed while an "
                    "expansion is pending");
    if (closed_) return;
    unpoison_all();
    if (const std::size_t g = guarded_.load(); g != 0) {
      const std::string msg = "pool destroyed while " + std::to_string(g) +
                              " slice(s) are guarded: its regions are not closed (memory kept)";
      detail::report_diagnostic(msg.c_str());
      return;
    }
    if (handle_) {
      const entries all = make_entries();
      if constexpr (detail::has_close_all<Handle, entries>)
        handle_->close_all(all);
      else
        handle_->close(all);
    }
  }

  /// The options in effect: the defaults if the given ones were invalid (and the violation
  /// handler returned).
  [[nodiscard]] const options_type& options() const noexcept { return options_; }

  /// Reserves the next `size` offsets for a new region and returns the handle that
  /// initializes it. The range is pending (invisible to acquire) until then, and is given
  /// back if the handle is destroyed uninitialized. The lock is not held while the caller
  /// allocates the backing memory.
  /// Errors: invalid_size (0), out_of_offset_space (no span of that size is left),
  /// pool_closed.
  [[nodiscard]] std::expected<expansion, errc> begin_expand(std::uint64_t size) {
    if (size > std::numeric_limits<Int>::max()) return std::unexpected(errc::out_of_offset_space);
    std::scoped_lock lock(mutex_);
    if (closed_) return std::unexpected(errc::pool_closed);
    auto offset = engine_.reserve(size);
    if (!offset) return std::unexpected(offset.error());
    return expansion(this, static_cast<Int>(*offset), static_cast<Int>(size));
  }

  /// Acquires a slice of `size` bytes whose offset is a multiple of `alignment` (raised to
  /// the minimum alignment), borrowing the pool (the pool must outlive it).
  ///
  /// Errors: invalid_size, invalid_alignment, alignment_too_big, too_large,
  /// out_of_memory (optimal: only when no free range can hold the aligned request),
  /// invalid_argument / occupied / out_of_range / arithmetic_overflow (fixed), pool_closed.
  /// Complexity: O(log n) in the number of free ranges, for every strategy and alignment.
  template <class Guard = no_guard>
  [[nodiscard]] std::expected<slice_type<Guard>, errc> acquire(std::uint64_t size,
                                                               std::uint64_t alignment = 1,
                                                               strategy how = optimal) {
    auto r = acquire_range(size, alignment, how);
    if (!r) return std::unexpected(r.error());
    borrowed_.fetch_add(1, std::memory_order_relaxed);
    return slice_type<Guard>(this, pool_ref::borrowed, {}, *r);
  }

  /// As acquire(), but the slice holds `pool` (a shared_ptr to this pool, possibly an
  /// aliasing one into an object that contains it) and keeps the pool alive.
  template <class Guard = no_guard>
  [[nodiscard]] static std::expected<slice_type<Guard>, errc> acquire_shared(
      const std::shared_ptr<buffer_pool>& pool, std::uint64_t size, std::uint64_t alignment = 1,
      strategy how = optimal) {
    auto r = pool->acquire_range(size, alignment, how);
    if (!r) return std::unexpected(r.error());
    return slice_type<Guard>(pool.get(), pool_ref::shared, pool, *r);
  }

  /// As acquire(), but the slice holds a weak reference: if the pool is destroyed first,
  /// the slice reports it (pool_is_alive()), refuses data access and frees nothing.
  template <class Guard = no_guard>
  [[nodiscard]] static std::expected<slice_type<Guard>, errc> acquire_weak(
      const std::shared_ptr<buffer_pool>& pool, std::uint64_t size, std::uint64_t alignment = 1,
      strategy how = optimal) {
    auto r = pool->acquire_range(size, alignment, how);
    if (!r) return std::unexpected(r.error());
    return slice_type<Guard>(pool.get(), pool_ref::weak, pool, *r);
  }

  /// Acquires a range without an owning slice, as acquire() does; the caller gives it back
  /// with release_raw(). Raw ranges count as live slices (try_close() refuses while any is
  /// alive); they do not outlive the pool (its destruction frees their memory with the
  /// rest). Same errors and complexity as acquire().
  [[nodiscard, gnu::always_inline]] std::expected<raw_range<Int>, errc> acquire_raw(
      std::uint64_t size, std::uint64_t alignment = 1, strategy how = optimal) {
    if (options_.slabs && how.kind == strategy_kind::greedy)
      if (auto slot = acquire_slot<false>(size, alignment)) return *slot;
    return acquire_raw_slow(size, alignment, how);
  }

  /// Gives back the raw range that starts at `offset`. O(1) expected, plus the release.
  /// An offset that does not start a live raw range of this pool (released twice, a
  /// slice's range, another pool's, inside a range) is a contract violation: nothing
  /// changes and the result is false if the handler returns.
  bool release_raw(std::uint64_t offset) noexcept { return release_raw_offset(offset, nullptr); }

  /// As release_raw(offset), and `size` and `alignment` must be those given to
  /// acquire_raw: a mismatch is a contract violation and nothing changes.
  bool release_raw(std::uint64_t offset, std::uint64_t size, std::uint64_t alignment) noexcept {
    const raw_request request{size, alignment};
    return release_raw_offset(offset, &request);
  }

  /// Gives back the raw range whose memory starts at `pointer`: its region is found by
  /// address in O(log regions), never by reading the memory. Same contract as above.
  [[gnu::always_inline]] bool release_raw(const void* pointer) noexcept {
    return release_raw_pointer(pointer, nullptr);
  }

  /// As release_raw(pointer), checking `size` and `alignment` as release_raw(offset, size,
  /// alignment) does.
  [[gnu::always_inline]] bool release_raw(const void* pointer, std::uint64_t size,
                                          std::uint64_t alignment) noexcept {
    const raw_request request{size, alignment};
    return release_raw_pointer(pointer, &request);
  }

  /// The live raw range whose memory starts at `pointer`, with the size it was acquired
  /// (or last resized) with. invalid_argument if there is none. O(log regions) + O(1).
  [[nodiscard]] std::expected<raw_range<Int>, errc> raw_at(const void* pointer) const {
    return with_all_locked([&]() -> std::expected<raw_range<Int>, errc> {
      const auto at = locate(pointer);
      if (!at) return std::unexpected(errc::invalid_argument);
      auto* data = const_cast<std::byte*>(static_cast<const std::byte*>(pointer));
      if (const auto slab = find_slab(at->offset, at->region)) {
        const auto live = slab->slabs->live_slot(slab->span, at->offset);
        if (!live) return std::unexpected(errc::invalid_argument);
        return raw_range<Int>{static_cast<Int>(at->offset), static_cast<Int>(live->first),
                              static_cast<Int>(live->second), data};
      }
      const std::uint32_t node = raw_.find(at->offset);
      if (node == no_index) return std::unexpected(errc::invalid_argument);
      return raw_range<Int>{static_cast<Int>(at->offset), static_cast<Int>(engine_.tag(node)),
                            static_cast<Int>(engine_.node_size(node)), data};
    });
  }

  /// Grows or shrinks the raw range at `offset` in place to `size` bytes (its offset and
  /// pointer stay): growing takes the start of the next range if that range is free and in
  /// the same region; shrinking gives the tail back. The range's recorded size becomes
  /// `size`. Returns the new capacity. Errors, with nothing changed: invalid_size,
  /// too_large, out_of_memory (no room after the range); an offset that does not start a
  /// live raw range is a contract violation (invalid_argument if the handler returns).
  /// O(log n).
  [[nodiscard]] std::expected<Int, errc> resize_raw(std::uint64_t offset, std::uint64_t size) {
    return with_all_locked([&] { return resize_raw_locked(offset, size); });
  }

  /// As resize_raw(offset, size), for the raw range whose memory starts at `pointer`.
  [[nodiscard]] std::expected<Int, errc> resize_raw(const void* pointer, std::uint64_t size) {
    return with_all_locked([&]() -> std::expected<Int, errc> {  // one lock for both steps
      const auto at = locate(pointer);
      if (!detail::expects(at.has_value(),
                           "resize_raw: the pointer is in none of this pool's regions"))
        return std::unexpected(errc::invalid_argument);
      return resize_raw_locked(at->offset, size);
    });
  }

  /// Adds a region of at least `min_bytes` through the pool's handle (which must model
  /// growing_handle), and returns its id. Growth is serialized: one grow() at a time.
  /// Errors: those of the handle (a system error from mmap, ftruncate, ...), or a pool
  /// error as a std::error_code (errc::pool_closed, errc::out_of_offset_space, ...).
  std::expected<std::uint32_t, std::error_code> grow(std::uint64_t min_bytes)
    requires growing_handle<Handle, buffer_pool>
  {
    std::scoped_lock serial(grow_mutex_);
    Handle* h = nullptr;
    {
      std::scoped_lock lock(mutex_);
      if (closed_ || !handle_) return std::unexpected(make_error_code(errc::pool_closed));
      h = &*handle_;
    }
    return h->grow(*this, min_bytes);
  }

  /// Allocates the pool's own records ahead, for `ranges` more acquisitions (slices or raw
  /// ranges, or regions), so that those calls cannot fail with std::bad_alloc: for paths
  /// that must not allocate, and for adapters that must not fail after growing the pool.
  /// Releases never allocate. Strong guarantee.
  void reserve_metadata(std::size_t ranges) {
    std::scoped_lock lock(mutex_);
    engine_.reserve_nodes(2 * ranges);
    raw_.reserve(ranges);
  }

  /// Flushes the size-class cache: ranges that `greedy` acquisitions gave back, kept for
  /// the next `greedy` request of their size class, are coalesced into the free-range
  /// indexes. Statistics, map() and validate() already count them as free (merged with
  /// their free neighbours); trim() changes only where later requests land. The pool also
  /// flushes on its own when the cache holds too much, before an `optimal` or `fixed`
  /// request, and when a request finds no other room. O(C log n) for C cached ranges (at
  /// most engine::max_cached_ranges). Also gives back every empty slab (option `slabs`),
  /// the pool's own and every thread cache's.
  void trim() noexcept {
    with_all_locked([this] {
      drop_empty_slabs();
      engine_.trim();
    });
  }

  /// Retries the guards of slices destroyed while guarded; ranges whose guard releases
  /// become free. Guards are asked without the pool's lock held. Returns how many ranges
  /// were freed. Also run by acquire() when it would otherwise fail for lack of space.
  ///
  /// One collect() runs at a time: a call made while another is asking guards (from
  /// another thread, or from a guard's try_release()) returns 0. Out of memory, nothing
  /// changes and std::bad_alloc propagates.
  std::size_t collect() {
    // The parked entries stay in parked_ while their guards are asked (park() only
    // appends, and only the one running collect() removes), so nothing is lost if
    // allocating, or a guard, throws.
    std::vector<detail::parked_guard*> asked;
    {
      std::scoped_lock lock(mutex_);
      if (collecting_ || parked_.empty()) return 0;
      asked.reserve(parked_.size());
      for (const auto& p : parked_) asked.push_back(p.guard.get());
      collecting_ = true;
    }
    std::vector<bool> released;
    try {
      released.reserve(asked.size());
      for (detail::parked_guard* g : asked) released.push_back(g->try_release());
    } catch (...) {
      std::scoped_lock lock(mutex_);
      collecting_ = false;
      throw;
    }
    std::scoped_lock lock(mutex_);
    collecting_ = false;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < parked_.size(); ++i) {
      if (i < released.size() && released[i])
        release_locked(parked_[i].node);
      else if (kept++ != i)
        parked_[kept - 1] = std::move(parked_[i]);
    }
    const std::size_t freed = parked_.size() - kept;
    parked_.erase(parked_.begin() + static_cast<std::ptrdiff_t>(kept), parked_.end());
    parked_count_.store(parked_.size(), std::memory_order_relaxed);
    guarded_.fetch_sub(freed);
    return freed;
  }

  /// Slices that carry a guard, parked ones included. O(1).
  [[nodiscard]] std::size_t active_guard_count() const noexcept { return guarded_.load(); }

  /// Totals over the pool. O(log n + C + T), C = ranges in the size-class cache (see
  /// engine), T = thread caches (option `thread_caches`).
  [[nodiscard]] pool_stats stats() const {
    return with_all_locked([this] { return stats_locked(); });
  }

  /// Totals of each initialized region, in initialization order. O(regions), times the
  /// number of slabs when the option `slabs` is on.
  [[nodiscard]] std::vector<region_stats> region_statistics() const {
    return with_all_locked([this] {
      std::vector<region_stats> out;
      for (std::uint32_t i = 0; i < engine_.region_count(); ++i) out.push_back(region_totals(i));
      return out;
    });
  }

  /// The ranges of region `id` in offset order (for pictures and tests). O(ranges).
  [[nodiscard]] std::vector<range_view> region_ranges(std::size_t id) const {
    std::scoped_lock lock(mutex_);
    return engine_.ranges(static_cast<std::uint32_t>(id));
  }

  /// A snapshot of the whole pool for pictures and tools: every region's ranges with their
  /// state (free, used, guarded, parked, spare), the pending expansions and the statistics.
  /// O(ranges). See to_json() and to_svg().
  [[nodiscard]] pool_map map() const {
    return with_all_locked([this] {
      pool_map out;
      out.stats = stats_locked();
      for (std::uint32_t id = 0; id < engine_.region_count(); ++id) {
        const region_stats r = engine_.region(id);
        map_region region{id, r.offset, r.size, {}};
        for (const range_view& v : engine_.ranges(id)) {
          if (const auto slab = v.used ? find_slab(v.offset, id) : std::nullopt) {
            slab->slabs->for_each_run(
                slab->span, [&](std::uint64_t offset, std::uint64_t size, bool live) {
                  region.ranges.push_back(
                      {offset, size, live ? range_state::used : range_state::spare});
                });
            continue;
          }
          range_state state = range_state::free;
          if (v.used)
            state = (v.marks & mark_parked_bit) != 0    ? range_state::parked
                    : (v.marks & mark_guarded_bit) != 0 ? range_state::guarded
                                                        : range_state::used;
          region.ranges.push_back({v.offset, v.size, state});
        }
        out.regions.push_back(std::move(region));
      }
      for (const auto& [offset, size] : engine_.pending_spans())
        out.pending.push_back({offset, size});
      return out;
    });
  }
  /// map() as JSON (see to_json).
  [[nodiscard]] std::string dump_json() const { return to_json(map()); }
  /// map() as an SVG picture (see to_svg).
  [[nodiscard]] std::string dump_svg() const { return to_svg(map()); }

  /// Every initialized region with its pointer and extra value.
  [[nodiscard]] entries regions() const {
    std::scoped_lock lock(mutex_);
    return make_entries();
  }

  /// Checks every invariant of the engine and the pool's counters; never touches pool
  /// memory. O(ranges).
  [[nodiscard]] std::expected<void, std::string> validate() const {
    return with_all_locked([this] { return validate_locked(); });
  }

  /// Closes the pool: refused (in_use) while any slice is alive or guarded, because the
  /// memory is about to be handed back. On success acquisitions and expansions fail with
  /// pool_closed from now on, and the caller receives the handle and every region.
  [[nodiscard]] std::expected<closed_pool<Int, Extra, Handle>, close_error> try_close() {
    return with_all_locked([this]() -> std::expected<closed_pool<Int, Extra, Handle>, close_error> {
      if (closed_) return std::unexpected(close_error{errc::pool_closed, 0, 0});
      const std::size_t live = stats_locked().live_slices;
      const std::size_t guarded = guarded_.load();
      if (live != 0 || guarded != 0)
        return std::unexpected(close_error{errc::in_use, live, guarded});
      drop_empty_slabs();  // all of them: no thread cache may hand out a slot any more
      closed_ = true;
      unpoison_all();
      closed_pool<Int, Extra, Handle> out{std::move(handle_), make_entries()};
      handle_.reset();
      return out;
    });
  }

  /// Whether try_close() has succeeded.
  [[nodiscard]] bool is_closed() const {
    std::scoped_lock lock(mutex_);
    return closed_;
  }

 private:
  template <class P>
  friend class expansion_handle;

  static constexpr bool can_cache = !std::is_same_v<Mutex, null_mutex>;

  // One thread's slabs in this pool, with copies of the regions they are in (a region never
  // changes once initialized), so that the thread finds its slots by address without the
  // pool's lock.
  struct cache : detail::cache_base {
    detail::slabs slabs;
    std::vector<std::optional<detail::region_info<Int, Extra>>> regions;  // by id
    std::vector<std::pair<std::uintptr_t, std::uint32_t>> by_address;     // base -> id, sorted
    // Strong guarantee.
    void add_region(const detail::region_info<Int, Extra>& r, std::uint32_t id) {
      if (id < regions.size() && regions[id]) return;
      by_address.reserve(by_address.size() + 1);
      if (regions.size() <= id) regions.resize(id + 1);
      regions[id].emplace(r);
      const auto base = reinterpret_cast<std::uintptr_t>(r.base);
      by_address.insert(
          std::upper_bound(by_address.begin(), by_address.end(), std::pair{base, std::uint32_t{0}}),
          {base, id});
    }
  };

  struct registry final : detail::cache_registry_base {
    buffer_pool* pool = nullptr;
    std::vector<std::unique_ptr<cache>> caches;  // only ever grows
    void detach(detail::cache_base& c) noexcept override {
      auto& mine = static_cast<cache&>(c);
      detail::owner_scope cache_lock(mine.lock);  // the exiting thread is the owner
      std::scoped_lock lock(pool->mutex_);
      mine.slabs.drop_empty([this](std::uint32_t node) { pool->engine_.release(node); });
    }
  };

  template <class P, class G>
  friend class basic_slice;

  struct range {
    std::uint32_t node;
    Int offset;
    Int size;  // as requested
    Int capacity;
    const detail::region_info<Int, Extra>* region;
  };

  static const options_type& checked(const options_type& o) {
    static const options_type fallback{};
    return detail::expects(o.valid(),
                           "pool options: sizes must be 1 <= min <= max, alignments powers of "
                           "two with min <= max")
               ? o
               : fallback;
  }

  static engine_limits limits_of(const options_type& o) noexcept {
    return {std::numeric_limits<Int>::max(), o.min_size, o.max_size, o.min_alignment,
            o.max_alignment};
  }

  std::expected<range, errc> acquire_range(std::uint64_t size, std::uint64_t alignment,
                                           strategy how, bool raw = false) {
    for (int attempt = 0;; ++attempt) {
      {
        std::scoped_lock lock(mutex_);
        if (closed_) return std::unexpected(errc::pool_closed);
        auto a = engine_.allocate(size, alignment, how);
        if (a) {
          if (raw) {
            try {
              raw_.insert(a->offset, a->node);
            } catch (...) {  // strong guarantee: the range goes back
              engine_.release(a->node);
              throw;
            }
            engine_.set_tag(a->node, size, static_cast<std::uint8_t>(std::countr_zero(alignment)));
          }
          const auto* region = regions_[a->region].get();
          shade(*region, a->offset, a->capacity, false);
          return range{a->node, static_cast<Int>(a->offset), static_cast<Int>(size),
                       static_cast<Int>(a->capacity), region};
        }
        if (a.error() != errc::out_of_memory || attempt > 1) return std::unexpected(a.error());
        if (attempt == 0 && parked_.empty()) attempt = 1;  // nothing to collect
        if (attempt == 1 && !can_grow()) return std::unexpected(a.error());
      }
      if (attempt == 0) {
        collect();  // parked ranges whose I/O has finished may make room
      } else if constexpr (growing_handle<Handle, buffer_pool>) {
        // A new region that holds the request wherever its offset lands.
        const std::uint64_t need = size > ~std::uint64_t{0} - alignment ? size : size + alignment;
        if (!grow(need)) return std::unexpected(errc::out_of_memory);
      }
    }
  }

  bool can_grow() const noexcept {
    if constexpr (growing_handle<Handle, buffer_pool>)
      return options_.auto_expand && handle_.has_value();
    else
      return false;
  }

  std::expected<Int, errc> resize(std::uint32_t node, std::uint64_t size) {
    std::scoped_lock lock(mutex_);
    return resize_locked(node, size);
  }

  std::expected<Int, errc> resize_locked(std::uint32_t node, std::uint64_t size) {
    const std::uint64_t before = poisoning ? engine_.node_size(node) : 0;
    auto capacity = engine_.resize(node, size);
    if (!capacity) return std::unexpected(capacity.error());
    if constexpr (poisoning) {
      const std::uint64_t start = engine_.node_offset(node);
      if (*capacity > before)
        shade(region_of(start), start + before, *capacity - before, false);
      else if (*capacity < before)
        shade(region_of(start), start + *capacity, before - *capacity, true);
    }
    return static_cast<Int>(*capacity);
  }

  std::expected<Int, errc> resize_raw_locked(std::uint64_t offset, std::uint64_t size) {
    if (const auto slab = find_slab(offset, no_index)) return resize_slot(*slab, offset, size);
    const std::uint32_t node = raw_.find(offset);
    if (!detail::expects(node != no_index, not_raw_resize))
      return std::unexpected(errc::invalid_argument);
    auto capacity = resize_locked(node, size);
    if (capacity) engine_.set_tag(node, size, engine_.small_tag(node));
    return capacity;
  }

  void release(std::uint32_t node) noexcept {
    std::scoped_lock lock(mutex_);
    detail::expects(release_locked(node), "a slice is given back once: double release");
  }

  // Gives a live range back to the engine, poisoning it first (lock held). False (and
  // nothing changes) if `node` is not live.
  bool release_locked(std::uint32_t node) noexcept {
    if constexpr (poisoning) {  // other builds skip even the region lookup
      if (!engine_.is_live(node)) return false;
      const std::uint64_t start = engine_.node_offset(node);
      shade(region_of(start), start, engine_.node_size(node), true);
    }
    return engine_.release(node);
  }

  const detail::region_info<Int, Extra>& region_of(std::uint64_t offset) const noexcept {
    return *regions_[engine_.region_of(offset)];
  }

  static constexpr bool poisoning = BUFPOOL_POISONING != 0;

  // AddressSanitizer builds: makes [offset, offset + size) of `r` unaddressable (`poison`)
  // or addressable again, limited to the region's host memory. Nothing in other builds.
  static void shade([[maybe_unused]] const detail::region_info<Int, Extra>& r,
                    [[maybe_unused]] std::uint64_t offset, [[maybe_unused]] std::uint64_t size,
                    [[maybe_unused]] bool poison) noexcept {
#ifdef BUFPOOL_ASAN
    const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(r.base) + (offset - r.offset);
    const std::uintptr_t begin = std::max(at, r.host_begin);
    const std::uintptr_t end = std::min(at + size, r.host_end);
    if (begin >= end) return;
    if (poison)
      __asan_poison_memory_region(reinterpret_cast<const void*>(begin), end - begin);
    else
      __asan_unpoison_memory_region(reinterpret_cast<const void*>(begin), end - begin);
#endif
  }

  // Makes every region addressable again before its memory goes back to its owner.
  void unpoison_all() const noexcept {
    for (const auto& r : regions_) shade(*r, r->offset, r->size, false);
  }

  struct raw_request {
    std::uint64_t size;
    std::uint64_t alignment;
  };

  static constexpr const char* not_raw =
      "release_raw: the offset does not start a live raw range of this pool (released twice, a "
      "slice's range, another pool's, or inside a range)";
  static constexpr const char* not_raw_resize =
      "resize_raw: the offset does not start a live raw range of this pool";
  static constexpr const char* wrong_size =
      "release_raw: the size differs from the size the range was acquired with";
  static constexpr const char* wrong_alignment =
      "release_raw: the alignment differs from the alignment the range was acquired with";

  // ---- releases -------------------------------------------------------------------------
  // The slot paths of acquire_raw() and release_raw() are inlined whole into their callers
  // ([[gnu::always_inline]] on each step, the rest out of line): a call per step, and a
  // result returned through memory, cost more than their instructions, because their
  // stores wait behind the caller's store misses into the memory it just got. Inlined, a
  // churn of 64-byte slots (10k live) takes about 45% less time per acquire/release pair
  // on a local pool and 35% less with thread caches.
  // A slot of the calling thread's own slabs is freed under that cache's lock alone; any
  // other slot or raw range under the pool's lock; a slot of another thread's slabs (rare:
  // a release on another thread than the acquisition) under that thread's cache lock,
  // found by asking each cache in turn.

  // A slot of the thread's cache or of the pool's slabs is freed inline where release_raw()
  // is called; a raw range of the engine and another thread's slot out of line.
  [[gnu::always_inline]] bool release_raw_pointer(const void* pointer,
                                                  const raw_request* request) noexcept {
    if constexpr (can_cache) {
      if (registry_ != nullptr)
        if (const auto done = release_cached(pointer, request)) return *done;
    }
    const auto address = reinterpret_cast<std::uintptr_t>(pointer);
    std::optional<location> at;
    {
      std::scoped_lock lock(mutex_);
      if (const auto hit = slabs_.find_hinted(address))
        return release_slot(slabs_, nullptr, hit->span, hit->region, hit->offset, request);
      at = locate(pointer);
      if (!detail::expects(at.has_value(),
                           "release_raw: the pointer is in none of this pool's regions"))
        return false;
      if (const auto done = release_pool_locked(at->offset, request, at->region, address))
        return *done;
    }
    return release_in_caches(at->offset, at->region, request);
  }

  bool release_raw_offset(std::uint64_t offset, const raw_request* request) noexcept {
    std::uint32_t region = no_index;
    {
      std::scoped_lock lock(mutex_);
      if (const auto done = release_pool_locked(offset, request, no_index)) return *done;
      if (registry_ != nullptr) region = engine_.region_of(offset);
    }
    return release_in_caches(offset, region, request);
  }

  // Frees the pool's slot or raw range at `offset` (lock held); nothing, and nothing
  // reported, if the pool's own slabs and raw ranges have none there. A slot found is
  // noted as the hint for `address` (its memory), if not 0.
  [[gnu::always_inline]] std::optional<bool> release_pool_locked(
      std::uint64_t offset, const raw_request* request, std::uint32_t region,
      std::uintptr_t address = 0) noexcept {
    if (const std::uint32_t s = span_of(offset, region); s != no_index) {
      if (address != 0) slabs_.note_hint(address, s);
      return release_slot(slabs_, nullptr, s, region, offset, request);
    }
    return release_raw_range_locked(offset, request);
  }

  // The raw range of the engine at `offset` (lock held), as release_pool_locked().
  [[gnu::noinline]] std::optional<bool> release_raw_range_locked(
      std::uint64_t offset, const raw_request* request) noexcept {
    const std::uint32_t node = raw_.find(offset);
    if (node == no_index) return std::nullopt;
    if (request != nullptr) {
      if (!detail::expects(request->size == engine_.tag(node), wrong_size)) return false;
      if (!detail::expects(request->alignment == std::uint64_t{1} << engine_.small_tag(node),
                           wrong_alignment))
        return false;
    }
    raw_.erase(offset);
    release_locked(node);
    return true;
  }

  // Frees a slot of some thread's slabs (no lock held), or reports that nothing of this
  // pool starts at `offset`. O(threads that took slots).
  [[gnu::noinline]] bool release_in_caches(std::uint64_t offset, std::uint32_t region,
                                           const raw_request* request) noexcept {
    if (registry_ != nullptr && region != no_index) {
      std::scoped_lock registry_lock(registry_->mutex);
      for (const auto& c : registry_->caches) {
        std::scoped_lock cache_lock(c->lock);
        if (const std::uint32_t s = c->slabs.find(offset, region); s != no_index)
          return release_slot(c->slabs, c.get(), s, region, offset, request);
      }
    }
    return detail::expects(false, not_raw);
  }

  // The calling thread's own slot at `pointer`, freed under its cache's lock; nothing if
  // the thread's slabs do not hold `pointer`.
  [[gnu::always_inline]] std::optional<bool> release_cached(const void* pointer,
                                                            const raw_request* request) noexcept {
    cache* const held = held_cache();
    if (held == nullptr) return std::nullopt;
    cache& mine = *held;
    detail::owner_scope cache_lock(mine.lock);
    const auto address = reinterpret_cast<std::uintptr_t>(pointer);
    if (const auto hit = mine.slabs.find_hinted(address))
      return release_slot(mine.slabs, &mine, hit->span, hit->region, hit->offset, request);
    const auto at = locate_in(mine.by_address, mine.regions, pointer);
    if (!at) return std::nullopt;
    const std::uint32_t s = mine.slabs.find(at->offset, at->region);
    if (s == no_index) return std::nullopt;
    mine.slabs.note_hint(address, s);
    return release_slot(mine.slabs, &mine, s, at->region, at->offset, request);
  }

  // Frees the slot at `offset` of span s of `slabs`: the pool's (owner null, the pool's
  // lock held) or thread cache `owner`'s (its lock held; the pool's is taken to give an
  // emptied span back). `region` may be no_index for the pool's own slabs.
  [[gnu::always_inline]] bool release_slot(detail::slabs& slabs, cache* owner, std::uint32_t s,
                                           std::uint32_t region, std::uint64_t offset,
                                           const raw_request* request) noexcept {
    std::uint64_t capacity = 0;
    if constexpr (poisoning) {
      if (const auto live = slabs.live_slot(s, offset)) capacity = live->second;
    }
    std::uint32_t dropped = no_index;
    const auto v = slabs.give_back(s, offset, request != nullptr ? &request->size : nullptr,
                                   request != nullptr ? request->alignment : 0, dropped);
    using verdict = detail::slabs::verdict;
    if (!detail::expects(v != verdict::not_live, not_raw) ||
        !detail::expects(v != verdict::size, wrong_size) ||
        !detail::expects(v != verdict::alignment, wrong_alignment))
      return false;
    if constexpr (poisoning)
      shade(owner != nullptr ? *owner->regions[region] : region_of(offset), offset, capacity, true);
    if (dropped != no_index) {
      if (owner == nullptr) {
        engine_.release(dropped);
      } else {
        std::scoped_lock lock(mutex_);
        engine_.release(dropped);
      }
    }
    return true;
  }

  // ---- slab acquisitions ------------------------------------------------------------------

  // acquire_raw() when no span of the class has a free slot, or past the slabs: out of
  // line, so that acquire_raw() inlines only the slot path where it is called.
  [[gnu::noinline]] std::expected<raw_range<Int>, errc> acquire_raw_slow(std::uint64_t size,
                                                                         std::uint64_t alignment,
                                                                         strategy how) {
    if (options_.slabs && how.kind == strategy_kind::greedy)
      if (auto slot = acquire_slot<true>(size, alignment)) return *slot;
    auto r = acquire_range(size, alignment, how, true);
    if (!r) return std::unexpected(r.error());
    return raw_range<Int>{r->offset, r->size, r->capacity,
                          r->region->base + (r->offset - r->region->offset)};
  }

  // A slab slot for a small greedy raw request, or nothing: the engine path then serves the
  // request or reports its error. With `Grow`, a class without a free slot gets a new span.
  // Never throws: out of memory for a new slab's records, the engine path is taken too (so
  // reserve_metadata() keeps its promise).
  template <bool Grow>
  [[gnu::always_inline]] std::optional<raw_range<Int>> acquire_slot(std::uint64_t size,
                                                                    std::uint64_t alignment) {
    // A power of two (x ^ (x - 1) > x - 1, false for 0) up to max_alignment; written so
    // that the compiler does not make it a popcount (20 instructions without -mpopcnt).
    if (size == 0 || size > options_.max_size || (alignment ^ (alignment - 1)) <= alignment - 1 ||
        alignment > options_.max_alignment)
      return std::nullopt;
    const unsigned c =
        detail::slabs::class_of(std::max<std::uint64_t>(size, options_.min_size),
                                std::max<std::uint64_t>(alignment, options_.min_alignment));
    if (c == detail::slabs::no_class) return std::nullopt;
    const auto align_log2 = static_cast<unsigned>(std::countr_zero(alignment));
    if constexpr (can_cache) {
      if (registry_ != nullptr)
        if (cache* mine = this_thread_cache())
          return acquire_cached<Grow>(*mine, c, size, align_log2);
    }
    std::scoped_lock lock(mutex_);
    if (closed_) return std::nullopt;
    auto slot = slabs_.take(c, size, align_log2);
    if (!slot) {
      if (!Grow || !add_span(slabs_, nullptr, c)) return std::nullopt;
      slot = slabs_.take(c, size, align_log2);
    }
    return slot_range(*regions_[slot->region], *slot, size);
  }

  template <bool Grow>
  [[gnu::always_inline]] std::optional<raw_range<Int>> acquire_cached(
      cache& mine, unsigned c, std::uint64_t size, unsigned align_log2) noexcept {
    detail::owner_scope cache_lock(mine.lock);
    auto slot = mine.slabs.take(c, size, align_log2);
    if (!slot) {
      if constexpr (!Grow) return std::nullopt;
      std::scoped_lock lock(mutex_);
      if (closed_ || !add_span(mine.slabs, &mine, c)) return std::nullopt;
      slot = mine.slabs.take(c, size, align_log2);
    }
    return slot_range(*mine.regions[slot->region], *slot, size);
  }

  // Makes an engine range a new span of class c in `slabs` (the pool's lock held), noting
  // its region in `owner` (a thread cache whose lock is held, or null). False if there is
  // no room or no memory for the records; nothing changed then.
  bool add_span(detail::slabs& slabs, cache* owner, unsigned c) noexcept {
    auto a = engine_.allocate(
        detail::slabs::span_size(c),
        std::min<std::uint64_t>(detail::slabs::largest_alignment, options_.max_alignment), greedy);
    if (!a) return false;
    const auto& region = *regions_[a->region];
    try {
      if (owner != nullptr) owner->add_region(region, a->region);
      slabs.add_span(c, a->offset, a->capacity, a->node, a->region, region.offset, region.size,
                     region.base + (a->offset - region.offset));
    } catch (...) {
      engine_.release(a->node);
      return false;
    }
    return true;
  }

  static raw_range<Int> slot_range(const detail::region_info<Int, Extra>& region,
                                   const detail::slabs::slot& slot, std::uint64_t size) noexcept {
    shade(region, slot.offset, slot.capacity, false);
    return raw_range<Int>{static_cast<Int>(slot.offset), static_cast<Int>(size),
                          static_cast<Int>(slot.capacity), slot.address};
  }

  // The pool's slab span holding `offset`, or no_index (lock held). O(1), plus O(log
  // regions) to find the region when `region` is no_index and the pool has spans.
  std::uint32_t span_of(std::uint64_t offset, std::uint32_t region = no_index) const noexcept {
    if (slabs_.all().spans == 0) return no_index;
    return slabs_.find(offset, region != no_index ? region : engine_.region_of(offset));
  }

  struct slab_at {
    const detail::slabs* slabs;
    std::uint32_t span;
  };
  // The slabs (the pool's or a thread cache's) with a span holding `offset`, or nothing
  // (every lock held: see with_all_locked).
  std::optional<slab_at> find_slab(std::uint64_t offset, std::uint32_t region) const noexcept {
    if (const std::uint32_t s = span_of(offset, region); s != no_index) return slab_at{&slabs_, s};
    if (registry_ == nullptr) return std::nullopt;
    if (region == no_index) region = engine_.region_of(offset);
    for (const auto& c : registry_->caches)
      if (const std::uint32_t s = c->slabs.find(offset, region); s != no_index)
        return slab_at{&c->slabs, s};
    return std::nullopt;
  }

  std::expected<Int, errc> resize_slot(const slab_at& at, std::uint64_t offset,
                                       std::uint64_t size) {
    const auto live = at.slabs->live_slot(at.span, offset);
    if (!detail::expects(live.has_value(), not_raw_resize))
      return std::unexpected(errc::invalid_argument);
    if (size == 0) return std::unexpected(errc::invalid_size);
    if (size > options_.max_size) return std::unexpected(errc::too_large);
    if (std::max<std::uint64_t>(size, options_.min_size) > live->second)
      return std::unexpected(errc::out_of_memory);
    // The slabs are this pool's (find_slab() hands them out as const for const callers).
    const_cast<detail::slabs*>(at.slabs)->set_size(at.span, offset, size);
    return static_cast<Int>(live->second);
  }

  // ---- totals over every slab -------------------------------------------------------------

  [[nodiscard]] pool_stats stats_locked() const {
    const engine_stats e = engine_.stats();
    const auto slab = slab_totals();
    pool_stats s;
    s.used_bytes = e.used_bytes - slab.span_bytes + slab.live_bytes;
    s.free_bytes = e.free_bytes;
    s.spare_bytes = slab.span_bytes - slab.live_bytes;
    s.pending_bytes = e.pending_bytes;
    s.largest_free = e.largest_free;
    s.free_ranges = e.free_ranges;
    s.live_slices = e.used_ranges - slab.spans + slab.live_slots;
    s.guarded_slices = guarded_.load();
    s.parked_slices = parked_.size();
    s.regions = e.regions;
    return s;
  }

  std::expected<void, std::string> validate_locked() const {
    if (auto v = engine_.validate(); !v) return v;
    if (auto v = slabs_.validate(engine_); !v) return v;
    if (registry_ != nullptr)
      for (const auto& c : registry_->caches)
        if (auto v = c->slabs.validate(engine_); !v)
          return std::unexpected("thread cache " + v.error());
    const auto slab = slab_totals();
    const std::size_t live = stats_locked().live_slices;
    if (parked_.size() > guarded_.load()) return std::unexpected("more parked than guarded");
    if (guarded_.load() > live) return std::unexpected("more guarded than live slices");
    if (borrowed_.load() > live) return std::unexpected("more borrowed than live slices");
    if (borrowed_.load() + raw_.size() + slab.live_slots > live)
      return std::unexpected("more borrowed and raw ranges than live slices");
    bool raw_ok = true;
    raw_.for_each([&](std::uint64_t offset, std::uint32_t node) {
      raw_ok = raw_ok && engine_.is_live(node) && engine_.node_offset(node) == offset &&
               engine_.tag(node) <= engine_.node_size(node) && !find_slab(offset, no_index);
    });
    if (!raw_ok) return std::unexpected("a raw range's entry does not match a live range");
    return {};
  }

  detail::slabs::totals slab_totals() const noexcept {
    detail::slabs::totals t = slabs_.all();
    if (registry_ != nullptr)
      for (const auto& c : registry_->caches) add_totals(t, c->slabs.all());
    return t;
  }

  static void add_totals(detail::slabs::totals& t, const detail::slabs::totals& more) noexcept {
    t.span_bytes += more.span_bytes;
    t.live_bytes += more.live_bytes;
    t.spans += more.spans;
    t.live_slots += more.live_slots;
  }

  // A region's totals with its slabs' slots counted as ranges of their own.
  region_stats region_totals(std::uint32_t id) const noexcept {
    region_stats r = engine_.region(id);
    detail::slabs::totals slab;
    if (slabs_.all().spans != 0) slab = slabs_.of_region(id);
    if (registry_ != nullptr)
      for (const auto& c : registry_->caches)
        if (c->slabs.all().spans != 0) add_totals(slab, c->slabs.of_region(id));
    r.used_bytes = r.used_bytes - slab.span_bytes + slab.live_bytes;
    r.used_ranges = r.used_ranges - slab.spans + slab.live_slots;
    r.spare_bytes = slab.span_bytes - slab.live_bytes;
    return r;
  }

  // Gives every empty span back to the engine, the pool's and every thread's (every lock
  // held).
  void drop_empty_slabs() noexcept {
    const auto give = [this](std::uint32_t node) { engine_.release(node); };
    slabs_.drop_empty(give);
    if (registry_ != nullptr)
      for (const auto& c : registry_->caches) c->slabs.drop_empty(give);
  }

  struct location {
    std::uint64_t offset;
    std::uint32_t region;
  };
  // The pool offset and region of an address inside one of the regions (lock held).
  // O(log regions).
  std::optional<location> locate(const void* pointer) const noexcept {
    return locate_in(by_address_, regions_, pointer);
  }
  // The same over `by_address` (base address -> region id, sorted) and `regions` (by id,
  // pointer-like).
  template <class Regions>
  static std::optional<location> locate_in(
      const std::vector<std::pair<std::uintptr_t, std::uint32_t>>& by_address,
      const Regions& regions, const void* pointer) noexcept {
    const auto address = reinterpret_cast<std::uintptr_t>(pointer);
    auto it = std::upper_bound(by_address.begin(), by_address.end(), address,
                               [](std::uintptr_t a, const auto& r) { return a < r.first; });
    if (it == by_address.begin()) return std::nullopt;
    const std::uint32_t id = std::prev(it)->second;
    const auto& region = *regions[id];
    const std::uintptr_t delta = address - std::prev(it)->first;
    if (delta >= region.size) return std::nullopt;
    return location{std::uint64_t{region.offset} + delta, id};
  }

  // ---- thread caches (options `thread_caches`) ---------------------------------------------

  // The calling thread's cache in this pool, or null if it has none.
  [[gnu::always_inline]] cache* held_cache() const noexcept {
    const auto& last = detail::this_thread_last;
    if (last.uid == registry_->uid) return static_cast<cache*>(last.cache);
    return find_held_cache();
  }
  [[gnu::noinline]] cache* find_held_cache() const noexcept {
    auto& last = detail::this_thread_last;
    if (last.exited) return nullptr;  // its list is gone
    for (const auto& [r, c] : detail::this_thread_caches.held)
      if (r.get() == registry_.get()) {
        last = {registry_->uid, c, false};
        return static_cast<cache*>(c);
      }
    return nullptr;
  }

  // The calling thread's cache in this pool, attached on first use; null if the thread is
  // exiting or out of memory (the caller then takes the pool's slabs).
  [[gnu::always_inline]] cache* this_thread_cache() noexcept {
    if (cache* mine = held_cache()) return mine;
    return attach_thread_cache();
  }
  [[gnu::noinline]] cache* attach_thread_cache() noexcept {
    if (detail::this_thread_last.exited) return nullptr;
    auto& held = detail::this_thread_caches;
    try {
      std::erase_if(held.held, [](const auto& h) {  // caches of pools that are gone
        std::scoped_lock lock(h.first->mutex);
        return !h.first->pool_alive;
      });
      held.held.reserve(held.held.size() + 1);
      cache* mine = nullptr;
      {
        std::scoped_lock lock(registry_->mutex);
        for (const auto& c : registry_->caches)
          if (!c->attached) {
            mine = c.get();
            break;
          }
        if (mine == nullptr) {
          registry_->caches.reserve(registry_->caches.size() + 1);
          registry_->caches.push_back(std::make_unique<cache>());
          mine = registry_->caches.back().get();
        }
        mine->attached = true;
      }
      held.held.emplace_back(registry_, mine);
      detail::this_thread_last = {registry_->uid, mine, false};
      return mine;
    } catch (...) {
      return nullptr;
    }
  }

  // Runs f() with every lock taken, in order: the registry's, every thread cache's, the
  // pool's; with only the pool's when there are no thread caches.
  template <class F>
  decltype(auto) with_all_locked(F&& f) const {
    if (registry_ == nullptr) {
      std::scoped_lock lock(mutex_);
      return f();
    }
    std::scoped_lock registry_lock(registry_->mutex);
    bool barrier = false;  // one heavy barrier for every cache
    for (const auto& c : registry_->caches) barrier |= c->lock.begin_lock();
    if (barrier) detail::heavy_barrier();
    for (const auto& c : registry_->caches) c->lock.finish_lock();
    struct unlock_caches {
      const std::vector<std::unique_ptr<cache>>& caches;
      ~unlock_caches() {
        for (const auto& c : caches) c->lock.unlock();
      }
    } unlock{registry_->caches};
    std::scoped_lock lock(mutex_);
    return f();
  }

  // The engine marks of a used range, for map().
  static constexpr std::uint8_t mark_guarded_bit = 1;
  static constexpr std::uint8_t mark_parked_bit = 2;

  void mark_guarded(std::uint32_t node, bool guarded) noexcept {
    std::scoped_lock lock(mutex_);
    engine_.set_marks(node, guarded ? mark_guarded_bit : 0);
    if (guarded)
      guarded_.fetch_add(1);
    else
      guarded_.fetch_sub(1);
  }

  // Keeps a guarded range until collect() finds its guard released. Out of memory, the
  // range is never reused instead (its I/O may be in flight): it stays live and guarded.
  template <class G>
  void park(std::uint32_t node, G&& guard) noexcept {
    try {
      auto p = std::make_unique<detail::parked_guard_of<G>>(std::move(guard));
      std::scoped_lock lock(mutex_);
      parked_.push_back({node, std::move(p)});
      engine_.set_marks(node, mark_guarded_bit | mark_parked_bit);
      parked_count_.store(parked_.size(), std::memory_order_relaxed);
    } catch (...) {
      detail::report_diagnostic(
          "out of memory while parking a slice destroyed with its guard held: its range is "
          "kept (never reused) and its guard is dropped");
    }
  }

  std::expected<std::uint32_t, errc> publish(Int offset, Int size, std::byte* base,
                                             const Extra& extra, std::uintptr_t host_begin,
                                             std::uintptr_t host_end) {
    std::scoped_lock lock(mutex_);
    if (closed_) {
      engine_.cancel(offset, size);
      return std::unexpected(errc::pool_closed);
    }
    for (const auto& r : regions_) {  // the same memory must not back two regions
      const bool overlap = base < r->base + r->size && r->base < base + size;
      if (!detail::expects(!overlap, "a region's memory must not overlap another region's")) {
        engine_.cancel(offset, size);
        return std::unexpected(errc::invalid_argument);
      }
    }
    // Every allocation first, so that running out of memory changes nothing.
    auto info = std::make_unique<detail::region_info<Int, Extra>>(
        detail::region_info<Int, Extra>{offset, size, base, extra, host_begin, host_end});
    detail::room_for_one(regions_);
    detail::room_for_one(by_address_);
    const std::uint32_t id = engine_.publish(offset, size);
    regions_.push_back(std::move(info));
    const auto address = reinterpret_cast<std::uintptr_t>(base);
    by_address_.insert(
        std::upper_bound(by_address_.begin(), by_address_.end(), address,
                         [](std::uintptr_t a, const auto& r) { return a < r.first; }),
        {address, id});
    shade(*regions_.back(), offset, size, true);  // the whole region is free
    return id;
  }

  void cancel(Int offset, Int size) noexcept {
    std::scoped_lock lock(mutex_);
    engine_.cancel(offset, size);
  }

  entries make_entries() const {
    entries out;
    out.reserve(regions_.size());
    for (const auto& r : regions_) out.push_back({r->offset, r->size, r->base, r->extra});
    return out;
  }

  options_type options_;
  mutable Mutex mutex_;
  Mutex grow_mutex_;  // one grow() at a time
  engine engine_;
  std::vector<std::unique_ptr<detail::region_info<Int, Extra>>> regions_;  // by region id
  std::vector<std::pair<std::uintptr_t, std::uint32_t>> by_address_;       // base -> id, sorted
  detail::offset_map raw_;                                                 // live raw ranges
  detail::slabs slabs_;                 // small greedy raw ranges (options_.slabs)
  std::shared_ptr<registry> registry_;  // thread caches (options_.thread_caches), or null
  std::vector<detail::parked_range> parked_;
  std::optional<Handle> handle_;
  bool closed_ = false;
  bool collecting_ = false;  // a collect() is asking guards
  std::atomic<std::size_t> guarded_{0};
  std::atomic<std::size_t> borrowed_{0};
  std::atomic<std::size_t> parked_count_{0};
  std::uint64_t checked_id_ = 0;  // checked builds: this pool's id in the registry
};

/// A pool for one thread at a time: no locking.
template <offset_integer Int = std::uint32_t, class Extra = no_extra, class Handle = no_handle>
using local_buffer_pool = buffer_pool<Int, Extra, Handle, null_mutex>;

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
  /// Errors: invalid_argument (null or overlapping memory: also a contract violation),
  /// pool_closed (the memory was not adopted; the reservation is gone).
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
      return std::unexpected(errc::invalid_argument);
    if (!detail::expects(base != nullptr, "a region's memory must not be null")) {
      cancel();
      return std::unexpected(errc::invalid_argument);
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
template <class Pool, class Guard = no_guard>
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
      give_back();
      take(o);
    }
    return *this;
  }
  basic_slice(const basic_slice&) = delete;
  basic_slice& operator=(const basic_slice&) = delete;
  ~basic_slice() { give_back(); }

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
  /// invalid_argument (empty slice), pool_gone, in_use (guarded: I/O may be in flight),
  /// invalid_size, too_large, out_of_memory (no free room right after the slice).
  /// O(log n).
  [[nodiscard]] std::expected<void, errc> try_resize(std::uint64_t size) {
    if (ref_ == pool_ref::none) return std::unexpected(errc::invalid_argument);
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
    requires slice_guard<Guard> && (!std::same_as<Guard, no_guard>)
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
          guard_ ? errc::already_guarded : errc::invalid_argument, std::move(*this), std::move(g)});
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
    give_back();
    return {};
  }

 private:
  friend Pool;
  template <class P, class G>
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
    if (ref_ == pool_ref::none) return errc::invalid_argument;
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
  void give_back() noexcept {
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
