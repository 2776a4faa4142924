// SPDX-License-Identifier: MIT
// bufpool:map — a snapshot of a pool (pool_map) and its JSON and SVG renderings.
module;
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>
export module bufpool:map;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :errors;
import :types;

export namespace bufpool {

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
/// is "free", "used", "guarded", "parked" or "spare". The tools read it back
/// (tools/map_reader.hpp).
[[nodiscard]] std::string to_json(const pool_map& map);

/// The map as an SVG picture: one bar per region (and per pending span), all drawn to one
/// scale (bytes per pixel), ranges coloured by state, with a legend and the statistics.
/// A range too small to see at that scale is still drawn one pixel wide. Each range's rect
/// has a `<title>` naming its state, offset and size (a browser shows it on hover), and an
/// axis under each bar labels its first and last offsets (and halves or quarters where the
/// bar is wide enough).
[[nodiscard]] std::string to_svg(const pool_map& map);

}  // namespace bufpool

#pragma GCC visibility pop
