// SPDX-License-Identifier: MIT
// bufpool:slabs — slabs: small greedy raw ranges as slots of one-class spans, all bookkeeping out
// of band.
module;
#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <expected>
#include <iterator>
#include <memory>
#include <memory_resource>
#include <optional>
#include <source_location>
#include <string>
#include <utility>
#include <vector>

#include "internal_assert.hpp"
export module bufpool:slabs;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :contracts;
import :engine;
import :metadata;
import :size_classes;

export namespace bufpool {

namespace detail {

// The pool's slabs (options `slabs`): greedy raw ranges of up to 64 KiB are slots of spans,
// engine ranges of 4 .. 256 KiB (16 slots of up to 4 KiB, at least 4 KiB; 4 to 6 larger
// slots) cut into slots of one size class. A class of slots up to 4 KiB that holds many
// spans takes larger ones, up to 64 KiB (see next_level()).
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
// In front of the bitmaps, each class keeps a short stack of the slots released last
// (stack_limit): a release pushes its slot there and the next acquisition of the class pops
// it, so a steady pair of the two touches no bitmap, summary or class list, and hands out
// the memory freed last, which is still in the cache. A stacked slot is not live (its slot
// record says so), but its span's bitmap still counts it taken: drop_empty() (trim, room for
// an engine request, closing, a cache's thread exiting) returns the stacked slots to their
// bitmaps first.
// Every record (spans, tables, hints, bitmaps and slot records) comes from the memory resource
// given at construction; constructing slabs allocates nothing.
class slabs {
 public:
  static constexpr std::uint64_t smallest_span = std::uint64_t{1} << 12;
  static constexpr std::uint64_t largest_small_slot = 4096;  // 16 slots per span up to here
  static constexpr std::uint64_t largest_slot = 65536;
  static constexpr std::uint64_t largest_alignment = 4096;  // spans are aligned to this
  static constexpr unsigned class_count = 64;
  static constexpr unsigned no_class = ~0U;

 private:
  // By alignment (at most 8, 16) and (size - 1) / 8 for sizes up to 4096: the smallest class
  // that holds the size and whose slot size is a multiple of the alignment.
  static constexpr auto small_classes = [] {
    std::array<std::array<std::uint8_t, largest_small_slot / slot_granule>, 2> t{};
    for (std::uint64_t g = 0; g < t[0].size(); ++g) {
      auto c = slot_classes::index_of(g + 1);
      t[0][g] = static_cast<std::uint8_t>(c);
      while ((slot_granule * slot_classes::granules(c)) % 16 != 0) ++c;
      t[1][g] = static_cast<std::uint8_t>(c);
    }
    return t;
  }();

