// SPDX-License-Identifier: MIT
// The second kind of fuzz session: slab slots and thread caches, with every acquisition and
// release run on one of three threads, so that releases cross threads and reach caches whose
// threads have exited.
//
// The pool (slabs on, thread caches on or off) is checked against a model of the live blocks:
// each lies in the region, aligned, as large as asked, overlapping no other, with its contents
// intact until it is released; every release of a live block succeeds whichever thread makes
// it; a misused release is reported and changes nothing; the counts agree; and at the end,
// with everything released and the threads gone, the pool is one free range again. A clear()
// forgets every block and the region, which the session then adds again.
//
// The threads take turns: the session hands an operation to a thread and waits for it, so a
// run stays deterministic (and race-free for the session's own state) while the pool sees
// three threads with caches of their own.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <utility>
#include "bounds.hpp"
#include "cookies.hpp"
#include "decoder.hpp"
#include "report.hpp"
import bufpool;

namespace {

// A thread that runs the session's tasks one at a time, while the session waits.
class turn_thread {
 public:
  turn_thread() : thread_([this] { loop(); }) {}
  ~turn_thread() { stop(); }
  turn_thread(const turn_thread&) = delete;
  turn_thread& operator=(const turn_thread&) = delete;

  void run(const std::function<void()>& task) {
    std::unique_lock lock(mutex_);
    task_ = &task;
    changed_.notify_all();
    changed_.wait(lock, [this] { return task_ == nullptr; });
  }
  // The thread exits (its caches detach) and a new one takes its place.
  void replace() {
    stop();
    quit_ = false;
    thread_ = std::thread([this] { loop(); });
  }

