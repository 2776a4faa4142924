// SPDX-License-Identifier: MIT
// The offset engine: AVL trees over free ranges with per-alignment-level subtree maxima.
module;
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>
module bufpool;

// Why two trees, and what the aggregates are:
//
// Every free range is one slot in two AVL trees. The size tree orders slots by
// (size, offset); each subtree also keeps, for every alignment level j (alignment
// min_alignment << j), the largest *usable* size of its ranges at that level:
// size - padding to the next aligned offset. "Leftmost slot whose usable size fits" is
// then the exact aligned best fit, found in one descent that never enters a subtree whose
// maximum is too small. The offset tree orders the same slots by offset so fixed() finds
// the free range containing an offset in one descent.

namespace bufpool {
namespace {

constexpr std::size_t cache_line = 64;
constexpr std::uint8_t node_unused = 0;
constexpr std::uint8_t node_free = 1;
constexpr std::uint8_t node_used = 2;

// Padding from `offset` up to the next multiple of `alignment` (a power of two).
constexpr offset_t pad_to(offset_t offset, offset_t alignment) noexcept {
  return (offset_t{0} - offset) & (alignment - 1);
}

// Last offset of a non-empty range; never overflows where offset + size would.
constexpr offset_t last_of(offset_t offset, offset_t size) noexcept {
  return offset + (size - 1);
}

}  // namespace

// Link accessors for the generic AVL code.
struct engine::size_tree_traits {
  static std::uint32_t& left(engine& e, std::uint32_t s) noexcept { return e.sl(s).left; }
  static std::uint32_t& right(engine& e, std::uint32_t s) noexcept { return e.sl(s).right; }
  static std::uint8_t height(const engine& e, std::uint32_t s) noexcept {
    return s == no_index ? std::uint8_t{0} : e.sl(s).height;
  }
  static bool less(const engine& e, std::uint32_t a, std::uint32_t b) noexcept {
    const slot& x = e.sl(a);
    const slot& y = e.sl(b);
    return x.size != y.size ? x.size < y.size : x.offset < y.offset;
  }
  static bool pull_height(engine& e, std::uint32_t s) noexcept {
    slot& x = e.sl(s);
    const auto h = static_cast<std::uint8_t>(1 + std::max(height(e, x.left), height(e, x.right)));
    const bool changed = h != x.height;
    x.height = h;
    return changed;
  }
  static std::uint64_t pull_maxima(engine& e, std::uint32_t s, std::uint64_t levels) noexcept {
    return e.pull_maxima(s, levels);
  }
};

struct engine::offset_tree_traits {
  static std::uint32_t& left(engine& e, std::uint32_t s) noexcept { return e.sl(s).oleft; }
  static std::uint32_t& right(engine& e, std::uint32_t s) noexcept { return e.sl(s).oright; }
  static std::uint8_t height(const engine& e, std::uint32_t s) noexcept {
    return s == no_index ? std::uint8_t{0} : e.sl(s).oheight;
  }
  static bool less(const engine& e, std::uint32_t a, std::uint32_t b) noexcept {
    return e.sl(a).offset < e.sl(b).offset;
  }
  static bool pull_height(engine& e, std::uint32_t s) noexcept {
    slot& x = e.sl(s);
    const auto h = static_cast<std::uint8_t>(1 + std::max(height(e, x.oleft), height(e, x.oright)));
    const bool changed = h != x.oheight;
    x.oheight = h;
    return changed;
  }
  static std::uint64_t pull_maxima(engine&, std::uint32_t, std::uint64_t) noexcept {
    return 0;  // the offset tree keeps no maxima
  }
};

engine::engine(const engine_limits& limits) : limits_(limits) {
  granule_log2_ = static_cast<unsigned>(std::countr_zero(limits_.min_alignment));
  levels_ = static_cast<unsigned>(std::countr_zero(limits_.max_alignment)) - granule_log2_ + 1;
  all_levels_ = levels_ == 64 ? ~std::uint64_t{0} : (std::uint64_t{1} << levels_) - 1;
  // Blocks start on cache lines, so a slot's keys and links never straddle two.
  slot_stride_ = (sizeof(slot) + levels_ * sizeof(offset_t) + cache_line - 1) & ~(cache_line - 1);
}

// ---------------------------------------------------------------------------------------
// Node and slot pools: index-linked free lists, so steady state allocates nothing.

std::uint32_t engine::new_node() {
  if (free_nodes_ != no_index) {
    const std::uint32_t n = free_nodes_;
    free_nodes_ = nodes_[n].slot;
    nodes_[n] = node{};
    return n;
  }
  nodes_.emplace_back();
  // Slots in use never outnumber nodes: with this capacity, release() never allocates.
  if (slot_capacity_ < nodes_.size()) grow_slots(2 * nodes_.size());
  return static_cast<std::uint32_t>(nodes_.size() - 1);
}

void engine::free_node(std::uint32_t n) noexcept {
  nodes_[n].state = node_unused;
  nodes_[n].slot = free_nodes_;
  free_nodes_ = n;
}

std::uint32_t engine::new_slot() {
  if (free_slots_ != no_index) {
    const std::uint32_t s = free_slots_;
    free_slots_ = sl(s).left;
    sl(s) = slot{};
    return s;
  }
  if (slot_count_ == slot_capacity_) grow_slots(std::max<std::size_t>(16, 2 * slot_capacity_));
  const std::uint32_t s = slot_count_++;
  ::new (static_cast<void*>(slot_memory_.get() + s * slot_stride_)) slot{};
  return s;
}

// Slots live in one buffer, each followed by its per-level maxima, so a descent that reads
// a child's maximum and then moves to that child touches one block, not two arrays.
// slot and offset_t are trivially copyable: growing copies the bytes.
void engine::grow_slots(std::size_t capacity) {
  slot_buffer fresh(static_cast<std::byte*>(
      ::operator new(capacity * slot_stride_, std::align_val_t{cache_line})));
  if (slot_count_ != 0) std::memcpy(fresh.get(), slot_memory_.get(), slot_count_ * slot_stride_);
  slot_memory_ = std::move(fresh);
  slot_capacity_ = capacity;
}

void engine::slot_buffer_free::operator()(std::byte* p) const noexcept {
  ::operator delete(p, std::align_val_t{cache_line});
}

engine::slot& engine::sl(std::uint32_t s) noexcept {
  return *std::launder(reinterpret_cast<slot*>(slot_memory_.get() + s * slot_stride_));
}
const engine::slot& engine::sl(std::uint32_t s) const noexcept {
  return *std::launder(reinterpret_cast<const slot*>(slot_memory_.get() + s * slot_stride_));
}
offset_t* engine::maxima(std::uint32_t s) noexcept {
  return std::launder(
      reinterpret_cast<offset_t*>(slot_memory_.get() + s * slot_stride_ + sizeof(slot)));
}
const offset_t* engine::maxima(std::uint32_t s) const noexcept {
  return std::launder(
      reinterpret_cast<const offset_t*>(slot_memory_.get() + s * slot_stride_ + sizeof(slot)));
}

void engine::free_slot(std::uint32_t s) noexcept {
  sl(s).node = no_index;
  sl(s).left = free_slots_;
  free_slots_ = s;
}

// ---------------------------------------------------------------------------------------
// Aggregates and AVL balancing.

offset_t engine::usable(std::uint32_t s, unsigned level) const noexcept {
  const slot& x = sl(s);
  const offset_t pad = pad_to(x.offset, limits_.min_alignment << level);
  return pad < x.size ? x.size - pad : 0;
}

// Recomputes the maxima of the levels in the bit set `levels` from the slot's own range and
// its children's maxima. Returns the levels whose value changed: an update climbing the
// tree carries only those, and stops when none are left.
std::uint64_t engine::pull_maxima(std::uint32_t s, std::uint64_t levels) noexcept {
  const slot& x = sl(s);
  offset_t* out = maxima(s);
  const offset_t* l = x.left == no_index ? nullptr : maxima(x.left);
  const offset_t* r = x.right == no_index ? nullptr : maxima(x.right);
  std::uint64_t changed = 0;
  for (; levels != 0; levels &= levels - 1) {
    const auto j = static_cast<unsigned>(std::countr_zero(levels));
    offset_t m = usable(s, j);
    if (l != nullptr) m = std::max(m, l[j]);
    if (r != nullptr) m = std::max(m, r[j]);
    if (out[j] != m) {
      out[j] = m;
      changed |= std::uint64_t{1} << j;
    }
  }
  return changed;
}

template <class T>
std::uint32_t engine::rotate_right(std::uint32_t s) noexcept {
  const std::uint32_t l = T::left(*this, s);
  T::left(*this, s) = T::right(*this, l);
  T::right(*this, l) = s;
  T::pull_height(*this, s);
  T::pull_maxima(*this, s, all_levels_);
  T::pull_height(*this, l);
  T::pull_maxima(*this, l, all_levels_);
  return l;
}

template <class T>
std::uint32_t engine::rotate_left(std::uint32_t s) noexcept {
  const std::uint32_t r = T::right(*this, s);
  T::right(*this, s) = T::left(*this, r);
  T::left(*this, r) = s;
  T::pull_height(*this, s);
  T::pull_maxima(*this, s, all_levels_);
  T::pull_height(*this, r);
  T::pull_maxima(*this, r, all_levels_);
  return r;
}

// Restores the AVL balance at `s` after one of its subtrees changed. Heights are always
// recomputed; maxima only for the levels that changed below (changed_levels_). On return
// height_changed_ / changed_levels_ say what differs in this subtree's summary, so callers
// up the path can stop early.
template <class T>
std::uint32_t engine::rebalance(std::uint32_t s) noexcept {
  const bool height = T::pull_height(*this, s);
  const std::uint64_t maxima = changed_levels_ != 0 ? T::pull_maxima(*this, s, changed_levels_) : 0;
  const int balance =
      int{T::height(*this, T::left(*this, s))} - int{T::height(*this, T::right(*this, s))};
  if (balance > 1) {
    const std::uint32_t l = T::left(*this, s);
    if (T::height(*this, T::left(*this, l)) < T::height(*this, T::right(*this, l)))
      T::left(*this, s) = rotate_left<T>(l);
    height_changed_ = true;
    changed_levels_ = all_levels_;
    return rotate_right<T>(s);
  }
  if (balance < -1) {
    const std::uint32_t r = T::right(*this, s);
    if (T::height(*this, T::right(*this, r)) < T::height(*this, T::left(*this, r)))
      T::right(*this, s) = rotate_right<T>(r);
    height_changed_ = true;
    changed_levels_ = all_levels_;
    return rotate_left<T>(s);
  }
  height_changed_ = height;
  changed_levels_ = maxima;
  return s;
}

// Whether the last update below changed anything this node summarizes.
bool engine::summary_changed() const noexcept {
  return height_changed_ || changed_levels_ != 0;
}

template <class T>
std::uint32_t engine::insert(std::uint32_t root, std::uint32_t s) noexcept {
  if (root == no_index) {
    T::left(*this, s) = no_index;
    T::right(*this, s) = no_index;
    T::pull_height(*this, s);
    T::pull_maxima(*this, s, all_levels_);
    height_changed_ = true;
    changed_levels_ = all_levels_;
    return s;
  }
  if (T::less(*this, s, root))
    T::left(*this, root) = insert<T>(T::left(*this, root), s);
  else
    T::right(*this, root) = insert<T>(T::right(*this, root), s);
  // An unchanged subtree leaves this node's summary and balance as they were.
  return summary_changed() ? rebalance<T>(root) : root;
}

template <class T>
std::uint32_t engine::erase_min(std::uint32_t root, std::uint32_t& min) noexcept {
  if (T::left(*this, root) == no_index) {
    min = root;
    height_changed_ = true;
    changed_levels_ = all_levels_;
    return T::right(*this, root);
  }
  T::left(*this, root) = erase_min<T>(T::left(*this, root), min);
  return summary_changed() ? rebalance<T>(root) : root;
}

// Keys are unique (offsets of free ranges differ), so `s` is found by its key.
template <class T>
std::uint32_t engine::erase(std::uint32_t root, std::uint32_t s) noexcept {
  if (root == s) {
    const std::uint32_t l = T::left(*this, s);
    const std::uint32_t r = T::right(*this, s);
    height_changed_ = true;
    changed_levels_ = all_levels_;
    if (l == no_index) return r;
    if (r == no_index) return l;
    std::uint32_t m = no_index;
    const std::uint32_t rest = erase_min<T>(r, m);
    T::left(*this, m) = l;
    T::right(*this, m) = rest;
    changed_levels_ = all_levels_;  // m's stored maxima were its own, not the erased node's
    const std::uint32_t top = rebalance<T>(m);
    height_changed_ = true;
    changed_levels_ = all_levels_;
    return top;
  }
  if (T::less(*this, s, root))
    T::left(*this, root) = erase<T>(T::left(*this, root), s);
  else
    T::right(*this, root) = erase<T>(T::right(*this, root), s);
  return summary_changed() ? rebalance<T>(root) : root;
}

// ---------------------------------------------------------------------------------------
// Free-range bookkeeping.

void engine::add_free(std::uint32_t n) {
  const std::uint32_t s = new_slot();
  node& x = nodes_[n];
  x.state = node_free;
  x.slot = s;
  sl(s).offset = x.offset;
  sl(s).size = x.size;
  sl(s).node = n;
  size_root_ = insert<size_tree_traits>(size_root_, s);
  offset_root_ = insert<offset_tree_traits>(offset_root_, s);
  region_rec& r = regions_[x.region];
  r.free_bytes += x.size;
  ++r.free_ranges;
  free_bytes_ += x.size;
  ++free_ranges_;
}

void engine::remove_free(std::uint32_t n) noexcept {
  node& x = nodes_[n];
  const std::uint32_t s = x.slot;
  size_root_ = erase<size_tree_traits>(size_root_, s);
  offset_root_ = erase<offset_tree_traits>(offset_root_, s);
  free_slot(s);
  x.slot = no_index;
  region_rec& r = regions_[x.region];
  r.free_bytes -= x.size;
  --r.free_ranges;
  free_bytes_ -= x.size;
  --free_ranges_;
}

// Hands free slot `s` to node `n`, whose range [offset, offset + size) replaces the slot's
// old range without passing another free range: the offset tree keeps the slot where it is,
// only the size tree moves it.
void engine::rekey_free(std::uint32_t s, std::uint32_t n) noexcept {
  size_root_ = erase<size_tree_traits>(size_root_, s);
  slot& x = sl(s);
  node& y = nodes_[n];
  region_rec& r = regions_[y.region];
  r.free_bytes = r.free_bytes - x.size + y.size;  // modular: the result is in range
  free_bytes_ = free_bytes_ - x.size + y.size;
  x.offset = y.offset;
  x.size = y.size;
  x.node = n;
  y.slot = s;
  y.state = node_free;
  size_root_ = insert<size_tree_traits>(size_root_, s);
}

// ---------------------------------------------------------------------------------------
// Searches.

// The leftmost slot in (size, offset) order whose usable size at `level` holds `size`: the
// exact aligned best fit. Subtrees whose maximum is too small are never entered, so the
// descent visits one path.
std::uint32_t engine::find_fit(offset_t size, unsigned level) const noexcept {
  auto fits_below = [&](std::uint32_t s) { return s != no_index && maxima(s)[level] >= size; };
  std::uint32_t s = size_root_;
  if (!fits_below(s)) return no_index;  // out of space?
  for (;;) {
    const std::uint32_t l = sl(s).left;
    if (fits_below(l)) {
      s = l;  // a smaller fitting range exists on the left
      continue;
    }
    if (usable(s, level) >= size) return s;
    s = sl(s).right;  // the maximum promises a fit below
  }
}

// The free slot whose range contains `offset`, or no_index.
std::uint32_t engine::find_containing(offset_t offset) const noexcept {
  std::uint32_t s = offset_root_;
  std::uint32_t candidate = no_index;
  while (s != no_index) {
    if (sl(s).offset <= offset) {
      candidate = s;
      s = sl(s).oright;
    } else {
      s = sl(s).oleft;
    }
  }
  if (candidate != no_index && offset - sl(candidate).offset < sl(candidate).size) return candidate;
  return no_index;
}

// ---------------------------------------------------------------------------------------
// Offset space: reservations, cancellations, regions.

std::expected<offset_t, errc> engine::reserve(offset_t size) {
  if (size == 0) return std::unexpected(errc::invalid_size);
  // At the end of the used space?
  if (!space_full_ && size - 1 <= limits_.last_offset - frontier_) {
    const offset_t offset = frontier_;
    if (size - 1 == limits_.last_offset - frontier_)
      space_full_ = true;  // the frontier would be one past the integer's range
    else
      frontier_ += size;
    pending_bytes_ += size;
    return offset;
  }
  // End exhausted: the smallest gap left by a cancelled reservation that fits.
  const auto it = gap_sizes_.lower_bound({size, 0});
  if (it == gap_sizes_.end()) return std::unexpected(errc::out_of_offset_space);
  const auto [gap_size, gap_offset] = *it;
  gap_sizes_.erase(it);
  gaps_.erase(gap_offset);
  if (gap_size > size) {
    gaps_.emplace(gap_offset + size, gap_size - size);
    gap_sizes_.emplace(gap_size - size, gap_offset + size);
  }
  pending_bytes_ += size;
  return gap_offset;
}

void engine::cancel(offset_t offset, offset_t size) {
  pending_bytes_ -= size;
  // Merge with the gaps on either side.
  auto next = gaps_.lower_bound(offset);
  if (next != gaps_.begin()) {
    const auto prev = std::prev(next);
    if (last_of(prev->first, prev->second) + 1 == offset) {
      offset = prev->first;
      size += prev->second;
      gap_sizes_.erase({prev->second, prev->first});
      gaps_.erase(prev);
    }
  }
  const offset_t last = last_of(offset, size);
  if (next != gaps_.end() && last != limits_.last_offset && last + 1 == next->first) {
    size += next->second;
    gap_sizes_.erase({next->second, next->first});
    gaps_.erase(next);
  }
  // A gap that ends at the frontier gives the offsets back to the end of the space.
  const offset_t gap_last = last_of(offset, size);
  const bool at_frontier =
      space_full_ ? gap_last == limits_.last_offset : gap_last + 1 == frontier_;
  if (at_frontier) {
    frontier_ = offset;
    space_full_ = false;
    return;
  }
  gaps_.emplace(offset, size);
  gap_sizes_.emplace(size, offset);
}

std::uint32_t engine::publish(offset_t offset, offset_t size) {
  pending_bytes_ -= size;
  const auto id = static_cast<std::uint32_t>(regions_.size());
  const std::uint32_t n = new_node();
  regions_.push_back(region_rec{offset, size, n, 0, 0, 0, 0});
  const auto pos = std::ranges::lower_bound(region_index_, std::pair{offset, std::uint32_t{0}});
  region_index_.insert(pos, {offset, id});
  nodes_[n].offset = offset;
  nodes_[n].size = size;
  nodes_[n].region = id;
  add_free(n);
  return id;
}

std::uint32_t engine::region_of(offset_t offset) const noexcept {
  auto it = std::ranges::upper_bound(region_index_, offset, {},
                                     &std::pair<offset_t, std::uint32_t>::first);
  if (it == region_index_.begin()) return no_index;
  const region_rec& r = regions_[std::prev(it)->second];
  return offset - r.offset < r.size ? std::prev(it)->second : no_index;
}

// ---------------------------------------------------------------------------------------
// Allocation and release.

std::expected<engine_allocation, errc> engine::allocate(offset_t size, offset_t alignment,
                                                        strategy how) {
  if (size == 0) return std::unexpected(errc::invalid_size);
  if (!std::has_single_bit(alignment)) return std::unexpected(errc::invalid_alignment);
  if (alignment > limits_.max_alignment) return std::unexpected(errc::alignment_too_big);
  if (size > limits_.max_size) return std::unexpected(errc::too_large);
  const offset_t align = std::max(alignment, limits_.min_alignment);
  const offset_t len = std::max(size, limits_.min_size);

  if (how.kind == strategy_kind::fixed) {
    const offset_t at = how.offset;
    if (pad_to(at, align) != 0) return std::unexpected(errc::invalid_argument);
    if (at > limits_.last_offset || len - 1 > limits_.last_offset - at)
      return std::unexpected(errc::arithmetic_overflow);
    const std::uint32_t region = region_of(at);
    if (region == no_index) return std::unexpected(errc::out_of_range);
    const region_rec& r = regions_[region];
    if (len - 1 > last_of(r.offset, r.size) - at) return std::unexpected(errc::out_of_range);
    const std::uint32_t s = find_containing(at);
    if (s == no_index || len > sl(s).size - (at - sl(s).offset))
      return std::unexpected(errc::occupied);
    return carve(sl(s).node, at, len);
  }

  const auto level = static_cast<unsigned>(std::countr_zero(align)) - granule_log2_;
  // greedy shares the best-fit descent: measured, a looser fit (first fit on the path, or
  // any fit within 2x) leaves more free ranges and costs more per acquire+release, because
  // tree updates, not the search, dominate.
  const std::uint32_t s = find_fit(len, level);
  if (s == no_index) return std::unexpected(errc::out_of_memory);
  return carve(sl(s).node, sl(s).offset + pad_to(sl(s).offset, align), len);
}

// Splits free node `n` into [padding][used: start, capacity][tail] and marks the middle used.
// The free slot of `n` passes to the tail (or to the padding if there is no tail), so a
// split inserts at most one new slot.
std::expected<engine_allocation, errc> engine::carve(std::uint32_t n, offset_t start,
                                                     offset_t len) {
  const offset_t g = limits_.min_alignment;
  const std::uint32_t s = nodes_[n].slot;
  const std::uint32_t region = nodes_[n].region;
  const offset_t pad = start - nodes_[n].offset;
  const offset_t avail = nodes_[n].size - pad;
  // Round the capacity up to the granule where the range allows; absorb a tail that
  // could never hold an aligned slice of its own.
  const offset_t rem = len & (g - 1);
  const offset_t extra = rem == 0 ? 0 : g - rem;
  offset_t capacity = avail - len >= extra ? len + extra : avail;
  if (avail - capacity < g) capacity = avail;
  const offset_t tail = avail - capacity;

  std::uint32_t p = no_index;
  if (pad != 0) {  // the alignment gap becomes a free range of its own
    p = new_node();
    node& before = nodes_[p];
    node& x = nodes_[n];
    before.offset = x.offset;
    before.size = pad;
    before.region = region;
    before.prev = x.prev;
    before.next = n;
    if (x.prev != no_index)
      nodes_[x.prev].next = p;
    else
      regions_[region].first = p;
    x.prev = p;
  }
  std::uint32_t t = no_index;
  if (tail != 0) {  // the tail stays free
    t = new_node();
    node& after = nodes_[t];
    node& x = nodes_[n];
    after.offset = start + capacity;
    after.size = tail;
    after.region = region;
    after.prev = n;
    after.next = x.next;
    if (x.next != no_index) nodes_[x.next].prev = t;
    x.next = t;
  }
  nodes_[n].offset = start;
  nodes_[n].size = capacity;
  nodes_[n].slot = no_index;
  nodes_[n].state = node_used;

  if (t != no_index) {
    rekey_free(s, t);
    if (p != no_index) add_free(p);
  } else if (p != no_index) {
    rekey_free(s, p);
  } else {  // the whole range is taken: drop its slot
    size_root_ = erase<size_tree_traits>(size_root_, s);
    offset_root_ = erase<offset_tree_traits>(offset_root_, s);
    free_slot(s);
    region_rec& r = regions_[region];
    r.free_bytes -= capacity;
    --r.free_ranges;
    free_bytes_ -= capacity;
    --free_ranges_;
  }
  region_rec& r = regions_[region];
  r.used_bytes += capacity;
  ++r.used_ranges;
  used_bytes_ += capacity;
  ++used_ranges_;
  return engine_allocation{n, region, start, capacity};
}

// Frees a used node, merging it with free neighbours of the same region. The merged range
// reuses a neighbour's slot when there is one, so the offset tree changes only when the
// number of free ranges does.
bool engine::release(std::uint32_t n) noexcept {
  if (n >= nodes_.size() || nodes_[n].state != node_used) return false;
  region_rec& r = regions_[nodes_[n].region];
  r.used_bytes -= nodes_[n].size;
  --r.used_ranges;
  used_bytes_ -= nodes_[n].size;
  --used_ranges_;

  std::uint32_t p = nodes_[n].prev;
  std::uint32_t q = nodes_[n].next;
  if (p != no_index && nodes_[p].state != node_free) p = no_index;
  if (q != no_index && nodes_[q].state != node_free) q = no_index;
  std::uint32_t keep = no_index;  // the slot the merged range takes over
  if (q != no_index) {            // absorb the next range
    if (p != no_index)
      remove_free(q);  // both neighbours free: one slot goes
    else
      keep = nodes_[q].slot;
    nodes_[n].size += nodes_[q].size;
    nodes_[n].next = nodes_[q].next;
    if (nodes_[q].next != no_index) nodes_[nodes_[q].next].prev = n;
    free_node(q);
  }
  if (p != no_index) {  // absorb the previous range
    keep = nodes_[p].slot;
    nodes_[n].offset = nodes_[p].offset;
    nodes_[n].size += nodes_[p].size;
    nodes_[n].prev = nodes_[p].prev;
    if (nodes_[p].prev != no_index)
      nodes_[nodes_[p].prev].next = n;
    else
      r.first = n;
    free_node(p);
  }
  if (keep != no_index) {
    rekey_free(keep, n);
  } else {
    add_free(n);  // no allocation: slot capacity covers every node (see new_node)
  }
  return true;
}

offset_t engine::node_offset(std::uint32_t n) const noexcept {
  return nodes_[n].offset;
}
offset_t engine::node_size(std::uint32_t n) const noexcept {
  return nodes_[n].size;
}
bool engine::is_live(std::uint32_t n) const noexcept {
  return n < nodes_.size() && nodes_[n].state == node_used;
}

// ---------------------------------------------------------------------------------------
// Introspection.

region_stats engine::region(std::uint32_t id) const noexcept {
  const region_rec& r = regions_[id];
  return {r.offset, r.size, r.used_bytes, r.free_bytes, r.free_ranges, r.used_ranges};
}

std::vector<range_view> engine::ranges(std::uint32_t id) const {
  std::vector<range_view> out;
  for (std::uint32_t n = regions_[id].first; n != no_index; n = nodes_[n].next)
    out.push_back({nodes_[n].offset, nodes_[n].size, nodes_[n].state == node_used});
  return out;
}

engine_stats engine::stats() const noexcept {
  engine_stats st;
  st.used_bytes = used_bytes_;
  st.free_bytes = free_bytes_;
  st.pending_bytes = pending_bytes_;
  st.free_ranges = free_ranges_;
  st.used_ranges = used_ranges_;
  st.regions = regions_.size();
  for (std::uint32_t s = size_root_; s != no_index; s = sl(s).right)
    st.largest_free = sl(s).size;  // rightmost = largest
  return st;
}

// Height of the subtree at `s`, checking order against the bounds `lo` < s < `hi`
// (no_index: unbounded), balance and stored heights.
template <class T>
std::expected<int, std::string> engine::check_tree(std::uint32_t s, std::uint32_t lo,
                                                   std::uint32_t hi, std::size_t& count) const {
  if (s == no_index) return 0;
  auto& self = const_cast<engine&>(*this);  // the traits hand out mutable links
  if (sl(s).node == no_index || nodes_[sl(s).node].slot != s)
    return std::unexpected("tree slot " + std::to_string(s) + " is not its node's slot");
  if ((lo != no_index && !T::less(*this, lo, s)) || (hi != no_index && !T::less(*this, s, hi)))
    return std::unexpected("tree order broken at slot " + std::to_string(s));
  const auto hl = check_tree<T>(T::left(self, s), lo, s, count);
  if (!hl) return hl;
  const auto hr = check_tree<T>(T::right(self, s), s, hi, count);
  if (!hr) return hr;
  if (*hl - *hr > 1 || *hr - *hl > 1)
    return std::unexpected("tree unbalanced at slot " + std::to_string(s));
  const int h = 1 + std::max(*hl, *hr);
  if (h != T::height(*this, s))
    return std::unexpected("stale tree height at slot " + std::to_string(s));
  ++count;
  return h;
}

std::expected<void, std::string> engine::validate() const {
  auto fail = [](std::string what) { return std::unexpected(std::move(what)); };
  offset_t used = 0;
  offset_t free = 0;
  std::size_t used_count = 0;
  std::size_t free_count = 0;
  for (std::uint32_t id = 0; id < regions_.size(); ++id) {
    const region_rec& r = regions_[id];
    const std::string where = "region " + std::to_string(id) + ": ";
    offset_t covered = 0;
    offset_t r_used = 0;
    offset_t r_free = 0;
    std::size_t r_used_count = 0;
    std::size_t r_free_count = 0;
    offset_t expect = r.offset;
    std::uint32_t prev = no_index;
    for (std::uint32_t n = r.first; n != no_index; prev = n, n = nodes_[n].next) {
      const node& x = nodes_[n];
      if (x.region != id) return fail(where + "range owned by another region");
      if (x.prev != prev) return fail(where + "broken neighbour links");
      if (x.size == 0) return fail(where + "empty range");
      if (x.offset != expect) return fail(where + "ranges do not tile the region (gap/overlap)");
      covered += x.size;
      if (covered > r.size) return fail(where + "ranges exceed the region");
      if (covered < r.size) expect = x.offset + x.size;
      if (x.state == node_free) {
        if (prev != no_index && nodes_[prev].state == node_free)
          return fail(where + "adjacent free ranges not coalesced");
        if (x.slot >= slot_count_ || sl(x.slot).node != n || sl(x.slot).offset != x.offset ||
            sl(x.slot).size != x.size)
          return fail(where + "free range and its tree slot disagree");
        r_free += x.size;
        ++r_free_count;
      } else if (x.state == node_used) {
        r_used += x.size;
        ++r_used_count;
      } else {
        return fail(where + "unused node linked into a region");
      }
    }
    if (covered != r.size) return fail(where + "ranges do not cover the region");
    if (r_used != r.used_bytes || r_free != r.free_bytes || r_used_count != r.used_ranges ||
        r_free_count != r.free_ranges)
      return fail(where + "region counters wrong");
    used += r_used;
    free += r_free;
    used_count += r_used_count;
    free_count += r_free_count;
  }
  if (used != used_bytes_ || free != free_bytes_ || used_count != used_ranges_ ||
      free_count != free_ranges_)
    return fail("engine counters wrong");

  std::size_t size_count = 0;
  if (auto h = check_tree<size_tree_traits>(size_root_, no_index, no_index, size_count); !h)
    return fail(h.error());
  std::size_t offset_count = 0;
  if (auto h = check_tree<offset_tree_traits>(offset_root_, no_index, no_index, offset_count); !h)
    return fail(h.error());
  if (size_count != free_ranges_ || offset_count != free_ranges_)
    return fail("trees do not hold exactly the free ranges");
  // Aggregates: recompute each slot's maxima from its children.
  for (std::uint32_t s = 0; s < slot_count_; ++s) {
    if (sl(s).node == no_index) continue;
    for (unsigned j = 0; j < levels_; ++j) {
      offset_t m = usable(s, j);
      for (const std::uint32_t c : {sl(s).left, sl(s).right})
        if (c != no_index) m = std::max(m, maxima(c)[j]);
      if (maxima(s)[j] != m) return fail("stale alignment aggregate at slot " + std::to_string(s));
    }
  }

  // Regions and gaps are disjoint, inside the handed-out space.
  for (std::size_t i = 1; i < region_index_.size(); ++i) {
    const region_rec& a = regions_[region_index_[i - 1].second];
    if (last_of(a.offset, a.size) >= region_index_[i].first) return fail("regions overlap");
  }
  offset_t gap_bytes = 0;
  for (auto it = gaps_.begin(); it != gaps_.end(); ++it) {
    gap_bytes += it->second;
    if (region_of(it->first) != no_index) return fail("gap overlaps a region");
    if (!gap_sizes_.contains({it->second, it->first})) return fail("gap size index wrong");
    if (const auto nx = std::next(it);
        nx != gaps_.end() && last_of(it->first, it->second) + 1 >= nx->first)
      return fail("gaps overlap or are not merged");
    if (!space_full_ && last_of(it->first, it->second) >= frontier_)
      return fail("gap beyond the frontier");
  }
  if (gap_sizes_.size() != gaps_.size()) return fail("gap size index wrong");
  // Regions, pending reservations and gaps tile the handed-out offsets exactly (modulo
  // 2^64, so a u64 space that is full compares equal too).
  offset_t handed_out = pending_bytes_ + gap_bytes;
  for (const region_rec& r : regions_) handed_out += r.size;
  const offset_t end = space_full_ ? limits_.last_offset + 1 : frontier_;
  if (handed_out != end) return fail("regions, pending and gaps do not tile the used space");
  return {};
}

}  // namespace bufpool
