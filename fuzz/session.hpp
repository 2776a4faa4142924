// SPDX-License-Identifier: MIT
// One fuzz input's session: what it holds, how it dispatches operations, and its teardown.
//
// The session's members are defined by concern: the checks against the model in checks.hpp,
// the operations in slice_operations.hpp, expansion_operations.hpp and pmr_operations.hpp.
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>
#include "bounds.hpp"
#include "cookies.hpp"
#include "decoder.hpp"
#include "model.hpp"
#include "report.hpp"
#include "upstream.hpp"
import bufpool;
import bufpool.pmr;

namespace {

// ---- Guards -----------------------------------------------------------------------------

struct test_guard {
  std::shared_ptr<bool> done;
  int flag = 0;
  bool try_release() const { return *done; }
};
static_assert(bufpool::slice_guard<test_guard>);

using slice_t = pool_t::slice_type<test_guard>;

// ---- What the session holds -------------------------------------------------------------

struct region_memory_deleter {
  void operator()(std::byte* p) const noexcept { ::operator delete(p, std::align_val_t{4096}); }
};

// Where an acquisition landed, for slices and raw ranges alike.
struct placed {
  u64 offset;
  u64 capacity;
  std::byte* pointer;
};

struct slice_rec {
  slice_t slice;
  u64 id;
  u64 size;
  u64 offset;
  int flag = -1;  // guard flag, -1 if unguarded
  bool exclusive = true;
};

struct raw_rec {
  bufpool::raw_range<std::uint32_t> range;
  u64 size;
  u64 alignment;
  u64 id;
};

struct pending_rec {
  std::optional<pool_t::expansion> handle;
  u64 offset;
  u64 size;
};

struct pmr_block {
  std::byte* pointer;
  std::size_t bytes;
  std::size_t alignment;
  u64 id;
  [[nodiscard]] bool dedicated() const noexcept {
    return alignment > bufpool::pmr::pool_resource::region_alignment;
  }
};

int g_foreign_object = 0;  // an address no pool or resource owns

class session {
 public:
  explicit session(input_decoder& in);
  void run();

 private:
  void step(std::uint8_t opcode);
  void teardown();

  // ---- Checks against the model (checks.hpp).
  [[nodiscard]] std::uint32_t request_errors(u64 size, u64 alignment) const;
  [[nodiscard]] std::uint32_t fixed_errors(u64 at, u64 len, u64 align) const;
  bool settle_acquire(const request& q, const std::expected<placed, errc>& got, bool raw);
  void check_placement(const request& q, const placed& p, u64 len, u64 align, bool raw) const;
  bool check_resize(u64 offset, u64 capacity, u64 size, std::optional<u64> got, errc error,
                    bool guarded);
  void verify_raw(const raw_rec& r, const char* what) const;
  [[nodiscard]] bool accessible(const slice_rec& s) const;
  void verify_slice(const slice_rec& s, const char* what) const;
  [[nodiscard]] std::size_t pool_blocks() const;
  void check_resource_counts() const;
  void expect_resource_unchanged(const bufpool::pool_stats& before,
                                 const counting_upstream::snapshot& up, const char* what) const;
  void expect_failed_allocation_unchanged(const bufpool::pool_stats& before,
                                          const counting_upstream::snapshot& up) const;
  void check_counts() const;
  void full_check() const;

  // ---- Slices and raw ranges (slice_operations.hpp).
  void op_acquire(bool raw);
  void forget_raw(std::size_t i);
  void op_release_raw(bool by_pointer);
  void op_resize_raw();
  void remove_slice_rec(std::size_t i);
  void op_reclaim();
  void op_destroy();
  void op_try_resize();
  void op_guard();
  void unguarded(slice_rec& s);
  void op_try_unguard();
  void op_unguard_unchecked();
  void op_set_flag();
  void op_collect();
  void op_move();
  void op_access();
  [[nodiscard]] bool raw_starts_at(u64 offset) const;
  void op_raw_misuse();

  // ---- Expansion (expansion_operations.hpp).
  void begin_expand(u64 size);
  void op_begin_expand();
  void abandon(std::size_t i);
  void initialize(std::size_t i, std::size_t shift);
  void op_initialize();
  void op_abandon();
  void op_initialize_misuse();

  // ---- The pmr resource (pmr_operations.hpp).
  void ensure_resource();
  void op_pmr_allocate();
  std::map<std::uintptr_t, pmr_block>::iterator nth_block(std::size_t i);
  void pmr_deallocate(std::map<std::uintptr_t, pmr_block>::iterator it, bool zero_as_given);
  void op_pmr_deallocate();
  void op_pmr_misuse();
  void op_pmr_release();

  input_decoder& in_;
  std::vector<std::unique_ptr<std::byte, region_memory_deleter>> memory_;  // outlives the pool
  u64 memory_bytes_ = 0;
  std::array<std::shared_ptr<bool>, flag_count> flags_;
  options_t options_;
  std::shared_ptr<pool_t> pool_;
  pool_model model_;
  std::vector<pending_rec> pending_;
  std::vector<slice_rec> slices_;
  std::vector<raw_rec> raws_;
  u64 next_id_ = 1;

