// SPDX-License-Identifier: MIT
// Unit tests of slice guards: data access, second guards, reclaim, unguard, parking, collect.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>
import bufpool;

namespace {

using pool32 = bufpool::buffer_pool<>;

// A guard that releases once `done` is set; counts how often it was asked.
struct io_guard {
  std::shared_ptr<bool> done;
  std::shared_ptr<int> asked = std::make_shared<int>(0);
  int id = 0;
  bool try_release() const {
    ++*asked;
    return *done;
  }
};

struct other_guard {
  int id = 0;
  bool try_release() const { return false; }
};

// A pool with one 4 KiB region.
struct fixture {
  std::vector<std::byte> memory = std::vector<std::byte>(4096);
  pool32 pool;
  fixture() {
    auto grow = pool.begin_expand(memory.size());
    EXPECT_TRUE(grow.has_value());
    EXPECT_TRUE(std::move(*grow).initialize(memory.data()).has_value());
  }
  ~fixture() {
    const auto v = pool.validate();
    EXPECT_TRUE(v.has_value()) << v.error();
  }
};

TEST(Guard, ConceptAcceptsAnyTypeWithTryRelease) {
  static_assert(bufpool::slice_guard<io_guard>);
  static_assert(bufpool::slice_guard<bufpool::no_guard>);
  static_assert(!bufpool::slice_guard<int>);
  struct returns_void {
    void try_release() {}
  };
  static_assert(!bufpool::slice_guard<returns_void>);
  EXPECT_TRUE(bufpool::no_guard{}.try_release());
}

TEST(Guard, ExclusiveModeRefusesDataAccess) {
  fixture f;
  auto s = f.pool.acquire<io_guard>(64);
  ASSERT_TRUE(s.has_value());
  auto done = std::make_shared<bool>(false);
  ASSERT_TRUE(s->guard(io_guard{done}, bufpool::guard_mode::exclusive).has_value());
  EXPECT_TRUE(s->is_guarded());
  EXPECT_EQ(s->mode(), bufpool::guard_mode::exclusive);
  auto w = s->try_bytes();
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error(), bufpool::errc::access_denied);
  auto r = s->try_cbytes();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), bufpool::errc::access_denied);
  *done = true;
  ASSERT_TRUE(s->try_unguard().has_value());
  EXPECT_TRUE(s->try_bytes().has_value());
}

TEST(Guard, SharedModeAllowsReadOnlyAccess) {
  fixture f;
  auto s = f.pool.acquire<io_guard>(64);
  ASSERT_TRUE(s.has_value());
  s->bytes()[0] = std::byte{7};
  auto done = std::make_shared<bool>(false);
  ASSERT_TRUE(s->guard(io_guard{done}, bufpool::guard_mode::shared).has_value());
  auto r = s->try_cbytes();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ((*r)[0], std::byte{7});
  EXPECT_EQ(r->size(), 64u);
  auto w = s->try_bytes();
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error(), bufpool::errc::access_denied);
  *done = true;
}

TEST(Guard, SecondGuardIsRejectedAndHandedBack) {
  fixture f;
  auto s = f.pool.acquire<io_guard>(64);
  ASSERT_TRUE(s.has_value());
  auto done = std::make_shared<bool>(true);
  ASSERT_TRUE(s->guard(io_guard{done, std::make_shared<int>(0), 1}).has_value());
  auto second = s->guard(io_guard{done, std::make_shared<int>(0), 2});
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code, bufpool::errc::already_guarded);
  EXPECT_EQ(std::error_code(second.error().code), std::errc::file_exists);
  EXPECT_EQ(second.error().guard.id, 2);  // the rejected guard comes back
  EXPECT_EQ(f.pool.active_guard_count(), 1u);
  auto kept = s->unguard_unchecked();
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(kept->id, 1);  // the first guard stayed
}

TEST(Guard, WithGuardMovesTheSliceIntoAGuardedType) {
  fixture f;
  auto plain = f.pool.acquire(64);
  ASSERT_TRUE(plain.has_value());
  const auto offset = plain->offset();
  auto done = std::make_shared<bool>(false);
  auto guarded = std::move(*plain).with_guard(io_guard{done}, bufpool::guard_mode::shared);
  ASSERT_TRUE(guarded.has_value());
  static_assert(
      std::is_same_v<decltype(guarded)::value_type, bufpool::basic_slice<pool32, io_guard>>);
  EXPECT_FALSE(static_cast<bool>(*plain));
  EXPECT_EQ(guarded->offset(), offset);
  EXPECT_TRUE(guarded->is_guarded());
  EXPECT_EQ(guarded->mode(), bufpool::guard_mode::shared);
  EXPECT_EQ(f.pool.active_guard_count(), 1u);
  EXPECT_EQ(f.pool.stats().live_slices, 1u);
  *done = true;
}

