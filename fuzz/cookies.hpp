// SPDX-License-Identifier: MIT
// Cookies: a pattern written into every block handed out, checked whenever the block is used.
#pragma once
#include <algorithm>
#include <cstddef>
#include "bounds.hpp"
#include "report.hpp"

namespace {

// The cookie loops are not coverage-instrumented (nor inlined into code that is): they run
// over every byte of a block, and their branches say nothing about the library.
[[clang::no_sanitize("coverage")]] inline std::byte cookie_at(u64 id, u64 i) noexcept {
  return static_cast<std::byte>((id * 151 + i * 7 + (i >> 8) + 1) & 0xFF);
}

// The cookie of a block of n bytes covers [0, head) and [tail, n).
struct cookie_extent {
  u64 head;
  u64 tail;
};

constexpr cookie_extent cookie_extent_of(u64 n) noexcept {
  return n <= 2 * cookie_window ? cookie_extent{n, n}
                                : cookie_extent{cookie_window, n - cookie_window};
}

[[clang::no_sanitize("coverage"), gnu::noinline]] void fill_cookie(std::byte* p, u64 n, u64 id) {
  const cookie_extent e = cookie_extent_of(n);
  for (u64 i = 0; i < e.head; ++i) p[i] = cookie_at(id, i);
  for (u64 i = e.tail; i < n; ++i) p[i] = cookie_at(id, i);
}

// The first index below n where a block of `size` bytes lost its cookie, or size.
[[clang::no_sanitize("coverage"), gnu::noinline]] u64 cookie_damage(const std::byte* p, u64 size,
                                                                    u64 n, u64 id) {
  const cookie_extent e = cookie_extent_of(size);
  const u64 head = std::min(e.head, n);
  for (u64 i = 0; i < head; ++i)
    if (p[i] != cookie_at(id, i)) return i;
  for (u64 i = e.tail; i < std::min(size, n); ++i)
    if (p[i] != cookie_at(id, i)) return i;
  return size;
}

// Checks the cookie of the first `n` bytes of a block of `size` bytes.
void verify_cookie(const std::byte* p, u64 size, u64 n, u64 id, const char* what) {
  const u64 bad = cookie_damage(p, size, n, id);
  expect(bad == size, "data written into a block is intact", what, ": block id ", id, " byte ", bad,
         " of ", size, " changed");
}

}  // namespace
