// SPDX-License-Identifier: MIT
// bufpool.posix — pool handles that grow a pool with mmap(2) (anonymous memory, optionally
// huge pages) or with a memfd_create(2) file shareable with other processes, and unmap on
// close. System errors arrive as std::error_code values of std::system_category (errno).
module;
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <limits>
#include <system_error>
#include <utility>
export module bufpool.posix;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import bufpool;

namespace bufpool::posix::detail {

inline std::error_code last_error() noexcept {
  return {errno, std::system_category()};
}

inline std::size_t page() noexcept {
  static const std::size_t size = [] {
    const long p = ::sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<std::size_t>(p) : std::size_t{4096};
  }();
  return size;
}

// `n` rounded up to a multiple of `unit` (a power of two); nothing if that overflows.
inline std::expected<std::uint64_t, std::error_code> round_up(std::uint64_t n,
                                                              std::uint64_t unit) noexcept {
  if (n > std::numeric_limits<std::uint64_t>::max() - (unit - 1))
    return std::unexpected(std::make_error_code(std::errc::value_too_large));
  return (n + unit - 1) & ~(unit - 1);
}

// The geometric growth both handles share: at least `min_bytes`, at least the next size.
struct growth {
  std::uint64_t next;
  std::uint64_t max;
  std::expected<std::uint64_t, std::error_code> size_for(std::uint64_t min_bytes) const noexcept {
    return round_up(std::max(min_bytes, next), page());
  }
  void grown(std::uint64_t size) noexcept {
    if (size >= next) next = std::min(max, size * 2 > size ? size * 2 : size);
  }
};

template <class Entries>
void unmap_all(const Entries& regions) noexcept {
  for (const auto& r : regions) ::munmap(r.pointer, static_cast<std::size_t>(r.size));
}

// Reserves `size` offsets in `pool`, maps memory for them with `map(offset)`, and
// initializes the region. On any failure the reservation is cancelled and nothing stays
// mapped.
template <class Pool, class Map>
std::expected<std::uint32_t, std::error_code> add_region(Pool& pool, std::uint64_t size, Map map) {
  if (size > std::numeric_limits<typename Pool::integer>::max())
    return std::unexpected(make_error_code(errc::too_large));
  auto reservation = pool.begin_expand(size);
  if (!reservation) return std::unexpected(make_error_code(reservation.error()));
  auto memory = map(static_cast<std::uint64_t>(reservation->offset()));
  if (!memory) return std::unexpected(memory.error());  // the reservation is cancelled
  std::expected<std::uint32_t, errc> id;
  try {
    id = std::move(*reservation).initialize(*memory);
  } catch (...) {  // out of memory for the pool's records: nothing may stay mapped
    ::munmap(*memory, static_cast<std::size_t>(size));
    throw;
  }
  if (!id) {
    ::munmap(*memory, static_cast<std::size_t>(size));
    return std::unexpected(make_error_code(id.error()));
  }
  return *id;
}

}  // namespace bufpool::posix::detail

/// The `bufpool.posix` module: pool handles and helpers that map memory from the system
/// (anonymous mmap, memfd files shared between processes).
export namespace bufpool::posix {

/// The system's page size.
[[nodiscard]] inline std::size_t page_size() noexcept {
  return detail::page();
}

/// How a handle grows its pool: the first region's size, doubling up to `max_region_size`
/// (a request larger than that gets a region of its own size); sizes are rounded up to
/// whole pages.
struct growth_options {
  std::uint64_t first_region_size = std::uint64_t{1} << 20;  ///< Bytes of the first region grown.
  std::uint64_t max_region_size = std::uint64_t{1} << 30;    ///< Where the doubling stops.
  /// Anonymous memory only: ask for huge pages (MAP_HUGETLB) first, and fall back to normal
  /// pages when the system has none to give.
  bool huge_pages = false;
};

/// Maps `bytes` (rounded up to pages) of private anonymous memory, read and write. With
/// `huge_pages`, tries MAP_HUGETLB first and falls back to normal pages.
[[nodiscard]] inline std::expected<void*, std::error_code> map_anonymous(std::size_t bytes,
                                                                         bool huge_pages = false) {
  if (bytes == 0) return std::unexpected(std::make_error_code(std::errc::invalid_argument));
  const int flags = MAP_PRIVATE | MAP_ANONYMOUS;
  if (huge_pages) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags | MAP_HUGETLB, -1, 0);
    if (p != MAP_FAILED) return p;
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (p == MAP_FAILED) return std::unexpected(detail::last_error());
  return p;
}

/// A pool handle whose regions are anonymous mappings: grow() maps a new one, close()
/// unmaps them all. Use it as `buffer_pool<Int, Extra, anonymous_memory>`; with the pool
/// option `auto_expand` the pool grows by itself when an acquisition finds no space.
class anonymous_memory {
 public:
  /// A handle that has mapped nothing yet and will grow by `options`.
  explicit anonymous_memory(const growth_options& options = {})
      : huge_pages_(options.huge_pages),
        growth_{options.first_region_size, std::max(options.max_region_size, std::uint64_t{1})} {}

