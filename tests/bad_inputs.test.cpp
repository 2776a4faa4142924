// SPDX-License-Identifier: MIT
// One test per row of BAD_INPUTS.md that applies to the core pool (rows 1-13 and 16-27).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>
import bufpool;

#include "violations.hpp"

namespace {

using bufpool_test::g_violations;
using bufpool_test::recording_violations;
using pool32 = bufpool::buffer_pool<>;
using pool16 = bufpool::buffer_pool<std::uint16_t>;

template <class Pool>
void add_region(Pool& pool, std::vector<std::byte>& memory) {
  auto grow = pool.begin_expand(memory.size());
  ASSERT_TRUE(grow.has_value());
  ASSERT_TRUE(std::move(*grow).initialize(memory.data()).has_value());
}

// Address space without memory behind it (PROT_NONE): the pool never touches region memory,
// so a 4 GiB region costs nothing.
class reserved_space {
 public:
  explicit reserved_space(std::size_t size) : size_(size) {
    void* p = ::mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : p;
  }
  reserved_space(const reserved_space&) = delete;
  reserved_space& operator=(const reserved_space&) = delete;
  ~reserved_space() {
    if (base_ != nullptr) ::munmap(base_, size_);
  }
  [[nodiscard]] void* data() const noexcept { return base_; }

 private:
  void* base_ = nullptr;
  std::size_t size_;
};

// The state a failed call must leave untouched.
template <class Pool>
void expect_same_state(const Pool& pool, const bufpool::pool_stats& before) {
  const bufpool::pool_stats now = pool.stats();
  EXPECT_EQ(now.used_bytes, before.used_bytes);
  EXPECT_EQ(now.free_bytes, before.free_bytes);
  EXPECT_EQ(now.pending_bytes, before.pending_bytes);
  EXPECT_EQ(now.free_ranges, before.free_ranges);
  EXPECT_EQ(now.live_slices, before.live_slices);
  EXPECT_EQ(now.regions, before.regions);
  const auto v = pool.validate();
  EXPECT_TRUE(v.has_value()) << v.error();
}

struct flag_guard {
  std::shared_ptr<std::atomic<bool>> done;
  bool try_release() const { return done->load(std::memory_order_acquire); }
};

int g_diagnostics = 0;
std::string g_last_diagnostic;
void record_diagnostic(const char* message) {
  ++g_diagnostics;
  g_last_diagnostic = message;
}

TEST(BadInput, Row01ZeroSizeIsInvalidSize) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  const auto before = pool.stats();
  for (const bufpool::strategy how : {bufpool::optimal, bufpool::greedy, bufpool::fixed(0)}) {
    auto s = pool.acquire(0, 16, how);
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error(), bufpool::errc::invalid_size);
  }
  expect_same_state(pool, before);
}

TEST(BadInput, Row02AlignmentZeroOrNotAPowerOfTwoIsInvalidAlignment) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  const auto before = pool.stats();
  for (const std::uint64_t align : {0u, 3u, 24u, 48u, 4095u}) {
    auto s = pool.acquire(16, align);
    ASSERT_FALSE(s.has_value()) << align;
    EXPECT_EQ(s.error(), bufpool::errc::invalid_alignment) << align;
    EXPECT_EQ(std::error_code(s.error()), std::errc::invalid_argument);
  }
  expect_same_state(pool, before);
}

TEST(BadInput, Row03AlignmentAboveTheMaximumIsAlignmentTooBig) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  const auto before = pool.stats();
  for (const std::uint64_t align :
       {std::uint64_t{1} << 32, std::uint64_t{1} << 40, std::uint64_t{1} << 63}) {
    auto s = pool.acquire(16, align);
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error(), bufpool::errc::alignment_too_big);
  }
  bufpool::basic_options<std::uint32_t> o;
  o.max_alignment = 4096;
  pool32 bounded(o);
  auto s = bounded.acquire(16, 8192);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), bufpool::errc::alignment_too_big);
  expect_same_state(pool, before);
}

