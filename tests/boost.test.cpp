// SPDX-License-Identifier: MIT
// bufpool.boost: the Boost.Container allocator (every container, in-place growth, misuse)
// and the boost::container::pmr resource.
#include <gtest/gtest.h>

#include <boost/container/deque.hpp>
#include <boost/container/devector.hpp>
#include <boost/container/flat_map.hpp>
#include <boost/container/flat_set.hpp>
#include <boost/container/list.hpp>
#include <boost/container/map.hpp>
#include <boost/container/pmr/deque.hpp>
#include <boost/container/pmr/flat_map.hpp>
#include <boost/container/pmr/list.hpp>
#include <boost/container/pmr/map.hpp>
#include <boost/container/pmr/string.hpp>
#include <boost/container/pmr/vector.hpp>
#include <boost/container/scoped_allocator.hpp>
#include <boost/container/set.hpp>
#include <boost/container/slist.hpp>
#include <boost/container/small_vector.hpp>
#include <boost/container/stable_vector.hpp>
#include <boost/container/static_vector.hpp>
#include <boost/container/string.hpp>
#include <boost/container/vector.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>
import bufpool;
import bufpool.pmr;
import bufpool.boost;

#include "arena.hpp"
#include "violations.hpp"

namespace {

namespace bc = boost::container;
using bufpool::container::allocator;

template <class T>
using pool_vector = bc::vector<T, allocator<T>>;
using pool_string = bc::basic_string<char, std::char_traits<char>, allocator<char>>;

using bufpool_test::arena;
using bufpool_test::g_last_violation;
using bufpool_test::g_violations;
using bufpool_test::recording_violations;

// Counts copies and moves, so a test can prove that growth moved nothing.
struct counted {
  static inline int copies = 0;
  static inline int moves = 0;
  int value = 0;
  explicit counted(int v) : value(v) {}
  counted(const counted& o) : value(o.value) { ++copies; }
  counted(counted&& o) noexcept : value(o.value) { ++moves; }
  counted& operator=(const counted&) = default;
  counted& operator=(counted&&) = default;
  ~counted() = default;
  static void reset() { copies = moves = 0; }
};

// ---- allocator requirements ------------------------------------------------------------

static_assert(std::is_same_v<std::allocator_traits<allocator<int>>::value_type, int>);
static_assert(
    std::is_same_v<std::allocator_traits<allocator<int>>::rebind_alloc<double>, allocator<double>>);
static_assert(std::allocator_traits<allocator<int>>::propagate_on_container_move_assignment::value);
static_assert(!std::allocator_traits<allocator<int>>::is_always_equal::value);
static_assert(bc::dtl::version<allocator<int>>::value == 2);

TEST(BoostAllocator, CopiesAndRebindsCompareEqualIffTheyShareThePool) {
  arena a(4096);
  arena b(4096);
  const allocator<int> x(a.pool);
  const allocator<int> y(x);
  const allocator<double> z(x);
  EXPECT_TRUE(x == y);
  EXPECT_TRUE(x == z);
  EXPECT_FALSE(x == allocator<int>(b.pool));
  EXPECT_EQ(allocator<int>(z).pool(), &a.pool);
}

TEST(BoostAllocator, AllocatesAlignedBlocksInsideThePoolAndGivesThemBack) {
  arena a(1 << 16);
  allocator<std::max_align_t> al(a.pool);
  std::max_align_t* p = al.allocate(10);
  EXPECT_TRUE(a.holds(p));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % alignof(std::max_align_t), 0u);
  EXPECT_EQ(al.size(p), 10u);
  al.deallocate(p, 10);
  a.expect_empty_and_valid();
}

TEST(BoostAllocator, WorksWithStdContainers) {
  arena a(1 << 16);
  {
    std::vector<int, allocator<int>> v(a.pool);
    for (int i = 0; i < 1000; ++i) v.push_back(i);
    EXPECT_TRUE(a.holds(v.data()));
    EXPECT_EQ(v[999], 999);
  }
  a.expect_empty_and_valid();
}

