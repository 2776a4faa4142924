// SPDX-License-Identifier: MIT
// The operations that grow the pool: reserve offsets, initialize a region, abandon, misuse.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <optional>
#include <utility>
#include <vector>
#include "session.hpp"
import bufpool;

namespace {

void session::begin_expand(u64 size) {
  std::uint32_t errs = 0;
  std::vector<u64> where;  // acceptable offsets
  const u64 frontier = model_.frontier();
  if (size == 0) {
    errs = bit(errc::invalid_size);
  } else if (size > offset_max) {
    errs = bit(errc::out_of_offset_space);
  } else if (size <= (offset_max + 1) - frontier) {
    where.push_back(frontier);  // the next offsets at the end of the used space
  } else {                      // the end is exhausted: the smallest hole that fits
    std::optional<u64> best;
    const auto holes = model_.holes();
    for (const auto& h : holes)
      if (h.size >= size && (!best || h.size < *best)) best = h.size;
    for (const auto& h : holes)
      if (best && h.size == *best) where.push_back(h.offset);
    if (where.empty()) errs = bit(errc::out_of_offset_space);
  }
  auto h = pool_->begin_expand(size);
  if (errs != 0) {
    expect(!h && (errs & bit(h.error())) != 0, "begin_expand fails as the model says", "size ",
           size, ": got ", outcome(h), ", expected one of ", error_set{errs});
    return;
  }
  expect(h.has_value(), "begin_expand succeeds while the offset space has room", "size ", size,
         " frontier ", frontier, ": got ", outcome(h));
  expect(h->size() == size && std::ranges::find(where, u64{h->offset()}) != where.end(),
         "begin_expand reserves at the end of the used space, else in the smallest hole", "size ",
         size, " got offset ", h->offset(), ", frontier ", frontier, ", candidates ", where.size());
  const u64 offset = h->offset();
  model_.pending.emplace(offset, size);
  pending_.push_back({std::move(*h), offset, size});
}

void session::op_begin_expand() {
  const u64 size = in_.expand_size_arg(model_.frontier());
  if (pending_.size() >= max_pending) return;
  begin_expand(size);
}

void session::abandon(std::size_t i) {
  {
    auto dying = std::move(pending_[i].handle);
  }  // destroying the handle cancels it
  model_.pending.erase(pending_[i].offset);
  pending_[i] = std::move(pending_.back());
  pending_.pop_back();
}

void session::initialize(std::size_t i, std::size_t shift) {
  pending_rec& p = pending_[i];
  if (p.size > max_region_size || model_.regions.size() >= max_regions ||
      memory_bytes_ + p.size > region_budget)
    return abandon(i);
  // The base is 4 KiB-aligned, or shifted by a few granules; the pool promises nothing
  // about addresses, so only offsets are checked for alignment.
  auto* memory = static_cast<std::byte*>(::operator new(p.size + shift, std::align_val_t{4096}));
  memory_.emplace_back(memory);
  memory_bytes_ += p.size;
  std::byte* base = memory + shift;
  auto id = std::move(*p.handle).initialize(base);
  expect(id.has_value() && *id == model_.regions.size(),
         "initialize publishes the region with the next id", "got ", outcome(id));
  model_.pending.erase(p.offset);
  model_.regions.push_back({p.offset, p.size, base});
  pending_[i] = std::move(pending_.back());
  pending_.pop_back();
}

void session::op_initialize() {
  const std::size_t i = in_.pick(pending_.size());
  const std::size_t shift = 8 * (in_.u8() % 4);
  if (pending_.empty()) return;
  initialize(i, shift);
}

void session::op_abandon() {
  const std::size_t i = in_.pick(pending_.size());
  if (pending_.empty()) return;
  abandon(i);
}

void session::op_initialize_misuse() {
  const std::size_t i = in_.pick(pending_.size());
  const std::uint8_t how = in_.u8();
  const u64 into = in_.u16();
  if (pending_.empty()) return;
  pending_rec& p = pending_[i];
  void* base = nullptr;                              // null memory
  if ((how & 1u) != 0 && !model_.regions.empty()) {  // memory of an existing region
    const model_region& r = model_.regions[how / 2 % model_.regions.size()];
    base = r.base + into % r.size;
  }
  {
    deliberate_misuse m("initialize with null or overlapping memory");
    auto id = std::move(*p.handle).initialize(base);
    m.expect_reported();
    const errc cause = base == nullptr ? errc::null_memory : errc::overlapping_memory;
    expect(!id && id.error() == cause,
           "initialize with bad memory fails with null_memory or overlapping_memory");
  }
  model_.pending.erase(p.offset);  // the reservation is cancelled
  pending_[i] = std::move(pending_.back());
  pending_.pop_back();
}

}  // namespace
