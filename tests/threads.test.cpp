// SPDX-License-Identifier: MIT
// Multi-threaded stress of one shared pool (run under the tsan preset in CI).
#include <gtest/gtest.h>
import bufpool;