// BAD_INPUTS row 35: too many objects is bad_alloc, never a truncated block.
TEST(BoostAllocator, Row35CountAboveMaxSizeOrOverflowingThrowsBadAllocAndChangesNothing) {
  arena a(1 << 16);
  allocator<std::uint64_t> al(a.pool);
  EXPECT_EQ(al.max_size(), std::size_t{UINT32_MAX} / 8);  // 32-bit offsets
  const auto before = a.pool.stats();
  EXPECT_THROW((void)al.allocate(al.max_size() + 1), std::bad_alloc);
  EXPECT_THROW((void)al.allocate(~std::size_t{0} / 4), std::bad_alloc);  // n * 8 overflows
  EXPECT_THROW((void)al.allocate(1 << 20), std::bad_alloc);              // the pool is full
  EXPECT_EQ(a.pool.stats().live_slices, before.live_slices);
  EXPECT_EQ(a.pool.stats().free_bytes, before.free_bytes);
  bufpool::buffer_pool<std::uint16_t> small;
  using small_allocator = allocator<std::uint64_t, bufpool::buffer_pool<std::uint16_t>>;
  EXPECT_EQ(small_allocator(small).max_size(), std::size_t{UINT16_MAX} / 8);
}

// BAD_INPUTS row 36: a block given back through an allocator of another pool is reported.
TEST(BoostAllocator, Row36DeallocatingThroughAnAllocatorOfAnotherPoolIsAViolation) {
  recording_violations rec;
  arena a(4096);
  arena b(4096);
  allocator<int> from_a(a.pool);
  allocator<int> from_b(b.pool);
  int* p = from_a.allocate(4);
  from_b.deallocate(p, 4);
  EXPECT_EQ(g_violations, 1);
  EXPECT_TRUE(g_last_violation.starts_with("allocator::deallocate: the pointer is in none"))
      << g_last_violation;  // in the caller's words, not the pool's internal call
  from_a.deallocate(p, 3);  // another count than allocated
  EXPECT_EQ(g_violations, 2);
  EXPECT_TRUE(g_last_violation.starts_with("allocator::deallocate: the count differs"))
      << g_last_violation;
  EXPECT_EQ(a.pool.stats().live_slices, 1u);
  from_a.deallocate(p, 4);
  EXPECT_EQ(g_violations, 2);
  a.expect_empty_and_valid();
}

// ---- alignment of addresses (drop-in fidelity item 8) -----------------------------------

// A pool whose only region starts `skew` bytes past a 64-aligned address.
struct skewed_pool {
  explicit skewed_pool(std::size_t skew) {
    auto grow = pool.begin_expand(4096);
    EXPECT_TRUE(grow.has_value());
    EXPECT_TRUE(std::move(*grow).initialize(memory + skew).has_value());
  }
  alignas(64) std::byte memory[4096 + 64];
  bufpool::buffer_pool<> pool;
};

struct alignas(32) wide {
  double d[4];
};

TEST(BoostAllocator, NeverHandsOutAMisalignedPointerWhenTheRegionBaseIsLessAligned) {
  skewed_pool odd(1);  // base at buf + 1: no offset alignment makes a double aligned
  allocator<double> doubles(odd.pool);
  EXPECT_THROW((void)doubles.allocate(4), std::bad_alloc);
  EXPECT_EQ(odd.pool.stats().live_slices, 0u);  // the refused block went back
  allocator<char> chars(doubles);
  char* c = chars.allocate(10);  // alignment 1: any address will do
  chars.deallocate(c, 10);
  pool_vector<double> v(odd.pool);
  EXPECT_THROW(v.push_back(1.0), std::bad_alloc);

  skewed_pool sixteen(16);  // 16-aligned, as a std::vector<std::byte>'s data may be
  allocator<wide> wides(sixteen.pool);
  EXPECT_THROW((void)wides.allocate(1), std::bad_alloc);  // offsets of 32 are at 16 mod 32
  EXPECT_THROW((void)wides.allocate(3), std::bad_alloc);
  std::size_t n = 2;
  wide* reuse = nullptr;
  EXPECT_EQ(wides.allocation_command(bc::allocate_new | bc::nothrow_allocation, 1, n, reuse),
            nullptr);
  EXPECT_EQ(sixteen.pool.stats().live_slices, 0u);
  allocator<std::uint64_t> words(sixteen.pool);  // 16-aligned base: fine for 8
  std::uint64_t* p = words.allocate(5);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % alignof(std::uint64_t), 0u);
  words.deallocate(p, 5);
}