 public:
  // The class of a request of `size` bytes (>= 1) at `alignment` (a power of two, at least
  // the pool's granule): the smallest slot size that holds it and is a multiple of the
  // alignment (slots are multiples of 8 bytes: 8 .. 256, then 4 per doubling to 65536),
  // or no_class.
  [[nodiscard]] static unsigned class_of(std::uint64_t size, std::uint64_t alignment) noexcept;
  // The largest size small_class() serves, for a pool with these options: 4096 when every
  // request of up to 4096 bytes at an alignment of up to 16 is valid and min_size and
  // min_alignment keep it within the table, else 0.
  [[nodiscard]] static constexpr std::uint64_t table_limit(bool on, std::uint64_t min_size,
                                                           std::uint64_t max_size,
                                                           std::uint64_t min_alignment,
                                                           std::uint64_t max_alignment) noexcept {
    constexpr std::uint64_t limit = largest_small_slot;
    return on && max_size >= limit && max_alignment >= 16 && min_size <= limit &&
                   min_alignment <= 16
               ? limit
               : 0;
  }
  // class_of() of the commonest requests, by a table alone: `granules` = (size - 1) / 8 for a
  // size of 1 .. 4096 bytes, at an alignment of at most 8, or of 16 if `align16`.
  [[nodiscard]] static inline unsigned small_class(std::uint64_t granules, bool align16) noexcept {
    return small_classes[align16 ? 1 : 0][granules];
  }
  [[nodiscard]] static constexpr std::uint64_t slot_size(unsigned c) noexcept;
  // The bytes of the first spans of class c, a power of two: 16 slots of up to 4 KiB (at
  // least 4 KiB), else 4 to 6 slots.
  [[nodiscard]] static inline std::uint64_t span_size(unsigned c) noexcept {
    const std::uint64_t slot = slot_size(c);
    return slot <= largest_small_slot ? std::max(smallest_span, std::bit_ceil(16 * slot))
                                      : std::bit_ceil(4 * slot);
  }
  // A class's spans grow with the bytes it holds: the next span of class c is span_size(c)
  // doubled `level` times, the largest such size that is at most 1/32 of the bytes of the
  // spans the class holds (so a new span adds at most that much unused room), up to
  // largest_span and 4096 slots (the summary word's 64 words). A class that holds little
  // keeps its first size; one that fills megabytes takes a record, an engine range and a
  // table entry per 64 KiB instead of per 4 KiB.
  static constexpr std::uint64_t largest_span = std::uint64_t{1} << 16;
  static constexpr unsigned max_levels = 5;  // 4 KiB .. 64 KiB
  [[nodiscard]] inline unsigned next_level(unsigned c) const noexcept {
    unsigned level = 0;
    while (level < top_level(c) && (span_size(c) << (level + 1)) <= class_bytes_[c] / 32) ++level;
    return level;
  }
  [[nodiscard]] inline std::uint64_t next_span_size(unsigned c) const noexcept {
    return span_size(c) << next_level(c);
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
  // `address`, a span of class c with every slot free: of the largest size up to
  // next_span_size(c) that the range holds. Allocates first: if it throws, nothing changed.
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
  verdict free_slot(std::uint32_t s, std::uint64_t offset, const std::uint64_t* size,
                    std::uint64_t alignment, std::uint32_t& dropped) noexcept;
  // The live slot at `offset` of span s: its recorded size and its capacity, or nothing.
  [[nodiscard]] std::optional<std::pair<std::uint64_t, std::uint64_t>> live_slot(
      std::uint32_t s, std::uint64_t offset) const noexcept;
  // Records a new size (at most the slot's capacity) for the live slot at `offset`.
  void set_size(std::uint32_t s, std::uint64_t offset, std::uint64_t size) noexcept;
  // Returns every stacked slot to its span's bitmap, then drops every empty span, calling
  // give(node) for each (trim). O(spans + stacked slots).
  template <class F>
  void drop_empty(F&& give) noexcept {
    for (unsigned c = 0; c < class_count; ++c)
      while (stacked_[c] != 0) {
        const stacked_slot e = unpack(stacks_[c][--stacked_[c]]);
        --spans_[e.span].stacked;
        if (const std::uint32_t node = free_in_bitmap(e.span, e.slot); node != no_index) give(node);
      }
    for (std::uint32_t s = 0; s < spans_.size(); ++s)
      if (spans_[s].slots != 0 && spans_[s].live == 0) give(drop(s));
  }
  // Calls f(offset, size, live) for the runs of span s in offset order: each live slot on
  // its own, free slots (and the tail no slot fits) merged.
  template <class F>
  void for_each_run(std::uint32_t s, F&& f) const {
    const span_record& x = spans_[s];
    std::uint64_t run = 0;  // bytes of the current free run
    for (std::uint32_t i = 0; i < x.slots; ++i) {
      const std::uint64_t at = x.offset + std::uint64_t{i} * x.slot;
      if (!holds_live(x, i)) {
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

  // Forgets every span and slot, as new slabs would have none, but keeps the capacity of the
  // records: the span records, the chunks of bitmaps and slot records (carved again from the
  // first) and the hints. Slabs refilled as before then allocate no records. The engine
  // ranges of the spans are the caller's to forget (engine::clear()). O(chunks + hints).
  void clear() noexcept;

 private:
  // The fields a take() from the stack and a release read or write come first, so those
  // touch one cache line of the record (the record is aligned to one); the bitmap path's and
  // the class list's follow.
  struct alignas(64) span_record {
    std::uint64_t offset = 0;
    std::uint64_t bytes = 0;         // 0 while the record is unused
    std::byte* address = nullptr;    // the span's memory
    std::uint64_t inverse = 0;       // ceil(2^40 / slot): slot index = (delta * inverse) >> 40
    std::uint16_t* sizes = nullptr;  // per live slot: see set_record()
    std::uint32_t slot = 0;          // slot size
    std::uint32_t region = no_index;
    std::uint16_t slots = 0;    // 0 while the record is unused
    std::uint16_t live = 0;     // slots taken from the bitmap: live or stacked
    std::uint16_t stacked = 0;  // of those, on the class's stack (not live)
    std::uint8_t cls = 0;
    std::uint8_t level = 0;         // its size: span_size(cls) << level
    std::uint64_t summary = 0;      // bit w: free[w] has a free slot
    std::uint64_t* free = nullptr;  // bit i: slot i is free (records: see take_records())
    std::uint32_t node = no_index;
    std::uint32_t next = no_index;  // the class's list of spans with a free slot
    std::uint32_t prev = no_index;
  };
  static_assert(offsetof(span_record, summary) <= 64, "the hot fields share one cache line");

  struct cell {
    std::uint32_t covering = no_index;  // the span covering the cell's first offset
    std::uint32_t starting = no_index;  // the span starting after it, inside the cell
  };
  static constexpr unsigned cell_log2 = 12;
  static constexpr unsigned chunk_log2 = 10;  // cells per chunk: 8 KiB, 4 MiB of offsets
  // A table's chunks come from the resource of the vector of tables (allocator-aware, so
  // that the vector gives its resource to each table it makes).
  struct table {
    using allocator_type = std::pmr::polymorphic_allocator<>;
    std::uint64_t first_cell = 0;
    std::uint64_t cells = 0;  // of the region
    // Made when a span first needs them; the last one holds only the region's cells.
    meta_vector<meta_array<cell>> chunks;
    explicit table(const allocator_type& a) noexcept : chunks(a) {}
    table(table&& other) noexcept = default;
    table(table&& other, const allocator_type& a)
        : first_cell(other.first_cell), cells(other.cells), chunks(std::move(other.chunks), a) {}
  };
  // The index of the lowest set bit of x, which is not 0 (std::countr_zero also handles 0: a
  // test and a branch more on every take()).
  [[nodiscard]] static inline unsigned lowest_bit(std::uint64_t x) noexcept {
    BUFPOOL_ASSERT(x != 0);
    return static_cast<unsigned>(__builtin_ctzll(x));
  }
  [[nodiscard]] static inline bool is_free(const span_record& x, std::uint32_t i) noexcept {
    return (x.free[i >> 6] >> (i & 63) & 1) != 0;
  }
  // A slot that is not live (free in the bitmap, or stacked) has this as its slot record
  // (the alignment half of it for a slot over 4 KiB): no size and alignment encode to it.
  static constexpr std::uint16_t not_live_record = 0xffff;
  [[nodiscard]] static inline std::size_t liveness_record(const span_record& x,
                                                          std::uint32_t i) noexcept {
    return x.slot <= largest_small_slot ? i : 2 * std::size_t{i} + 1;
  }
  [[nodiscard]] static inline bool holds_live(const span_record& x, std::uint32_t i) noexcept {
    return x.sizes[liveness_record(x, i)] != not_live_record;
  }
  // The slot of span x at `delta` bytes from its start (exact for every delta below 2^24:
  // delta * (inverse * slot - 2^40) < 2^40), or x.slots if `delta` does not start one.
  [[nodiscard]] static inline std::uint32_t slot_index(const span_record& x,
                                                       std::uint64_t delta) noexcept {
    const auto i = static_cast<std::uint32_t>((delta * x.inverse) >> 40);
    return i < x.slots && std::uint64_t{i} * x.slot == delta ? i : x.slots;
  }
  // A live slot's record of the size and alignment it was acquired with: one uint16 for a
  // slot of up to 4 KiB (size - 1 | log2(alignment) << 12), two for a larger one.
  static inline void set_record(span_record& x, std::uint32_t i, std::uint64_t size,
                                unsigned align_log2) noexcept {
    if (x.slot <= largest_small_slot) {
      x.sizes[i] = static_cast<std::uint16_t>((size - 1) | std::uint64_t{align_log2} << 12);
    } else {
      x.sizes[2 * i] = static_cast<std::uint16_t>(size - 1);
      x.sizes[2 * i + 1] = static_cast<std::uint16_t>(align_log2);
    }
  }
  [[nodiscard]] static inline std::uint64_t recorded_size(const span_record& x,
                                                          std::uint32_t i) noexcept {
    return x.slot <= largest_small_slot ? std::uint64_t{x.sizes[i] & 0xfffU} + 1
                                        : std::uint64_t{x.sizes[2 * i]} + 1;
  }
  [[nodiscard]] static inline std::uint64_t recorded_alignment(const span_record& x,
                                                               std::uint32_t i) noexcept {
    return std::uint64_t{1} << (x.slot <= largest_small_slot ? x.sizes[i] >> 12
                                                             : x.sizes[2 * i + 1]);
  }
  struct hint {
    std::uintptr_t page = ~std::uintptr_t{0};  // address >> hint_page_log2: none yet
    std::uint32_t span = no_index;
  };
  static constexpr unsigned hint_page_log2 = 12;
  // One hint per 4 KiB page of the spans' peak bytes or of the largest region a span was cut
  // from, whichever is more, a power of two: 16 to 65536 (1 MiB, for 256 MiB). A pool that
  // is rebuilt each cycle (a pmr resource's release() that keeps nothing) makes its table
  // once per cycle, at the size of its regions, instead of doubling it, and dropping its
  // hints, as spans come; clear() keeps the table.
  static constexpr unsigned hint_min_log2 = 4;
  static constexpr unsigned hint_max_log2 = 16;
  [[nodiscard]] inline std::size_t hint_of(std::uintptr_t address) const noexcept {
    return (address >> hint_page_log2) & hint_mask_;
  }
  // Makes the hint table cover `span_bytes` of spans (see hint_min_log2). Allocates; when
  // it grows, the old hints are dropped, as they only save searches.
  void cover_with_hints(std::uint64_t span_bytes);
  [[nodiscard]] cell* cell_of(std::uint32_t region, std::uint64_t offset) noexcept;
  // The largest level of class c (see next_level()): 0 for slots over 4 KiB.
  [[nodiscard]] static unsigned top_level(unsigned c) noexcept {
    if (slot_size(c) > largest_small_slot) return 0;
    unsigned level = 0;
    while (level + 1 < max_levels && (span_size(c) << (level + 1)) <= largest_span &&
           (span_size(c) << (level + 1)) / slot_size(c) <= 4096)
      ++level;
    return level;
  }
  [[nodiscard]] static std::size_t record_words(unsigned c, unsigned level) noexcept;
  [[nodiscard]] std::uint64_t* take_records(unsigned c, unsigned level);
  // `words` words from the current chunk of records, or from a new one. Throws
  // std::bad_alloc with nothing changed.
  [[nodiscard]] std::uint64_t* carve(std::size_t words);
  void point_table(std::uint32_t s, std::uint32_t value) noexcept;
  // Makes slot i of span x, taken from the bitmap or the stack, live for `size` bytes at
  // 2^align_log2, and counts it.
  slot hand_out(span_record& x, std::uint32_t i, std::uint64_t size, unsigned align_log2) noexcept;
  // Marks slot i of span s, taken from the bitmap and not live, free there. Returns the
  // engine node of the span if that emptied it and its class already keeps an empty span
  // (the span is dropped), else no_index.
  std::uint32_t free_in_bitmap(std::uint32_t s, std::uint32_t i) noexcept;
  void link(std::uint32_t s) noexcept;
  void unlink(std::uint32_t s) noexcept;
  std::uint32_t drop(std::uint32_t s) noexcept;

  std::pmr::memory_resource* metadata_;  // where every record below comes from
  meta_vector<span_record> spans_;
  meta_vector<std::uint32_t> unused_;  // span records to reuse
  std::uint32_t partial_[class_count];
  std::uint8_t empty_[class_count] = {};  // empty spans kept per class (at most 1)
  meta_vector<table> tables_;             // by region id
  totals totals_;
  // The spans' bitmaps and slot records live in chunks that are freed only with the slabs
  // (so that destroying them is O(chunks), not O(spans)); a dropped span's records wait in
  // its class's list for the next span of the class.
  struct chunk_delete {
    std::pmr::memory_resource* resource = nullptr;
    std::size_t bytes = 0;
    void operator()(std::byte* p) const noexcept {
      resource->deallocate(p, bytes, alignof(std::uint64_t));
    }
  };
  meta_vector<std::unique_ptr<std::byte, chunk_delete>> chunks_;
  std::size_t chunks_carved_ = 0;  // chunks_[0 .. this) carved from since made or clear()
  std::byte* chunk_next_ = nullptr;
  std::size_t chunk_left_ = 0;
  std::uint64_t* spare_records_[class_count][max_levels] = {};
  std::uint64_t class_bytes_[class_count] = {};  // of the spans each class holds
  meta_array<hint> hints_;                       // null until the first span
  std::size_t hint_mask_ = 0;                    // hints - 1
  // The classes' stacks of released slots, span << stack_slot_bits | slot index: stacked_[c]
  // of them at stacks_[c], which is carved from a chunk with the records of the class's
  // first span (null until then).
  static constexpr unsigned stack_depth = 32;
  static constexpr unsigned stack_slot_bits = 16;
  struct stacked_slot {
    std::uint32_t span;
    std::uint32_t slot;
  };
  [[nodiscard]] static constexpr std::uint64_t pack(std::uint32_t span,
                                                    std::uint32_t slot) noexcept {
    return std::uint64_t{span} << stack_slot_bits | slot;
  }
  [[nodiscard]] static constexpr stacked_slot unpack(std::uint64_t entry) noexcept {
    return {static_cast<std::uint32_t>(entry >> stack_slot_bits),
            static_cast<std::uint32_t>(entry & ((std::uint64_t{1} << stack_slot_bits) - 1))};
  }
  // How many slots class c stacks: as many as hold stack_bytes, 2 to stack_depth. The
  // memory of stacked slots is kept from other classes and from the engine until
  // drop_empty().
  static constexpr std::uint64_t stack_bytes = std::uint64_t{32} << 10;
  static constexpr auto stack_limit = [] {
    std::array<std::uint8_t, class_count> limit{};
    for (unsigned c = 0; c < class_count; ++c)
      limit[c] = static_cast<std::uint8_t>(std::clamp<std::uint64_t>(
          stack_bytes / (slot_granule * slot_classes::granules(c)), 2, stack_depth));
    return limit;
  }();
  std::uint64_t* stacks_[class_count] = {};
  std::uint8_t stacked_[class_count] = {};

 public:
  // Slabs without spans whose records come from `metadata` (null:
  // std::pmr::new_delete_resource()). Allocates nothing.
  explicit slabs(std::pmr::memory_resource* metadata = nullptr) noexcept
      : metadata_(metadata_or_default(metadata)),
        spans_(metadata_),
        unused_(metadata_),
        tables_(metadata_),
        chunks_(metadata_) {
    std::fill(std::begin(partial_), std::end(partial_), no_index);
  }
  // Takes over the other slabs' spans and resource; the moved-from slabs may only be
  // destroyed or assigned to.
  slabs(slabs&&) noexcept = default;
  // The containers' allocators do not follow a move assignment (std::pmr): these slabs are
  // rebuilt from the other instead, and take its resource with its records.
  slabs& operator=(slabs&& other) noexcept {
    if (this != &other) {
      std::destroy_at(this);
      std::construct_at(this, std::move(other));
    }
    return *this;
  }
};

// Slot sizes are slot_classes (bufpool:size_classes): 8 .. 256 in steps of 8 (classes 0 ..
// 31), then 4 per doubling: 320, 384, 448, 512, 640, ... 4096 (classes 32 .. 47), ... 65536
// (class 63). The paths every acquisition and release take are defined here, inline.
constexpr std::uint64_t slabs::slot_size(unsigned c) noexcept {
  return slot_granule * slot_classes::granules(c);
}

inline unsigned slabs::class_of(std::uint64_t size, std::uint64_t alignment) noexcept {
  if (size > largest_slot || alignment > largest_alignment) return no_class;
  if (size > largest_small_slot) {
    unsigned c = slot_classes::index_of((size - 1) / slot_granule + 1);
    while (c < class_count && (slot_size(c) & (alignment - 1)) != 0) ++c;
    return c < class_count ? c : no_class;
  }
  // The smallest class that holds (size - 1) / 8 + 1 granules of 8 bytes, from a table.
  unsigned c = small_classes[0][(size - 1) / slot_granule];
  // Every slot size is a multiple of 8: only a larger alignment may need a larger class.
  if (alignment > 8)
    while (c < class_count && (slot_size(c) & (alignment - 1)) != 0) ++c;
  return c < class_count ? c : no_class;
}

[[gnu::always_inline]] inline std::optional<slabs::slot> slabs::take(unsigned c, std::uint64_t size,
                                                                     unsigned align_log2) noexcept {
  if (const unsigned n = stacked_[c]; n != 0) {  // the slot released last
    const auto [s, i] = unpack(stacks_[c][n - 1]);
    stacked_[c] = static_cast<std::uint8_t>(n - 1);
    span_record& x = spans_[s];
    BUFPOOL_ASSERT(x.cls == c && x.stacked != 0 && !is_free(x, i) && !holds_live(x, i));
    --x.stacked;
    return hand_out(x, i, size, align_log2);
  }
  const std::uint32_t s = partial_[c];
  if (s == no_index) return std::nullopt;
  span_record& x = spans_[s];
  BUFPOOL_ASSERT(x.cls == c && x.live < x.slots && x.summary != 0);  // listed: has a free slot
  const unsigned w = lowest_bit(x.summary);
  std::uint64_t& word = x.free[w];
  BUFPOOL_ASSERT(word != 0);  // the summary word names words with a free slot
  const std::uint32_t i = w * 64 + lowest_bit(word);
  word &= word - 1;
  if (word == 0) x.summary &= ~(std::uint64_t{1} << w);
  if (x.live++ == 0) --empty_[c];
  if (x.live == x.slots) unlink(s);
  return hand_out(x, i, size, align_log2);
}

[[gnu::always_inline]] inline slabs::slot slabs::hand_out(span_record& x, std::uint32_t i,
                                                          std::uint64_t size,
                                                          unsigned align_log2) noexcept {
  set_record(x, i, size, align_log2);
  totals_.live_bytes += x.slot;
  ++totals_.live_slots;
  return slot{x.offset + std::uint64_t{i} * x.slot, x.slot, x.region,
              x.address + std::size_t{i} * x.slot};
}

inline std::uint32_t slabs::find(std::uint64_t offset, std::uint32_t region) const noexcept {
  if (region >= tables_.size()) return no_index;
  const table& t = tables_[region];
  const std::uint64_t k = (offset >> cell_log2) - t.first_cell;
  if (k >= t.cells) return no_index;  // outside the region, or no span in it yet
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
  const span_record& x = spans_[h.span];
  const std::uintptr_t delta = address - reinterpret_cast<std::uintptr_t>(x.address);
  if (delta >= x.bytes) return std::nullopt;
  return place{h.span, x.region, x.offset + delta};
}

[[gnu::always_inline]] inline slabs::verdict slabs::free_slot(std::uint32_t s, std::uint64_t offset,
                                                              const std::uint64_t* size,
                                                              std::uint64_t alignment,
                                                              std::uint32_t& dropped) noexcept {
  dropped = no_index;
  span_record& x = spans_[s];
  const std::uint32_t i = slot_index(x, offset - x.offset);
  if (i == x.slots || !holds_live(x, i)) return verdict::not_live;
  if (size != nullptr) {
    if (*size != recorded_size(x, i)) return verdict::size;
    if (alignment != recorded_alignment(x, i)) return verdict::alignment;
  }
  BUFPOOL_ASSERT(x.live > x.stacked && totals_.live_slots != 0 && totals_.live_bytes >= x.slot);
  BUFPOOL_ASSERT(!is_free(x, i));
  x.sizes[liveness_record(x, i)] = not_live_record;
  totals_.live_bytes -= x.slot;
  --totals_.live_slots;
  if (const unsigned n = stacked_[x.cls]; n < stack_limit[x.cls]) {
    stacks_[x.cls][n] = pack(s, i);
    stacked_[x.cls] = static_cast<std::uint8_t>(n + 1);
    ++x.stacked;
    return verdict::ok;
  }
  dropped = free_in_bitmap(s, i);
  return verdict::ok;
}

[[gnu::always_inline]] inline std::uint32_t slabs::free_in_bitmap(std::uint32_t s,
                                                                  std::uint32_t i) noexcept {
  span_record& x = spans_[s];
  BUFPOOL_ASSERT(x.live > x.stacked && !is_free(x, i) && !holds_live(x, i));
  x.free[i >> 6] |= std::uint64_t{1} << (i & 63);
  x.summary |= std::uint64_t{1} << (i >> 6);
  if (x.live-- == x.slots) link(s);
  if (x.live == 0 && ++empty_[x.cls] > 1) return drop(s);
  return no_index;
}

// Puts span s first in its class's list (the next take() uses it).
[[gnu::always_inline]] inline void slabs::link(std::uint32_t s) noexcept {
  span_record& x = spans_[s];
  BUFPOOL_ASSERT(partial_[x.cls] != s && x.prev == no_index && x.next == no_index);
  x.prev = no_index;
  x.next = partial_[x.cls];
  if (x.next != no_index) spans_[x.next].prev = s;
  partial_[x.cls] = s;
}

[[gnu::always_inline]] inline void slabs::unlink(std::uint32_t s) noexcept {
  span_record& x = spans_[s];
  BUFPOOL_ASSERT(x.prev != no_index ? spans_[x.prev].next == s : partial_[x.cls] == s);
  BUFPOOL_ASSERT(x.next == no_index || spans_[x.next].prev == s);
  if (x.prev != no_index)
    spans_[x.prev].next = x.next;
  else
    partial_[x.cls] = x.next;
  if (x.next != no_index) spans_[x.next].prev = x.prev;
  x.next = x.prev = no_index;
}

}  // namespace detail

}  // namespace bufpool

#pragma GCC visibility pop