TEST(BadInput, Row03AlignmentAboveTheLargestRegionIsAnErrorWithoutStateChange) {
  // Policy: an alignment within the options but that no region can satisfy is out_of_memory
  // (the pool may still grow a region that satisfies it), not alignment_too_big.
  pool32 pool;
  std::vector<std::byte> skip(4096);
  std::vector<std::byte> memory(4096);
  auto skipped = pool.begin_expand(skip.size());  // the region starts at offset 4096
  ASSERT_TRUE(skipped.has_value());
  add_region(pool, memory);
  const auto before = pool.stats();
  auto s = pool.acquire(16, 8192);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), bufpool::errc::out_of_memory);
  expect_same_state(pool, before);
}

TEST(BadInput, Row04SizeAboveTheOffsetSpaceIsTooLargeNeverTruncated) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  const auto before = pool.stats();
  for (const std::uint64_t size :
       {std::uint64_t{1} << 32, (std::uint64_t{1} << 32) + 16, ~std::uint64_t{0}}) {
    auto s = pool.acquire(size);  // truncated to 32 bits these would be 0 or 16
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error(), bufpool::errc::too_large);
    EXPECT_EQ(std::error_code(s.error()), std::errc::value_too_large);
  }
  pool16 small;
  auto s = small.acquire(65536);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), bufpool::errc::too_large);
  expect_same_state(pool, before);
}

TEST(BadInput, Row04SizeAboveTheLargestRegionIsAnErrorWithoutStateChange) {
  // Policy: out_of_memory (a later expansion could satisfy it), see the report.
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  const auto before = pool.stats();
  auto s = pool.acquire(4097);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), bufpool::errc::out_of_memory);
  expect_same_state(pool, before);
}

TEST(BadInput, Row05SizePlusPaddingOverflowIsAnError) {
  {  // u16: the whole offset space in one region, padding pushes the end past 65535
    pool16 pool;
    std::vector<std::byte> memory(65535);
    add_region(pool, memory);
    auto head = pool.acquire(16, 16, bufpool::fixed(0));
    ASSERT_TRUE(head.has_value());
    const auto before = pool.stats();
    auto s = pool.acquire(65528, 32768);  // next 32768-aligned offset + 65528 > 65535
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error(), bufpool::errc::out_of_memory);
    expect_same_state(pool, before);
  }
  {  // u32: 2^32 - 8 at 2^31 in a region covering (nearly) the whole 32-bit space
    reserved_space space(std::size_t{1} << 32);
    if (space.data() == nullptr) GTEST_SKIP() << "cannot reserve 4 GiB of address space";
    pool32 pool;
    auto grow = pool.begin_expand(0xFFFF'FFFFu);
    ASSERT_TRUE(grow.has_value());
    ASSERT_TRUE(std::move(*grow).initialize(space.data()).has_value());
    auto head = pool.acquire(16, 16, bufpool::fixed(0));
    ASSERT_TRUE(head.has_value());
    const auto before = pool.stats();
    for (const bufpool::strategy how : {bufpool::optimal, bufpool::greedy}) {
      auto s = pool.acquire(0xFFFF'FFF8u, std::uint64_t{1} << 31, how);
      ASSERT_FALSE(s.has_value());
      EXPECT_EQ(s.error(), bufpool::errc::out_of_memory);
    }
    auto fixed = pool.acquire(0xFFFF'FFF8u, std::uint64_t{1} << 31, bufpool::fixed(1u << 31));
    ASSERT_FALSE(fixed.has_value());
    EXPECT_EQ(fixed.error(), bufpool::errc::arithmetic_overflow);
    expect_same_state(pool, before);
  }
}

TEST(BadInput, Row06NoInitializedRegionIsOutOfMemory) {
  pool32 pool;
  for (const bufpool::strategy how : {bufpool::optimal, bufpool::greedy}) {
    auto s = pool.acquire(16, 16, how);
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error(), bufpool::errc::out_of_memory);
  }
  auto pending = pool.begin_expand(4096);  // a pending region does not count
  ASSERT_TRUE(pending.has_value());
  auto s = pool.acquire(16);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), bufpool::errc::out_of_memory);
  EXPECT_EQ(pool.stats().live_slices, 0u);
}

