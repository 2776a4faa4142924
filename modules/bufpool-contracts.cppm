// SPDX-License-Identifier: MIT
// bufpool:contracts — contract checks for misuse that cannot be reported as a value.
module;
#include <cstdint>
#include <source_location>
export module bufpool:contracts;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :intrusive_list;

export namespace bufpool {

/// What a violation handler receives: the rule that was broken and where it was detected.
struct contract_violation {
  const char* rule;            ///< e.g. "pool destroyed while 2 borrowed slice(s) are alive"
  std::source_location where;  ///< The check that detected it.
};

/// A violation handler. The default prints the rule to stderr and aborts. A handler that
/// returns lets the caller continue in a defined, conservative way (the operation is skipped).
using violation_handler = void (*)(const contract_violation&);

/// Installs `h` (nullptr restores the default) and returns the previous handler. Thread-safe.
violation_handler set_violation_handler(violation_handler h) noexcept;

/// A diagnostic hook for non-fatal reports (e.g. memory kept mapped because a guard is still
/// held when a pool is destroyed). The default writes one line to stderr.
using diagnostic_handler = void (*)(const char* message);

/// Installs `h` (nullptr restores the default) and returns the previous handler. Thread-safe.
diagnostic_handler set_diagnostic_handler(diagnostic_handler h) noexcept;

}  // namespace bufpool

export namespace bufpool::detail {

/// Reports a broken rule to the violation handler.
void report_violation(const char* rule,
                      std::source_location where = std::source_location::current()) noexcept;

/// Sends one line to the diagnostic handler.
void report_diagnostic(const char* message) noexcept;

/// Checked builds keep a registry of live pools, so that a borrowed slice that outlives
/// its pool (a contract violation, already reported) notices instead of touching freed
/// memory. It allocates nothing: each pool lends a node of its own, linked into the
/// registry's list until unregister_pool(). register_pool returns an id that is never
/// reused.
struct pool_registration {
  const void* pool = nullptr;
  std::uint64_t id = 0;
  list_links<pool_registration> links;
};
std::uint64_t register_pool(const void* pool, pool_registration& node) noexcept;
void unregister_pool(pool_registration& node) noexcept;
/// Whether `pool` is registered with `id`. O(pools): checked builds only.
bool pool_registered(const void* pool, std::uint64_t id) noexcept;

/// The rules a release of a raw range can break, worded for the function the user called,
/// so that an adapter's violation names its own API (pool_resource::deallocate, ...) and
/// the likely cause instead of the pool's internal call.
struct release_rules {
  const char* foreign_pointer;  ///< The pointer is in none of the pool's regions.
  const char* not_live;         ///< No live raw range starts there (freed twice, inside one).
  const char* wrong_size;       ///< The size differs from the one it was acquired with.
  const char* wrong_alignment;  ///< The alignment differs likewise.
};

/// Checks a precondition; returns `ok` so callers can skip the operation if a handler returns.
inline bool expects(bool ok, const char* rule,
                    std::source_location where = std::source_location::current()) noexcept {
  if (!ok) [[unlikely]]
    report_violation(rule, where);
  return ok;
}

}  // namespace bufpool::detail

#pragma GCC visibility pop