TEST(Guard, WithGuardOnAGuardedSliceReturnsTheSliceAndTheGuard) {
  fixture f;
  auto s = f.pool.acquire<io_guard>(64);
  ASSERT_TRUE(s.has_value());
  const auto offset = s->offset();
  auto done = std::make_shared<bool>(true);
  ASSERT_TRUE(s->guard(io_guard{done}).has_value());
  auto r = std::move(*s).with_guard(other_guard{9});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, bufpool::errc::already_guarded);
  EXPECT_EQ(r.error().guard.id, 9);
  EXPECT_EQ(r.error().slice.offset(), offset);
  EXPECT_TRUE(r.error().slice.is_guarded());
  EXPECT_EQ(f.pool.active_guard_count(), 1u);
  EXPECT_EQ(f.pool.stats().live_slices, 1u);
}

TEST(Guard, ReclaimOfAGuardedSliceFailsAndHandsTheSliceBack) {
  fixture f;
  auto s = f.pool.acquire<io_guard>(64);
  ASSERT_TRUE(s.has_value());
  const auto offset = s->offset();
  auto done = std::make_shared<bool>(false);
  ASSERT_TRUE(s->guard(io_guard{done}).has_value());
  auto r = std::move(*s).reclaim();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, bufpool::errc::in_use);
  EXPECT_EQ(std::error_code(r.error().code), std::errc::address_in_use);
  EXPECT_EQ(r.error().slice.offset(), offset);
  EXPECT_TRUE(r.error().slice.is_guarded());
  EXPECT_EQ(f.pool.stats().live_slices, 1u);
  EXPECT_EQ(f.pool.stats().parked_slices, 0u);
  *done = true;
  auto again = std::move(r.error().slice).reclaim();  // still refused: the guard is attached
  ASSERT_FALSE(again.has_value());
  ASSERT_TRUE(again.error().slice.try_unguard().has_value());
  EXPECT_TRUE(std::move(again.error().slice).reclaim().has_value());
  EXPECT_EQ(f.pool.stats().live_slices, 0u);
}

TEST(Guard, ReclaimOfAnUnguardedSliceFreesTheRange) {
  fixture f;
  auto s = f.pool.acquire(4096);
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(std::move(*s).reclaim().has_value());
  EXPECT_FALSE(static_cast<bool>(*s));
  EXPECT_EQ(f.pool.stats().free_bytes, 4096u);
}

TEST(Guard, TryUnguardReturnsTheGuardOnlyOnceItReleases) {
  fixture f;
  auto s = f.pool.acquire<io_guard>(64);
  ASSERT_TRUE(s.has_value());
  auto none = s->try_unguard();
  ASSERT_FALSE(none.has_value());
  EXPECT_EQ(none.error(), bufpool::errc::not_guarded);
  auto done = std::make_shared<bool>(false);
  ASSERT_TRUE(s->guard(io_guard{done, std::make_shared<int>(0), 4}).has_value());
  auto busy = s->try_unguard();
  ASSERT_FALSE(busy.has_value());
  EXPECT_EQ(busy.error(), bufpool::errc::in_use);
  EXPECT_TRUE(s->is_guarded());
  EXPECT_EQ(f.pool.active_guard_count(), 1u);
  *done = true;
  auto g = s->try_unguard();
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->id, 4);
  EXPECT_FALSE(s->is_guarded());
  EXPECT_EQ(f.pool.active_guard_count(), 0u);
}

TEST(Guard, UnguardUncheckedRemovesTheGuardWithoutAskingIt) {
  fixture f;
  auto s = f.pool.acquire<io_guard>(64);
  ASSERT_TRUE(s.has_value());
  EXPECT_FALSE(s->unguard_unchecked().has_value());
  auto done = std::make_shared<bool>(false);
  auto asked = std::make_shared<int>(0);
  ASSERT_TRUE(s->guard(io_guard{done, asked}).has_value());
  auto g = s->unguard_unchecked();
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(*asked, 0);
  EXPECT_EQ(f.pool.active_guard_count(), 0u);
  EXPECT_TRUE(s->try_bytes().has_value());
  EXPECT_FALSE(s->unguard_unchecked().has_value());
  EXPECT_EQ(f.pool.active_guard_count(), 0u);  // never underflows
}

TEST(Guard, DestroyingASliceWhoseGuardReleasesFreesItAtOnce) {
  fixture f;
  auto done = std::make_shared<bool>(true);
  auto asked = std::make_shared<int>(0);
  {
    auto s = f.pool.acquire<io_guard>(64);
    ASSERT_TRUE(s.has_value());
    ASSERT_TRUE(s->guard(io_guard{done, asked}).has_value());
  }
  EXPECT_EQ(*asked, 1);
  const bufpool::pool_stats s = f.pool.stats();
  EXPECT_EQ(s.live_slices, 0u);
  EXPECT_EQ(s.parked_slices, 0u);
  EXPECT_EQ(f.pool.active_guard_count(), 0u);
}