TEST(BadInput, Row07ExhaustedPoolIsOutOfMemoryWithTheStrongGuarantee) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  std::vector<pool32::slice> slices;
  for (int i = 0; i < 64; ++i) slices.push_back(*pool.acquire(64));
  const auto full = pool.stats();
  for (const bufpool::strategy how : {bufpool::optimal, bufpool::greedy}) {
    auto s = pool.acquire(1, 1, how);
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error(), bufpool::errc::out_of_memory);
  }
  expect_same_state(pool, full);
  // Fragmented: every other 64-byte slice freed, plus one aligned 256-byte hole.
  for (std::size_t i = 0; i < 48; i += 2) slices[i] = {};
  for (std::size_t i = 56; i < 60; ++i) slices[i] = {};  // offsets 3584..3840: 256-aligned
  const auto fragmented = pool.stats();
  auto big = pool.acquire(512);
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error(), bufpool::errc::out_of_memory);
  expect_same_state(pool, fragmented);
  auto fits = pool.acquire(256, 256, bufpool::optimal);  // the only aligned gap
  ASSERT_TRUE(fits.has_value());
  EXPECT_EQ(fits->offset(), 3584u);
}

TEST(BadInput, Row08FixedOffsetNotAlignedIsInvalidArgument) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  const auto before = pool.stats();
  auto s = pool.acquire(64, 64, bufpool::fixed(32));
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), bufpool::errc::invalid_argument);
  auto below_min = pool.acquire(16, 1, bufpool::fixed(8));  // min alignment 16 applies
  ASSERT_FALSE(below_min.has_value());
  EXPECT_EQ(below_min.error(), bufpool::errc::invalid_argument);
  expect_same_state(pool, before);
}

TEST(BadInput, Row09FixedRangeOverlappingALiveOrGuardedSliceIsOccupied) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto live = pool.acquire(256, 16, bufpool::fixed(1024));
  ASSERT_TRUE(live.has_value());
  auto done = std::make_shared<std::atomic<bool>>(false);
  {
    auto guarded = pool.acquire<flag_guard>(256, 16, bufpool::fixed(2048));
    ASSERT_TRUE(guarded.has_value());
    ASSERT_TRUE(guarded->guard(flag_guard{done}).has_value());
  }  // parked
  const auto before = pool.stats();
  for (const std::uint64_t at : {1024u, 1104u, 2048u, 2288u}) {
    auto s = pool.acquire(16, 16, bufpool::fixed(at));
    ASSERT_FALSE(s.has_value()) << at;
    EXPECT_EQ(s.error(), bufpool::errc::occupied) << at;
    EXPECT_EQ(std::error_code(s.error()), std::errc::address_in_use);
  }
  auto tail = pool.acquire(64, 16, bufpool::fixed(1008));  // starts free, runs into `live`
  ASSERT_FALSE(tail.has_value());
  EXPECT_EQ(tail.error(), bufpool::errc::occupied);
  expect_same_state(pool, before);
  done->store(true);
  EXPECT_EQ(pool.collect(), 1u);
}