  counting_upstream upstream_;  // outlives the resource
  std::vector<std::byte> user_storage_;
  std::byte* user_buffer_ = nullptr;
  std::size_t user_size_ = 0;
  std::optional<bufpool::pmr::pool_resource> resource_;
  std::map<std::uintptr_t, pmr_block> blocks_;
  bufpool::pool_stats resource_base_;
};

session::session(input_decoder& in) : in_(in) {
  for (auto& f : flags_) f = std::make_shared<bool>(false);
  const pool_setup setup = in_.pool_setup_arg();
  options_ = setup.options;
  pool_ = std::make_shared<pool_t>(options_);
  expect(pool_->options().min_alignment == options_.min_alignment, "options are kept");
  if (setup.initial_region_size) {  // start with one region, so most inputs can acquire
    begin_expand(*setup.initial_region_size);
    initialize(pending_.size() - 1, 0);
  }
}

void session::run() {
  for (std::size_t n = 0; n < max_ops && !in_.empty(); ++n) {
    g_op = n;
    step(in_.u8());
    check_counts();
    if (n % full_check_every == full_check_every - 1) full_check();
  }
  g_op_name = "teardown";
  teardown();
}

void session::step(std::uint8_t opcode) {
  const operation op = operation_for(opcode);
  g_op_name = name_of(op);
  switch (op) {
    case operation::acquire:
      return op_acquire(false);
    case operation::acquire_raw:
      return op_acquire(true);
    case operation::release_raw_by_offset:
      return op_release_raw(false);
    case operation::release_raw_by_pointer:
      return op_release_raw(true);
    case operation::reclaim:
      return op_reclaim();
    case operation::destroy_slice:
      return op_destroy();
    case operation::try_resize:
      return op_try_resize();
    case operation::guard:
      return op_guard();
    case operation::try_unguard:
      return op_try_unguard();
    case operation::unguard_unchecked:
      return op_unguard_unchecked();
    case operation::set_guard_flag:
      return op_set_flag();
    case operation::collect:
      return op_collect();
    case operation::begin_expand:
      return op_begin_expand();
    case operation::initialize:
      return op_initialize();
    case operation::abandon_expansion:
      return op_abandon();
    case operation::raw_misuse:
      return op_raw_misuse();
    case operation::move_slice:
      return op_move();
    case operation::resize_raw:
      return op_resize_raw();
    case operation::initialize_misuse:
      return op_initialize_misuse();
    case operation::slice_access:
      return op_access();
    case operation::pmr_allocate:
      return op_pmr_allocate();
    case operation::pmr_deallocate:
      return op_pmr_deallocate();
    case operation::pmr_misuse:
      return op_pmr_misuse();
    case operation::pmr_release:
      return op_pmr_release();
    case operation::full_check:
      return full_check();
  }
}

// ---- End of input: give everything back and check the pool is whole again.

void session::teardown() {
  while (!pending_.empty()) abandon(pending_.size() - 1);
  for (auto& s : slices_) {
    if (s.flag >= 0) {
      expect(s.slice.unguard_unchecked().has_value(), "unguard_unchecked at teardown");
      unguarded(s);
    }
    verify_slice(s, "teardown");
    expect(std::move(s.slice).reclaim().has_value(), "reclaim at teardown");
    model_.live.erase(s.offset);
  }
  slices_.clear();
  while (!raws_.empty()) {
    const raw_rec& r = raws_.back();
    verify_raw(r, "teardown");
    expect(pool_->release_raw(static_cast<const void*>(r.range.pointer), r.size, r.alignment),
           "release_raw at teardown");
    forget_raw(raws_.size() - 1);
  }
  for (auto& f : flags_) *f = true;
  const std::size_t parked = model_.collect(flags_);
  expect(pool_->collect() == parked, "collect at teardown frees every parked range");
  check_counts();
  full_check();

  const auto s = pool_->stats();
  u64 total = 0;
  u64 largest = 0;
  for (const auto& r : model_.regions) {
    total += r.size;
    largest = std::max(largest, r.size);
  }
  expect(s.used_bytes == 0 && s.live_slices == 0 && s.guarded_slices == 0 && s.parked_slices == 0 &&
             s.pending_bytes == 0,
         "everything given back: nothing used, live, guarded, parked or pending");
  expect(
      s.free_ranges == model_.regions.size() && s.free_bytes == total && s.largest_free == largest,
      "fully coalesced: one free range per region, never across regions", "free_ranges ",
      s.free_ranges, " regions ", model_.regions.size());

  if (resource_) {
    g_op_name = "pmr teardown";
    while (!blocks_.empty()) pmr_deallocate(blocks_.begin(), true);
    const auto rs = resource_->stats();
    expect(rs.live_slices == resource_base_.live_slices &&
               rs.used_bytes == resource_base_.used_bytes &&
               (rs.spare_bytes != 0 || rs.free_ranges == rs.regions),
           "pmr: all blocks given back, every region one free range", "live ", rs.live_slices,
           " free_ranges ", rs.free_ranges, " regions ", rs.regions);
    const auto rv = resource_->validate();
    expect(rv.has_value(), "pmr: validate()", rv ? std::string() : rv.error());
    resource_.reset();
    expect(upstream_.outstanding() == 0 && upstream_.blocks() == 0 &&
               upstream_.records_outstanding() == 0,
           "pmr: destroying the resource gives every upstream byte back", "outstanding ",
           upstream_.outstanding());
  }

  g_op_name = "close";
  auto closed = pool_->try_close();
  expect(closed.has_value(), "try_close succeeds once everything is given back");
  const auto& entries = closed->entries;
  bool same = entries.size() == model_.regions.size();
  for (std::size_t k = 0; same && k < entries.size(); ++k)
    same = entries[k].pool_offset == model_.regions[k].offset &&
           entries[k].size == model_.regions[k].size &&
           entries[k].pointer == model_.regions[k].base;
  expect(same, "try_close hands back every region in initialization order");
  const auto late = pool_->acquire(16);
  expect(!late && late.error() == errc::pool_closed, "a closed pool refuses acquisitions");
}

}  // namespace
