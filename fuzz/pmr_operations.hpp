// SPDX-License-Identifier: MIT
// The operations on the pmr resource: allocate, deallocate, misuse and release.
#pragma once
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <new>
#include "session.hpp"
import bufpool;

namespace {

void session::ensure_resource() {
  if (resource_) return;
  const resource_setup setup = in_.resource_setup_arg();
  if (setup.over_user_buffer) {  // over a user buffer of any size and alignment
    user_size_ = setup.user_size;
    user_storage_.assign(user_size_ + 64, std::byte{0});
    user_buffer_ = user_storage_.data() + setup.misalign;
    resource_.emplace(static_cast<void*>(user_buffer_), user_size_, &upstream_);
  } else {
    resource_.emplace(setup.growth, &upstream_);
  }
  resource_base_ = resource_->stats();
  // Over a buffer, the records of the buffer's region come from upstream at once.
  expect(upstream_.outstanding() == 0 &&
             (setup.over_user_buffer || upstream_.records_outstanding() == 0),
         "a new resource takes no memory from upstream, and no record without a buffer");
}

void session::op_pmr_allocate() {
  ensure_resource();
  const std::size_t bytes = in_.pmr_bytes_arg();
  const std::size_t alignment = in_.pmr_alignment_arg();
  if (blocks_.size() >= max_pmr_blocks) return;
  const bufpool::pool_stats before = resource_->stats();
  const counting_upstream::snapshot up = upstream_.now();
  void* p = nullptr;
  if (!std::has_single_bit(alignment)) {
    bool bad_alloc = false;
    {
      deliberate_misuse m("pmr allocate with a non-power-of-two alignment");
      try {
        p = resource_->allocate(bytes, alignment);
      } catch (const std::bad_alloc&) {
        bad_alloc = true;
      }
      m.expect_reported();
    }
    expect(bad_alloc, "pmr: a non-power-of-two alignment throws bad_alloc");
    expect_resource_unchanged(before, up, "pmr: a refused allocation changes nothing");
    return;
  }
  int failure = 0;  // 1: bad_alloc, 2: the upstream's exception
  try {
    p = resource_->allocate(bytes, alignment);
  } catch (const upstream_refused&) {
    failure = 2;
  } catch (const std::bad_alloc&) {
    failure = 1;
  }
  const bool refused = upstream_.now().refusals != up.refusals;
  // A refused record may be done without (a small block is then served without a slab).
  const bool record_refused = upstream_.now().record_refusals != up.record_refusals;
  if (failure != 0) {
    expect_failed_allocation_unchanged(before, up);
    if (failure == 2 || record_refused) return;
    constexpr std::size_t top = std::numeric_limits<std::size_t>::max();
    // No region can hold it, or it cannot even be rounded up to its alignment (refused
    // before the upstream is asked).
    expect(!refused && ((alignment <= bufpool::pmr::pool_resource::region_alignment &&
                         bytes > top - 4095) ||
                        bytes > top - (alignment - 1)),
           "pmr: bad_alloc only for sizes no region can hold; upstream errors propagate", "bytes ",
           bytes, " alignment ", alignment, " upstream refused ", refused);
    return;
  }
  expect(!refused, "pmr: an upstream refusal is not swallowed", "bytes ", bytes);
  const std::size_t extent = std::max<std::size_t>(bytes, 1);
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  expect(address % alignment == 0, "pmr: the pointer is aligned", "pointer ", p, " alignment ",
         alignment);
  auto next = blocks_.lower_bound(address);
  const bool overlaps_next = next != blocks_.end() && next->first - address < extent;
  bool overlaps_prev = false;
  if (next != blocks_.begin()) {
    const auto& prev = std::prev(next)->second;
    overlaps_prev =
        reinterpret_cast<std::uintptr_t>(prev.pointer) + std::max<std::size_t>(prev.bytes, 1) >
        address;
  }
  expect(!overlaps_next && !overlaps_prev, "pmr: a block overlaps no other live block", "pointer ",
         p, " bytes ", bytes);
  auto* b = static_cast<std::byte*>(p);
  const bool in_buffer = user_buffer_ != nullptr && b >= user_buffer_ && extent <= user_size_ &&
                         static_cast<std::size_t>(b - user_buffer_) <= user_size_ - extent;
  expect(in_buffer || upstream_.contains(p, extent),
         "pmr: a block lies in the user buffer or in memory from upstream", "pointer ", p,
         " bytes ", bytes);
  const u64 id = next_id_++;
  fill_cookie(b, bytes, id);
  blocks_.emplace(address, pmr_block{b, bytes, alignment, id});
  check_resource_counts();
}

std::map<std::uintptr_t, pmr_block>::iterator session::nth_block(std::size_t i) {
  return std::next(blocks_.begin(), static_cast<std::ptrdiff_t>(i % blocks_.size()));
}

void session::pmr_deallocate(std::map<std::uintptr_t, pmr_block>::iterator it, bool zero_as_given) {
  const pmr_block b = it->second;
  verify_cookie(b.pointer, b.bytes, b.bytes, b.id, "pmr deallocate");
  const counting_upstream::snapshot up = upstream_.now();
  // A block of 0 bytes may be given back as 0 or 1 byte: the resource asks the pool for 1.
  const std::size_t bytes = b.bytes == 0 && !zero_as_given ? 1 : b.bytes;
  resource_->deallocate(b.pointer, bytes, b.alignment);
  blocks_.erase(it);
  const u64 expected =
      b.dedicated() ? up.outstanding - std::max<std::size_t>(b.bytes, 1) : up.outstanding;
  expect(upstream_.outstanding() == expected,
         "pmr: deallocate returns dedicated blocks upstream, and keeps regions", "outstanding ",
         upstream_.outstanding(), ", expected ", expected);
  check_resource_counts();
}

void session::op_pmr_deallocate() {
  const std::size_t i = in_.u8();
  const bool zero = (in_.u8() & 1u) != 0;
  if (!resource_ || blocks_.empty()) return;
  pmr_deallocate(nth_block(i), zero);
}

void session::op_pmr_misuse() {
  const std::uint8_t kind = in_.u8();
  const std::size_t i = in_.u8();
  const std::size_t arg = in_.u8();
  const std::size_t alignment = std::size_t{1} << (arg % 14);  // up to the dedicated path
  if (!resource_) return;
  const bufpool::pool_stats before = resource_->stats();
  const counting_upstream::snapshot up = upstream_.now();
  void* p = nullptr;
  std::size_t bytes = 16;
  std::size_t align = alignment;
  switch (kind % 6) {
    case 0:  // memory the resource never handed out
      p = &g_foreign_object;
      break;
    case 1:  // a pointer inside the user buffer, or into the core pool's memory
      if (user_buffer_ != nullptr && user_size_ != 0 && (kind & 0x80u) != 0)
        p = user_buffer_ + arg % user_size_;
      else if (!model_.regions.empty())
        p = model_.regions[0].base + arg % model_.regions[0].size;
      else
        p = &g_foreign_object;
      break;
    case 2: {  // inside a live block
      if (blocks_.empty()) return;
      const pmr_block& b = nth_block(i)->second;
      p = b.pointer + 1 + arg;
      bytes = b.bytes;
      align = b.alignment;
      break;
    }
    case 3: {  // the size differs from the allocation's
      if (blocks_.empty()) return;
      const pmr_block& b = nth_block(i)->second;
      p = b.pointer;
      bytes = std::max<std::size_t>(b.bytes, 1) + 1 + arg;
      align = b.alignment;
      break;
    }
    case 4: {  // the alignment differs from the allocation's
      if (blocks_.empty()) return;
      const pmr_block& b = nth_block(i)->second;
      p = b.pointer;
      bytes = b.bytes;
      align = b.alignment == alignment ? alignment * 2 : alignment;
      break;
    }
    default: {  // deallocated twice
      if (blocks_.empty()) return;
      const auto it = nth_block(i);
      p = it->second.pointer;
      bytes = it->second.bytes;
      align = it->second.alignment;
      pmr_deallocate(it, true);
      const bufpool::pool_stats after_first = resource_->stats();
      const counting_upstream::snapshot up_first = upstream_.now();
      {
        deliberate_misuse m("pmr deallocate twice");
        resource_->deallocate(p, bytes, align);
        m.expect_reported();
      }
      expect_resource_unchanged(after_first, up_first, "pmr: a second deallocate changes nothing");
      return;
    }
  }
  if (blocks_.contains(reinterpret_cast<std::uintptr_t>(p))) return;  // not a misuse after all
  {
    deliberate_misuse m("pmr deallocate of a pointer, size or alignment it did not hand out");
    resource_->deallocate(p, bytes, align);
    m.expect_reported();
  }
  expect_resource_unchanged(before, up, "pmr: a misused deallocate changes nothing");
  check_resource_counts();
}

void session::op_pmr_release() {
  if (!resource_) return;
  resource_->release();
  blocks_.clear();
  // What recent cycles used stays for the next (options idle_cycles, retained_bytes); every
  // other upstream block goes back.
  expect(upstream_.outstanding() == resource_->kept_bytes() &&
             (upstream_.blocks() == 0) == (resource_->kept_bytes() == 0),
         "pmr: release() gives back every upstream block but those it reports kept", "outstanding ",
         upstream_.outstanding());
  expect_stats(resource_->stats(), resource_base_,
               "pmr: release() returns the resource to its initial state");
}

}  // namespace
