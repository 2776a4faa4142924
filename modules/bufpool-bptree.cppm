// SPDX-License-Identifier: MIT
// bufpool:bptree — the engine's indexes of free ranges: B+trees of fanout 16 (internal partition).
// Only the engine's implementation imports it; its template code inlines into the engine there.
module;
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <expected>
#include <memory_resource>
#include <optional>
#include <source_location>
#include <string>
#include <vector>

#include "internal_assert.hpp"
module bufpool:bptree;

import :contracts;
import :engine;
import :metadata;

namespace bufpool {

// ---------------------------------------------------------------------------------------
// The indexes: B+trees of fanout 16 over free ranges, with keys (key, tie) and the engine
// node as value. The size index keys ranges by (size, offset) and keeps alignment maxima;
// the offset index keys them by their last offset (tie 0), so the range containing an
// offset is the first entry at or above it.
//
// Leaves hold up to 16 entries. Inner nodes hold, per child, the child's largest key and
// (size index) for every alignment level j kept the largest usable size at that level in the
// child's subtree (size - padding to the next multiple of min_alignment << j). A level is kept
// once a request names it, as a row of its own: a pool asked for 8, 64, 256 and 4096-byte
// alignments keeps four rows, not the ten levels from 8 to 4096. Those maxima are stored
// row-major, so a best-fit descent for level j reads one 128-byte row per node and enters the
// first child whose maximum holds the request: the leftmost fitting entry is the exact aligned
// best fit. Wide nodes keep the tree 4-6 levels deep at a million entries, so a descent touches a
// few cache lines instead of the ~20 scattered nodes of a binary tree.
//
// Updates: insert splits full nodes on the way down (so it never splits upwards) and
// raises the maxima of the path; erase tops up thin nodes on the way down (borrow from a
// sibling or merge with it, so it never underflows upwards), then recomputes the path's
// keys and maxima that the entry it took set, bottom-up while they change. Every non-root
// node keeps at least min_fill entries.

namespace detail {

template <bool Maxima>
class bptree {
 public:
  static constexpr unsigned fanout = 16;
  static constexpr unsigned min_fill = fanout / 2 - 1;

  // granule and max_levels describe the alignment levels a request may name (size index
  // only); the maxima are kept for level 0 at first and for another level once a request
  // names it (keep_level). Every node comes from `metadata`. Allocates nothing.
  bptree(offset_t granule, unsigned max_levels, std::pmr::memory_resource* metadata) noexcept
      : granule_(granule),
        rows_(Maxima ? 1 : 0),
        max_levels_(Maxima ? max_levels : 0),
        nodes_(metadata),
        maxima_(metadata) {
    BUFPOOL_ASSERT(max_levels_ <= max_rows);
    std::fill_n(row_of_level_, max_rows, no_row);
    if (Maxima) row_of_level_[0] = 0;  // row 0 is level 0
  }

  // Whether maxima are kept for `level` (keep_level() was called for it).
  [[nodiscard]] bool keeps_level(unsigned level) const noexcept
    requires Maxima
  {
    return row_of_level_[level] != no_row;
  }

  // Keeps maxima for `level` from now on (a no-op if they are kept already): one pass over
  // the inner nodes computes its row, bottom-up. Rows are never dropped, so a pool pays for
  // the alignments it has been asked for, not for every one its options allow. Throws
  // std::bad_alloc with nothing changed; the room reserve() set aside is kept, in blocks of
  // the new size.
  void keep_level(unsigned level)
    requires Maxima
  {
    BUFPOOL_ASSERT(level < max_levels_);
    if (keeps_level(level)) return;
    const unsigned want = rows_ + 1;
    const std::size_t old_stride = std::size_t{rows_} * fanout;
    const std::size_t new_stride = std::size_t{want} * fanout;
    const std::size_t blocks = maxima_.size() / old_stride;
    meta_vector<offset_t> grown(maxima_.get_allocator());
    grown.reserve(maxima_.capacity() / old_stride * new_stride);
    grown.resize(blocks * new_stride);
    // The old rows keep their place in each block (a free block's link is its first word).
    for (std::size_t k = 0; k < blocks; ++k)
      std::copy_n(&maxima_[k * old_stride], old_stride, &grown[k * new_stride]);
    const unsigned row = rows_;
    maxima_.swap(grown);  // one resource: nothing is copied
    level_of_row_[row] = static_cast<std::uint8_t>(level);
    row_of_level_[level] = static_cast<std::uint8_t>(row);
    rows_ = want;
    if (root_ != no_index) fill_row(root_, row);
  }

