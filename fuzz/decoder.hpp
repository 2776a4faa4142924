// SPDX-License-Identifier: MIT
// The input encoding: which operation each byte selects, and how its arguments are read.
//
// Byte 0 chooses the pool options and whether the pool starts with a region; every
// following operation starts with an opcode byte (see `operation_for`) and reads its
// arguments from the bytes after it. Reads return 0 once the input is exhausted.
// fuzz/make-corpus.py writes the seed corpus in this encoding: keep the two in step.
#pragma once
#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <optional>
#include <vector>
#include "bounds.hpp"
#include "model.hpp"
import bufpool;
import bufpool.pmr;

namespace {

// ---- Operations -------------------------------------------------------------------------

enum class operation : std::uint8_t {
  acquire,
  acquire_raw,
  release_raw_by_offset,
  release_raw_by_pointer,
  reclaim,
  destroy_slice,
  try_resize,
  guard,
  try_unguard,
  unguard_unchecked,
  set_guard_flag,
  collect,
  begin_expand,
  initialize,
  abandon_expansion,
  raw_misuse,
  move_slice,
  resize_raw,
  initialize_misuse,
  slice_access,
  pmr_allocate,
  pmr_deallocate,
  pmr_misuse,
  pmr_release,
  full_check,
};

// The operation an opcode byte selects: the byte is taken modulo 32.
constexpr operation operation_for(std::uint8_t opcode) noexcept {
  switch (opcode % 32) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 31:
      return operation::acquire;
    case 4:
    case 5:
      return operation::acquire_raw;
    case 6:
      return operation::release_raw_by_offset;
    case 7:
      return operation::release_raw_by_pointer;
    case 8:
      return operation::reclaim;
    case 9:
      return operation::destroy_slice;
    case 10:
      return operation::try_resize;
    case 11:
      return operation::guard;
    case 12:
      return operation::try_unguard;
    case 13:
      return operation::unguard_unchecked;
    case 14:
      return operation::set_guard_flag;
    case 15:
      return operation::collect;
    case 16:
      return operation::begin_expand;
    case 17:
      return operation::initialize;
    case 18:
      return operation::abandon_expansion;
    case 19:
      return operation::raw_misuse;
    case 20:
      return operation::move_slice;
    case 21:
      return operation::resize_raw;
    case 22:
      return operation::initialize_misuse;
    case 23:
      return operation::slice_access;
    case 24:
    case 25:
    case 26:
      return operation::pmr_allocate;
    case 27:
      return operation::pmr_deallocate;
    case 28:
      return operation::pmr_misuse;
    case 29:
      return operation::pmr_release;
    default:
      return operation::full_check;
  }
}

// The name a failure message gives the operation.
constexpr const char* name_of(operation op) noexcept {
  switch (op) {
    case operation::acquire:
      return "acquire";
    case operation::acquire_raw:
      return "acquire_raw";
    case operation::release_raw_by_offset:
      return "release_raw(offset)";
    case operation::release_raw_by_pointer:
      return "release_raw(pointer)";
    case operation::reclaim:
      return "reclaim";
    case operation::destroy_slice:
      return "destroy slice";
    case operation::try_resize:
      return "try_resize";
    case operation::guard:
      return "guard";
    case operation::try_unguard:
      return "try_unguard";
    case operation::unguard_unchecked:
      return "unguard_unchecked";
    case operation::set_guard_flag:
      return "set guard flag";
    case operation::collect:
      return "collect";
    case operation::begin_expand:
      return "begin_expand";
    case operation::initialize:
      return "initialize";
    case operation::abandon_expansion:
      return "abandon expansion";
    case operation::raw_misuse:
      return "raw misuse";
    case operation::move_slice:
      return "move slice";
    case operation::resize_raw:
      return "resize_raw";
    case operation::initialize_misuse:
      return "initialize misuse";
    case operation::slice_access:
      return "slice data access";
    case operation::pmr_allocate:
      return "pmr allocate";
    case operation::pmr_deallocate:
      return "pmr deallocate";
    case operation::pmr_misuse:
      return "pmr deallocate misuse";
    case operation::pmr_release:
      return "pmr release";
    case operation::full_check:
      return "full check";
  }
}

// ---- Decoded arguments ------------------------------------------------------------------

struct request {
  u64 size;
  u64 alignment;
  bufpool::strategy how;
  bufpool::pool_ref ref;
};

