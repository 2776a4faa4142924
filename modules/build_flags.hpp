// SPDX-License-Identifier: MIT
// Build-wide switches of the core, for the global module fragment of the units that need them.
#pragma once

// AddressSanitizer builds poison the free ranges of host-memory regions (see bufpool:regions).
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUFPOOL_ASAN 1
#endif
#endif
#if !defined(BUFPOOL_ASAN) && defined(__SANITIZE_ADDRESS__)
#define BUFPOOL_ASAN 1
#endif
#ifdef BUFPOOL_ASAN
#include <sanitizer/asan_interface.h>
#define BUFPOOL_POISONING 1
#else
#define BUFPOOL_POISONING 0
#endif

// Checked builds: debug builds, or any build with BUFPOOL_CHECKED defined (the CMake option of
// the same name; the asan and fuzz presets turn it on).
#if !defined(NDEBUG) || defined(BUFPOOL_CHECKED)
#define BUFPOOL_CHECKED_BUILD 1
#else
#define BUFPOOL_CHECKED_BUILD 0
#endif

// Hints to the compiler that change no behaviour, empty where unsupported: a condition whose
// outcome is as random as the data (compile it to a conditional move, not a branch), and a
// call to inline at that call site only.
#if defined(__has_builtin)
#if __has_builtin(__builtin_unpredictable)
#define BUFPOOL_UNPREDICTABLE(condition) __builtin_unpredictable(condition)
#endif
#endif
#ifndef BUFPOOL_UNPREDICTABLE
#define BUFPOOL_UNPREDICTABLE(condition) (condition)
#endif
#if defined(__clang__)
#define BUFPOOL_INLINE_THIS_CALL [[clang::always_inline]]
#else
#define BUFPOOL_INLINE_THIS_CALL
#endif
