// SPDX-License-Identifier: MIT
// Uses every installed module: a memfd-backed pool that grows itself, a std::pmr vector
// and a Boost.Container vector living in it. Exits 0 and prints a line when all works.
#include <boost/container/vector.hpp>
#include <cstdint>
#include <cstdio>
#include <memory_resource>
#include <utility>
#include <vector>
import bufpool;
import bufpool.pmr;
import bufpool.boost;
import bufpool.posix;

int main() {
  using pool_t =
      bufpool::buffer_pool<std::uint32_t, bufpool::no_extra, bufpool::posix::memfd_memory>;
  auto file = bufpool::posix::memfd_memory::create("consumer");
  if (!file) return 1;
  pool_t::options_type options;
  options.auto_expand = true;
  pool_t pool(options, std::move(*file));

  bufpool::pmr::pool_resource resource(pool);  // std::pmr over the pool (never grows it)
  auto slice = pool.acquire(1 << 16);          // grows the pool: auto_expand
  if (!slice) return 2;
  std::pmr::vector<int> numbers(&resource);
  for (int i = 0; i < 1000; ++i) numbers.push_back(i);

  boost::container::vector<int, bufpool::container::allocator<int, pool_t>> more{
      bufpool::container::allocator<int, pool_t>(pool)};
  for (int i = 0; i < 1000; ++i) more.push_back(i);

  const bufpool::pool_stats s = pool.stats();
  std::printf("consumer: %zu region(s), %zu live slice(s), %llu bytes used\n", s.regions,
              s.live_slices, static_cast<unsigned long long>(s.used_bytes));
  return numbers.back() == 999 && more.back() == 999 && s.live_slices == 3 ? 0 : 3;
}
