// SPDX-License-Identifier: MIT
// bufpool:range_nodes — what the engine's implementation units share (internal partition): the
// states of a range node and the offset arithmetic of ranges.
module;
#include <cstdint>
module bufpool:range_nodes;

import :engine;

// In namespace bufpool itself: only the engine's units import this partition.
namespace bufpool {

// The states of engine::node. A node is unused (on the node free list), or one range of a
// region: free and indexed, used, or free but kept out of the indexes (cached or wild).
inline constexpr std::uint8_t node_unused = 0;
inline constexpr std::uint8_t node_free = 1;
inline constexpr std::uint8_t node_used = 2;
inline constexpr std::uint8_t node_cached = 3;  // free, held by the size-class cache
inline constexpr std::uint8_t node_wild = 4;    // free, the wilderness greedy carves from the front

// Padding from `offset` up to the next multiple of `alignment` (a power of two).
constexpr offset_t pad_to(offset_t offset, offset_t alignment) noexcept {
  return (offset_t{0} - offset) & (alignment - 1);
}

// Last offset of a non-empty range; never overflows where offset + size would.
constexpr offset_t last_of(offset_t offset, offset_t size) noexcept {
  return offset + (size - 1);
}

}  // namespace bufpool