// The Boost pmr resource over the same pool refuses as the std one does (a violation, then
// std::bad_alloc when the handler returns).
TEST(BoostPoolResource, OverAPoolWithALessAlignedRegionBaseNeverHandsOutAMisalignedPointer) {
  recording_violations rec;
  skewed_pool odd(1);
  bufpool::container::pool_resource r(odd.pool);
  EXPECT_THROW((void)r.allocate(32, 8), std::bad_alloc);
  EXPECT_EQ(g_violations, 1);
  EXPECT_EQ(odd.pool.stats().live_slices, 0u);
}

// ---- default construction (drop-in fidelity item 15) ------------------------------------

// Sets the default pool of buffer_pool<> for one scope.
struct default_pool_scope {
  explicit default_pool_scope(bufpool::buffer_pool<>* p)
      : old(bufpool::container::set_default_pool(p)) {}
  ~default_pool_scope() { bufpool::container::set_default_pool(old); }
  default_pool_scope(const default_pool_scope&) = delete;
  default_pool_scope& operator=(const default_pool_scope&) = delete;
  bufpool::buffer_pool<>* old;
};

static_assert(std::is_nothrow_default_constructible_v<allocator<int>>);

TEST(BoostAllocator, DefaultConstructedMapBindsToTheDefaultPool) {
  arena a(1 << 16);
  {
    default_pool_scope scope(&a.pool);
    EXPECT_EQ(bufpool::container::get_default_pool(), &a.pool);
    using node_allocator = allocator<std::pair<const int, int>>;
    bc::map<int, int, std::less<int>, node_allocator> m;  // no allocator given
    for (int i = 0; i < 100; ++i) m.emplace(i, i * i);
    EXPECT_EQ(m.get_allocator().pool(), &a.pool);
    EXPECT_EQ(a.pool.stats().live_slices, 100u);
    EXPECT_EQ(m.at(7), 49);
    EXPECT_TRUE(a.holds(&*m.find(50)));
  }
  EXPECT_EQ(bufpool::container::get_default_pool(), nullptr);
  a.expect_empty_and_valid();
}

TEST(BoostAllocator, DefaultConstructedAllocatorKeepsThePoolItWasBuiltWith) {
  arena a(4096);
  arena b(4096);
  default_pool_scope scope(&a.pool);
  allocator<int> x;
  bufpool::container::set_default_pool(&b.pool);  // later allocators only
  allocator<int> y;
  EXPECT_EQ(x.pool(), &a.pool);
  EXPECT_EQ(y.pool(), &b.pool);
  EXPECT_FALSE(x == y);
  int* p = x.allocate(4);
  EXPECT_TRUE(a.holds(p));
  x.deallocate(p, 4);
  // Each pool type has its own default.
  EXPECT_EQ(bufpool::container::get_default_pool<bufpool::local_buffer_pool<>>(), nullptr);
}

TEST(BoostAllocator, DefaultConstructedWithoutADefaultPoolAllocatesNothing) {
  default_pool_scope scope(nullptr);
  allocator<int> none;
  EXPECT_EQ(none.pool(), nullptr);
  EXPECT_EQ(none.max_size(), 0u);
  EXPECT_THROW((void)none.allocate(1), std::bad_alloc);
  none.deallocate(nullptr, 1);  // nothing to do
  EXPECT_TRUE(none == allocator<int>());
  bc::map<int, int, std::less<int>, allocator<std::pair<const int, int>>> m;
  EXPECT_TRUE(m.empty());
  EXPECT_THROW(m.emplace(1, 1), std::bad_alloc);
  recording_violations rec;
  int x = 0;
  none.deallocate(&x, 1);  // it cannot be this allocator's
  EXPECT_EQ(g_violations, 1);
}

