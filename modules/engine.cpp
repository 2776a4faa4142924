// SPDX-License-Identifier: MIT
// The offset engine: B+tree indexes of free ranges (by size, with per-alignment-level
// maxima, and by offset) and physical neighbour links for coalescing.
module;
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>
module bufpool;

// Every free range is one entry of the size index (ordered by (size, offset); inner nodes
// keep the largest usable size per alignment level of each child, so the leftmost entry
// that fits is the exact aligned best fit, found in one descent) and one entry of the
// offset index (ordered by last offset, so fixed() finds the free range containing an
// offset in one descent). Used and free ranges of a region are linked to their physical
// neighbours, so release coalesces in O(1) before re-indexing. A free range that is split
// or merged keeps its node where it can, and with it its entries.

namespace bufpool {
namespace {

constexpr std::uint8_t node_unused = 0;
constexpr std::uint8_t node_free = 1;
constexpr std::uint8_t node_used = 2;
constexpr std::uint8_t node_cached = 3;  // free, held by the size-class cache
constexpr std::uint8_t node_wild = 4;    // free, the wilderness greedy carves from the front

// Padding from `offset` up to the next multiple of `alignment` (a power of two).
constexpr offset_t pad_to(offset_t offset, offset_t alignment) noexcept {
  return (offset_t{0} - offset) & (alignment - 1);
}

// Last offset of a non-empty range; never overflows where offset + size would.
constexpr offset_t last_of(offset_t offset, offset_t size) noexcept {
  return offset + (size - 1);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// The indexes: B+trees of fanout 16 over free ranges, with keys (key, tie) and the engine
// node as value. The size index keys ranges by (size, offset) and keeps alignment maxima;
// the offset index keys them by their last offset (tie 0), so the range containing an
// offset is the first entry at or above it.
//
// Leaves hold up to 16 entries. Inner nodes hold, per child, the child's largest key and
// (size index) for every alignment level j the largest usable size at that level in the
// child's subtree (size - padding to the next multiple of min_alignment << j). Those maxima are
// stored level-major, so a best-fit descent for level j reads one 128-byte row per node and enters
// the first child whose maximum holds the request: the leftmost fitting entry is the exact aligned
// best fit. Wide nodes keep the tree 4-6 levels deep at a million entries, so a descent touches a
// few cache lines instead of the ~20 scattered nodes of a binary tree.
//
// Updates: insert splits full nodes on the way down (so it never splits upwards) and
// raises the maxima of the path; erase tops up thin nodes on the way down (borrow from a
// sibling or merge with it, so it never underflows upwards), then recomputes the path's
// maxima bottom-up while they change. Every non-root node keeps at least min_fill entries.

namespace detail {

template <bool Maxima>
class bptree {
 public:
  static constexpr unsigned fanout = 16;
  static constexpr unsigned min_fill = fanout / 2 - 1;

  // granule and levels describe the alignment levels (size index only).
  bptree(offset_t granule, unsigned levels) : granule_(granule), levels_(Maxima ? levels : 0) {}

  // Room for `entries` entries without allocating (release() relies on it).
  void reserve(std::size_t entries) {
    const std::size_t leaves = entries / min_fill + 2;
    const std::size_t inner = leaves / min_fill + 16;
    nodes_.reserve(leaves + inner);
    maxima_.reserve(inner * levels_ * fanout);
  }

  // The key is (size, offset) in the size index and (last offset, 0) in the offset index;
  // parameters are named for the size index.
  void insert(offset_t size, offset_t offset, std::uint32_t value) {
    if (root_ == no_index) root_ = new_node(true);
    if (nodes_[root_].count == fanout) {  // grow a level: the old root becomes a child
      const std::uint32_t top = new_node(false);
      nodes_[top].count = 1;
      nodes_[top].child[0] = root_;
      root_ = top;
      refresh(top, 0);
      split_child(top, 0);
    }
    std::uint32_t b = root_;
    while (!nodes_[b].leaf) {
      unsigned i = child_for(b, size, offset);
      if (nodes_[nodes_[b].child[i]].count == fanout) {  // split before entering
        split_child(b, i);
        if (less(nodes_[b].key[i], nodes_[b].tie[i], size, offset)) ++i;
      }
      bnode& x = nodes_[b];
      if (less(x.key[i], x.tie[i], size, offset)) {  // a new largest key for the child
        x.key[i] = size;
        x.tie[i] = offset;
      }
      if constexpr (Maxima) {
        offset_t* m = maxima(b);
        for (unsigned j = 0; j < levels_; ++j)
          m[j * fanout + i] = std::max(m[j * fanout + i], usable(size, offset, j));
      }
      b = x.child[i];
    }
    bnode& leaf = nodes_[b];
    unsigned p = 0;
    while (p < leaf.count && less(leaf.key[p], leaf.tie[p], size, offset)) ++p;
    shift_right(leaf, p);
    leaf.key[p] = size;
    leaf.tie[p] = offset;
    leaf.child[p] = value;
    ++leaf.count;
    ++count_;
  }

  // Removes the entry with this key, which must be present.
  void erase(offset_t size, offset_t offset) noexcept {
    std::uint32_t path[64];
    unsigned at[64];
    unsigned depth = 0;
    std::uint32_t b = root_;
    while (!nodes_[b].leaf) {
      unsigned i = child_for(b, size, offset);
      if (nodes_[nodes_[b].child[i]].count <= min_fill) {  // top up before entering
        fill_child(b, i);
        i = child_for(b, size, offset);
      }
      path[depth] = b;
      at[depth++] = i;
      b = nodes_[b].child[i];
    }
    bnode& leaf = nodes_[b];
    const unsigned p = position(leaf, size, offset);
    shift_left(leaf, p);
    --leaf.count;
    --count_;
    // The path's summaries may shrink: recompute them while they change.
    while (depth-- > 0)
      if (!refresh(path[depth], at[depth])) break;
    // A root with one child hands over to it; an empty root leaf goes.
    if (!nodes_[root_].leaf && nodes_[root_].count == 1) {
      const std::uint32_t old = root_;
      root_ = nodes_[old].child[0];
      free_node(old);
    } else if (nodes_[root_].leaf && nodes_[root_].count == 0) {
      free_node(root_);
      root_ = no_index;
    }
  }

  // The engine node of the leftmost entry whose usable size at `level` holds `size`.
  [[nodiscard]] std::uint32_t find_fit(offset_t size, unsigned level) const noexcept
    requires Maxima
  {
    if (root_ == no_index) return no_index;
    std::uint32_t b = root_;
    while (!nodes_[b].leaf) {
      const offset_t* row = maxima(b) + level * fanout;
      unsigned i = 0;
      while (i < nodes_[b].count && row[i] < size) ++i;
      if (i == nodes_[b].count) return no_index;  // out of space? (only at the root)
      b = nodes_[b].child[i];
    }
    const bnode& leaf = nodes_[b];
    for (unsigned i = 0; i < leaf.count; ++i)
      if (usable(leaf.key[i], leaf.tie[i], level) >= size) return leaf.child[i];
    return no_index;
  }

  // The size of the largest entry (0 if none).
  [[nodiscard]] offset_t largest() const noexcept {
    if (root_ == no_index) return 0;
    std::uint32_t b = root_;
    while (!nodes_[b].leaf) b = nodes_[b].child[nodes_[b].count - 1];
    return nodes_[b].count == 0 ? 0 : nodes_[b].key[nodes_[b].count - 1];
  }

  struct entry {
    offset_t key;  // the size (size index) or the last offset (offset index)
    offset_t tie;  // the offset (size index) or 0
    std::uint32_t node;
  };

  // The first entry whose key is >= (key, tie), if any.
  [[nodiscard]] std::optional<entry> lower_bound(offset_t key, offset_t tie) const noexcept {
    if (root_ == no_index) return std::nullopt;
    std::uint32_t b = root_;
    while (!nodes_[b].leaf) b = nodes_[b].child[child_for(b, key, tie)];
    const bnode& leaf = nodes_[b];
    for (unsigned i = 0; i < leaf.count; ++i)
      if (!less(leaf.key[i], leaf.tie[i], key, tie))
        return entry{leaf.key[i], leaf.tie[i], leaf.child[i]};
    return std::nullopt;
  }

  // Changes the key of an entry in place; the new key must sort between the same
  // neighbours as the old one. Offset index only (no maxima to refresh).
  void replace(offset_t key, offset_t tie, offset_t new_key, offset_t new_tie) noexcept
    requires(!Maxima)
  {
    std::uint32_t path[64];
    unsigned at[64];
    unsigned depth = 0;
    std::uint32_t b = root_;
    while (!nodes_[b].leaf) {
      const unsigned i = child_for(b, key, tie);
      path[depth] = b;
      at[depth++] = i;
      b = nodes_[b].child[i];
    }
    bnode& leaf = nodes_[b];
    const unsigned p = position(leaf, key, tie);
    leaf.key[p] = new_key;
    leaf.tie[p] = new_tie;
    while (depth-- > 0)  // a subtree's largest key may have changed
      if (!refresh(path[depth], at[depth])) break;
  }

  // Checks order, fill, uniform depth, keys and maxima; appends the entries in order.
  [[nodiscard]] std::expected<void, std::string> validate(std::vector<entry>& out) const {
    if (root_ == no_index) {
      if (count_ != 0) return std::unexpected("index: empty tree with entries counted");
      return {};
    }
    int leaf_depth = -1;
    if (auto v = check(root_, 0, leaf_depth, out); !v) return v;
    if (out.size() != count_) return std::unexpected("index: entry count wrong");
    for (std::size_t i = 1; i < out.size(); ++i)
      if (!less(out[i - 1].key, out[i - 1].tie, out[i].key, out[i].tie))
        return std::unexpected("index: keys out of order");
    return {};
  }

 private:
  struct bnode {
    std::uint8_t count = 0;
    bool leaf = true;
    std::uint32_t maxima = no_index;  // inner nodes: index of their maxima block
    offset_t key[fanout];             // leaf: keys; inner: each child's largest key
    offset_t tie[fanout];
    std::uint32_t child[fanout];  // leaf: engine node; inner: child; free list link
  };

  static bool less(offset_t s1, offset_t o1, offset_t s2, offset_t o2) noexcept {
    return s1 != s2 ? s1 < s2 : o1 < o2;
  }

  offset_t usable(offset_t size, offset_t offset, unsigned level) const noexcept {
    const offset_t pad = (offset_t{0} - offset) & ((granule_ << level) - 1);
    return pad < size ? size - pad : 0;
  }

  // The maxima block of inner node b (size index only).
  offset_t* maxima(std::uint32_t b) noexcept {
    return &maxima_[std::size_t{nodes_[b].maxima} * levels_ * fanout];
  }
  const offset_t* maxima(std::uint32_t b) const noexcept {
    return &maxima_[std::size_t{nodes_[b].maxima} * levels_ * fanout];
  }

  std::uint32_t new_node(bool leaf) {
    std::uint32_t b;
    if (free_nodes_ != no_index) {
      b = free_nodes_;
      free_nodes_ = nodes_[b].child[0];
    } else {
      nodes_.emplace_back();
      b = static_cast<std::uint32_t>(nodes_.size() - 1);
    }
    nodes_[b].count = 0;
    nodes_[b].leaf = leaf;
    nodes_[b].maxima = no_index;
    if (Maxima && !leaf) {
      if (free_maxima_ != no_index) {
        nodes_[b].maxima = free_maxima_;
        free_maxima_ =
            static_cast<std::uint32_t>(maxima_[std::size_t{free_maxima_} * levels_ * fanout]);
      } else {
        nodes_[b].maxima = static_cast<std::uint32_t>(maxima_.size() / (levels_ * fanout));
        maxima_.resize(maxima_.size() + levels_ * fanout);
      }
    }
    return b;
  }

  void free_node(std::uint32_t b) noexcept {
    if (nodes_[b].maxima != no_index) {
      maxima_[std::size_t{nodes_[b].maxima} * levels_ * fanout] = free_maxima_;
      free_maxima_ = nodes_[b].maxima;
    }
    nodes_[b].child[0] = free_nodes_;
    free_nodes_ = b;
  }

  // The position of a key that is present in a leaf.
  static unsigned position(const bnode& leaf, offset_t key, offset_t tie) noexcept {
    unsigned p = 0;
    while (p + 1 < leaf.count && (leaf.key[p] != key || leaf.tie[p] != tie)) ++p;
    return p;
  }

  // The child whose key range holds the key: the first with a largest key >= key.
  unsigned child_for(std::uint32_t b, offset_t size, offset_t offset) const noexcept {
    const bnode& x = nodes_[b];
    unsigned i = 0;
    while (i + 1 < x.count && less(x.key[i], x.tie[i], size, offset)) ++i;
    return i;
  }

  // Makes room at position p (keys, children and, for inner nodes, maxima columns).
  void shift_right(bnode& x, unsigned p) noexcept {
    const unsigned n = x.count - p;
    std::memmove(&x.key[p + 1], &x.key[p], n * sizeof(offset_t));
    std::memmove(&x.tie[p + 1], &x.tie[p], n * sizeof(offset_t));
    std::memmove(&x.child[p + 1], &x.child[p], n * sizeof(std::uint32_t));
    if (Maxima && !x.leaf) {
      offset_t* m = &maxima_[std::size_t{x.maxima} * levels_ * fanout];
      for (unsigned j = 0; j < levels_; ++j)
        std::memmove(&m[j * fanout + p + 1], &m[j * fanout + p], n * sizeof(offset_t));
    }
  }

  void shift_left(bnode& x, unsigned p) noexcept {
    const unsigned n = x.count - p - 1;
    std::memmove(&x.key[p], &x.key[p + 1], n * sizeof(offset_t));
    std::memmove(&x.tie[p], &x.tie[p + 1], n * sizeof(offset_t));
    std::memmove(&x.child[p], &x.child[p + 1], n * sizeof(std::uint32_t));
    if (Maxima && !x.leaf) {
      offset_t* m = &maxima_[std::size_t{x.maxima} * levels_ * fanout];
      for (unsigned j = 0; j < levels_; ++j)
        std::memmove(&m[j * fanout + p], &m[j * fanout + p + 1], n * sizeof(offset_t));
    }
  }

  // Moves entry (or child with its column) `from` of node a to position `to` of node b.
  void move_entry(std::uint32_t a, unsigned from, std::uint32_t b, unsigned to) noexcept {
    bnode& x = nodes_[a];
    bnode& y = nodes_[b];
    y.key[to] = x.key[from];
    y.tie[to] = x.tie[from];
    y.child[to] = x.child[from];
    if (Maxima && !x.leaf) {
      const offset_t* mx = maxima(a);
      offset_t* my = maxima(b);
      for (unsigned j = 0; j < levels_; ++j) my[j * fanout + to] = mx[j * fanout + from];
    }
  }

  // The largest usable size at `level` in node c: from its entries, or its columns.
  offset_t summary(std::uint32_t c, unsigned level) const noexcept {
    // Entries (and children) are in size order, and nothing holds more than its size: from
    // the largest down, stop at the first whose size cannot beat the best so far.
    const bnode& y = nodes_[c];
    offset_t best = 0;
    if (y.leaf) {
      for (unsigned k = y.count; k-- > 0 && y.key[k] > best;)
        best = std::max(best, usable(y.key[k], y.tie[k], level));
    } else {
      const offset_t* row = maxima(c) + level * fanout;
      for (unsigned k = y.count; k-- > 0 && y.key[k] > best;) best = std::max(best, row[k]);
    }
    return best;
  }

  // Recomputes the key and maxima column of child i of b from the child's contents.
  // Returns whether anything changed.
  bool refresh(std::uint32_t b, unsigned i) noexcept {
    const std::uint32_t c = nodes_[b].child[i];
    const bnode& y = nodes_[c];
    bnode& x = nodes_[b];
    bool changed = x.key[i] != y.key[y.count - 1] || x.tie[i] != y.tie[y.count - 1];
    x.key[i] = y.key[y.count - 1];
    x.tie[i] = y.tie[y.count - 1];
    if constexpr (!Maxima) return changed;
    offset_t* m = maxima(b);
    for (unsigned j = 0; j < levels_; ++j) {
      const offset_t best = summary(c, j);
      changed |= m[j * fanout + i] != best;
      m[j * fanout + i] = best;
    }
    return changed;
  }

  // Splits full child i of b (b has room) into two halves.
  void split_child(std::uint32_t b, unsigned i) {
    const std::uint32_t c = nodes_[b].child[i];
    const std::uint32_t d = new_node(nodes_[c].leaf);  // may reallocate: indices only
    constexpr unsigned half = fanout / 2;
    for (unsigned k = half; k < fanout; ++k) move_entry(c, k, d, k - half);
    nodes_[c].count = half;
    nodes_[d].count = fanout - half;
    shift_right(nodes_[b], i + 1);
    nodes_[b].child[i + 1] = d;
    ++nodes_[b].count;
    refresh(b, i);
    refresh(b, i + 1);
  }

  // Child i of b has min_fill entries: borrow one from a sibling that can spare it, or
  // merge with a sibling, so the child can lose one.
  void fill_child(std::uint32_t b, unsigned i) noexcept {
    bnode& x = nodes_[b];
    if (i > 0 && nodes_[x.child[i - 1]].count > min_fill) {  // borrow from the left
      const std::uint32_t l = x.child[i - 1];
      const std::uint32_t c = x.child[i];
      shift_right(nodes_[c], 0);
      move_entry(l, nodes_[l].count - 1u, c, 0);
      --nodes_[l].count;
      ++nodes_[c].count;
      refresh(b, i - 1);
      refresh(b, i);
      return;
    }
    if (i + 1 < x.count && nodes_[x.child[i + 1]].count > min_fill) {  // from the right
      const std::uint32_t r = x.child[i + 1];
      const std::uint32_t c = x.child[i];
      move_entry(r, 0, c, nodes_[c].count);
      ++nodes_[c].count;
      shift_left(nodes_[r], 0);
      --nodes_[r].count;
      refresh(b, i);
      refresh(b, i + 1);
      return;
    }
    // Merge with a sibling (both thin: the result fits).
    const unsigned left = i > 0 ? i - 1 : i;
    const std::uint32_t l = x.child[left];
    const std::uint32_t r = x.child[left + 1];
    for (unsigned k = 0; k < nodes_[r].count; ++k) move_entry(r, k, l, nodes_[l].count + k);
    nodes_[l].count = static_cast<std::uint8_t>(nodes_[l].count + nodes_[r].count);
    shift_left(nodes_[b], left + 1);
    --nodes_[b].count;
    free_node(r);
    refresh(b, left);
  }

  std::expected<void, std::string> check(std::uint32_t b, int depth, int& leaf_depth,
                                         std::vector<entry>& out) const {
    const bnode& x = nodes_[b];
    const auto fail = [](const char* what) { return std::unexpected(std::string(what)); };
    if (x.count == 0 || x.count > fanout) return fail("index: node fill out of bounds");
    if (b != root_ && x.count < min_fill) return fail("index: node below minimum fill");
    if (x.leaf) {
      if (leaf_depth == -1) leaf_depth = depth;
      if (leaf_depth != depth) return fail("index: leaves at different depths");
      for (unsigned k = 0; k < x.count; ++k) out.push_back({x.key[k], x.tie[k], x.child[k]});
      return {};
    }
    if (b == root_ && x.count < 2) return fail("index: inner root with one child");
    for (unsigned i = 0; i < x.count; ++i) {
      const std::size_t first = out.size();
      if (auto v = check(x.child[i], depth + 1, leaf_depth, out); !v) return v;
      if (out.size() == first) return fail("index: empty subtree");
      if (out.back().key != x.key[i] || out.back().tie != x.tie[i])
        return fail("index: stale child key");
      // Each column must equal its child's summary; the child's own columns are checked
      // in turn, so by induction every maximum is exact (O(entries * L) in all).
      for (unsigned j = 0; j < levels_; ++j)
        if (maxima(b)[j * fanout + i] != summary(x.child[i], j))
          return fail("index: stale alignment maximum");
    }
    return {};
  }

  offset_t granule_;
  unsigned levels_;
  std::vector<bnode> nodes_;
  std::vector<offset_t> maxima_;  // levels_ x fanout per inner node, level-major (size index)
  std::uint32_t free_nodes_ = no_index;
  std::uint32_t free_maxima_ = no_index;
  std::uint32_t root_ = no_index;
  std::size_t count_ = 0;
};

}  // namespace detail

engine::engine(const engine_limits& limits) : limits_(limits) {
  granule_log2_ = static_cast<unsigned>(std::countr_zero(limits_.min_alignment));
  levels_ = static_cast<unsigned>(std::countr_zero(limits_.max_alignment)) - granule_log2_ + 1;
  sizes_ = std::make_unique<detail::bptree<true>>(limits_.min_alignment, levels_);
  offsets_ = std::make_unique<detail::bptree<false>>(limits_.min_alignment, 0);
  // Classes up to 64 KiB, and at most 1/16 of the offset space; none if a class would be
  // smaller than the granule.
  class_limit_ = offset_t{64} << 10;
  while (class_limit_ > (limits_.last_offset >> 4)) class_limit_ >>= 1;
  if (class_limit_ < limits_.min_alignment) class_limit_ = 0;
  if (class_limit_ != 0) classes_.assign(class_index(class_limit_) + 1, class_list{});
}

engine::~engine() = default;
engine::engine(engine&&) noexcept = default;
engine& engine::operator=(engine&&) noexcept = default;

// ---------------------------------------------------------------------------------------
// Nodes: an index-linked free list, so steady state allocates nothing.

void engine::reserve_nodes(std::size_t nodes) {
  const std::size_t want = nodes_.size() + nodes;
  if (reserved_ < want) {
    sizes_->reserve(2 * want);
    offsets_->reserve(2 * want);
    reserved_ = 2 * want;
  }
  if (nodes_.capacity() < want) nodes_.reserve(std::max(want, 2 * nodes_.capacity()));
}

std::uint32_t engine::new_node() {
  if (free_nodes_ != no_index) {
    const std::uint32_t n = free_nodes_;
    free_nodes_ = nodes_[n].link;
    nodes_[n] = node{};
    return n;
  }
  // Free ranges never outnumber nodes: with this much room reserved in the indexes,
  // release() (which may add a free range) never allocates. Room first, so a failed
  // allocation changes nothing.
  if (const std::size_t want = nodes_.size() + 1; reserved_ < want) {
    sizes_->reserve(2 * want);
    offsets_->reserve(2 * want);
    reserved_ = 2 * want;
  }
  nodes_.emplace_back();
  return static_cast<std::uint32_t>(nodes_.size() - 1);
}

void engine::free_node(std::uint32_t n) noexcept {
  nodes_[n].state = node_unused;
  nodes_[n].link = free_nodes_;
  free_nodes_ = n;
}

// ---------------------------------------------------------------------------------------
// Free-range bookkeeping: both indexes and the counters.

void engine::add_free(std::uint32_t n) {
  node& x = nodes_[n];
  x.state = node_free;
  sizes_->insert(x.size, x.offset, n);
  offsets_->insert(last_of(x.offset, x.size), 0, n);
  region_rec& r = regions_[x.region];
  r.free_bytes += x.size;
  ++r.free_ranges;
  free_bytes_ += x.size;
  ++free_ranges_;
}

void engine::remove_free(std::uint32_t n) noexcept {
  node& x = nodes_[n];
  sizes_->erase(x.size, x.offset);
  offsets_->erase(last_of(x.offset, x.size), 0);
  region_rec& r = regions_[x.region];
  r.free_bytes -= x.size;
  --r.free_ranges;
  free_bytes_ -= x.size;
  --free_ranges_;
}

// Free node n now covers [offset, offset + size), which passes no other free range: the
// size index moves its entry; the offset index changes only if its last offset moved.
void engine::resize_free(std::uint32_t n, offset_t offset, offset_t size) noexcept {
  node& x = nodes_[n];
  sizes_->erase(x.size, x.offset);
  const offset_t old_last = last_of(x.offset, x.size);
  const offset_t new_last = last_of(offset, size);
  if (old_last != new_last) offsets_->replace(old_last, 0, new_last, 0);
  region_rec& r = regions_[x.region];
  r.free_bytes = r.free_bytes - x.size + size;  // modular: the result is in range
  free_bytes_ = free_bytes_ - x.size + size;
  x.offset = offset;
  x.size = size;
  sizes_->insert(size, offset, n);
}

// The free node whose range contains `offset`, or no_index.
std::uint32_t engine::find_containing(offset_t offset) const noexcept {
  const auto e = offsets_->lower_bound(offset, 0);  // the first free range ending at or after
  if (!e || nodes_[e->node].offset > offset) return no_index;
  return e->node;
}

// Links a new node m into n's region right before n.
void engine::link_before(std::uint32_t m, std::uint32_t n) noexcept {
  node& x = nodes_[n];
  node& y = nodes_[m];
  y.region = x.region;
  y.prev = x.prev;
  y.next = n;
  if (x.prev != no_index)
    nodes_[x.prev].next = m;
  else
    regions_[x.region].first = m;
  x.prev = m;
}

// Unlinks node m from its region.
void engine::unlink(std::uint32_t m) noexcept {
  const node& y = nodes_[m];
  if (y.prev != no_index)
    nodes_[y.prev].next = y.next;
  else
    regions_[y.region].first = y.next;
  if (y.next != no_index) nodes_[y.next].prev = y.prev;
}

// ---------------------------------------------------------------------------------------
// Offset space: reservations, cancellations, regions.

// Every pending span may become a gap when it is cancelled, and cancel() cannot fail: the
// nodes the gap indexes will need are allocated here, kept as spare node handles.
void engine::keep_spare_gap_nodes() {
  const std::size_t want = pending_spans_ + 1;
  spare_gaps_.reserve(want);
  spare_gap_sizes_.reserve(want);
  if (spare_gaps_.size() < want) {
    std::map<offset_t, offset_t> one{{0, 0}};
    spare_gaps_.push_back(one.extract(one.begin()));
  }
  if (spare_gap_sizes_.size() < want) {
    std::set<std::pair<offset_t, offset_t>> one{{0, 0}};
    spare_gap_sizes_.push_back(one.extract(one.begin()));
  }
}

std::expected<offset_t, errc> engine::reserve(offset_t size) {
  if (size == 0) return std::unexpected(errc::invalid_size);
  keep_spare_gap_nodes();  // may throw: nothing changed
  // At the end of the used space?
  if (!space_full_ && size - 1 <= limits_.last_offset - frontier_) {
    const offset_t offset = frontier_;
    if (size - 1 == limits_.last_offset - frontier_)
      space_full_ = true;  // the frontier would be one past the integer's range
    else
      frontier_ += size;
    pending_bytes_ += size;
    ++pending_spans_;
    return offset;
  }
  // End exhausted: the smallest gap left by a cancelled reservation that fits.
  const auto it = gap_sizes_.lower_bound({size, 0});
  if (it == gap_sizes_.end()) return std::unexpected(errc::out_of_offset_space);
  const auto [gap_size, gap_offset] = *it;
  auto by_size = gap_sizes_.extract(it);
  auto by_offset = gaps_.extract(gap_offset);
  if (gap_size > size) {  // the rest stays a gap: the same nodes, re-keyed (no allocation)
    by_size.value() = {gap_size - size, gap_offset + size};
    by_offset.key() = gap_offset + size;
    by_offset.mapped() = gap_size - size;
    gap_sizes_.insert(std::move(by_size));
    gaps_.insert(std::move(by_offset));
  }
  pending_bytes_ += size;
  ++pending_spans_;
  return gap_offset;
}

void engine::cancel(offset_t offset, offset_t size) noexcept {
  pending_bytes_ -= size;
  --pending_spans_;
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
  auto by_offset = std::move(spare_gaps_.back());  // kept by reserve(): no allocation
  spare_gaps_.pop_back();
  auto by_size = std::move(spare_gap_sizes_.back());
  spare_gap_sizes_.pop_back();
  by_offset.key() = offset;
  by_offset.mapped() = size;
  by_size.value() = {size, offset};
  gaps_.insert(std::move(by_offset));
  gap_sizes_.insert(std::move(by_size));
}

std::uint32_t engine::publish(offset_t offset, offset_t size) {
  detail::room_for_one(regions_);  // every allocation first: a failure changes nothing
  detail::room_for_one(region_index_);
  const std::uint32_t n = new_node();
  pending_bytes_ -= size;
  --pending_spans_;
  if (spare_gaps_.size() > pending_spans_ + 1) spare_gaps_.pop_back();
  if (spare_gap_sizes_.size() > pending_spans_ + 1) spare_gap_sizes_.pop_back();
  const auto id = static_cast<std::uint32_t>(regions_.size());
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
  // A power of two (x ^ (x - 1) > x - 1, false for 0), written so that the compiler does
  // not make it a popcount (20 instructions without -mpopcnt).
  if ((alignment ^ (alignment - 1)) <= alignment - 1)
    return std::unexpected(errc::invalid_alignment);
  if (alignment > limits_.max_alignment) return std::unexpected(errc::alignment_too_big);
  if (size > limits_.max_size) return std::unexpected(errc::too_large);
  const offset_t align = std::max(alignment, limits_.min_alignment);
  const offset_t len = std::max(size, limits_.min_size);
  const auto level = static_cast<unsigned>(std::countr_zero(align)) - granule_log2_;

  if (how.kind == strategy_kind::greedy) {
    const offset_t want = len <= class_limit_ ? class_capacity(len) : len;
    if (len <= class_limit_) {  // the size-class front end
      const std::uint32_t c = classes_[class_index(want)].head;
      if (c != no_index && pad_to(nodes_[c].offset, align) == 0) return take_cached(c);
    }
    // The best fit among the indexed free ranges, else the front of the wilderness: the
    // size class first, then the exact size, then both again after a flush.
    const offset_t tries[2] = {want, len};
    const int count = want == len ? 1 : 2;
    for (int pass = 0; pass < 2; ++pass) {
      if (pass == 1) {
        if (cached_ranges_ == 0 && wild_ == no_index) break;
        trim();
      }
      for (int k = 0; k < count; ++k)
        if (auto a = greedy_fit(tries[k], align, level)) return *a;
    }
    return std::unexpected(errc::out_of_memory);
  }

  trim();  // optimal and fixed see every free range coalesced and indexed
  if (how.kind == strategy_kind::fixed) {
    const offset_t at = how.offset;
    if (pad_to(at, align) != 0) return std::unexpected(errc::invalid_argument);
    if (at > limits_.last_offset || len - 1 > limits_.last_offset - at)
      return std::unexpected(errc::arithmetic_overflow);
    const std::uint32_t region = region_of(at);
    if (region == no_index) return std::unexpected(errc::out_of_range);
    const region_rec& r = regions_[region];
    if (len - 1 > last_of(r.offset, r.size) - at) return std::unexpected(errc::out_of_range);
    const std::uint32_t n = find_containing(at);
    if (n == no_index || len > nodes_[n].size - (at - nodes_[n].offset))
      return std::unexpected(errc::occupied);
    return carve(n, at, len);
  }
  const std::uint32_t n = sizes_->find_fit(len, level);
  if (n == no_index) return std::unexpected(errc::out_of_memory);
  return carve(n, nodes_[n].offset + pad_to(nodes_[n].offset, align), len);
}

// ---------------------------------------------------------------------------------------
// The size-class cache: per class a doubly linked LIFO list of cached ranges (through link
// and cprev), so a range leaves it in O(1) from either end or the middle.

offset_t engine::class_capacity(offset_t size) const noexcept {
  const offset_t len = std::max(size, limits_.min_size);
  const offset_t g = limits_.min_alignment;
  if (len > class_limit_) return len > ~offset_t{0} - (g - 1) ? len : (len + g - 1) & ~(g - 1);
  const offset_t q = (len + g - 1) >> granule_log2_;  // granules
  if (q <= 16) return q << granule_log2_;
  const offset_t step = offset_t{1} << (std::bit_width(q - 1) - 4);
  return ((q + step - 1) & ~(step - 1)) << granule_log2_;
}

unsigned engine::class_index(offset_t capacity) const noexcept {
  const offset_t q = capacity >> granule_log2_;
  if (q <= 16) return static_cast<unsigned>(q - 1);
  const auto b = static_cast<unsigned>(std::bit_width(q - 1));
  return 16 + (b - 5) * 8 + static_cast<unsigned>(q >> (b - 4)) - 9;
}

void engine::cache_push(std::uint32_t n) noexcept {
  node& x = nodes_[n];
  class_list& list = classes_[class_index(x.size)];
  x.state = node_cached;
  x.cprev = no_index;
  x.link = list.head;
  if (list.head != no_index) nodes_[list.head].cprev = n;
  list.head = n;
  ++list.count;
  cached_bytes_ += x.size;
  ++cached_ranges_;
}

void engine::cache_unlink(std::uint32_t n) noexcept {
  node& x = nodes_[n];
  class_list& list = classes_[class_index(x.size)];
  --list.count;
  if (x.cprev != no_index)
    nodes_[x.cprev].link = x.link;
  else
    list.head = x.link;
  if (x.link != no_index) nodes_[x.link].cprev = x.cprev;
  cached_bytes_ -= x.size;
  --cached_ranges_;
}

engine_allocation engine::take_cached(std::uint32_t n) noexcept {
  cache_unlink(n);
  return mark_used(n, nodes_[n].offset, nodes_[n].size, true);
}

void engine::trim() noexcept {
  if (wild_ != no_index) {
    const std::uint32_t w = wild_;
    wild_ = no_index;
    coalesce(w);
  }
  if (cached_ranges_ == 0) return;
  for (const class_list& list : classes_)
    while (list.head != no_index) {
      const std::uint32_t n = list.head;
      cache_unlink(n);
      coalesce(n);
    }
}

// Whether range n is free: indexed, cached or the wilderness (false for no_index).
bool engine::is_free(std::uint32_t n) const noexcept {
  return n != no_index && nodes_[n].state != node_used && nodes_[n].state != node_unused;
}

engine::cache_view engine::view_of_cache(std::uint32_t region) const noexcept {
  cache_view v;
  // Each free range outside the indexes (cached, or the wilderness) adds its bytes and a
  // range; each adjacent pair of free ranges is one merge, counted at the unindexed range on
  // its left, or at the unindexed range on its right when the left one is indexed; and the
  // merged range holding it is measured once, from its first range: itself, or the indexed
  // range before it (indexed ranges are never adjacent to each other).
  const auto visit = [&](std::uint32_t c) {
    const node& x = nodes_[c];
    if (region != no_index && x.region != region) return;
    v.bytes += x.size;
    ++v.ranges;
    if (is_free(x.next)) ++v.merges;
    if (x.prev != no_index && nodes_[x.prev].state == node_free) ++v.merges;
    std::uint32_t first = no_index;
    if (!is_free(x.prev))
      first = c;
    else if (nodes_[x.prev].state == node_free && !is_free(nodes_[x.prev].prev))
      first = x.prev;
    if (first == no_index) return;
    offset_t merged = 0;
    for (std::uint32_t m = first; is_free(m); m = nodes_[m].next) merged += nodes_[m].size;
    v.largest = std::max(v.largest, merged);
  };
  if (wild_ != no_index) visit(wild_);
  if (cached_ranges_ != 0)
    for (const class_list& list : classes_)
      for (std::uint32_t c = list.head; c != no_index; c = nodes_[c].link) visit(c);
  return v;
}

// The capacity a range of `len` bytes gets where `avail` bytes are free from its start: len
// rounded up to the granule where the room allows, and a tail that could never hold an
// aligned slice of its own stays with the range.
offset_t engine::fit_capacity(offset_t avail, offset_t len) const noexcept {
  const offset_t g = limits_.min_alignment;
  const offset_t rem = len & (g - 1);
  const offset_t extra = rem == 0 ? 0 : g - rem;
  const offset_t capacity = avail - len >= extra ? len + extra : avail;
  return avail - capacity < g ? avail : capacity;
}

// Node `n` (linked where it belongs) becomes the used range [start, start + capacity).
engine_allocation engine::mark_used(std::uint32_t n, offset_t start, offset_t capacity,
                                    bool by_greedy) noexcept {
  node& u = nodes_[n];
  u.offset = start;
  u.size = capacity;
  u.state = node_used;
  u.greedy = by_greedy;
  region_rec& r = regions_[u.region];
  r.used_bytes += capacity;
  ++r.used_ranges;
  used_bytes_ += capacity;
  ++used_ranges_;
  return engine_allocation{n, u.region, start, capacity};
}

// greedy's placement of `len` bytes at `align`: the best fit among the indexed free ranges
// (greedy shares the best-fit descent: measured, a looser fit left more free ranges and cost
// more per acquire+release, because index updates, not the search, dominate), else the front
// of the wilderness. When the best fit is the largest free range and larger than the
// wilderness, that range becomes it (the old one is indexed again): an arena then carves
// each request off its front without touching either index.
std::optional<engine_allocation> engine::greedy_fit(offset_t len, offset_t align, unsigned level) {
  if (const std::uint32_t n = sizes_->find_fit(len, level); n != no_index) {
    if (nodes_[n].size != sizes_->largest() ||
        (wild_ != no_index && nodes_[wild_].size >= nodes_[n].size)) {
      auto a = carve(n, nodes_[n].offset + pad_to(nodes_[n].offset, align), len);
      nodes_[a->node].greedy = true;
      return *a;
    }
    const std::uint32_t old = wild_;  // a smaller wilderness is indexed again
    remove_free(n);
    nodes_[n].state = node_wild;
    wild_ = n;
    if (old != no_index) coalesce(old);
  }
  if (wild_ == no_index) return std::nullopt;
  const node& w = nodes_[wild_];
  const offset_t pad = pad_to(w.offset, align);
  if (pad >= w.size || len > w.size - pad) return std::nullopt;
  return carve_wild(w.offset + pad, len);
}

// Takes [start, start + capacity) off the front of the wilderness: padding before it becomes
// an indexed free range, the rest stays the wilderness (which disappears when nothing, or
// less than a granule, is left).
engine_allocation engine::carve_wild(offset_t start, offset_t len) {
  const std::uint32_t w = wild_;
  const offset_t from = nodes_[w].offset;
  const offset_t pad = start - from;
  const offset_t avail = nodes_[w].size - pad;
  const offset_t capacity = fit_capacity(avail, len);
  const offset_t tail = avail - capacity;

  // Every node first: a failed allocation changes nothing.
  const std::uint32_t used = tail != 0 ? new_node() : w;
  std::uint32_t p = no_index;
  if (pad != 0) {
    try {
      p = new_node();
    } catch (...) {
      if (used != w) free_node(used);
      throw;
    }
  }
  if (used != w) {
    link_before(used, w);
    nodes_[w].offset = start + capacity;
    nodes_[w].size = tail;
  } else {
    wild_ = no_index;
  }
  if (p != no_index) {
    link_before(p, used);
    nodes_[p].offset = from;
    nodes_[p].size = pad;
    add_free(p);
  }
  return mark_used(used, start, capacity, true);
}

// Splits free node `n` into [padding][used: start, capacity][tail]. The free node keeps
// the tail if there is one (its last offset, so its offset index entry, is unchanged),
// else the padding; the used range gets a new node unless it takes the whole range.
std::expected<engine_allocation, errc> engine::carve(std::uint32_t n, offset_t start,
                                                     offset_t len) {
  const offset_t from = nodes_[n].offset;
  const offset_t pad = start - from;
  const offset_t avail = nodes_[n].size - pad;
  const offset_t capacity = fit_capacity(avail, len);
  const offset_t tail = avail - capacity;

  std::uint32_t used = n;
  if (pad == 0 && tail == 0) {  // the whole range is taken
    remove_free(n);
  } else if (tail != 0) {  // n keeps the tail; padding (if any) gets a node of its own
    used = new_node();
    std::uint32_t p = no_index;
    if (pad != 0) {
      try {  // both nodes before any change: a failed allocation changes nothing
        p = new_node();
      } catch (...) {
        free_node(used);
        throw;
      }
    }
    link_before(used, n);
    resize_free(n, start + capacity, tail);
    if (p != no_index) {
      link_before(p, used);
      nodes_[p].offset = from;
      nodes_[p].size = pad;
      add_free(p);
    }
  } else {  // n keeps the padding; the used range follows it
    used = new_node();
    const std::uint32_t after = nodes_[n].next;
    if (after != no_index)
      link_before(used, after);
    else {  // n is the region's last range
      nodes_[used].region = nodes_[n].region;
      nodes_[used].prev = n;
      nodes_[n].next = used;
    }
    resize_free(n, from, pad);
  }
  return mark_used(used, start, capacity, false);
}

// Frees a used node: into the size-class cache if greedy gave it a class capacity, else
// merged with free neighbours of the same region.
bool engine::release(std::uint32_t n) noexcept {
  if (n >= nodes_.size() || nodes_[n].state != node_used) return false;
  node& x = nodes_[n];
  x.marks = 0;
  region_rec& r = regions_[x.region];
  r.used_bytes -= x.size;
  --r.used_ranges;
  used_bytes_ -= x.size;
  --used_ranges_;
  if (x.greedy && x.size <= class_limit_ && class_capacity(x.size) == x.size &&
      classes_[class_index(x.size)].count < max_cached_per_class) {
    cache_push(n);
    const offset_t held = used_bytes_ + free_bytes_ + cached_bytes_;
    if (cached_ranges_ > max_cached_ranges || cached_bytes_ > held / 16 + 4 * class_limit_) trim();
    return true;
  }
  coalesce(n);
  return true;
}

// Makes range n (no longer used or cached, its counters already moved) an indexed free
// range, merged with indexed free neighbours of the same region. A free neighbour survives
// the merge (the next one if both are free: its last offset does not move), so the indexes
// usually move one entry instead of adding and removing several. Returns the free node
// that now covers n's range.
std::uint32_t engine::coalesce(std::uint32_t n) noexcept {
  const offset_t offset = nodes_[n].offset;
  const offset_t size = nodes_[n].size;
  std::uint32_t p = nodes_[n].prev;
  std::uint32_t q = nodes_[n].next;
  if (wild_ != no_index && (p == wild_ || q == wild_)) {  // the wilderness takes it back
    const std::uint32_t w = wild_;
    const std::uint32_t other = p == w ? q : p;  // an indexed free range beyond it merges too
    unlink(n);
    free_node(n);
    nodes_[w].size += size;
    if (q == w) nodes_[w].offset = offset;
    if (other != no_index && nodes_[other].state == node_free) {
      const offset_t o_offset = nodes_[other].offset;
      const offset_t o_size = nodes_[other].size;
      remove_free(other);
      unlink(other);
      free_node(other);
      nodes_[w].size += o_size;
      if (o_offset < nodes_[w].offset) nodes_[w].offset = o_offset;
    }
    return w;
  }
  if (p != no_index && nodes_[p].state != node_free) p = no_index;
  if (q != no_index && nodes_[q].state != node_free) q = no_index;
  if (q != no_index) {  // the next range absorbs this one, and the previous if free
    offset_t from = offset;
    offset_t merged = size + nodes_[q].size;
    if (p != no_index) {
      from = nodes_[p].offset;
      merged += nodes_[p].size;
      remove_free(p);
      unlink(p);
      free_node(p);
    }
    unlink(n);
    free_node(n);
    resize_free(q, from, merged);
    return q;
  }
  if (p != no_index) {  // the previous range absorbs this one
    unlink(n);
    free_node(n);
    resize_free(p, nodes_[p].offset, nodes_[p].size + size);
    return p;
  }
  add_free(n);  // no allocation: index room covers every node (see new_node)
  return n;
}

std::expected<offset_t, errc> engine::resize(std::uint32_t n, offset_t size) {
  if (n >= nodes_.size() || nodes_[n].state != node_used)
    return std::unexpected(errc::invalid_argument);
  if (size == 0) return std::unexpected(errc::invalid_size);
  if (size > limits_.max_size) return std::unexpected(errc::too_large);
  const offset_t len = std::max(size, limits_.min_size);
  const offset_t offset = nodes_[n].offset;
  const offset_t capacity = nodes_[n].size;
  std::uint32_t q = nodes_[n].next;
  // The free ranges after it are merged and indexed first if one of them is cached or the
  // wilderness (indexed free ranges are never adjacent: only the first two can be free).
  const auto unindexed = [&](std::uint32_t m) {
    return m != no_index && (nodes_[m].state == node_cached || m == wild_);
  };
  if (unindexed(q) ||
      (q != no_index && nodes_[q].state == node_free && unindexed(nodes_[q].next))) {
    trim();
    q = nodes_[n].next;
  }
  if (q != no_index && nodes_[q].state != node_free) q = no_index;
  const offset_t room = capacity + (q == no_index ? 0 : nodes_[q].size);  // cannot overflow
  if (len > room) return std::unexpected(errc::out_of_memory);
  const offset_t target = fit_capacity(room, len);
  if (target == capacity) return capacity;

  if (target < capacity && q == no_index) {  // the tail becomes a free range of its own
    const std::uint32_t t = new_node();      // may throw: nothing changed yet
    const std::uint32_t after = nodes_[n].next;
    if (after != no_index) {
      link_before(t, after);
    } else {
      nodes_[t].region = nodes_[n].region;
      nodes_[t].prev = n;
      nodes_[n].next = t;
    }
    nodes_[t].offset = offset + target;
    nodes_[t].size = capacity - target;
    add_free(t);                // index room covers every node (see new_node)
  } else if (target == room) {  // the free neighbour is taken whole
    remove_free(q);
    unlink(q);
    free_node(q);
  } else {  // the free neighbour gives or takes the difference; its last offset stays
    resize_free(q, offset + target, room - target);
  }
  region_rec& r = regions_[nodes_[n].region];
  r.used_bytes = r.used_bytes - capacity + target;  // modular: the result is in range
  used_bytes_ = used_bytes_ - capacity + target;
  nodes_[n].size = target;
  return target;
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
  const cache_view c = view_of_cache(id);
  return {r.offset,
          r.size,
          r.used_bytes,
          r.free_bytes + c.bytes,
          r.free_ranges + c.ranges - c.merges,
          r.used_ranges};
}

std::vector<range_view> engine::ranges(std::uint32_t id) const {
  std::vector<range_view> out;
  for (std::uint32_t n = regions_[id].first; n != no_index; n = nodes_[n].next) {
    const bool used = nodes_[n].state == node_used;
    if (!used && !out.empty() && !out.back().used)  // cached ranges show merged
      out.back().size += nodes_[n].size;
    else
      out.push_back(
          {nodes_[n].offset, nodes_[n].size, used, used ? nodes_[n].marks : std::uint8_t{0}});
  }
  return out;
}

void engine::set_tag(std::uint32_t n, std::uint64_t tag, std::uint8_t small) noexcept {
  nodes_[n].link = static_cast<std::uint32_t>(tag);
  nodes_[n].cprev = static_cast<std::uint32_t>(tag >> 32);
  nodes_[n].small = small;
}

std::uint64_t engine::tag(std::uint32_t n) const noexcept {
  return std::uint64_t{nodes_[n].link} | std::uint64_t{nodes_[n].cprev} << 32;
}

std::uint8_t engine::small_tag(std::uint32_t n) const noexcept {
  return nodes_[n].small;
}

void engine::set_marks(std::uint32_t n, std::uint8_t marks) noexcept {
  nodes_[n].marks = marks;
}

std::uint8_t engine::marks(std::uint32_t n) const noexcept {
  return nodes_[n].marks;
}

std::vector<std::pair<offset_t, offset_t>> engine::pending_spans() const {
  // Below the frontier every offset is in a region, a gap or a pending span.
  std::vector<std::pair<offset_t, offset_t>> known;  // regions and gaps, (offset, size)
  known.reserve(region_index_.size() + gaps_.size());
  for (const auto& [offset, id] : region_index_) known.emplace_back(offset, regions_[id].size);
  for (const auto& [offset, size] : gaps_) known.emplace_back(offset, size);
  std::ranges::sort(known);
  std::vector<std::pair<offset_t, offset_t>> out;
  if (!space_full_ && frontier_ == 0) return out;
  const offset_t last = space_full_ ? limits_.last_offset : frontier_ - 1;
  offset_t next = 0;  // the first offset not yet accounted for
  bool done = false;  // next would be one past the last offset of the integer
  for (const auto& [offset, size] : known) {
    if (offset > next) out.emplace_back(next, offset - next);
    const offset_t end_last = last_of(offset, size);
    if (end_last == limits_.last_offset) {
      done = true;
      break;
    }
    next = end_last + 1;
  }
  if (!done && next <= last) out.emplace_back(next, last - next + 1);
  return out;
}

engine_stats engine::stats() const noexcept {
  engine_stats st;
  st.used_bytes = used_bytes_;
  const cache_view c = view_of_cache(no_index);
  st.free_bytes = free_bytes_ + c.bytes;
  st.pending_bytes = pending_bytes_;
  st.free_ranges = free_ranges_ + c.ranges - c.merges;
  st.used_ranges = used_ranges_;
  st.regions = regions_.size();
  st.largest_free = std::max(sizes_->largest(), c.largest);
  return st;
}

std::expected<void, std::string> engine::validate() const {
  auto fail = [](std::string what) { return std::unexpected(std::move(what)); };
  offset_t used = 0;
  offset_t free = 0;
  offset_t cached = 0;
  std::size_t used_count = 0;
  std::size_t free_count = 0;
  std::size_t cached_count = 0;
  std::size_t wild_count = 0;
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
        r_free += x.size;
        ++r_free_count;
      } else if (x.state == node_cached) {
        cached += x.size;
        ++cached_count;
      } else if (x.state == node_wild) {
        if (n != wild_) return fail(where + "a second wilderness");
        ++wild_count;
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

  // Every cached range is in the list of its class, once, and has that class's capacity.
  std::size_t listed = 0;
  offset_t listed_bytes = 0;
  for (std::size_t k = 0; k < classes_.size(); ++k) {
    std::size_t in_class = 0;
    for (std::uint32_t c = classes_[k].head, before = no_index; c != no_index;
         before = c, c = nodes_[c].link) {
      if (c >= nodes_.size() || nodes_[c].state != node_cached || nodes_[c].cprev != before)
        return fail("size-class cache: broken list");
      if (class_capacity(nodes_[c].size) != nodes_[c].size || class_index(nodes_[c].size) != k)
        return fail("size-class cache: range in the wrong class");
      if (++listed > cached_count) return fail("size-class cache: a list loops");
      listed_bytes += nodes_[c].size;
      ++in_class;
    }
    if (in_class != classes_[k].count) return fail("size-class cache: class count wrong");
  }
  if (listed != cached_count || listed != cached_ranges_ || listed_bytes != cached ||
      cached != cached_bytes_)
    return fail("size-class cache counters wrong");
  if (wild_count != (wild_ == no_index ? 0u : 1u)) return fail("the wilderness is lost");

  // Each free range has exactly one entry in each index, with its current key.
  std::vector<detail::bptree<true>::entry> by_size;
  if (auto v = sizes_->validate(by_size); !v) return fail("size " + v.error());
  std::vector<detail::bptree<false>::entry> by_offset;
  if (auto v = offsets_->validate(by_offset); !v) return fail("offset " + v.error());
  if (by_size.size() != free_ranges_ || by_offset.size() != free_ranges_)
    return fail("the indexes do not hold exactly the free ranges");
  for (const auto& en : by_size)
    if (en.node >= nodes_.size() || nodes_[en.node].state != node_free ||
        nodes_[en.node].offset != en.tie || nodes_[en.node].size != en.key)
      return fail("size index entry does not match a free range");
  for (const auto& en : by_offset)
    if (en.node >= nodes_.size() || nodes_[en.node].state != node_free ||
        last_of(nodes_[en.node].offset, nodes_[en.node].size) != en.key)
      return fail("offset index entry does not match a free range");

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
