// SPDX-License-Identifier: MIT
// Observing contract violations in-process: a handler that records them, installed for one
// scope. Include after `import bufpool;`.
#pragma once

#include <string>

namespace bufpool_test {

inline int g_violations = 0;
inline std::string g_last_violation;

inline void record_violation(const bufpool::contract_violation& v) {
  ++g_violations;
  g_last_violation = v.rule;
}

// Installs the recording handler (and clears the record) for one scope.
struct recording_violations {
  recording_violations() : old(bufpool::set_violation_handler(&record_violation)) {
    g_violations = 0;
    g_last_violation.clear();
  }
  ~recording_violations() { bufpool::set_violation_handler(old); }
  recording_violations(const recording_violations&) = delete;
  recording_violations& operator=(const recording_violations&) = delete;
  bufpool::violation_handler old;
};

}  // namespace bufpool_test
