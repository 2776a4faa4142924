// SPDX-License-Identifier: MIT
// Demo: a memfd-backed pool that grows itself, std::pmr and Boost containers living in it,
// a guarded I/O buffer that is parked when dropped, statistics, and a picture of the pool.
// Usage: bufpool_demo [output directory]   (writes pool.json and pool.svg there)
#include <boost/container/vector.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <expected>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <memory_resource>
#include <string>
#include <utility>
#include <vector>
import bufpool;
import bufpool.pmr;
import bufpool.boost;
import bufpool.posix;

namespace {

using pool_t = bufpool::buffer_pool<std::uint32_t, bufpool::no_extra, bufpool::posix::memfd_memory>;

// Stands in for an io_uring read: the buffer is busy until the completion arrives.
struct io_guard {
  std::shared_ptr<bool> completed;
  bool try_release() const { return *completed; }
};

void print_stats(const char* when, const pool_t& pool) {
  const bufpool::pool_stats s = pool.stats();
  std::printf(
      "%-34s %zu region(s)  used %7llu  free %7llu in %3zu range(s)  live %3zu  guarded %zu "
      "(parked %zu)\n",
      when, s.regions, static_cast<unsigned long long>(s.used_bytes),
      static_cast<unsigned long long>(s.free_bytes), s.free_ranges, s.live_slices, s.guarded_slices,
      s.parked_slices);
}

bool write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path out_dir = argc > 1 ? argv[1] : "bufpool-demo";

  // 1. A pool over a memfd file: offsets are file offsets, shareable with another process.
  auto file = bufpool::posix::memfd_memory::create("bufpool-demo", {64 * 1024, 256 * 1024});
  if (!file) {
    std::printf("memfd_create: %s\n", file.error().message().c_str());
    return 1;
  }
  std::printf("memfd file: fd %d (another process maps it and reads slices by offset)\n",
              file->fd());
  pool_t::options_type options;
  options.auto_expand = true;  // the pool maps more of the file when it runs out
  pool_t pool(options, std::move(*file));

  // 2. std::pmr containers allocate from the pool.
  bufpool::pmr::pool_resource resource(pool);
  std::pmr::vector<std::pmr::string> log(&resource);
  std::pmr::map<int, std::pmr::string> sessions(&resource);
  if (!pool.grow(1)) return 1;  // the resource never grows the pool: give it a region
  for (int i = 0; i < 200; ++i) {
    log.emplace_back("request " + std::to_string(i) + " served from the pool's memory");
    sessions.emplace(i, "session-" + std::to_string(i * 7919));
  }
  print_stats("pmr vector and map:", pool);

  // 3. A Boost vector that grows in place while the range after it is free.
  using alloc = bufpool::container::allocator<double, pool_t>;
  boost::container::vector<double, alloc> samples{alloc(pool)};
  for (int i = 0; i < 4000; ++i) samples.push_back(i * 0.5);
  print_stats("boost vector of 4000 doubles:", pool);

  // 4. Many buffers, every other one returned: fragmentation the picture shows.
  std::vector<pool_t::slice> buffers;
  for (int i = 0; i < 64; ++i) {
    auto s = pool.acquire(512 + static_cast<std::uint64_t>(i % 5) * 700, 64);
    if (!s) return 1;
    buffers.push_back(std::move(*s));
  }
  for (std::size_t i = 0; i < buffers.size(); i += 2) buffers[i] = {};
  print_stats("64 buffers, every other freed:", pool);

  // 5. I/O buffers guarded until their completion arrives; one is dropped mid-flight.
  auto completed = std::make_shared<bool>(false);
  auto in_flight = pool.acquire<io_guard>(32 * 1024, 4096).value();
  auto dropped = pool.acquire<io_guard>(16 * 1024, 4096).value();
  if (!in_flight.guard(io_guard{completed}) || !dropped.guard(io_guard{completed})) return 1;
  dropped = {};  // parked: never reused while the kernel may still write into it
  auto pending = pool.begin_expand(128 * 1024);  // an expansion being prepared
  print_stats("two reads in flight, one dropped:", pool);

  // 6. The picture: what is used, free, guarded, parked and pending, to scale.
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  const auto svg = out_dir / "pool.svg";
  if (!write_file(out_dir / "pool.json", pool.dump_json()) || !write_file(svg, pool.dump_svg())) {
    std::printf("cannot write into %s\n", out_dir.c_str());
    return 1;
  }
  std::printf("map of the pool: %s (JSON next to it; tools/bufpool-map renders JSON)\n",
              std::filesystem::absolute(svg).c_str());

  // 7. The completions arrive; collect() frees the parked buffer; everything goes back.
  *completed = true;
  pending = std::unexpected(bufpool::errc::invalid_size);  // the expansion is abandoned
  std::printf("collect() freed %zu parked range(s)\n", pool.collect());
  in_flight = {};
  buffers.clear();
  samples.clear();
  samples.shrink_to_fit();
  log.clear();
  log.shrink_to_fit();
  sessions.clear();
  print_stats("everything returned:", pool);
  const auto valid = pool.validate();
  std::printf("validate(): %s\n", valid ? "ok" : valid.error().c_str());
  return valid && pool.stats().live_slices == 0 ? 0 : 1;
}
