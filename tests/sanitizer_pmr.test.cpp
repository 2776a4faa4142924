// SPDX-License-Identifier: MIT
// AddressSanitizer and the pmr resource's arena loop: regions that release() keeps for the
// next cycle are unaddressable while they wait, and addressable again when they rejoin the
// pool or go back to upstream. Every test skips outside ASan builds (asan and fuzz presets).
#include <gtest/gtest.h>

#include <cstddef>
#include <map>
#include <memory_resource>
#include <string>
#include <vector>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUFPOOL_TEST_PMR_ASAN 1
#include <sanitizer/asan_interface.h>
#endif
#endif

import bufpool;
import bufpool.pmr;

namespace {

#ifdef BUFPOOL_TEST_PMR_ASAN
bool any_poisoned(const void* p, std::size_t n) {
  return __asan_region_is_poisoned(const_cast<void*>(p), n) != nullptr;
}
#define SKIP_WITHOUT_ASAN() (void)0
#else
bool any_poisoned(const void*, std::size_t) {
  return false;
}
#define SKIP_WITHOUT_ASAN() GTEST_SKIP() << "needs an AddressSanitizer build (asan or fuzz preset)"
#endif

// An upstream that checks, when a block comes back, that none of it is still poisoned (the
// upstream may hand it to anyone next).
class checking_upstream final : public std::pmr::memory_resource {
 public:
  int poisoned_returns = 0;
  int live = 0;

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override {
    ++live;
    return std::pmr::new_delete_resource()->allocate(bytes, alignment);
  }
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override {
    if (any_poisoned(p, bytes)) ++poisoned_returns;
    --live;
    std::pmr::new_delete_resource()->deallocate(p, bytes, alignment);
  }
  bool do_is_equal(const std::pmr::memory_resource& o) const noexcept override {
    return this == &o;
  }
};

// A use after release() must be reported even when the region stays with the resource.
TEST(AddressSanitizer, PmrRegionsKeptByReleaseAreUnaddressableWhileTheyWait) {
  SKIP_WITHOUT_ASAN();
  checking_upstream up;
  bufpool::pmr::pool_resource r(&up);  // the default keeps what the cycle used
  void* p = r.allocate(256, 16);
  EXPECT_FALSE(any_poisoned(p, 256));
  r.release();
  ASSERT_GT(r.kept_bytes(), 0u);
  EXPECT_TRUE(any_poisoned(p, 1));
  void* q = r.allocate(256, 16);  // the kept region rejoins the pool
  EXPECT_FALSE(any_poisoned(q, 256));
  r.deallocate(q, 256, 16);
}

TEST(AddressSanitizer, PmrKeptRegionsGoBackToUpstreamAddressable) {
  SKIP_WITHOUT_ASAN();
  checking_upstream up;
  {
    bufpool::pmr::resource_options o;
    o.idle_cycles = 0;
    bufpool::pmr::pool_resource r(o, &up);
    {
      std::pmr::vector<std::pmr::string> v(&r);
      for (int i = 0; i < 20000; ++i) v.emplace_back(64, 'x');  // several regions
    }
    r.release();  // all kept, poisoned while they wait
    (void)r.allocate(16, 8);
    r.release();  // the ones this cycle did not need go back
    EXPECT_EQ(up.poisoned_returns, 0);
    r.release();
  }  // destruction gives back the rest, some of them waiting
  EXPECT_EQ(up.poisoned_returns, 0);
  EXPECT_EQ(up.live, 0);
}

}  // namespace