TEST(Guard, DestroyingAGuardedSliceParksTheRangeUntilTheGuardReleases) {
  fixture f;
  auto done = std::make_shared<bool>(false);
  std::uint32_t offset = 0;
  {
    auto s = f.pool.acquire<io_guard>(256, 256);
    ASSERT_TRUE(s.has_value());
    offset = s->offset();
    ASSERT_TRUE(s->guard(io_guard{done}).has_value());
  }
  bufpool::pool_stats s = f.pool.stats();
  EXPECT_EQ(s.live_slices, 1u);
  EXPECT_EQ(s.guarded_slices, 1u);
  EXPECT_EQ(s.parked_slices, 1u);
  EXPECT_EQ(s.used_bytes, 256u);
  EXPECT_EQ(f.pool.active_guard_count(), 1u);
  auto reuse = f.pool.acquire(16, 16, bufpool::fixed(offset));  // not reused while held
  ASSERT_FALSE(reuse.has_value());
  EXPECT_EQ(reuse.error(), bufpool::errc::occupied);
  auto close = f.pool.try_close();
  ASSERT_FALSE(close.has_value());
  EXPECT_EQ(close.error().code, bufpool::errc::in_use);
  EXPECT_EQ(f.pool.collect(), 0u);
  EXPECT_EQ(f.pool.stats().parked_slices, 1u);
  *done = true;  // the I/O finished
  EXPECT_EQ(f.pool.collect(), 1u);
  s = f.pool.stats();
  EXPECT_EQ(s.live_slices, 0u);
  EXPECT_EQ(s.guarded_slices, 0u);
  EXPECT_EQ(s.parked_slices, 0u);
  EXPECT_EQ(s.free_bytes, 4096u);
  EXPECT_TRUE(f.pool.acquire(16, 16, bufpool::fixed(offset)).has_value());
}

TEST(Guard, AcquireCollectsParkedRangesWhenItWouldRunOutOfMemory) {
  fixture f;
  auto done = std::make_shared<bool>(false);
  {
    auto s = f.pool.acquire<io_guard>(4096);
    ASSERT_TRUE(s.has_value());
    ASSERT_TRUE(s->guard(io_guard{done}).has_value());
  }
  auto full = f.pool.acquire(4096);
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error(), bufpool::errc::out_of_memory);
  EXPECT_EQ(f.pool.stats().parked_slices, 1u);
  *done = true;
  auto s = f.pool.acquire(4096);  // no explicit collect()
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(f.pool.stats().parked_slices, 0u);
  EXPECT_EQ(f.pool.active_guard_count(), 0u);
}

TEST(Guard, ActiveGuardCountCountsLiveAndParkedGuardedSlices) {
  fixture f;
  auto done = std::make_shared<bool>(false);
  auto a = f.pool.acquire<io_guard>(64);
  auto b = f.pool.acquire<io_guard>(64);
  auto c = f.pool.acquire<io_guard>(64);
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(f.pool.active_guard_count(), 0u);
  ASSERT_TRUE(a->guard(io_guard{done}).has_value());
  ASSERT_TRUE(b->guard(io_guard{done}).has_value());
  EXPECT_EQ(f.pool.active_guard_count(), 2u);
  a = std::unexpected(bufpool::errc::invalid_size);  // parked: still counts
  EXPECT_EQ(f.pool.active_guard_count(), 2u);
  EXPECT_EQ(f.pool.stats().guarded_slices, 2u);
  *done = true;
  EXPECT_TRUE(b->try_unguard().has_value());
  EXPECT_EQ(f.pool.active_guard_count(), 1u);
  EXPECT_EQ(f.pool.collect(), 1u);
  EXPECT_EQ(f.pool.active_guard_count(), 0u);
}

TEST(Guard, GuardedWeakSliceOfADeadPoolFreesNothing) {
  std::vector<std::byte> memory(4096);
  auto pool = std::make_shared<pool32>();
  auto grow = pool->begin_expand(memory.size());
  ASSERT_TRUE(grow.has_value());
  ASSERT_TRUE(std::move(*grow).initialize(memory.data()).has_value());
  auto done = std::make_shared<bool>(false);
  auto asked = std::make_shared<int>(0);
  auto s = pool32::acquire_weak<io_guard>(pool, 64);
  ASSERT_TRUE(s.has_value());
  ASSERT_TRUE(s->guard(io_guard{done, asked}).has_value());
  const bufpool::diagnostic_handler old =
      bufpool::set_diagnostic_handler([](const char*) {});  // the pool reports the kept memory
  pool.reset();
  bufpool::set_diagnostic_handler(old);
  EXPECT_TRUE(s->is_guarded());
  s = std::unexpected(bufpool::errc::invalid_size);
  EXPECT_EQ(*asked, 0);  // nobody to give the range back to
}

// A type with no try_release(): not a slice_guard.
struct not_a_guard {};

template <class Pool, class G>
concept acquires_with_guard = requires(Pool& pool) { pool.template acquire<G>(1); };
template <class Pool, class G>
concept names_a_slice_type = requires { typename Pool::template slice_type<G>; };

}  // namespace

TEST(GuardConcept, AcquireAndSlicesTakeOnlyTypesThatModelSliceGuard) {
  // A wrong guard type is refused where it is named, not deep inside the slice's release.
  EXPECT_TRUE((acquires_with_guard<pool32, io_guard>));
  EXPECT_TRUE((names_a_slice_type<pool32, io_guard>));
  EXPECT_FALSE((acquires_with_guard<pool32, not_a_guard>));
  EXPECT_FALSE((names_a_slice_type<pool32, not_a_guard>));
}