TEST(BadInput, Row10FixedRangeOutsideOneInitializedRegionIsOutOfRange) {
  pool32 pool;
  std::vector<std::byte> a(4096);
  std::vector<std::byte> c(4096);
  std::vector<std::byte> d(4096);
  add_region(pool, a);                     // [0, 4096)
  auto pending = pool.begin_expand(8192);  // [4096, 12288) stays pending
  ASSERT_TRUE(pending.has_value());
  EXPECT_EQ(pending->offset(), 4096u);
  add_region(pool, c);                  // [12288, 16384)
  add_region(pool, d);                  // [16384, 20480): offsets contiguous with c, memory not
  auto hole = pool.begin_expand(4096);  // [20480, 24576) ...
  auto after = pool.begin_expand(16);   // ... and [24576, 24592)
  ASSERT_TRUE(hole.has_value() && after.has_value());
  hole = std::unexpected(bufpool::errc::invalid_size);  // cancelled: a gap between reservations
  const auto before = pool.stats();
  const std::pair<std::uint64_t, std::uint64_t> cases[] = {
      {4096, 16},      // pending
      {8176, 32},      // inside pending
      {16368, 32},     // straddles c and d
      {12288, 8192},   // covers c and d
      {20480, 16},     // a cancelled gap
      {4080, 32},      // from a into pending
      {1u << 20, 16},  // beyond every region
  };
  for (const auto& [at, size] : cases) {
    auto s = pool.acquire(size, 16, bufpool::fixed(at));
    ASSERT_FALSE(s.has_value()) << at;
    EXPECT_EQ(s.error(), bufpool::errc::out_of_range) << at;
  }
  expect_same_state(pool, before);
}

TEST(BadInput, Row11FixedOffsetPlusSizeOverflowIsAnError) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  const auto before = pool.stats();
  auto wrap = pool.acquire(32, 16, bufpool::fixed(0xFFFF'FFF0u));
  ASSERT_FALSE(wrap.has_value());
  EXPECT_EQ(wrap.error(), bufpool::errc::arithmetic_overflow);
  auto beyond = pool.acquire(16, 16, bufpool::fixed(std::uint64_t{1} << 32));
  ASSERT_FALSE(beyond.has_value());
  EXPECT_EQ(beyond.error(), bufpool::errc::arithmetic_overflow);
  auto max64 = pool.acquire(32, 16, bufpool::fixed(0xFFFF'FFFF'FFFF'FFF0u));
  ASSERT_FALSE(max64.has_value());
  EXPECT_EQ(max64.error(), bufpool::errc::arithmetic_overflow);
  expect_same_state(pool, before);
}

TEST(BadInput, Row12ReclaimTwiceIsImpossibleForOwnedSlices) {
  static_assert(!std::is_copy_constructible_v<pool32::slice>);
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto keep = pool.acquire(64);
  auto s = pool.acquire(64);
  ASSERT_TRUE(keep && s);
  EXPECT_TRUE(std::move(*s).reclaim().has_value());
  EXPECT_TRUE(std::move(*s).reclaim().has_value());  // the reclaimed slice is empty: no-op
  EXPECT_EQ(pool.stats().live_slices, 1u);
  s = std::unexpected(bufpool::errc::invalid_size);  // and so is its destructor
  EXPECT_EQ(pool.stats().live_slices, 1u);
  const auto v = pool.validate();
  EXPECT_TRUE(v.has_value()) << v.error();
}

TEST(BadInput, Row13SliceAlwaysReturnsToItsOwnPool) {
  pool32 a;
  pool32 b;
  std::vector<std::byte> ma(4096);
  std::vector<std::byte> mb(8192);
  add_region(a, ma);
  add_region(b, mb);
  auto from_a = a.acquire(64);
  auto from_b = b.acquire(8192);
  ASSERT_TRUE(from_a && from_b);
  *from_a = std::move(*from_b);  // the old range goes back to a; the moved one stays b's
  EXPECT_EQ(a.stats().live_slices, 0u);
  EXPECT_EQ(b.stats().live_slices, 1u);
  EXPECT_EQ(from_a->bytes().data(), mb.data());
  from_a = std::unexpected(bufpool::errc::invalid_size);
  EXPECT_EQ(b.stats().live_slices, 0u);
  EXPECT_EQ(b.stats().free_bytes, 8192u);
  EXPECT_EQ(a.stats().free_bytes, 4096u);
  EXPECT_TRUE(a.validate().has_value());
  EXPECT_TRUE(b.validate().has_value());
}

TEST(BadInput, Row16MovedFromSliceIsEmptyAndReclaimIsANoOp) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto s = pool.acquire(64);
  ASSERT_TRUE(s.has_value());
  pool32::slice owner = std::move(*s);
  EXPECT_FALSE(static_cast<bool>(*s));
  EXPECT_EQ(s->size(), 0u);
  EXPECT_EQ(s->capacity(), 0u);
  EXPECT_EQ(s->offset(), 0u);
  EXPECT_EQ(s->region_offset(), 0u);
  EXPECT_EQ(s->region_size(), 0u);
  EXPECT_TRUE(s->bytes().empty());  // defined, not a contract violation
  EXPECT_TRUE(s->cbytes().empty());
  EXPECT_EQ(s->data(), nullptr);
  auto tb = s->try_bytes();
  ASSERT_TRUE(tb.has_value());
  EXPECT_TRUE(tb->empty());
  EXPECT_TRUE(std::move(*s).reclaim().has_value());
  EXPECT_EQ(pool.stats().live_slices, 1u);
  EXPECT_EQ(owner.size(), 64u);
}

TEST(BadInputDeathTest, Row17PoolDestroyedWithLiveSlicesIsDetectedWithTheCount) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        std::vector<std::byte> memory(4096);
        auto pool = std::make_unique<pool32>();
        add_region(*pool, memory);
        auto a = pool->acquire(16);
        auto b = pool->acquire(16);
        pool.reset();
      },
      "borrowed slices outlive their pool.*2 borrowed slice");
}

