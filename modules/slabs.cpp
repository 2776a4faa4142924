// SPDX-License-Identifier: MIT
// The pool's slabs: small greedy raw ranges as slots of one-class spans (see bufpool:slabs).
module;
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <expected>
#include <memory>
#include <memory_resource>
#include <new>
#include <optional>
#include <source_location>
#include <string>
#include <utility>
#include <vector>

#include "internal_assert.hpp"
module bufpool;

namespace bufpool::detail {

slabs::cell* slabs::cell_of(std::uint32_t region, std::uint64_t offset) noexcept {
  BUFPOOL_ASSERT(region < tables_.size());
  table& t = tables_[region];
  const std::uint64_t k = (offset >> cell_log2) - t.first_cell;
  BUFPOOL_ASSERT((k >> chunk_log2) < t.chunks.size() && t.chunks[k >> chunk_log2]);
  return &t.chunks[k >> chunk_log2][k & ((1U << chunk_log2) - 1)];
}

void slabs::add_span(unsigned c, std::uint64_t offset, std::uint64_t bytes, std::uint32_t node,
                     std::uint32_t region, std::uint64_t region_offset, std::uint64_t region_size,
                     std::byte* address) {
  // Every allocation first.
  cover_with_hints(std::max(totals_.span_bytes + bytes, region_size));
  if (tables_.size() <= region) tables_.resize(region + 1);
  table& t = tables_[region];
  if (t.chunks.empty()) {
    const std::uint64_t first_cell = region_offset >> cell_log2;
    const std::uint64_t last_cell = ((region_offset + (region_size - 1)) >> cell_log2) - first_cell;
    t.chunks.resize((last_cell >> chunk_log2) + 1);  // may throw: the table stays as it was
    t.first_cell = first_cell;
    t.cells = last_cell + 1;
  }
  const std::uint64_t first = (offset >> cell_log2) - t.first_cell;
  const std::uint64_t last = ((offset + (bytes - 1)) >> cell_log2) - t.first_cell;
  for (std::uint64_t k = first >> chunk_log2; k <= last >> chunk_log2; ++k)
    if (!t.chunks[k])
      t.chunks[k] = make_meta_array<cell>(
          metadata_, std::min(std::uint64_t{1} << chunk_log2, t.cells - (k << chunk_log2)));
  // The largest level the range holds (its capacity may exceed the size asked for, by less
  // than a doubling) and the class may take.
  unsigned level = 0;
  while (level < next_level(c) && bytes >= span_size(c) << (level + 1)) ++level;
  BUFPOOL_ASSERT(bytes >= span_size(c));
  const auto slot = static_cast<std::uint32_t>(slot_size(c));
  const auto slots = static_cast<std::uint16_t>((span_size(c) << level) / slot);
  const std::size_t words = (slots + 63) / 64;
  // A class gets a span only when none of its spans has a free slot, so it never keeps two
  // empty ones.
  BUFPOOL_ASSERT(slots != 0 && words <= 64 && partial_[c] == no_index && empty_[c] == 0);
  if (unused_.empty()) {
    room_for_one(spans_);
    if (unused_.capacity() < spans_.capacity())  // drop() must not allocate
      unused_.reserve(spans_.capacity());
    unused_.push_back(static_cast<std::uint32_t>(spans_.size()));
    spans_.emplace_back();  // an unused record: nothing changes if take_records() throws
  }
  if (stacks_[c] == nullptr) stacks_[c] = carve(stack_limit[c]);
  std::uint64_t* const records = take_records(c, level);

  const std::uint32_t s = unused_.back();
  unused_.pop_back();
  span_record& x = spans_[s];
  x.offset = offset;
  x.bytes = bytes;
  x.address = address;
  x.free = records;
  x.sizes = std::launder(reinterpret_cast<std::uint16_t*>(records + words));
  for (std::size_t w = 0; w < words; ++w) x.free[w] = ~std::uint64_t{0};
  if (slots % 64 != 0) x.free[words - 1] = (std::uint64_t{1} << (slots % 64)) - 1;
  std::fill_n(x.sizes, slot_size(c) <= largest_small_slot ? slots : 2 * slots, not_live_record);
  x.summary = words == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << words) - 1;
  x.node = node;
  x.region = region;
  x.slot = slot;
  x.inverse = ((std::uint64_t{1} << 40) + slot - 1) / slot;
  x.slots = slots;
  x.live = 0;
  x.stacked = 0;
  x.cls = static_cast<std::uint8_t>(c);
  x.level = static_cast<std::uint8_t>(level);
  class_bytes_[c] += bytes;
  point_table(s, s);
  link(s);
  ++empty_[c];
  totals_.span_bytes += bytes;
  ++totals_.spans;
}

