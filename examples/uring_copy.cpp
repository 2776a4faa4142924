// SPDX-License-Identifier: MIT
// io_uring file copy whose buffers are pool slices. Each chunk is read into a slice that is
// guarded until its I/O completes; the slice is dropped as soon as its write is submitted
// (the pool parks the range: never reused while the kernel may still use it), the write's
// completion releases the guard, and collect() gives the range back. The pool's region is
// registered with the ring as a fixed buffer, so reads and writes use READ_FIXED and
// WRITE_FIXED.
//
// Usage: bufpool_uring_copy SOURCE DESTINATION
//        bufpool_uring_copy --self-test DIRECTORY   (writes a file, copies it, compares)
// Exit code 77 when io_uring is unavailable (the test is then reported as skipped).
#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>
import bufpool;
import bufpool.posix;

namespace {

constexpr unsigned queue_depth = 8;
constexpr std::uint64_t chunk = 64 * 1024;
constexpr int skipped = 77;

// Released when the I/O on the slice's memory has completed.
struct completion_guard {
  std::shared_ptr<std::atomic<bool>> done;
  bool try_release() const { return done->load(std::memory_order_acquire); }
};

using pool_t =
    bufpool::buffer_pool<std::uint32_t, bufpool::no_extra, bufpool::posix::anonymous_memory>;
using slice_t = pool_t::slice_type<completion_guard>;

// One chunk on its way: read into the buffer, then written out from it.
struct transfer {
  slice_t buffer;
  std::shared_ptr<std::atomic<bool>> done = std::make_shared<std::atomic<bool>>(false);
  std::uint64_t file_offset = 0;
  std::uint32_t length = 0;
  bool writing = false;
  std::byte* data = nullptr;  // the buffer's memory, kept for the write after the slice is dropped
};

struct counts {
  std::uint64_t bytes = 0;
  std::size_t parked_peak = 0;
  std::size_t collected = 0;
};

int copy(const char* from, const char* to, counts& out) {
  const int in = ::open(from, O_RDONLY | O_CLOEXEC);
  if (in < 0) return std::perror(from), 1;
  struct stat st{};
  if (::fstat(in, &st) != 0) return std::perror(from), 1;
  const int dst = ::open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (dst < 0) return std::perror(to), 1;
  const auto size = static_cast<std::uint64_t>(st.st_size);

  io_uring ring{};
  if (const int e = io_uring_queue_init(queue_depth * 2, &ring, 0); e < 0) {
    std::printf("io_uring unavailable (%s): skipped\n", std::strerror(-e));
    return skipped;
  }
  // One region that holds every buffer in flight, registered as fixed buffer 0.
  pool_t pool(pool_t::options_type{},
              bufpool::posix::anonymous_memory({queue_depth * chunk, queue_depth * chunk}));
  if (!pool.grow(queue_depth * chunk)) return std::printf("cannot map the buffers\n"), 1;
  const auto region = pool.regions().front();
  iovec registered{region.pointer, region.size};
  if (const int e = io_uring_register_buffers(&ring, &registered, 1); e < 0) {
    std::printf("io_uring_register_buffers: %s\n", std::strerror(-e));
    io_uring_queue_exit(&ring);
    return e == -EPERM || e == -ENOMEM ? skipped : 1;
  }

  std::uint64_t next = 0;  // the next file offset to read
  unsigned in_flight = 0;
  int status = 0;
  while ((next < size || in_flight != 0) && status == 0) {
    // Start reads while there is room in the ring and in the pool.
    while (next < size && in_flight < queue_depth) {
      auto t = std::make_unique<transfer>();
      auto s = pool.acquire<completion_guard>(chunk, 4096);  // runs collect() when full
      if (!s) break;                                         // every buffer busy: wait
      t->length = static_cast<std::uint32_t>(std::min(chunk, size - next));
      t->file_offset = next;
      t->data = s->data();
      if (!s->guard(completion_guard{t->done})) return 1;
      t->buffer = std::move(*s);
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_read_fixed(sqe, in, t->data, t->length, t->file_offset, 0);
      io_uring_sqe_set_data(sqe, t.release());
      next += chunk;
      ++in_flight;
    }
    io_uring_submit(&ring);
    io_uring_cqe* cqe = nullptr;
    if (const int e = io_uring_wait_cqe(&ring, &cqe); e < 0) {
      std::printf("io_uring_wait_cqe: %s\n", std::strerror(-e));
      status = 1;
      break;
    }
    std::unique_ptr<transfer> t(static_cast<transfer*>(io_uring_cqe_get_data(cqe)));
    const int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    if (res < 0 || static_cast<std::uint32_t>(res) != t->length) {
      std::printf("%s at offset %llu: %s\n", t->writing ? "write" : "read",
                  static_cast<unsigned long long>(t->file_offset),
                  res < 0 ? std::strerror(-res) : "short transfer");
      t->done->store(true, std::memory_order_release);
      status = 1;
      break;
    }
    if (!t->writing) {  // read done: write the same buffer out, and drop the slice now
      t->writing = true;
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_write_fixed(sqe, dst, t->data, t->length, t->file_offset, 0);
      t->buffer = {};  // guarded: parked until the write completes
      out.parked_peak = std::max(out.parked_peak, pool.stats().parked_slices);
      io_uring_sqe_set_data(sqe, t.release());
    } else {  // write done: the guard releases; collect() gives the range back
      t->done->store(true, std::memory_order_release);
      out.bytes += t->length;
      out.collected += pool.collect();
      --in_flight;
    }
  }
  io_uring_unregister_buffers(&ring);
  io_uring_queue_exit(&ring);
  out.collected += pool.collect();
  ::close(in);
  ::close(dst);
  const bufpool::pool_stats s = pool.stats();
  if (status == 0 && (s.live_slices != 0 || s.guarded_slices != 0)) {
    std::printf("buffers still held after the copy: %zu\n", s.live_slices);
    return 1;
  }
  return status;
}

bool same_files(const std::string& a, const std::string& b) {
  std::FILE* fa = std::fopen(a.c_str(), "rb");
  std::FILE* fb = std::fopen(b.c_str(), "rb");
  bool same = fa != nullptr && fb != nullptr;
  while (same) {
    const int ca = std::fgetc(fa);
    const int cb = std::fgetc(fb);
    same = ca == cb;
    if (ca == EOF) break;
  }
  if (fa != nullptr) std::fclose(fa);
  if (fb != nullptr) std::fclose(fb);
  return same;
}

int self_test(const std::string& dir) {
  ::mkdir(dir.c_str(), 0755);
  const std::string src = dir + "/source.bin";
  const std::string dst = dir + "/copy.bin";
  {
    std::FILE* f = std::fopen(src.c_str(), "wb");
    if (f == nullptr) return std::perror(src.c_str()), 1;
    std::uint64_t x = 0x9E3779B97F4A7C15u;
    for (std::uint64_t i = 0; i < 3 * 1024 * 1024 + 123; ++i) {  // not a whole chunk
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      std::fputc(static_cast<int>(x & 0xff), f);
    }
    std::fclose(f);
  }
  counts c;
  const int status = copy(src.c_str(), dst.c_str(), c);
  if (status != 0) return status;
  if (!same_files(src, dst)) return std::printf("the copy differs from the source\n"), 1;
  std::printf("copied %llu bytes through pool slices; up to %zu parked at once, %zu collected\n",
              static_cast<unsigned long long>(c.bytes), c.parked_peak, c.collected);
  return c.parked_peak > 0 && c.collected > 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--self-test") == 0) return self_test(argv[2]);
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s SOURCE DESTINATION | --self-test DIRECTORY\n", argv[0]);
    return 2;
  }
  counts c;
  const int status = copy(argv[1], argv[2], c);
  if (status == 0) std::printf("copied %llu bytes\n", static_cast<unsigned long long>(c.bytes));
  return status;
}