// ---- in-place growth -------------------------------------------------------------------

TEST(BoostAllocator, VectorGrowsInPlaceWhileTheNextRangeIsFreeWithoutMovingAnElement) {
  arena a(1 << 20);
  pool_vector<counted> v(a.pool);
  v.reserve(64);
  for (int i = 0; i < 64; ++i) v.emplace_back(i);
  const counted* data = v.data();
  counted::reset();
  for (int i = 64; i < 10000; ++i) v.emplace_back(i);  // many growths
  EXPECT_EQ(v.data(), data);                           // same block, extended
  EXPECT_EQ(counted::moves, 0);
  EXPECT_EQ(counted::copies, 0);
  EXPECT_EQ(v[9999].value, 9999);
  EXPECT_EQ(a.pool.stats().live_slices, 1u);
  EXPECT_EQ(allocator<counted>(a.pool).size(v.data()), v.capacity());
}

TEST(BoostAllocator, VectorFallsBackToAllocateAndMoveWhenTheNeighbourIsTaken) {
  arena a(1 << 20);
  pool_vector<counted> v(a.pool);
  v.reserve(64);
  for (int i = 0; i < 64; ++i) v.emplace_back(i);
  const auto block = a.pool.raw_at(v.data()).value();
  auto blocker = a.pool.acquire(16, 16, bufpool::fixed(block.offset + block.capacity));
  ASSERT_TRUE(blocker.has_value());
  const counted* data = v.data();
  counted::reset();
  v.emplace_back(64);
  EXPECT_NE(v.data(), data);
  EXPECT_EQ(counted::moves, 64);  // every element moved once to the new block
  EXPECT_EQ(counted::copies, 0);
  for (int i = 0; i <= 64; ++i) ASSERT_EQ(v[static_cast<std::size_t>(i)].value, i);
  EXPECT_EQ(a.pool.stats().live_slices, 2u);  // the old block went back
}

TEST(BoostAllocator, ShrinkToFitGivesTheTailBackInPlace) {
  arena a(1 << 20);
  pool_vector<std::uint64_t> v(a.pool);
  v.reserve(10000);
  v.resize(10);
  const auto used = a.pool.stats().used_bytes;
  const auto* data = v.data();
  v.shrink_to_fit();
  EXPECT_EQ(v.data(), data);
  EXPECT_EQ(v.capacity(), 10u);
  EXPECT_LT(a.pool.stats().used_bytes, used / 100);
  v.push_back(7);  // and grows again in place
  EXPECT_EQ(v.data(), data);
}

TEST(BoostAllocator, AllocationCommandHonoursNothrowAndRefusesBackwardExpansion) {
  arena a(4096);
  allocator<int> al(a.pool);
  std::size_t size = 1 << 20;
  int* reuse = nullptr;
  EXPECT_EQ(al.allocation_command(bc::allocate_new | bc::nothrow_allocation, size, size, reuse),
            nullptr);
  size = 1 << 20;
  EXPECT_THROW((void)al.allocation_command(bc::allocate_new, size, size, reuse), std::bad_alloc);
  std::size_t got = 16;
  int* p = al.allocation_command(bc::allocate_new | bc::zero_memory, 8, got, reuse);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(got, 16u);
  for (std::size_t i = 0; i < got; ++i) EXPECT_EQ(p[i], 0);
  auto blocker = a.pool.acquire(16, 16, bufpool::fixed(64));  // right after p's 64 bytes
  ASSERT_TRUE(blocker.has_value());
  reuse = p;
  std::size_t more = 32;
  EXPECT_EQ(al.allocation_command(bc::expand_fwd | bc::expand_bwd, 32, more, reuse), nullptr);
  EXPECT_EQ(reuse, nullptr);  // refused: no exception without allocate_new
  al.deallocate(p, 16);
}