void slabs::cover_with_hints(std::uint64_t span_bytes) {
  const std::uint64_t wanted =
      std::clamp(std::bit_ceil(span_bytes >> hint_page_log2), std::uint64_t{1} << hint_min_log2,
                 std::uint64_t{1} << hint_max_log2);
  if (hints_ && wanted <= hint_mask_ + 1) return;
  hints_ = make_meta_array<hint>(metadata_, wanted);
  hint_mask_ = wanted - 1;
}

// The words of a span's records in class c: its free-slot bitmap, then its slot records
// (see set_record()), rounded up to whole words.
std::size_t slabs::record_words(unsigned c, unsigned level) noexcept {
  const std::uint64_t slots = (span_size(c) << level) / slot_size(c);
  const std::uint64_t records = slot_size(c) <= largest_small_slot ? slots : 2 * slots;
  return static_cast<std::size_t>((slots + 63) / 64 + (2 * records + 7) / 8);
}

// Records for a new span of class c at `level`: a dropped span's of the same size, else
// carved from the current chunk (chunks double from 4 KiB to 64 KiB). Throws std::bad_alloc
// with nothing changed.
std::uint64_t* slabs::take_records(unsigned c, unsigned level) {
  std::uint64_t*& spare = spare_records_[c][level];
  if (std::uint64_t* const records = spare; records != nullptr) {
    spare = reinterpret_cast<std::uint64_t*>(static_cast<std::uintptr_t>(records[0]));
    return records;
  }
  return carve(record_words(c, level));
}

std::uint64_t* slabs::carve(std::size_t words) {
  const std::size_t bytes = 8 * words;
  if (chunk_left_ < bytes) {
    // The next chunk kept by clear() that holds the words, else a new one at the end.
    while (chunks_carved_ < chunks_.size() && chunks_[chunks_carved_].get_deleter().bytes < bytes)
      ++chunks_carved_;
    if (chunks_carved_ == chunks_.size()) {
      room_for_one(chunks_);
      const std::size_t grown = std::size_t{4096} << std::min<std::size_t>(chunks_.size(), 4);
      const std::size_t size = std::max(grown, bytes);
      chunks_.emplace_back(
          static_cast<std::byte*>(metadata_->allocate(size, alignof(std::uint64_t))),
          chunk_delete{metadata_, size});
    }
    const auto& chunk = chunks_[chunks_carved_++];
    chunk_next_ = chunk.get();
    chunk_left_ = chunk.get_deleter().bytes;
  }
  // The words and records are implicit-lifetime objects in the chunk's storage: std::launder
  // reaches them.
  std::uint64_t* const at = std::launder(reinterpret_cast<std::uint64_t*>(chunk_next_));
  chunk_next_ += bytes;
  chunk_left_ -= bytes;
  return at;
}