TEST(BadInput, Row17InCheckedBuildsASliceOutlivingItsPoolIsHarmless) {
  if (!bufpool::checked_build) GTEST_SKIP() << "needs a checked build (debug or BUFPOOL_CHECKED)";
  recording_violations rec;
  std::vector<std::byte> memory(4096);
  auto pool = std::make_unique<pool32>();
  add_region(*pool, memory);
  auto s = pool->acquire(16);
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(s->pool_is_alive());
  pool.reset();  // reported; the handler returns
  EXPECT_EQ(g_violations, 1);
  EXPECT_FALSE(s->pool_is_alive());
  auto bytes = s->try_bytes();
  ASSERT_FALSE(bytes.has_value());
  EXPECT_EQ(bytes.error(), bufpool::errc::pool_gone);
  // A new pool may take the old one's address: the slice must not mistake it for its own.
  auto next = std::make_unique<pool32>();
  add_region(*next, memory);
  EXPECT_FALSE(s->pool_is_alive());
  s = std::unexpected(bufpool::errc::pool_gone);  // destroys the slice: touches nothing
  EXPECT_EQ(next->stats().live_slices, 0u);
  EXPECT_EQ(g_violations, 1);
}

TEST(BadInput, Row18ReclaimOfAGuardedSliceIsInUseAndDestructionDefersIt) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto done = std::make_shared<std::atomic<bool>>(false);
  auto s = pool.acquire<flag_guard>(4096);
  ASSERT_TRUE(s.has_value());
  ASSERT_TRUE(s->guard(flag_guard{done}).has_value());
  auto r = std::move(*s).reclaim();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, bufpool::errc::in_use);
  EXPECT_EQ(std::error_code(r.error().code), std::errc::address_in_use);
  {
    auto parked = std::move(r.error().slice);
  }  // destroyed while guarded: parked
  auto reuse = pool.acquire(16);  // never reused while in flight
  ASSERT_FALSE(reuse.has_value());
  EXPECT_EQ(reuse.error(), bufpool::errc::out_of_memory);
  done->store(true);
  EXPECT_TRUE(pool.acquire(16).has_value());  // after release: reclaimed on demand
}