// ---- every Boost.Container container ---------------------------------------------------

TEST(BoostAllocator, EveryBoostContainerLivesInThePool) {
  arena a(1 << 22);
  {
    pool_vector<int> vec(a.pool);
    using small_t = bc::small_vector<int, 4, allocator<int>>;
    small_t small{small_t::allocator_type(allocator<int>(a.pool))};
    bc::stable_vector<int, allocator<int>> stable(a.pool);
    bc::deque<int, allocator<int>> deq(a.pool);
    bc::list<int, allocator<int>> lst(a.pool);
    bc::slist<int, allocator<int>> sl(a.pool);
    bc::flat_map<int, int, std::less<int>, allocator<std::pair<int, int>>> fmap(a.pool);
    bc::flat_set<int, std::less<int>, allocator<int>> fset(a.pool);
    bc::map<int, int, std::less<int>, allocator<std::pair<const int, int>>> mp(a.pool);
    bc::set<int, std::less<int>, allocator<int>> st(a.pool);
    pool_string str(a.pool);
    bc::devector<int, allocator<int>> dev(a.pool);
    bc::static_vector<pool_string, 4> fixed;  // no allocator of its own; its strings have one
    for (int i = 0; i < 2000; ++i) {
      vec.push_back(i);
      small.push_back(i);
      stable.push_back(i);
      (i % 2 == 0 ? deq.push_back(i) : deq.push_front(i));
      lst.push_back(i);
      sl.push_front(i);
      fmap.emplace(1999 - i, i);
      fset.insert(i * 7 % 2000);
      mp.emplace(i, -i);
      st.insert(1999 - i);
      str.push_back(static_cast<char>('a' + i % 26));
      (i % 2 == 0 ? dev.push_back(i) : dev.push_front(i));
    }
    for (int i = 0; i < 4; ++i) fixed.emplace_back(std::size_t{100}, 'f', allocator<char>(a.pool));
    EXPECT_EQ(vec[1999], 1999);
    EXPECT_TRUE(a.holds(vec.data()));
    EXPECT_EQ(small[1999], 1999);
    EXPECT_TRUE(a.holds(small.data()));
    EXPECT_EQ(stable[1000], 1000);
    EXPECT_TRUE(a.holds(&stable[1000]));
    EXPECT_EQ(deq.front(), 1999);
    EXPECT_TRUE(a.holds(&deq.front()));
    EXPECT_EQ(lst.back(), 1999);
    EXPECT_TRUE(a.holds(&lst.back()));
    EXPECT_EQ(sl.front(), 1999);
    EXPECT_EQ(fmap.begin()->first, 0);
    EXPECT_EQ(fmap.at(0), 1999);
    EXPECT_EQ(fset.size(), 2000u);
    EXPECT_EQ(mp.at(77), -77);
    EXPECT_TRUE(a.holds(&mp.at(77)));
    EXPECT_EQ(*st.begin(), 0);
    EXPECT_EQ(str.size(), 2000u);
    EXPECT_TRUE(a.holds(str.data()));
    EXPECT_EQ(dev.front(), 1999);
    EXPECT_TRUE(a.holds(dev.data()));
    EXPECT_TRUE(a.holds(fixed[3].data()));
    lst.remove_if([](int x) { return x % 2 == 0; });
    sl.remove_if([](int x) { return x % 2 == 0; });
    mp.erase(mp.begin(), mp.find(1000));
    EXPECT_EQ(lst.size(), 1000u);
    EXPECT_EQ(mp.size(), 1000u);
    const auto v = a.pool.validate();
    EXPECT_TRUE(v.has_value()) << v.error();
  }
  a.expect_empty_and_valid();
}