void slabs::clear() noexcept {
  auto spans = std::move(spans_);
  auto unused = std::move(unused_);
  auto chunks = std::move(chunks_);
  auto tables = std::move(tables_);
  auto hints = std::move(hints_);
  const std::size_t hint_mask = hint_mask_;
  spans.clear();
  unused.clear();
  tables.clear();             // by region id: the regions are gone
  *this = slabs(metadata_);   // every other member as new: no span, table, stack or spare
  spans_ = std::move(spans);  // one resource: the storage moves
  unused_ = std::move(unused);
  chunks_ = std::move(chunks);
  tables_.swap(tables);  // (a table is not move-assignable)
  if (hints) {
    std::fill_n(hints.get(), hint_mask + 1, hint{});
    hints_ = std::move(hints);
    hint_mask_ = hint_mask;
  }
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> slabs::live_slot(
    std::uint32_t s, std::uint64_t offset) const noexcept {
  const span_record& x = spans_[s];
  const std::uint32_t i = slot_index(x, offset - x.offset);
  if (i == x.slots || !holds_live(x, i)) return std::nullopt;
  return std::pair{recorded_size(x, i), std::uint64_t{x.slot}};
}

void slabs::set_size(std::uint32_t s, std::uint64_t offset, std::uint64_t size) noexcept {
  span_record& x = spans_[s];
  const std::uint32_t i = slot_index(x, offset - x.offset);
  BUFPOOL_ASSERT(i < x.slots && holds_live(x, i) && size != 0 && size <= x.slot);
  set_record(x, i, size, static_cast<unsigned>(std::countr_zero(recorded_alignment(x, i))));
}

// Sets the cells of the table that span s touches to `value` (s, or no_index to clear): the
// cell it starts in (as covering if it starts the cell, else as starting), and as covering
// every later cell up to its last byte.
void slabs::point_table(std::uint32_t s, std::uint32_t value) noexcept {
  const span_record& x = spans_[s];
  constexpr std::uint64_t cell_bytes = std::uint64_t{1} << cell_log2;
  // Spans do not overlap: a new span finds its cells free, a dropped one finds them its own.
  const std::uint32_t was = value == no_index ? s : no_index;
  BUFPOOL_ASSERT(x.slots != 0 && x.bytes != 0);
  cell* head = cell_of(x.region, x.offset);
  if ((x.offset & (cell_bytes - 1)) == 0) {
    BUFPOOL_ASSERT(head->covering == was);
    head->covering = value;
  } else {
    BUFPOOL_ASSERT(head->starting == was);
    head->starting = value;
  }
  for (std::uint64_t at = (x.offset | (cell_bytes - 1)) + 1; at - x.offset < x.bytes;
       at += cell_bytes) {
    cell* c = cell_of(x.region, at);
    BUFPOOL_ASSERT(c->covering == was);
    c->covering = value;
  }
}

// Forgets span s, empty and counted as such (the caller gives its engine range back);
// returns its node.
std::uint32_t slabs::drop(std::uint32_t s) noexcept {
  span_record& x = spans_[s];
  // Only an empty span goes: no live slot, every slot free in the bitmap, every bitmap word
  // in the summary.
  BUFPOOL_ASSERT(x.slots != 0 && x.live == 0 && empty_[x.cls] != 0);
  BUFPOOL_ASSERT([&] {
    for (std::uint32_t w = 0; w * 64 < x.slots; ++w) {
      const std::uint64_t all =
          x.slots - w * 64 >= 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << (x.slots % 64)) - 1;
      if (x.free[w] != all || ((x.summary >> w) & 1) == 0) return false;
    }
    return true;
  }());
  BUFPOOL_ASSERT(totals_.spans != 0 && totals_.span_bytes >= x.bytes);
  --empty_[x.cls];
  unlink(s);
  point_table(s, no_index);
  totals_.span_bytes -= x.bytes;
  --totals_.spans;
  class_bytes_[x.cls] -= x.bytes;
  const std::uint32_t node = x.node;
  // The records wait for the class's next span of their size, linked through their first
  // word.
  x.free[0] = reinterpret_cast<std::uintptr_t>(spare_records_[x.cls][x.level]);
  spare_records_[x.cls][x.level] = x.free;
  x.free = nullptr;
  x.sizes = nullptr;
  x.slots = 0;
  x.bytes = 0;  // covers nothing: a hint that names it misses
  x.node = no_index;
  unused_.push_back(s);  // room was made when the record was created
  return node;
}

slabs::totals slabs::of_region(std::uint32_t region) const noexcept {
  totals t;
  for (const span_record& x : spans_) {
    if (x.slots == 0 || x.region != region) continue;
    BUFPOOL_ASSERT(x.stacked <= x.live && x.live <= x.slots);
    t.span_bytes += x.bytes;
    t.live_bytes += (std::uint64_t{x.live} - x.stacked) * x.slot;
    ++t.spans;
    t.live_slots += x.live - x.stacked;
  }
  return t;
}