TEST(BadInput, Row19SecondGuardIsAlreadyGuarded) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto done = std::make_shared<std::atomic<bool>>(true);
  auto other = std::make_shared<std::atomic<bool>>(true);
  auto s = pool.acquire<flag_guard>(64);
  ASSERT_TRUE(s.has_value());
  ASSERT_TRUE(s->guard(flag_guard{done}).has_value());
  auto second = s->guard(flag_guard{other});
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code, bufpool::errc::already_guarded);
  EXPECT_EQ(std::error_code(second.error().code), std::errc::file_exists);
  EXPECT_EQ(second.error().guard.done, other);
  EXPECT_EQ(pool.active_guard_count(), 1u);
}

TEST(BadInput, Row20GuardNeverReleasedKeepsMemoryAndReportsOnceWithTheCount) {
  std::vector<std::byte> memory(4096);
  auto done = std::make_shared<std::atomic<bool>>(false);
  g_diagnostics = 0;
  const bufpool::diagnostic_handler old = bufpool::set_diagnostic_handler(&record_diagnostic);
  {
    pool32 pool;
    add_region(pool, memory);
    for (int i = 0; i < 2; ++i) {
      auto s = pool.acquire<flag_guard>(64);
      ASSERT_TRUE(s.has_value());
      ASSERT_TRUE(s->guard(flag_guard{done}).has_value());
    }
    auto close = pool.try_close();
    ASSERT_FALSE(close.has_value());
    EXPECT_EQ(close.error().code, bufpool::errc::in_use);
    EXPECT_EQ(close.error().guarded_slices, 2u);
    EXPECT_EQ(g_diagnostics, 0);
  }
  bufpool::set_diagnostic_handler(old);
  EXPECT_EQ(g_diagnostics, 1);
  EXPECT_NE(g_last_diagnostic.find("2 slice(s)"), std::string::npos) << g_last_diagnostic;
}

TEST(BadInput, Row21GuardCountersNeverUnderflow) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto done = std::make_shared<std::atomic<bool>>(true);
  auto s = pool.acquire<flag_guard>(64);
  ASSERT_TRUE(s.has_value());
  ASSERT_TRUE(s->guard(flag_guard{done}).has_value());
  ASSERT_TRUE(s->try_unguard().has_value());
  auto twice = s->try_unguard();  // releasing the same guard again
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error(), bufpool::errc::not_guarded);
  EXPECT_FALSE(s->unguard_unchecked().has_value());
  EXPECT_EQ(pool.active_guard_count(), 0u);
  ASSERT_TRUE(s->guard(flag_guard{done}).has_value());
  auto moved = std::move(*s);  // moving a guarded slice does not count it twice
  EXPECT_EQ(pool.active_guard_count(), 1u);
  moved = {};
  EXPECT_EQ(pool.active_guard_count(), 0u);
  EXPECT_EQ(pool.collect(), 0u);
  EXPECT_EQ(pool.active_guard_count(), 0u);
  EXPECT_EQ(pool.stats().guarded_slices, 0u);
}

TEST(BadInput, Row22GuardReleasedOnAnotherThread) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  add_region(pool, memory);
  auto done = std::make_shared<std::atomic<bool>>(false);
  auto s = pool.acquire<flag_guard>(4096);
  ASSERT_TRUE(s.has_value());
  std::byte* p = s->bytes().data();
  ASSERT_TRUE(s->guard(flag_guard{done}).has_value());
  s = std::unexpected(bufpool::errc::invalid_size);  // parked
  std::thread completion([p, done] {
    p[0] = std::byte{0x42};  // the "I/O" writes the memory, then completes
    done->store(true, std::memory_order_release);
  });
  completion.join();
  std::thread other([&pool] {
    EXPECT_EQ(pool.collect(), 1u);
    auto again = pool.acquire(4096);  // reused only after the completion
    EXPECT_TRUE(again.has_value());
    if (again) EXPECT_EQ(again->bytes()[0], std::byte{0x42});
  });
  other.join();
  EXPECT_EQ(pool.active_guard_count(), 0u);
}

