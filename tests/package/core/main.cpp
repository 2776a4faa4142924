// SPDX-License-Identifier: MIT
// Uses the installed core module only: a pool over a local buffer, one slice, one refusal.
// Exits 0 and prints a line when all works.
#include <cstddef>
#include <cstdio>
#include <utility>
#include <vector>
import bufpool;

int main() {
  std::vector<std::byte> memory(1 << 16);
  bufpool::buffer_pool<> pool;
  auto grow = pool.begin_expand(memory.size());
  if (!grow || !std::move(*grow).initialize(memory.data())) return 1;

  auto slice = pool.acquire(1024, 64, bufpool::optimal);
  if (!slice) return 2;
  auto again = pool.acquire(16, 16, bufpool::fixed(slice->offset()));
  if (again || again.error() != bufpool::errc::occupied) return 3;

  const bufpool::pool_stats s = pool.stats();
  std::printf("core consumer: %zu live slice(s) at offset %u\n", s.live_slices,
              static_cast<unsigned>(slice->offset()));
  return s.live_slices == 1 && pool.validate() ? 0 : 4;
}