 private:
  void loop() {
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [this] { return task_ != nullptr || quit_; });
      if (task_ == nullptr) return;
      (*task_)();
      task_ = nullptr;
      changed_.notify_all();
    }
  }
  void stop() {
    {
      std::scoped_lock lock(mutex_);
      quit_ = true;
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  std::mutex mutex_;
  std::condition_variable changed_;
  const std::function<void()>* task_ = nullptr;
  bool quit_ = false;
  std::thread thread_;
};

class slot_session {
 public:
  explicit slot_session(input_decoder& in);
  void run();

 private:
  struct live_block {
    u64 size;
    u64 alignment;
    u64 offset;
    u64 capacity;
    u64 id;
  };
  using live_map = std::map<std::uintptr_t, live_block>;  // by address

  void step(std::uint8_t opcode);
  // Runs `task` on thread 0 (the session's own), 1 or 2.
  void on_thread(unsigned t, const std::function<void()>& task);
  void op_acquire();
  void op_release();
  void op_misuse();
  void op_check();
  void op_clear(unsigned t);
  void add_region();  // the session's one region, at offset 0
  void check_counts() const;
  [[nodiscard]] live_map::iterator pick_live();
  void teardown();

  struct memory_deleter {
    void operator()(std::byte* p) const noexcept { ::operator delete(p, std::align_val_t{4096}); }
  };

  input_decoder& in_;
  u64 region_size_ = 0;
  u64 min_alignment_ = 1;
  std::unique_ptr<std::byte, memory_deleter> memory_;  // outlives the pool
  std::unique_ptr<pool_t> pool_;
  turn_thread threads_[2];  // threads 1 and 2
  live_map live_;
  u64 next_id_ = 1;
};

// Byte 0 had bit 6 set (the session kind). Bits 0-1: min_alignment 8, 16, 1 or 64; bit 5:
// thread caches. Byte 1: the region's size in 4 KiB pages, 16 more than it says.
slot_session::slot_session(input_decoder& in) : in_(in) {
  const std::uint8_t config = in_.u8();
  constexpr u64 min_alignments[] = {8, 16, 1, 64};
  min_alignment_ = min_alignments[config & 3u];
  options_t o;
  o.min_alignment = static_cast<std::uint32_t>(min_alignment_);
  o.max_alignment = 4096;
  o.slabs = true;
  o.thread_caches = (config & 0x20u) != 0;
  region_size_ = u64{4096} * (16 + in_.u8());
  memory_.reset(static_cast<std::byte*>(::operator new(region_size_, std::align_val_t{4096})));
  pool_ = std::make_unique<pool_t>(o);
  add_region();
}

void slot_session::add_region() {
  auto grow = pool_->begin_expand(region_size_);
  expect(grow.has_value() && grow->offset() == 0, "slots: the region is the pool's first");
  expect(std::move(*grow).initialize(memory_.get()).has_value(), "slots: the region initializes");
}

void slot_session::run() {
  for (std::size_t n = 0; n < max_ops && !in_.empty(); ++n) {
    g_op = n;
    step(in_.u8());
    check_counts();
  }
  g_op_name = "slots: teardown";
  teardown();
}

void slot_session::on_thread(unsigned t, const std::function<void()>& task) {
  if (t == 0) return task();
  threads_[t - 1].run(task);
}

void slot_session::step(std::uint8_t opcode) {
  switch (opcode % 8) {
    case 0:
    case 1:
    case 2:
      g_op_name = "slots: acquire";
      return op_acquire();
    case 3:
    case 4:
      g_op_name = "slots: release";
      return op_release();
    case 5:
      g_op_name = "slots: misuse";
      return op_misuse();
    case 6: {
      g_op_name = "slots: a thread exits";
      threads_[in_.u8() % 2].replace();
      return;
    }
    default:
      g_op_name = "slots: check";
      return op_check();
  }
}

// Arguments: thread, size (u16: up to 2 KiB, or up to 32 KiB with bit 15), alignment
// (1 << (byte % 8)), strategy (greedy unless bit 7 of that byte: good_fit).
void slot_session::op_acquire() {
  const unsigned t = in_.u8() % 3;
  const std::uint16_t s = in_.u16();
  const u64 size = 1 + ((s & 0x8000u) != 0 ? s % (32u << 10) : s % 2048u);
  const std::uint8_t a = in_.u8();
  const u64 alignment = u64{1} << (a % 8);
  const bufpool::strategy how = (a & 0x80u) != 0 ? bufpool::good_fit : bufpool::greedy;
  if (live_.size() >= max_raws) return;
  std::expected<bufpool::raw_range<std::uint32_t>, errc> got = std::unexpected(errc{});
  on_thread(t, [&] { got = pool_->acquire_raw(size, alignment, how); });
  if (!got) {
    expect(got.error() == errc::out_of_memory, "slots: a valid request fails only for room",
           "size ", size, " alignment ", alignment, ": ", bufpool::to_string(got.error()));
    return;
  }
  const auto address = reinterpret_cast<std::uintptr_t>(got->pointer);
  const auto base = reinterpret_cast<std::uintptr_t>(memory_.get());
  const u64 align = std::max(alignment, min_alignment_);
  expect(got->size == size && got->capacity >= size, "slots: size kept, capacity holds it", "size ",
         size, " capacity ", got->capacity);
  expect(address >= base && address - base == got->offset &&
             got->offset + got->capacity <= region_size_,
         "slots: the block lies in the region, at its offset", "offset ", got->offset, " capacity ",
         got->capacity);
  expect(got->offset % align == 0 && address % align == 0, "slots: the block is aligned", "offset ",
         got->offset, " alignment ", align);
  const auto after = live_.lower_bound(address);
  expect(after == live_.end() || after->first >= address + got->capacity,
         "slots: no overlap with the next live block", "offset ", got->offset);
  if (after != live_.begin()) {
    const auto before = std::prev(after);
    expect(before->first + before->second.capacity <= address,
           "slots: no overlap with the previous live block", "offset ", got->offset);
  }
  const u64 id = next_id_++;
  fill_cookie(got->pointer, size, id);
  live_.emplace(address, live_block{size, alignment, got->offset, got->capacity, id});
}

slot_session::live_map::iterator slot_session::pick_live() {
  return std::next(live_.begin(), static_cast<std::ptrdiff_t>(in_.pick(live_.size())));
}

// Arguments: the block, thread, how (by pointer or offset, with or without its size and
// alignment).
void slot_session::op_release() {
  if (live_.empty()) return;
  const auto it = pick_live();
  const unsigned t = in_.u8() % 3;
  const unsigned mode = in_.u8() % 4;
  const live_block b = it->second;
  auto* const p = reinterpret_cast<std::byte*>(it->first);
  verify_cookie(p, b.size, b.size, b.id, "slots: before its release");
  bool released = false;
  on_thread(t, [&] {
    switch (mode) {
      case 0:
        released = pool_->release_raw(static_cast<const void*>(p));
        break;
      case 1:
        released = pool_->release_raw(static_cast<const void*>(p), b.size, b.alignment);
        break;
      case 2:
        released = pool_->release_raw(b.offset);
        break;
      default:
        released = pool_->release_raw(b.offset, b.size, b.alignment);
        break;
    }
  });
  expect(released, "slots: a live block is released by any thread, by pointer or offset", "offset ",
         b.offset, " thread ", t, " mode ", mode);
  live_.erase(it);
}

// Arguments: which misuse, the block, thread. A release with the wrong size, by an address
// inside a block, or of a block already released is reported and changes nothing.
void slot_session::op_misuse() {
  if (live_.empty()) return;
  const unsigned kind = in_.u8() % 3;
  const auto it = pick_live();
  const unsigned t = in_.u8() % 3;
  const live_block b = it->second;
  auto* const p = reinterpret_cast<std::byte*>(it->first);
  const auto before = pool_->stats();
  bool released = true;
  {
    deliberate_misuse misuse("slots: a misused release");
    on_thread(t, [&] {
      switch (kind) {
        case 0:
          released = pool_->release_raw(static_cast<const void*>(p), b.size + 1, b.alignment);
          break;
        case 1:
          released = b.capacity > 1 && pool_->release_raw(static_cast<const void*>(p + 1));
          if (b.capacity <= 1) g_violations = 1;  // nothing to misuse
          break;
        default:  // a double release: the block goes, then goes again
          released = !pool_->release_raw(static_cast<const void*>(p), b.size, b.alignment) ||
                     pool_->release_raw(static_cast<const void*>(p), b.size, b.alignment);
          break;
      }
    });
    misuse.expect_reported();
  }
  expect(!released, "slots: a misused release reports failure", "kind ", kind);
  if (kind == 2) {
    live_.erase(it);
    return;
  }
  verify_cookie(p, b.size, b.size, b.id, "slots: after a misused release");
  expect_stats(pool_->stats(), before, "slots: a misused release changes nothing");
}

// Arguments: a byte whose top three bits all set mean clear() (the pool forgets every block
// and its region, which is added again), else the thread (byte % 3) that validates, trimming
// first if it is thread 1.
void slot_session::op_check() {
  const std::uint8_t arg = in_.u8();
  const unsigned t = arg % 3;
  if ((arg & 0xe0u) == 0xe0u) return op_clear(t);
  const bool trim = (t & 1u) != 0;
  on_thread(t, [&] {
    if (trim) pool_->trim();
    const auto v = pool_->validate();
    expect(v.has_value(), "slots: validate()", v ? std::string() : v.error());
  });
  for (const auto& [address, b] : live_)
    verify_cookie(reinterpret_cast<const std::byte*>(address), b.size, b.size, b.id,
                  "slots: a live block");
}

void slot_session::op_clear(unsigned t) {
  g_op_name = "slots: clear";
  std::expected<void, errc> cleared;
  on_thread(t, [&] { cleared = pool_->clear(); });
  expect(cleared.has_value(), "slots: clear() empties a pool that holds raw blocks alone");
  live_.clear();
  const auto s = pool_->stats();
  expect(s.regions == 0 && s.live_slices == 0 && s.used_bytes == 0 && s.free_bytes == 0,
         "slots: clear() leaves no region and no block");
  add_region();
  const auto v = pool_->validate();
  expect(v.has_value(), "slots: validate() after clear()", v ? std::string() : v.error());
}

void slot_session::check_counts() const {
  const auto s = pool_->stats();
  expect(s.live_slices == live_.size(), "slots: stats() counts every live block", "got ",
         s.live_slices, ", expected ", live_.size());
}

void slot_session::teardown() {
  // Every block back, from the thread the input chose last, then the threads go.
  while (!live_.empty()) {
    const auto it = live_.begin();
    verify_cookie(reinterpret_cast<const std::byte*>(it->first), it->second.size, it->second.size,
                  it->second.id, "slots: teardown");
    expect(pool_->release_raw(reinterpret_cast<const void*>(it->first)),
           "slots: release at teardown");
    live_.erase(it);
  }
  for (auto& t : threads_) t.replace();
  pool_->trim();
  const auto s = pool_->stats();
  expect(
      s.used_bytes == 0 && s.live_slices == 0 && s.free_ranges == 1 && s.free_bytes == region_size_,
      "slots: with every block back and trim(), the region is one free range", "used ",
      s.used_bytes, " live ", s.live_slices, " free ranges ", s.free_ranges);
  const auto v = pool_->validate();
  expect(v.has_value(), "slots: validate() at teardown", v ? std::string() : v.error());
  expect(pool_->try_close().has_value(), "slots: try_close() succeeds at the end");
}

}  // namespace
