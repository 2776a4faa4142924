// SPDX-License-Identifier: MIT
// Implementation of the violation and diagnostic handlers.
module;
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <source_location>
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
// Constant-initialized and trivially destroyed: usable by pools that static objects make or
// destroy at any time.
struct pool_registry {
  static constinit inline adaptive_mutex lock;
  static constinit inline intrusive_list<pool_registration, &pool_registration::links> pools;
  static constinit inline std::uint64_t next_id = 1;
};
}  // namespace

std::uint64_t register_pool(const void* pool, pool_registration& node) noexcept {
  std::scoped_lock l(pool_registry::lock);
  node.pool = pool;
  node.id = pool_registry::next_id++;
  pool_registry::pools.push_front(node);
  return node.id;
}

void unregister_pool(pool_registration& node) noexcept {
  std::scoped_lock l(pool_registry::lock);
  pool_registry::pools.erase(node);
}

bool pool_registered(const void* pool, std::uint64_t id) noexcept {
  std::scoped_lock l(pool_registry::lock);
  for (const pool_registration* n = pool_registry::pools.first; n != nullptr;
       n = pool_registry::pools.next(*n))
    if (n->pool == pool && n->id == id) return true;
  return false;
}

}  // namespace detail
}  // namespace bufpool
