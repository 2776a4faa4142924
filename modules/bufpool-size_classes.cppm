// SPDX-License-Identifier: MIT
// bufpool:size_classes — the one size-class scheme of every layer that rounds sizes up.
module;
#include <bit>
#include <cstdint>
export module bufpool:size_classes;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

export namespace bufpool::detail {

// Float-like size classes over granules: every size up to `Linear` granules is a class of its
// own, then each doubling of the size is cut into `PerDoubling` classes, so a class is at most
// 1/PerDoubling larger than any size it holds. Class c holds the sizes in granules up to
// granules(c); index_of() and round_up() are two bit scans and a shift, never a search.
//
// Two layers use it, with different parameters, for a reason each:
// - the engine's greedy size-class cache (range_classes: the pool's granule, 16 linear, 8 per
//   doubling): a cached range is free memory waiting for its class, flushed when the cache
//   grows, so finer classes cost nothing but a list head each and keep a live range's
//   rounding under 12.5%;
// - the slabs, the pool's and each thread cache's (slot_classes: 8 bytes, 32 linear, 4 per
//   doubling): a slot keeps its rounding for its whole life and every class holds spans of
//   its own, including one kept empty span per class and per slabs, so each class costs
//   memory. 8-byte steps up to 256 bytes serve the most numerous small objects; above that,
//   4 classes per doubling to 64 KiB are 64 classes whose kept empty spans add up to at most
//   2,528 KiB per slabs, where 8 per doubling would be 96 classes and 4,928 KiB.
template <unsigned Linear, unsigned PerDoubling>
struct size_classes {
  static_assert(std::has_single_bit(Linear) && std::has_single_bit(PerDoubling) &&
                PerDoubling <= Linear);
  static constexpr auto linear_log2 = static_cast<unsigned>(std::countr_zero(Linear));
  static constexpr auto per_doubling_log2 = static_cast<unsigned>(std::countr_zero(PerDoubling));

  // The smallest class holding `q` >= 1 granules.
  [[nodiscard]] static constexpr unsigned index_of(std::uint64_t q) noexcept {
    if (q <= Linear) return static_cast<unsigned>(q - 1);
    const auto b = static_cast<unsigned>(std::bit_width(q - 1));  // q in (2^(b-1), 2^b]
    return Linear + (b - 1 - linear_log2) * PerDoubling +
           static_cast<unsigned>((q - 1) >> (b - 1 - per_doubling_log2)) - PerDoubling;
  }
  // The granules of class c: the largest size it holds.
  [[nodiscard]] static constexpr std::uint64_t granules(unsigned c) noexcept {
    if (c < Linear) return c + 1;
    const unsigned k = c - Linear;
    return std::uint64_t{PerDoubling + 1 + k % PerDoubling}
           << (linear_log2 - per_doubling_log2 + k / PerDoubling);
  }
  // `q` >= 1 granules rounded up to its class: granules(index_of(q)), without the index.
  [[nodiscard]] static constexpr std::uint64_t round_up(std::uint64_t q) noexcept {
    if (q <= Linear) return q;
    const auto b = static_cast<unsigned>(std::bit_width(q - 1));  // q in (2^(b-1), 2^b]
    const std::uint64_t step = std::uint64_t{1} << (b - 1 - per_doubling_log2);
    return (q + step - 1) & ~(step - 1);
  }
};

// The engine's greedy size-class cache, in granules of the pool's minimum alignment.
using range_classes = size_classes<16, 8>;
// The slabs' slot sizes, in granules of 8 bytes.
using slot_classes = size_classes<32, 4>;
inline constexpr std::uint64_t slot_granule = 8;

// Every class's granules round up to themselves and index back to their class.
template <class Classes>
constexpr bool consistent(unsigned classes) noexcept {
  for (unsigned c = 0; c < classes; ++c) {
    const std::uint64_t g = Classes::granules(c);
    if (Classes::index_of(g) != c || Classes::round_up(g) != g) return false;
    if (c > 0 && (Classes::index_of(Classes::granules(c - 1) + 1) != c ||
                  Classes::round_up(Classes::granules(c - 1) + 1) != g))
      return false;
  }
  return true;
}
static_assert(consistent<range_classes>(16 + 8 * 20));
static_assert(consistent<slot_classes>(64));

}  // namespace bufpool::detail

#pragma GCC visibility pop
