// SPDX-License-Identifier: MIT
// Implementation of the violation and diagnostic handlers.
module;
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <source_location>
#include <unordered_map>
module bufpool;

namespace bufpool {
namespace {

void default_violation(const contract_violation& v) {
  std::fprintf(stderr, "bufpool: contract violation: %s (%s:%u)\n", v.rule, v.where.file_name(),
               static_cast<unsigned>(v.where.line()));
  std::fflush(stderr);
  std::abort();
}

void default_diagnostic(const char* message) {
  std::fprintf(stderr, "bufpool: %s\n", message);
}

std::atomic<violation_handler> g_violation{&default_violation};
std::atomic<diagnostic_handler> g_diagnostic{&default_diagnostic};

}  // namespace

violation_handler set_violation_handler(violation_handler h) noexcept {
  return g_violation.exchange(h != nullptr ? h : &default_violation);
}

diagnostic_handler set_diagnostic_handler(diagnostic_handler h) noexcept {
  return g_diagnostic.exchange(h != nullptr ? h : &default_diagnostic);
}

namespace detail {

void report_violation(const char* rule, std::source_location where) noexcept {
  g_violation.load()(contract_violation{rule, where});
}

void report_diagnostic(const char* message) noexcept {
  g_diagnostic.load()(message);
}

namespace {
struct pool_registry {
  std::mutex lock;
  std::unordered_map<const void*, std::uint64_t> live;
  std::uint64_t next_id = 1;
};
pool_registry& registry() {
  static pool_registry r;  // constructed on first use, never destroyed before its users
  return r;
}
}  // namespace

std::uint64_t register_pool(const void* pool) {
  pool_registry& r = registry();
  std::scoped_lock l(r.lock);
  const std::uint64_t id = r.next_id++;
  r.live[pool] = id;
  return id;
}

void unregister_pool(const void* pool) noexcept {
  pool_registry& r = registry();
  std::scoped_lock l(r.lock);
  r.live.erase(pool);
}

bool pool_registered(const void* pool, std::uint64_t id) noexcept {
  pool_registry& r = registry();
  std::scoped_lock l(r.lock);
  const auto it = r.live.find(pool);
  return it != r.live.end() && it->second == id;
}

}  // namespace detail
}  // namespace bufpool
