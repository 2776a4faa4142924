// SPDX-License-Identifier: MIT
// Reporting failed checks (which operation, which values) and telling deliberate misuse apart.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <expected>
#include <ostream>
#include <sstream>
#include <string>
#include "bounds.hpp"
import bufpool;

namespace {

std::size_t g_op = 0;
const char* g_op_name = "setup";

[[noreturn]] void fail(const char* check, const std::string& details) {
  std::fprintf(stderr, "\nbufpool_fuzz: CHECK FAILED: %s\n  at op #%zu (%s)\n  %s\n", check, g_op,
               g_op_name, details.c_str());
  std::fflush(stderr);
  std::abort();
}

// Formats the details of a failed check; kept out of line so that expect() stays cheap.
template <class... Details>
[[noreturn, gnu::noinline, gnu::cold]] void fail_with(const char* check,
                                                      const Details&... details) {
  std::ostringstream os;
  ((os << details), ...);
  fail(check, os.str());
}

template <class... Details>
inline void expect(bool ok, const char* check, const Details&... details) {
  if (!ok) [[unlikely]]
    fail_with(check, details...);
}

constexpr std::uint32_t bit(errc e) noexcept {
  return std::uint32_t{1} << static_cast<unsigned>(e);
}

// Printable views for failure messages; built only when a message is.
struct error_set {
  std::uint32_t mask;
};

std::ostream& operator<<(std::ostream& os, error_set s) {
  os << "{";
  const char* sep = "";
  for (unsigned e = 1; e < 32; ++e)
    if (((s.mask >> e) & 1u) != 0) {
      os << sep << bufpool::to_string(static_cast<errc>(e));
      sep = ",";
    }
  return os << "}";
}

struct shown_outcome {
  bool ok;
  errc error;
};

std::ostream& operator<<(std::ostream& os, shown_outcome o) {
  return o.ok ? os << "success" : os << "error " << bufpool::to_string(o.error);
}

template <class T>
shown_outcome outcome(const std::expected<T, errc>& r) {
  return {r.has_value(), r ? errc{} : r.error()};
}

// ---- Contract violations ----------------------------------------------------------------

bool g_misuse_expected = false;
int g_violations = 0;

void on_violation(const bufpool::contract_violation& v) {
  if (!g_misuse_expected) fail("unexpected contract violation", v.rule);
  ++g_violations;
}

void on_diagnostic(const char* message) {
  fail("unexpected diagnostic", message);
}

// A deliberate misuse: the violation is recorded instead of aborting, and must be reported.
class deliberate_misuse {
 public:
  explicit deliberate_misuse(const char* what) : what_(what) {
    g_misuse_expected = true;
    g_violations = 0;
  }
  ~deliberate_misuse() { g_misuse_expected = false; }
  deliberate_misuse(const deliberate_misuse&) = delete;
  deliberate_misuse& operator=(const deliberate_misuse&) = delete;
  void expect_reported() const {
    expect(g_violations >= 1, "misuse is reported as a contract violation", what_);
  }

 private:
  const char* what_;
};

// Compares two sets of statistics field by field; a difference prints them side by side.
void expect_stats(const bufpool::pool_stats& got, const bufpool::pool_stats& want,
                  const char* check) {
  const bool same = got.used_bytes == want.used_bytes && got.free_bytes == want.free_bytes &&
                    got.pending_bytes == want.pending_bytes &&
                    got.largest_free == want.largest_free && got.free_ranges == want.free_ranges &&
                    got.live_slices == want.live_slices &&
                    got.guarded_slices == want.guarded_slices &&
                    got.parked_slices == want.parked_slices && got.regions == want.regions;
  if (same) return;
  std::ostringstream os;
  auto row = [&](const char* name, u64 g, u64 w) {
    os << "\n    " << name << ": got " << g << ", expected " << w << (g != w ? "   <--" : "");
  };
  row("used_bytes", got.used_bytes, want.used_bytes);
  row("free_bytes", got.free_bytes, want.free_bytes);
  row("pending_bytes", got.pending_bytes, want.pending_bytes);
  row("largest_free", got.largest_free, want.largest_free);
  row("free_ranges", got.free_ranges, want.free_ranges);
  row("live_slices", got.live_slices, want.live_slices);
  row("guarded_slices", got.guarded_slices, want.guarded_slices);
  row("parked_slices", got.parked_slices, want.parked_slices);
  row("regions", got.regions, want.regions);
  fail(check, os.str());
}

}  // namespace
