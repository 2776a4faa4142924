// SPDX-License-Identifier: MIT
// bufpool:errors — the error codes of the core, usable as std::error_code.
module;
#include <string>
#include <system_error>
export module bufpool:errors;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

export namespace bufpool {

/// Why a fallible pool operation failed. Usable as `std::error_code` (see `make_error_code`).
enum class errc : int {
  invalid_size = 1,     ///< A size of zero (acquire, begin_expand).
  invalid_alignment,    ///< Alignment zero or not a power of two.
  alignment_too_big,    ///< Alignment above the pool's maximum alignment.
  too_large,            ///< Size above the pool's maximum slice size or the offset space.
  out_of_memory,        ///< No free range can hold the (aligned) request.
  invalid_argument,     ///< A fixed offset that does not satisfy the alignment.
  occupied,             ///< A fixed range overlaps a live (or guarded) slice.
  out_of_range,         ///< A fixed range outside every initialized region, or across two.
  arithmetic_overflow,  ///< offset + size does not fit the offset integer.
  out_of_offset_space,  ///< begin_expand: no free span of offsets of that size is left.
  pool_closed,          ///< The pool was closed by try_close().
  in_use,               ///< The slice is guarded (reclaim) or the pool has live slices (close).
  already_guarded,      ///< The slice already carries a guard.
  not_guarded,          ///< The operation needs a guarded slice.
  pool_gone,            ///< A weak slice whose pool no longer exists.
  access_denied,        ///< Data access refused: the slice is guarded (exclusive mode, or writes).
  empty_slice,          ///< The operation needs a slice that holds a range (not moved from).
  null_memory,          ///< initialize: a region's memory must not be null.
  overlapping_memory,   ///< initialize: the memory overlaps another region's memory.
  handle_spent,         ///< initialize: the expansion handle was already initialized or cancelled.
  not_live,             ///< No live raw range starts at the offset or pointer (raw_at, resize_raw).
};

/// The category of `bufpool::errc`; maps each code to the closest `std::errc`.
class error_category final : public std::error_category {
 public:
  /// Returns "bufpool".
  [[nodiscard]] const char* name() const noexcept override { return "bufpool"; }
  /// The text to_string() gives for `code` ("unknown bufpool error" for other values).
  [[nodiscard]] std::string message(int code) const override;
  /// The closest `std::errc` condition (e.g. out_of_memory: `not_enough_memory`); a value
  /// that is no errc maps to a condition of this category.
  [[nodiscard]] std::error_condition default_error_condition(int code) const noexcept override;
};

/// The one instance of the category.
[[nodiscard]] const std::error_category& bufpool_category() noexcept;

/// Makes `std::error_code{e}` work.
[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), bufpool_category()};
}

/// A short, stable description of the code (the same text as the error_code message).
[[nodiscard]] const char* to_string(errc e) noexcept;

}  // namespace bufpool

/// \cond
export template <>
struct std::is_error_code_enum<bufpool::errc> : std::true_type {};
/// \endcond

#pragma GCC visibility pop