options_t options_for(unsigned set) {
  options_t o;
  switch (set % 8) {
    case 1:
      o.min_alignment = 1;
      break;
    case 2:
      o.min_alignment = 64;
      break;
    case 3:
      o.max_size = 4096;
      break;
    case 4:
      o.min_size = 100;
      o.min_alignment = 8;
      o.max_alignment = 4096;
      break;
    case 5:
      o.min_alignment = 1;
      o.max_size = 300;
      o.max_alignment = std::uint32_t{1} << 20;
      break;
    case 6:
      o.min_alignment = 4096;
      break;
    default:
      break;
  }
  return o;
}

// The pool a session starts with.
struct pool_setup {
  options_t options;
  std::optional<u64> initial_region_size;  // none: the pool starts without a region
};

// The pmr resource a session builds on its first pmr operation.
struct resource_setup {
  bool over_user_buffer;                  // else regions come from upstream, as `growth` says
  std::size_t user_size;                  // over a user buffer: its size...
  std::size_t misalign;                   // ...and how far its start is from alignment
  bufpool::pmr::resource_options growth;  // from upstream
};

// ---- The decoder ------------------------------------------------------------------------

class input_decoder {
 public:
  input_decoder(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  // Byte 0 with bit 6 set: a session of slab slots over three threads (slot_session.hpp).
  [[nodiscard]] bool slot_session_next() const noexcept {
    return size_ != 0 && (*data_ & 0x40u) != 0;
  }
  std::uint8_t u8() noexcept {
    if (size_ == 0) return 0;
    --size_;
    return *data_++;
  }
  std::uint16_t u16() noexcept {
    const unsigned lo = u8();
    const unsigned hi = u8();
    return static_cast<std::uint16_t>(lo | (hi << 8));
  }
  std::uint32_t u32() noexcept {
    const std::uint32_t lo = u16();
    const std::uint32_t hi = u16();
    return lo | (hi << 16);
  }

  // Byte 0: the options (low 3 bits), and bit 7 clear for an initial region (bit 6 clear:
  // this kind of session).
  pool_setup pool_setup_arg() {
    const std::uint8_t config = u8();
    pool_setup s{options_for(config & 7u), std::nullopt};
    if ((config & 0x80u) == 0) s.initial_region_size = 256 + u64{u16()};
    return s;
  }

  // depend on the state.
  std::size_t pick(std::size_t n) {
    const std::size_t k = u8();
    return n == 0 ? 0 : k % n;
  }

  u64 size_arg() {
    const std::uint8_t k = u8();
    if (k < 128) return 1 + u64{u8()};
    if (k < 176) return 1 + u64{u16()} % 4096;
    if (k < 200) return 1 + u64{u32()} % (u64{1} << 20);
    if (k < 216) return 0;
    const std::array<u64, 5> huge{offset_max, offset_max + 1, u64{1} << 31, ~u64{0},
                                  (u64{1} << 32) + u16()};
    return huge[k % huge.size()];
  }

  u64 alignment_arg() {
    const std::uint8_t k = u8();
    if (k < 200) return u64{1} << (k % 14);
    if (k < 216) {
      const std::array<u64, 8> invalid{0, 3, 6, 24, 48, 100, 4097, ~u64{0}};
      return invalid[k % invalid.size()];
    }
    if (k < 240) return u64{1} << (14 + k % 18);
    return u64{1} << (32 + k % 32);
  }

  u64 fixed_offset_arg(u64 alignment, const pool_model& model, u64 min_alignment) {
    const std::uint8_t sel = u8();
    const std::size_t which = u8();
    u64 offset = 0;
    auto nth_live = [&]() {
      return std::next(model.live.begin(), static_cast<std::ptrdiff_t>(which % model.live.size()));
    };
    switch (sel % 8) {
      case 0:  // the end of a live range: free if the next range is
        if (!model.live.empty()) {
          const auto it = nth_live();
          offset = it->first + it->second.capacity;
        }
        break;
      case 1:  // the start of a live range: occupied
        if (!model.live.empty()) offset = nth_live()->first;
        break;
      case 2: {  // somewhere in a region
        const u64 delta = u16();
        if (!model.regions.empty())
          offset = model.regions[which % model.regions.size()].offset + delta;
        break;
      }
      case 3: {  // the start of a free gap
        std::vector<u64> gaps;
        model.for_each_gap([&](u64 o, u64) { gaps.push_back(o); });
        if (!gaps.empty()) offset = gaps[which % gaps.size()];
        break;
      }
      case 4:  // a pending reservation: never allocatable
        if (!model.pending.empty())
          offset = std::next(model.pending.begin(),
                             static_cast<std::ptrdiff_t>(which % model.pending.size()))
                       ->first;
        break;
      case 5:
        offset = u32();
        break;
      case 6:  // near the top of the offset space
        offset = offset_max - which;
        break;
      default:  // beyond the offset integer
        offset = (u64{u32()} << 32) | which;
        break;
    }
    const u64 a = effective_alignment(alignment, min_alignment);
    if ((sel & 0x10u) != 0 && std::has_single_bit(a) && a <= (u64{1} << 40))
      offset = (offset + a - 1) & ~(a - 1);
    if ((sel & 0x20u) != 0) offset += u8();
    return offset;
  }

  request request_arg(const pool_model& model, u64 min_alignment) {
    request q{};
    q.size = size_arg();
    q.alignment = alignment_arg();
    const std::uint8_t s = u8();
    switch (s % 8) {
      case 3:
        q.how = bufpool::good_fit;
        break;
      case 4:
      case 5:
        q.how = bufpool::greedy;
        break;
      case 6:
      case 7:
        q.how = bufpool::fixed(fixed_offset_arg(q.alignment, model, min_alignment));
        break;
      default:
        q.how = bufpool::optimal;
        break;
    }
    switch ((s >> 3) & 3u) {
      case 2:
        q.ref = bufpool::pool_ref::shared;
        break;
      case 3:
        q.ref = bufpool::pool_ref::weak;
        break;
      default:
        q.ref = bufpool::pool_ref::borrowed;
        break;
    }
    return q;
  }

  // The size of a region to reserve; `frontier` is the end of the used offset space.
  u64 expand_size_arg(u64 frontier) {
    const std::uint8_t k = u8();
    const u64 left = (offset_max + 1) - frontier;  // offsets left at the end
    if (k < 96) return 1 + u64{u16()} % 16384;
    if (k < 160) return 4096 * (1 + u64{u8()} % 64);
    if (k < 192) return 1 + u64{u32()} % max_region_size;
    if (k < 204) return 0;
    if (k < 224) {  // up to the end of the offset space, or just short of it
      const u64 d = u16();
      return left > d ? left - d : std::max<u64>(left, 1);
    }
    if (k < 240) return left + 1 + u8();  // too big for the end: searches the holes
    const std::array<u64, 4> huge{offset_max, offset_max + 1, ~u64{0}, u64{1} << 31};
    return huge[k % huge.size()];
  }

  // The first byte says whether the resource works over a user buffer (bit 0) and, if it
  // grows from upstream, whether it is thread-safe (bit 1).
  resource_setup resource_setup_arg() {
    resource_setup s{};
    const std::uint8_t k = u8();
    s.over_user_buffer = (k & 1u) != 0;
    if (s.over_user_buffer) {  // over a user buffer of any size and alignment
      s.user_size = u16() % 12288;
      s.misalign = u8() % 64;
      return s;
    }
    s.growth.first_region_size = 1 + std::size_t{u16()} * 4;
    s.growth.growth_factor = 1.0 + 0.5 * (u8() % 4);
    s.growth.max_region_size =
        std::max(s.growth.first_region_size, static_cast<std::size_t>(1 + u8() % 16) << 16);
    s.growth.thread_safe = (k & 2u) != 0;
    return s;
  }

  std::size_t pmr_bytes_arg() {
    const std::uint8_t k = u8();
    if (k < 160) return 1 + std::size_t{u8()};
    if (k < 200) return u16();
    if (k < 216) return 0;
    if (k < 240) return 1 + std::size_t{u32()} % (std::size_t{1} << 20);
    constexpr std::size_t top = std::numeric_limits<std::size_t>::max();
    const std::array<std::size_t, 5> huge{top, top - 4095, top - 4096, std::size_t{1} << 40,
                                          std::size_t{1} << 62};
    return huge[k % huge.size()];
  }

  std::size_t pmr_alignment_arg() {
    const std::uint8_t k = u8();
    if (k < 200) return std::size_t{1} << (k % 13);  // 1 .. 4096
    if (k < 224) return std::size_t{8192} << (k % 3);
    if (k < 240) {
      const std::array<std::size_t, 4> invalid{0, 3, 12, 4095};
      return invalid[k % invalid.size()];
    }
    return 1;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
};

}  // namespace
