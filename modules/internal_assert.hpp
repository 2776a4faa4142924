// SPDX-License-Identifier: MIT
// BUFPOOL_ASSERT: internal invariants, checked in checked builds and compiled out otherwise.
//
// Macros do not cross `import`, so every unit that asserts includes this header in its global
// module fragment (`module;` ... before `module bufpool;`), together with <cstdlib> and
// <source_location>, and sees bufpool::detail::report_violation (bufpool:contracts).
//
// A failed assertion is a bug in bufpool, not misuse: it is reported where it breaks, through
// the contract-violation handler (so the message names the file, line and condition, and a test
// can observe it), and the process aborts even if the handler returns, since nothing built on a
// broken invariant can go on safely.
#pragma once

#include "build_flags.hpp"

#if BUFPOOL_CHECKED_BUILD
#define BUFPOOL_ASSERT(...)                                                               \
  (static_cast<bool>(__VA_ARGS__)                                                         \
       ? void(0)                                                                          \
       : (::bufpool::detail::report_violation("internal assertion failed: " #__VA_ARGS__, \
                                              std::source_location::current()),           \
          std::abort()))
#else
// Unevaluated, so it costs nothing, yet names what it checks (no unused-variable warnings
// for values kept only to be checked).
#define BUFPOOL_ASSERT(...) (static_cast<void>(sizeof(static_cast<bool>(__VA_ARGS__))))
#endif
