// SPDX-License-Identifier: MIT
// bufpool.posix: pools that grow with anonymous mmap or a memfd file, auto_expand, system
// errors as std::error_code, and a second process reading a slice through its own mapping.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <expected>
#include <span>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>
import bufpool;
import bufpool.posix;

namespace {

using bufpool::posix::anonymous_memory;
using bufpool::posix::growth_options;
using bufpool::posix::memfd_memory;
using anon_pool = bufpool::buffer_pool<std::uint32_t, bufpool::no_extra, anonymous_memory>;
using memfd_pool = bufpool::buffer_pool<std::uint32_t, bufpool::no_extra, memfd_memory>;

constexpr std::uint64_t kib = 1024;

anon_pool::options_type auto_expanding() {
  anon_pool::options_type o;
  o.auto_expand = true;
  return o;
}

TEST(Posix, AnonymousMemoryGrowsThePoolByWholePagesGeometrically) {
  anon_pool pool(anon_pool::options_type{}, anonymous_memory(growth_options{64 * kib, 256 * kib}));
  auto first = pool.grow(1000);
  ASSERT_TRUE(first.has_value()) << first.error().message();
  auto second = pool.grow(1000);
  auto third = pool.grow(1000);
  auto fourth = pool.grow(1000);
  auto big = pool.grow(300 * kib + 1);  // larger than the maximum: a region of its own size
  ASSERT_TRUE(second && third && fourth && big);
  const auto regions = pool.region_statistics();
  ASSERT_EQ(regions.size(), 5u);
  std::vector<std::uint64_t> sizes;
  for (const auto& r : regions) sizes.push_back(r.size);
  const std::uint64_t page = bufpool::posix::page_size();
  const std::uint64_t big_size = (300 * kib + 1 + page - 1) / page * page;
  EXPECT_EQ(sizes,
            (std::vector<std::uint64_t>{64 * kib, 128 * kib, 256 * kib, 256 * kib, big_size}));
  // The memory is real and writable.
  auto s = pool.acquire(200 * kib);
  ASSERT_TRUE(s.has_value());
  std::memset(s->data(), 0x5a, s->size());
  EXPECT_EQ(std::to_integer<int>(s->bytes()[200 * kib - 1]), 0x5a);
}

TEST(Posix, AutoExpandGrowsThePoolWhenAnAcquisitionFindsNoSpace) {
  anon_pool pool(auto_expanding(), anonymous_memory(growth_options{64 * kib, 1 << 20}));
  EXPECT_EQ(pool.stats().regions, 0u);
  std::vector<anon_pool::slice> live;
  for (int i = 0; i < 100; ++i) {
    auto s = pool.acquire(16 * kib, 4096);
    ASSERT_TRUE(s.has_value()) << bufpool::to_string(s.error());
    EXPECT_EQ(s->offset() % 4096, 0u);
    live.push_back(std::move(*s));
  }
  const bufpool::pool_stats st = pool.stats();
  EXPECT_GE(st.regions, 3u);  // 64 KiB, 128 KiB, 256 KiB, ... as the live set grows
  EXPECT_LE(st.regions, 6u);
  EXPECT_EQ(st.live_slices, 100u);
  live.clear();
  const auto v = pool.validate();
  EXPECT_TRUE(v.has_value()) << v.error();
}

TEST(Posix, WithoutAutoExpandAFullPoolReportsOutOfMemory) {
  anon_pool pool(anon_pool::options_type{}, anonymous_memory(growth_options{64 * kib}));
  ASSERT_TRUE(pool.grow(1).has_value());
  auto s = pool.acquire(128 * kib);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error(), bufpool::errc::out_of_memory);
  EXPECT_EQ(pool.stats().regions, 1u);
}

TEST(Posix, HugePagesFallBackToNormalPagesWhenNoneAreAvailable) {
  growth_options o{2 << 20, 2 << 20};
  o.huge_pages = true;
  anon_pool pool(anon_pool::options_type{}, anonymous_memory(o));
  auto id = pool.grow(1);
  ASSERT_TRUE(id.has_value()) << id.error().message();
  auto s = pool.acquire(1 << 20);
  ASSERT_TRUE(s.has_value());
  std::memset(s->data(), 1, s->size());
}