TEST(BoostAllocator, ScopedAllocationPutsInnerContainersInTheSamePool) {
  arena a(1 << 20);
  using inner = pool_vector<int>;
  using outer_alloc = bc::scoped_allocator_adaptor<allocator<inner>>;
  {
    bc::vector<inner, outer_alloc> outer{outer_alloc(allocator<inner>(a.pool))};
    for (int i = 0; i < 100; ++i) {
      outer.emplace_back();  // the inner vector receives the pool's allocator
      for (int j = 0; j <= i; ++j) outer.back().push_back(j);
    }
    for (const auto& in : outer) {
      EXPECT_EQ(in.get_allocator().pool(), &a.pool);
      EXPECT_TRUE(a.holds(in.data()));
    }
    EXPECT_EQ(outer[99][99], 99);
  }
  a.expect_empty_and_valid();
}

// Boost.Container skips destroying moved-from elements when it believes they own nothing;
// a moved-from string with this allocator may own a block, so erase must destroy it.
TEST(BoostAllocator, ErasingFromAVectorOfStringsLeaksNoBlock) {
  arena a(1 << 22);
  {
    pool_vector<pool_string> strings(a.pool);
    for (int i = 0; i < 600; ++i) {
      strings.emplace_back(std::size_t{40}, 's', allocator<char>(a.pool));
      if (i % 3 == 0) strings.erase(strings.begin());
    }
    EXPECT_EQ(a.pool.stats().live_slices, strings.size() + 1);  // the strings and the vector
  }
  a.expect_empty_and_valid();
}

TEST(BoostAllocator, MoveAssignmentTakesTheSourcesPool) {
  arena a(1 << 16);
  arena b(1 << 16);
  pool_vector<int> x(a.pool);
  pool_vector<int> y(b.pool);
  x.assign(100, 1);
  y.assign(10, 2);
  y = std::move(x);
  EXPECT_EQ(y.get_allocator().pool(), &a.pool);
  EXPECT_TRUE(a.holds(y.data()));
  EXPECT_EQ(b.pool.stats().live_slices, 0u);  // y's old block went back to b
}

TEST(BoostAllocator, ThreadSafePoolServesAContainerPerThread) {
  arena a(1 << 22);
  std::vector<std::thread> threads;
  std::vector<int> errors(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&a, &errors, t] {
      pool_vector<pool_string> strings(a.pool);
      bc::map<int, int, std::less<int>, allocator<std::pair<const int, int>>> m(a.pool);
      for (int i = 0; i < 2000; ++i) {
        strings.emplace_back(static_cast<std::size_t>(20 + i % 50), static_cast<char>('a' + t),
                             allocator<char>(a.pool));
        m.emplace(i, t);
        if (i % 3 == 0) strings.erase(strings.begin());
      }
      for (const auto& s : strings)
        if (s.find_first_not_of(static_cast<char>('a' + t)) != pool_string::npos)
          ++errors[static_cast<std::size_t>(t)];
      for (const auto& [k, v] : m)
        if (v != t) ++errors[static_cast<std::size_t>(t)];
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors, std::vector<int>(4, 0));
  a.expect_empty_and_valid();
}

// ---- boost::container::pmr resource ----------------------------------------------------

TEST(BoostPoolResource, PmrAliasesLiveInTheResourceAndMemoryIsReused) {
  bufpool::container::pool_resource r;
  EXPECT_EQ(r.upstream_resource(), bc::pmr::get_default_resource());
  {
    bc::pmr::vector<bc::pmr::string> words(&r);
    bc::pmr::map<int, bc::pmr::string> m(&r);
    bc::pmr::deque<int> d(&r);
    bc::pmr::list<int> l(&r);
    bc::pmr::flat_map<int, int> fm(&r);
    for (int i = 0; i < 1000; ++i) {
      words.emplace_back("a string long enough to need its own block, surely");
      m.emplace(i, "another string that needs a block of its own too");
      d.push_back(i);
      l.push_back(i);
      fm.emplace(i, i);
      if (words.size() == 16) words.clear();
    }
    EXPECT_EQ(m.at(5).get_allocator().resource(), &r);  // scoped through the alias
    EXPECT_EQ(fm.at(999), 999);
  }
  EXPECT_EQ(r.stats().live_slices, 0u);
  EXPECT_TRUE(r.validate().has_value());
}