  /// Adds a region of at least `min_bytes` to `pool` (called by buffer_pool::grow).
  template <class Pool>
  std::expected<std::uint32_t, std::error_code> grow(Pool& pool, std::uint64_t min_bytes) {
    const auto size = growth_.size_for(min_bytes);
    if (!size) return std::unexpected(size.error());
    auto id = detail::add_region(pool, *size, [&](std::uint64_t) {
      return map_anonymous(static_cast<std::size_t>(*size), huge_pages_);
    });
    if (id) growth_.grown(*size);
    return id;
  }

  /// Unmaps every region in `regions` (the pool's destructor calls it).
  template <class Entries>
  void close(const Entries& regions) noexcept {
    detail::unmap_all(regions);
  }

 private:
  bool huge_pages_;
  detail::growth growth_;
};

/// A pool handle whose regions are shared mappings of one memfd_create(2) file, at file
/// offsets equal to their pool offsets: any process that maps the file (it has the fd,
/// inherited or passed over a UNIX socket) finds a slice's bytes at the slice's offset.
/// grow() extends the file and maps the new part; close() unmaps every region and closes
/// the file. Region offsets must be multiples of the page size (they are when every region
/// of the pool comes from grow()).
class memfd_memory {
 public:
  /// Creates the file (`name` shows in /proc/PID/fd; it need not be unique).
  [[nodiscard]] static std::expected<memfd_memory, std::error_code> create(
      const char* name, const growth_options& options = {}) {
    const int fd = ::memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return std::unexpected(detail::last_error());
    return memfd_memory(fd, options);
  }

  /// Takes over `o`'s file and growth state; `o` then holds no file (fd() is -1).
  memfd_memory(memfd_memory&& o) noexcept
      : fd_(std::exchange(o.fd_, -1)), file_size_(o.file_size_), growth_(o.growth_) {}
  /// Closes this handle's file (its mappings stay), then takes over `o`'s; `o` then holds
  /// no file.
  memfd_memory& operator=(memfd_memory&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
      file_size_ = o.file_size_;
      growth_ = o.growth_;
    }
    return *this;
  }
  memfd_memory(const memfd_memory&) = delete;
  memfd_memory& operator=(const memfd_memory&) = delete;
  ~memfd_memory() { reset(); }

  /// The file's descriptor (valid until the handle closes): give it to another process,
  /// which maps it with map_shared().
  [[nodiscard]] int fd() const noexcept { return fd_; }
  /// The file's size: every region grown so far lies below it.
  [[nodiscard]] std::uint64_t file_size() const noexcept { return file_size_; }

  /// Adds a region of at least `min_bytes` to `pool` (called by buffer_pool::grow).
  template <class Pool>
  std::expected<std::uint32_t, std::error_code> grow(Pool& pool, std::uint64_t min_bytes) {
    const auto size = growth_.size_for(min_bytes);
    if (!size) return std::unexpected(size.error());
    auto id = detail::add_region(
        pool, *size, [&](std::uint64_t offset) -> std::expected<void*, std::error_code> {
          if (offset % page_size() != 0)  // mmap needs page-aligned file offsets
            return std::unexpected(std::make_error_code(std::errc::invalid_argument));
          const std::uint64_t end = offset + *size;
          if (end > file_size_ && ::ftruncate(fd_, static_cast<off_t>(end)) != 0)
            return std::unexpected(detail::last_error());
          file_size_ = std::max(file_size_, end);
          void* p = ::mmap(nullptr, static_cast<std::size_t>(*size), PROT_READ | PROT_WRITE,
                           MAP_SHARED, fd_, static_cast<off_t>(offset));
          if (p == MAP_FAILED) return std::unexpected(detail::last_error());
          return p;
        });
    if (id) growth_.grown(*size);
    return id;
  }

  /// Unmaps every region in `regions` and closes the file (the pool's destructor calls it).
  template <class Entries>
  void close(const Entries& regions) noexcept {
    detail::unmap_all(regions);
    reset();
  }

 private:
  memfd_memory(int fd, const growth_options& options) noexcept
      : fd_(fd),
        growth_{options.first_region_size, std::max(options.max_region_size, std::uint64_t{1})} {}
  void reset() noexcept {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }

  int fd_ = -1;
  std::uint64_t file_size_ = 0;
  detail::growth growth_;
};

/// Maps `bytes` of the file `fd` from file offset `offset` (a multiple of the page size),
/// shared, read and write: another process's view of a memfd_memory pool, in which a
/// slice at pool offset `o` is at `mapping + (o - offset)`.
[[nodiscard]] inline std::expected<void*, std::error_code> map_shared(int fd, std::uint64_t offset,
                                                                      std::size_t bytes) {
  void* p =
      ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) return std::unexpected(detail::last_error());
  return p;
}

/// Unmaps what map_anonymous() or map_shared() returned.
inline void unmap(void* pointer, std::size_t bytes) noexcept {
  ::munmap(pointer, bytes);
}

}  // namespace bufpool::posix

#pragma GCC visibility pop