  // Room for `entries` entries without allocating (release() relies on it).
  void reserve(std::size_t entries) {
    const std::size_t leaves = entries / min_fill + 2;
    // Every inner node but the root has min_fill children or more: at most leaves / m on the
    // first level, leaves / m^2 on the next, ..., under leaves / (m - 1) in all, plus one per
    // level for the rounding.
    std::size_t height = 1;
    for (std::size_t n = leaves; n > 1; n = (n + min_fill - 1) / min_fill) ++height;
    const std::size_t inner = leaves / (min_fill - 1) + height;
    nodes_.reserve(leaves + inner);
    maxima_.reserve(inner * rows_ * fanout);
  }

  // Removes every entry, keeping the room reserve() set aside and the rows kept.
  void clear() noexcept {
    nodes_.clear();
    maxima_.clear();
    free_nodes_ = free_maxima_ = root_ = no_index;
    count_ = 0;
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
    std::uint32_t parent = no_index;  // the leaf's parent and slot there (checked builds)
    unsigned slot = 0;
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
        for (unsigned r = 0; r < rows_; ++r)
          m[r * fanout + i] = std::max(m[r * fanout + i], usable(size, offset, level_of_row_[r]));
      }
      parent = b;
      slot = i;
      b = x.child[i];
    }
    bnode& leaf = nodes_[b];
    const unsigned p = rank(leaf, leaf.count, size, offset);
    // Keys are unique (each free range is indexed once): a duplicate means a double insert.
    BUFPOOL_ASSERT(p == leaf.count || less(size, offset, leaf.key[p], leaf.tie[p]));
    shift_right(leaf, p);
    leaf.key[p] = size;
    leaf.tie[p] = offset;
    leaf.child[p] = value;
    ++leaf.count;
    ++count_;
    // The maxima raised on the way down describe the leaf exactly.
    BUFPOOL_ASSERT(parent == no_index || column_exact(parent, slot));
  }