TEST(BoostPoolResource, TakesRegionsFromTheBoostUpstreamAndGivesThemBackOnRelease) {
  bufpool::container::pool_resource::options_type o;
  o.first_region_size = 4096;
  o.max_region_size = 4096;
  bc::pmr::memory_resource* up = bc::pmr::new_delete_resource();
  bufpool::container::pool_resource r(o, up);
  EXPECT_EQ(r.upstream_resource(), up);
  for (int i = 0; i < 10; ++i) (void)r.allocate(3000, 8);
  EXPECT_EQ(r.stats().regions, 10u);
  r.release();
  EXPECT_EQ(r.stats().regions, 0u);
  EXPECT_TRUE(r.is_equal(r));
  bufpool::container::pool_resource other;
  EXPECT_FALSE(r.is_equal(other));
}

// Boost's new_delete_resource ignores alignment; the regions must still be aligned.
TEST(BoostPoolResource, RegionsAreAlignedEvenOverAnUpstreamThatIgnoresAlignment) {
  bufpool::container::pool_resource r(bc::pmr::new_delete_resource());
  for (const std::size_t align :
       {std::size_t{8}, std::size_t{64}, std::size_t{4096}, std::size_t{16384}}) {
    void* p = r.allocate(100, align);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % align, 0u) << align;
    r.deallocate(p, 100, align);
  }
  EXPECT_TRUE(r.validate().has_value());
}

// Drop-in fidelity item 4, through the Boost resource: a buffer with options.
TEST(BoostPoolResource, BufferWithOptionsUsesTheBufferFirstAndAppliesTheOptions) {
  // Large enough for the resource's records too: with a null upstream they are kept in it.
  alignas(4096) static std::byte buffer[1 << 20];
  bufpool::container::pool_resource::options_type o;
  o.thread_safe = false;
  o.retained_bytes = std::size_t{1} << 20;
  bufpool::container::pool_resource r(buffer, sizeof buffer, o, bc::pmr::null_memory_resource());
  EXPECT_FALSE(r.options().thread_safe);
  EXPECT_EQ(r.options().retained_bytes, std::size_t{1} << 20);
  void* p = r.allocate(100'000, 8);
  EXPECT_EQ(p, static_cast<void*>(buffer));
  EXPECT_THROW((void)r.allocate(sizeof buffer, 8), std::bad_alloc);  // the null upstream
  r.deallocate(p, 100'000, 8);
}

// A Boost upstream that counts the requests it sees (and serves them from operator new).
class counting_boost_upstream final : public bc::pmr::memory_resource {
 public:
  int requests = 0;

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    ++requests;
    return ::operator new(bytes, std::align_val_t{alignment});
  }
  void do_deallocate(void* p, std::size_t, std::size_t alignment) override {
    ::operator delete(p, std::align_val_t{alignment});
  }
  bool do_is_equal(const bc::pmr::memory_resource& o) const noexcept override { return this == &o; }
};

// Drop-in fidelity item 5, through the Boost resource: such a size never reaches upstream.
TEST(BoostPoolResource, Row05SizeThatOverflowsWhenAlignedIsBadAllocWithoutAskingUpstream) {
  counting_boost_upstream up;
  {
    bufpool::container::pool_resource r(&up);
    EXPECT_THROW((void)r.allocate(~std::size_t{0} - 100, 8192), std::bad_alloc);
    EXPECT_EQ(up.requests, 0);
    EXPECT_EQ(r.stats().live_slices, 0u);
  }
}

TEST(BoostPoolResource, OverAUserPoolNeverGrowsIt) {
  arena a(1 << 16);
  bufpool::container::pool_resource r(a.pool);
  EXPECT_EQ(r.upstream_resource(), bc::pmr::null_memory_resource());
  void* p = r.allocate(100, 64);
  EXPECT_TRUE(a.holds(p));
  EXPECT_THROW((void)r.allocate(1 << 20, 8), std::bad_alloc);
  r.deallocate(p, 100, 64);
  a.expect_empty_and_valid();
}

}  // namespace
