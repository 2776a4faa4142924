// SPDX-License-Identifier: MIT
// The pool type under test, and the bounds on the work one fuzz input may do.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
import bufpool;

namespace {

using u64 = std::uint64_t;
using pool_t = bufpool::buffer_pool<>;
using options_t = pool_t::options_type;
using bufpool::errc;

// The highest offset of the pool under test, whose offsets are 32-bit.
constexpr u64 offset_max = std::numeric_limits<std::uint32_t>::max();

// Bounds on the work per input.
constexpr std::size_t max_ops = 2000;
constexpr std::size_t max_regions = 8;
constexpr u64 max_region_size = u64{1} << 20;
constexpr u64 region_budget = u64{4} << 20;  // bytes of region memory per input
constexpr std::size_t max_slices = 96;
constexpr std::size_t max_raws = 96;
constexpr std::size_t max_pending = 4;
constexpr std::size_t max_pmr_blocks = 128;
constexpr std::size_t full_check_every = 16;
constexpr u64 upstream_budget = u64{4} << 20;  // bytes the pmr upstream hands out at once
constexpr std::size_t flag_count = 4;          // shared "I/O done" flags the guards read
// Cookies cover a slice's first and last cookie_window bytes (all of a smaller slice).
constexpr u64 cookie_window = u64{16} << 10;

}  // namespace