TEST(BadInput, Row23BeginExpandZeroIsInvalidSize) {
  pool32 pool;
  const auto before = pool.stats();
  auto g = pool.begin_expand(0);
  ASSERT_FALSE(g.has_value());
  EXPECT_EQ(g.error(), bufpool::errc::invalid_size);
  expect_same_state(pool, before);
}

TEST(BadInput, Row24OffsetSpaceOverflowIsOutOfOffsetSpaceWithoutStateChange) {
  pool32 pool;
  auto too_big = pool.begin_expand(std::uint64_t{1} << 32);
  ASSERT_FALSE(too_big.has_value());
  EXPECT_EQ(too_big.error(), bufpool::errc::out_of_offset_space);
  EXPECT_EQ(std::error_code(too_big.error()), std::errc::not_enough_memory);
  auto first = pool.begin_expand(1u << 20);
  ASSERT_TRUE(first.has_value());
  const auto before = pool.stats();
  auto rest = pool.begin_expand(0xFFFF'FFFFu);  // 2^20 + 2^32 - 1 > 2^32
  ASSERT_FALSE(rest.has_value());
  EXPECT_EQ(rest.error(), bufpool::errc::out_of_offset_space);
  expect_same_state(pool, before);
  auto exact = pool.begin_expand((std::uint64_t{1} << 32) - (1u << 20));  // exactly fills it
  ASSERT_TRUE(exact.has_value());
  auto one = pool.begin_expand(1);
  ASSERT_FALSE(one.has_value());
  EXPECT_EQ(one.error(), bufpool::errc::out_of_offset_space);
}

TEST(BadInput, Row25DroppedExpansionHandleReleasesTheReservation) {
  pool32 pool;
  std::vector<std::byte> memory(4096);
  std::uint64_t dropped_at = 0;
  add_region(pool, memory);
  {
    auto g = pool.begin_expand(4096);
    ASSERT_TRUE(g.has_value());
    dropped_at = g->offset();
    EXPECT_EQ(pool.stats().pending_bytes, 4096u);
    auto s = pool.acquire(16, 16, bufpool::fixed(dropped_at));
    ASSERT_FALSE(s.has_value());
    EXPECT_EQ(s.error(), bufpool::errc::out_of_range);
  }
  EXPECT_EQ(pool.stats().pending_bytes, 0u);
  std::vector<pool32::slice> all;
  while (auto s = pool.acquire(16)) {
    EXPECT_LT(s->offset(), 4096u);  // nothing from the cancelled range
    all.push_back(std::move(*s));
  }
  EXPECT_EQ(all.size(), 256u);
  auto again = pool.begin_expand(4096);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->offset(), dropped_at);
}

TEST(BadInputDeathTest, Row26InitializeWithNullptrIsDetected) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        pool32 pool;
        auto g = pool.begin_expand(64);
        (void)std::move(*g).initialize(nullptr);
      },
      "contract violation: a region's memory must not be null");
}

template <class H>
concept lvalue_initializable = requires(H& h, void* p) { h.initialize(p); };
template <class H>
concept rvalue_initializable = requires(H&& h, void* p) { std::move(h).initialize(p); };

TEST(BadInputDeathTest, Row27InitializeTwiceIsPreventedOrDetected) {
  static_assert(!lvalue_initializable<pool32::expansion>);
  static_assert(rvalue_initializable<pool32::expansion>);
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        std::vector<std::byte> memory(64);
        pool32 pool;
        auto g = pool.begin_expand(64);
        (void)std::move(*g).initialize(memory.data());
        (void)std::move(*g).initialize(memory.data());  // use after initialize
      },
      "an expansion handle is initialized once");
}

TEST(BadInputDeathTest, Row27SameMemoryForTwoRegionsIsDetected) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        std::vector<std::byte> memory(4096);
        pool32 pool;
        add_region(pool, memory);
        auto g = pool.begin_expand(1024);
        (void)std::move(*g).initialize(memory.data() + 1024);  // aliases the first region
      },
      "must not overlap another region");
}

}  // namespace
