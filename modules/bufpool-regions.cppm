// SPDX-License-Identifier: MIT
// bufpool:regions — what a pool knows of an initialized region: base, extra, host bytes.
module;
#include <cstddef>
#include <cstdint>
export module bufpool:regions;

import :options;

export namespace bufpool {

namespace detail {

template <offset_integer Int, class Extra>
struct region_info {
  Int offset;
  Int size;
  std::byte* base;
  [[no_unique_address]] Extra extra;
  // The addresses [host_begin, host_end) are ordinary host memory the pool may poison in
  // AddressSanitizer builds; the rest of the region is never poisoned.
  std::uintptr_t host_begin = 0;
  std::uintptr_t host_end = 0;
};

}  // namespace detail

}  // namespace bufpool