  // Removes the entry with this key, which must be present.
  void erase(offset_t size, offset_t offset) noexcept {
    BUFPOOL_ASSERT(root_ != no_index && count_ != 0);
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
      BUFPOOL_ASSERT(depth < 64);
      path[depth] = b;
      at[depth++] = i;
      b = nodes_[b].child[i];
    }
    bnode& leaf = nodes_[b];
    // Topped up on the way down, so a leaf below the root can lose an entry.
    BUFPOOL_ASSERT(b == root_ || leaf.count > min_fill);
    const unsigned p = position(leaf, size, offset);
    shift_left(leaf, p);
    --leaf.count;
    --count_;
    // The path's summaries may shrink where the entry taken set them: recompute those,
    // bottom-up, while they change.
    while (depth-- > 0)
      if (!forget(path[depth], at[depth], size, offset)) break;
    // Where the recomputation stopped, the node above must already be exact.
    BUFPOOL_ASSERT(depth + 1 == 0 || depth == 0 || column_exact(path[depth - 1], at[depth - 1]));
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
    const unsigned r = row_of_level_[level];
    BUFPOOL_ASSERT(r != no_row);  // keep_level(level) came first
    if (root_ == no_index) return no_index;
    std::uint32_t b = root_;
    while (!nodes_[b].leaf) {
      const offset_t* row = maxima(b) + r * fanout;
      unsigned i = 0;
      while (i < nodes_[b].count && row[i] < size) ++i;
      if (i == nodes_[b].count) {    // out of space? (only at the root)
        BUFPOOL_ASSERT(b == root_);  // below it, the parent's maximum promised a fit
        return no_index;
      }
      b = nodes_[b].child[i];
    }
    const bnode& leaf = nodes_[b];
    // A usable size is at most the size (the key): smaller keys need no padding computed.
    unsigned i = rank(leaf, leaf.count, size, 0);
    for (; i < leaf.count; ++i)
      if (usable(leaf.key[i], leaf.tie[i], level) >= size) return leaf.child[i];
    BUFPOOL_ASSERT(b == root_);  // else a stale maximum led here
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
    const unsigned i = rank(leaf, leaf.count, key, tie);
    if (i == leaf.count) return std::nullopt;
    return entry{leaf.key[i], leaf.tie[i], leaf.child[i]};
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
    // The new key keeps its place among the leaf's entries.
    BUFPOOL_ASSERT(p == 0 || less(leaf.key[p - 1], leaf.tie[p - 1], new_key, new_tie));
    BUFPOOL_ASSERT(p + 1 == leaf.count || less(new_key, new_tie, leaf.key[p + 1], leaf.tie[p + 1]));
    leaf.key[p] = new_key;
    leaf.tie[p] = new_tie;
    while (depth-- > 0)  // a subtree's largest key may have changed
      if (!refresh(path[depth], at[depth])) break;
    BUFPOOL_ASSERT(depth + 1 == 0 || depth == 0 || column_exact(path[depth - 1], at[depth - 1]));
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
    return &maxima_[std::size_t{nodes_[b].maxima} * rows_ * fanout];
  }
  const offset_t* maxima(std::uint32_t b) const noexcept {
    return &maxima_[std::size_t{nodes_[b].maxima} * rows_ * fanout];
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
            static_cast<std::uint32_t>(maxima_[std::size_t{free_maxima_} * rows_ * fanout]);
      } else {
        nodes_[b].maxima = static_cast<std::uint32_t>(maxima_.size() / (rows_ * fanout));
        maxima_.resize(maxima_.size() + rows_ * fanout);
      }
    }
    return b;
  }

  void free_node(std::uint32_t b) noexcept {
    if (nodes_[b].maxima != no_index) {
      maxima_[std::size_t{nodes_[b].maxima} * rows_ * fanout] = free_maxima_;
      free_maxima_ = nodes_[b].maxima;
    }
    nodes_[b].child[0] = free_nodes_;
    free_nodes_ = b;
  }

  // How many of the first n keys of x sort before (key, tie), so where the first key >=
  // (key, tie) is, or n. A scan that compares the key alone, and the tie only among equal
  // keys: most steps are one comparison. (A binary search whose steps compare both took
  // more instructions than this at fanout 16.)
  static unsigned rank(const bnode& x, unsigned n, offset_t key, offset_t tie) noexcept {
    unsigned i = 0;
    while (i < n && x.key[i] < key) ++i;
    while (i < n && x.key[i] == key && x.tie[i] < tie) ++i;
    return i;
  }

  // The position of a key that is present in a leaf.
  static unsigned position(const bnode& leaf, offset_t key, offset_t tie) noexcept {
    // Among all but the last, so that a missing key still names an entry.
    const unsigned p = rank(leaf, leaf.count - 1U, key, tie);
    // Else another entry would stand in for the missing key, and the wrong range would go.
    BUFPOOL_ASSERT(p < leaf.count && leaf.key[p] == key && leaf.tie[p] == tie);
    return p;
  }

  // The child whose key range holds the key: the first with a largest key >= key, else the
  // last.
  unsigned child_for(std::uint32_t b, offset_t size, offset_t offset) const noexcept {
    const bnode& x = nodes_[b];
    return rank(x, x.count - 1U, size, offset);
  }

  // Makes room at position p (keys, children and, for inner nodes, maxima columns).
  void shift_right(bnode& x, unsigned p) noexcept {
    BUFPOOL_ASSERT(x.count < fanout && p <= x.count);
    // Moved in one loop: at most 15 entries, where a memmove call per array costs more.
    for (unsigned k = x.count; k > p; --k) {
      x.key[k] = x.key[k - 1];
      x.tie[k] = x.tie[k - 1];
      x.child[k] = x.child[k - 1];
    }
    if (Maxima && !x.leaf) {
      offset_t* m = &maxima_[std::size_t{x.maxima} * rows_ * fanout];
      for (unsigned r = 0; r < rows_; ++r)
        for (unsigned k = x.count; k > p; --k) m[r * fanout + k] = m[r * fanout + k - 1];
    }
  }

  void shift_left(bnode& x, unsigned p) noexcept {
    BUFPOOL_ASSERT(p < x.count);
    for (unsigned k = p; k + 1 < x.count; ++k) {  // as shift_right
      x.key[k] = x.key[k + 1];
      x.tie[k] = x.tie[k + 1];
      x.child[k] = x.child[k + 1];
    }
    if (Maxima && !x.leaf) {
      offset_t* m = &maxima_[std::size_t{x.maxima} * rows_ * fanout];
      for (unsigned r = 0; r < rows_; ++r)
        for (unsigned k = p; k + 1 < x.count; ++k) m[r * fanout + k] = m[r * fanout + k + 1];
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
      for (unsigned r = 0; r < rows_; ++r) my[r * fanout + to] = mx[r * fanout + from];
    }
  }

  // The largest usable size at row r's level in node c: from its entries, or its columns.
  offset_t summary(std::uint32_t c, unsigned r) const noexcept {
    // Entries (and children) are in size order, and nothing holds more than its size: from
    // the largest down, stop at the first whose size cannot beat the best so far.
    const bnode& y = nodes_[c];
    offset_t best = 0;
    if (y.leaf) {
      for (unsigned k = y.count; k-- > 0 && y.key[k] > best;)
        best = std::max(best, usable(y.key[k], y.tie[k], level_of_row_[r]));
    } else {
      const offset_t* row = maxima(c) + r * fanout;
      for (unsigned k = y.count; k-- > 0 && y.key[k] > best;) best = std::max(best, row[k]);
    }
    return best;
  }

  // Computes row r of b and of every inner node below it (post-order: a row summarizes the
  // children's rows).
  void fill_row(std::uint32_t b, unsigned r) noexcept {
    if (nodes_[b].leaf) return;
    for (unsigned i = 0; i < nodes_[b].count; ++i) {
      const std::uint32_t c = nodes_[b].child[i];
      fill_row(c, r);
      maxima(b)[r * fanout + i] = summary(c, r);
    }
  }

  // Entry (size, offset) has left the subtree of child i of b: recomputes the child's key if
  // it was the largest, and each of its maxima the entry reached (a maximum of 0 stays 0).
  // Returns whether anything changed: if not, nothing above changes either.
  [[gnu::always_inline]] bool forget(std::uint32_t b, unsigned i, offset_t size,
                                     offset_t offset) noexcept {
    bnode& x = nodes_[b];
    const std::uint32_t c = x.child[i];
    const bnode& y = nodes_[c];
    BUFPOOL_ASSERT(!x.leaf && i < x.count && y.count != 0);
    bool changed = false;
    if (x.key[i] == size && x.tie[i] == offset) {
      x.key[i] = y.key[y.count - 1];
      x.tie[i] = y.tie[y.count - 1];
      changed = true;
    }
    if constexpr (Maxima) {
      offset_t* m = maxima(b);
      for (unsigned r = 0; r < rows_; ++r) {
        const offset_t reached = usable(size, offset, level_of_row_[r]);
        if (reached == 0 || reached < m[r * fanout + i]) continue;
        const offset_t best = summary(c, r);
        changed |= best != m[r * fanout + i];
        m[r * fanout + i] = best;
      }
    }
    return changed;
  }

  // Recomputes the key and maxima column of child i of b from the child's contents.
  // Returns whether anything changed.
  bool refresh(std::uint32_t b, unsigned i) noexcept {
    const std::uint32_t c = nodes_[b].child[i];
    const bnode& y = nodes_[c];
    bnode& x = nodes_[b];
    BUFPOOL_ASSERT(!x.leaf && i < x.count && y.count != 0);
    bool changed = x.key[i] != y.key[y.count - 1] || x.tie[i] != y.tie[y.count - 1];
    x.key[i] = y.key[y.count - 1];
    x.tie[i] = y.tie[y.count - 1];
    if constexpr (!Maxima) return changed;
    offset_t* m = maxima(b);
    for (unsigned r = 0; r < rows_; ++r) {
      const offset_t best = summary(c, r);
      changed |= m[r * fanout + i] != best;
      m[r * fanout + i] = best;
    }
    return changed;
  }

  // Whether child i's key and maxima column in b describe the child (for the checks).
  [[nodiscard]] bool column_exact(std::uint32_t b, unsigned i) const noexcept {
    const bnode& x = nodes_[b];
    const bnode& y = nodes_[x.child[i]];
    if (y.count == 0 || x.key[i] != y.key[y.count - 1] || x.tie[i] != y.tie[y.count - 1])
      return false;
    for (unsigned r = 0; r < rows_; ++r)
      if (maxima(b)[r * fanout + i] != summary(x.child[i], r)) return false;
    return true;
  }

  // Splits full child i of b (b has room) into two halves.
  void split_child(std::uint32_t b, unsigned i) {
    const std::uint32_t c = nodes_[b].child[i];
    BUFPOOL_ASSERT(nodes_[c].count == fanout && nodes_[b].count < fanout);
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
    // Every non-root node keeps min_fill entries: a thinner one was lost earlier.
    BUFPOOL_ASSERT(!x.leaf && x.count >= 2 && i < x.count && nodes_[x.child[i]].count == min_fill);
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
    BUFPOOL_ASSERT(nodes_[l].count + nodes_[r].count <= fanout);
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
      for (unsigned r = 0; r < rows_; ++r)
        if (maxima(b)[r * fanout + i] != summary(x.child[i], r))
          return fail("index: stale alignment maximum");
    }
    return {};
  }

  static constexpr unsigned max_rows = 64;  // a level per bit of the offset type at most
  static constexpr std::uint8_t no_row = 0xff;
  offset_t granule_;
  unsigned rows_;        // levels whose maxima are kept (size index), 0 for the offset index
  unsigned max_levels_;  // the most a request may name
  std::uint8_t level_of_row_[max_rows] = {};  // the level each row is kept for
  std::uint8_t row_of_level_[max_rows];       // each level's row, or no_row
  meta_vector<bnode> nodes_;
  meta_vector<offset_t> maxima_;  // rows_ x fanout per inner node, row-major (size index)
  std::uint32_t free_nodes_ = no_index;
  std::uint32_t free_maxima_ = no_index;
  std::uint32_t root_ = no_index;
  std::size_t count_ = 0;
};

}  // namespace detail

}  // namespace bufpool