TEST(Posix, SystemErrorsArriveAsErrorCodesWithErrno) {
  using pool64 = bufpool::buffer_pool<std::uint64_t, bufpool::no_extra, anonymous_memory>;
  pool64 pool(pool64::options_type{}, anonymous_memory());
  auto huge = pool.grow(std::uint64_t{1} << 50);  // 1 PiB: the kernel refuses the mapping
  ASSERT_FALSE(huge.has_value());
  EXPECT_EQ(huge.error().category(), std::system_category());
  EXPECT_EQ(huge.error().value(), ENOMEM) << huge.error().message();
  EXPECT_EQ(pool.stats().pending_bytes, 0u);  // the reservation was given back
  EXPECT_EQ(pool.stats().regions, 0u);
  // A size the pool's offsets cannot hold is the pool's error, as an error_code too.
  anon_pool small(anon_pool::options_type{}, anonymous_memory());
  auto too_big = small.grow(std::uint64_t{1} << 33);
  ASSERT_FALSE(too_big.has_value());
  EXPECT_EQ(too_big.error(), bufpool::errc::too_large);
}

TEST(Posix, GrowingAClosedPoolIsPoolClosed) {
  anon_pool pool(anon_pool::options_type{}, anonymous_memory());
  ASSERT_TRUE(pool.grow(1).has_value());
  auto closed = pool.try_close();
  ASSERT_TRUE(closed.has_value());
  ASSERT_TRUE(closed->handle.has_value());
  closed->handle->close(closed->entries);  // the caller took the regions: it unmaps them
  auto again = pool.grow(1);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error(), bufpool::errc::pool_closed);
}

TEST(Posix, MemfdRegionsAreTheFileAtTheirPoolOffsets) {
  auto file = memfd_memory::create("bufpool-test", growth_options{64 * kib, 64 * kib});
  ASSERT_TRUE(file.has_value()) << file.error().message();
  const int fd = file->fd();
  memfd_pool pool(memfd_pool::options_type{}, std::move(*file));
  ASSERT_TRUE(pool.grow(1).has_value());
  ASSERT_TRUE(pool.grow(1).has_value());
  struct stat st{};
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), 128 * kib);
  auto s = pool.acquire(100, 64, bufpool::fixed(64 * kib + 128));  // in the second region
  ASSERT_TRUE(s.has_value());
  std::memcpy(s->data(), "at its offset", 14);
  char seen[14] = {};
  ASSERT_EQ(::pread(fd, seen, sizeof seen, static_cast<off_t>(s->offset())), 14);
  EXPECT_STREQ(seen, "at its offset");
}

// Offsets are the shared language: the parent acquires a slice in a memfd-backed pool and
// sends only its offset; the child maps the same file and reads the data there.
TEST(Posix, CrossProcessAChildReadsASliceThroughItsOwnMappingGivenOnlyTheOffset) {
  auto file = memfd_memory::create("bufpool-shared", growth_options{64 * kib});
  ASSERT_TRUE(file.has_value()) << file.error().message();
  const int fd = file->fd();
  memfd_pool pool(memfd_pool::options_type{}, std::move(*file));
  ASSERT_TRUE(pool.grow(1).has_value());
  int to_child[2];
  ASSERT_EQ(::pipe(to_child), 0);
  constexpr std::string_view message = "written by the parent, read by the child";

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {  // the child: only the fd (inherited) and an offset from the pipe
    ::close(to_child[1]);
    std::uint64_t offset = 0;
    if (::read(to_child[0], &offset, sizeof offset) != sizeof offset) ::_exit(2);
    struct stat st{};
    if (::fstat(fd, &st) != 0) ::_exit(3);
    auto view = bufpool::posix::map_shared(fd, 0, static_cast<std::size_t>(st.st_size));
    if (!view) ::_exit(4);
    const auto* bytes = static_cast<const char*>(*view);
    const bool same = std::string_view(bytes + offset, message.size()) == message;
    ::_exit(same ? 0 : 1);
  }
  ::close(to_child[0]);
  // Not the first slice of the pool, so the offset is not 0 by chance.
  auto before = pool.acquire(3000);
  auto s = pool.acquire(message.size(), 64);
  ASSERT_TRUE(before.has_value() && s.has_value());
  std::memcpy(s->data(), message.data(), message.size());
  const std::uint64_t offset = s->offset();
  ASSERT_EQ(::write(to_child[1], &offset, sizeof offset), static_cast<ssize_t>(sizeof offset));
  ::close(to_child[1]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "the child did not find the parent's bytes at offset " << offset;
}

}  // namespace
