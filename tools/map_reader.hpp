// SPDX-License-Identifier: MIT
// Reads a pool's JSON dump (bufpool::to_json, buffer_pool::dump_json) back into a pool_map, for
// tools and tests; the core library writes dumps but never reads them.
#pragma once
#include <expected>
#include <string_view>
import bufpool;

namespace bufpool::tools {

/// Reads what to_json() wrote; invalid_argument (with nothing read) if it is not that.
[[nodiscard]] std::expected<pool_map, errc> from_json(std::string_view json);

}  // namespace bufpool::tools