std::expected<void, std::string> slabs::validate(const engine& e) const {
  const auto fail = [](const char* what) { return std::unexpected(std::string("slabs: ") + what); };
  // The class lists first, once: each lists live records of its class, each at most once.
  std::vector<bool> listed(spans_.size());
  for (unsigned c = 0; c < class_count; ++c)
    for (std::uint32_t t = partial_[c]; t != no_index; t = spans_[t].next) {
      if (t >= spans_.size() || spans_[t].slots == 0 || spans_[t].cls != c)
        return fail("a class lists a wrong span");
      if (listed[t]) return fail("a class list holds a span twice, or has a cycle");
      listed[t] = true;
    }
  // The stacks: each entry a slot of a live span of its class, taken from the bitmap and
  // not live, and no slot twice; per span as many as it counts.
  std::vector<std::uint64_t> entries;
  std::vector<std::uint32_t> stacked_of(spans_.size());
  for (unsigned c = 0; c < class_count; ++c) {
    if (stacked_[c] > stack_limit[c]) return fail("a class stacks more slots than it may");
    for (unsigned k = 0; k < stacked_[c]; ++k) {
      const std::uint64_t entry = stacks_[c][k];
      const auto [span, i] = unpack(entry);
      if (span >= spans_.size() || spans_[span].slots == 0 || spans_[span].cls != c ||
          i >= spans_[span].slots || is_free(spans_[span], i) || holds_live(spans_[span], i))
        return fail("a class stacks a slot that is not a taken, not live slot of its class");
      entries.push_back(entry);
      ++stacked_of[span];
    }
  }
  std::ranges::sort(entries);
  if (std::ranges::adjacent_find(entries) != entries.end()) return fail("a slot is stacked twice");
  totals sum;
  std::uint8_t empties[class_count] = {};
  std::uint64_t class_bytes[class_count] = {};
  for (std::uint32_t s = 0; s < spans_.size(); ++s) {
    const span_record& x = spans_[s];
    if (x.slots == 0) continue;
    if (!e.is_live(x.node) || e.node_offset(x.node) != x.offset || e.node_size(x.node) != x.bytes)
      return fail("a span is not the live engine range it records");
    if (x.cls >= class_count || x.slot != slot_size(x.cls) || x.level > top_level(x.cls) ||
        x.slots != (span_size(x.cls) << x.level) / x.slot || x.bytes < span_size(x.cls) << x.level)
      return fail("a span's class, slot size or slot count is inconsistent");
    if (find(x.offset, x.region) != s || find(x.offset + x.bytes / 2, x.region) != s ||
        find(x.offset + x.bytes - 1, x.region) != s)
      return fail("the offset table does not lead to a span");
    std::size_t free = 0;
    for (std::uint32_t w = 0; w * 64 < x.slots; ++w) {
      free += static_cast<std::size_t>(std::popcount(x.free[w]));
      if (((x.summary >> w) & 1) != (x.free[w] != 0 ? 1U : 0U))
        return fail("a span's summary word disagrees with its bitmap");
    }
    if (x.slots % 64 != 0 && (x.free[x.slots / 64] >> (x.slots % 64)) != 0)
      return fail("a span marks slots beyond its last one free");
    if (free + x.live != x.slots) return fail("a span's live count disagrees with its bitmap");
    if (x.stacked != stacked_of[s] || x.stacked > x.live)
      return fail("a span's stacked count disagrees with the stacks");
    std::size_t not_live = 0;
    for (std::uint32_t i = 0; i < x.slots; ++i) {
      if (!holds_live(x, i)) {
        not_live += is_free(x, i) ? 0 : 1;
        continue;
      }
      if (is_free(x, i)) return fail("a slot free in its bitmap records a live size");
      if (recorded_size(x, i) > x.slot || recorded_alignment(x, i) > largest_alignment ||
          x.slot % recorded_alignment(x, i) != 0)
        return fail("a live slot records a size or alignment its slot cannot hold");
    }
    if (not_live != x.stacked) return fail("a taken slot that is not live is not stacked");
    if (listed[s] != (x.live < x.slots))
      return fail("a span is listed exactly when it has a free slot: not so");
    if (x.live == 0) ++empties[x.cls];
    class_bytes[x.cls] += x.bytes;
    sum.span_bytes += x.bytes;
    sum.live_bytes += (std::uint64_t{x.live} - x.stacked) * x.slot;
    ++sum.spans;
    sum.live_slots += x.live - x.stacked;
  }
  for (unsigned c = 0; c < class_count; ++c)
    if (empties[c] != empty_[c] || empty_[c] > 1 || class_bytes[c] != class_bytes_[c])
      return fail("a class keeps a wrong empty count or byte count");
  if (sum.span_bytes != totals_.span_bytes || sum.live_bytes != totals_.live_bytes ||
      sum.spans != totals_.spans || sum.live_slots != totals_.live_slots)
    return fail("the totals disagree with the spans");
  return {};
}

}  // namespace bufpool::detail
