// SPDX-License-Identifier: MIT
// Built by a target that links bufpool::pmr and nothing else, yet imports the core module too:
// bufpool::pmr brings bufpool::bufpool with it. Exits 0 and prints a line when all works.
#include <cstddef>
#include <cstdio>
#include <memory_resource>
#include <vector>
import bufpool;
import bufpool.pmr;

int main() {
  alignas(4096) static std::byte memory[1 << 16];
  bufpool::buffer_pool<> pool;
  if (!pool.begin_expand(sizeof memory).value().initialize(memory)) return 1;

  bufpool::pmr::pool_resource resource(pool);
  std::pmr::vector<int> numbers(&resource);
  for (int i = 0; i < 100; ++i) numbers.push_back(i);
  std::printf("pmr-only consumer: %zu live slice(s)\n", pool.stats().live_slices);
  return numbers.back() == 99 && pool.stats().live_slices == 1 ? 0 : 2;
}
