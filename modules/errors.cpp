// SPDX-License-Identifier: MIT
// Implementation of bufpool's error category.
module;
#include <string>
#include <system_error>
module bufpool;

namespace bufpool {

const char* to_string(errc e) noexcept {
  switch (e) {
    case errc::invalid_size:
      return "size must be non-zero";
    case errc::invalid_alignment:
      return "alignment must be a non-zero power of two";
    case errc::alignment_too_big:
      return "alignment exceeds the pool's maximum alignment";
    case errc::too_large:
      return "size exceeds the pool's maximum slice size";
    case errc::out_of_memory:
      return "no free range can hold the request";
    case errc::invalid_argument:
      return "fixed offset does not satisfy the alignment";
    case errc::occupied:
      return "fixed range overlaps a live slice";
    case errc::out_of_range:
      return "range is not inside one initialized region";
    case errc::arithmetic_overflow:
      return "offset arithmetic overflows the offset integer";
    case errc::out_of_offset_space:
      return "offset space exhausted";
    case errc::pool_closed:
      return "pool is closed";
    case errc::in_use:
      return "in use: guarded or live slices";
    case errc::already_guarded:
      return "slice already has a guard";
    case errc::not_guarded:
      return "slice has no guard";
    case errc::pool_gone:
      return "the slice's pool no longer exists";
    case errc::access_denied:
      return "data access refused while the slice is guarded";
    case errc::empty_slice:
      return "the slice is empty (moved from or default-constructed)";
    case errc::null_memory:
      return "a region's memory must not be null";
    case errc::overlapping_memory:
      return "the region's memory overlaps another region's memory";
    case errc::handle_spent:
      return "the expansion handle was already initialized or cancelled";
    case errc::not_live:
      return "no live raw range of this pool starts there";
  }
  return "unknown bufpool error";
}

std::string error_category::message(int code) const {
  return to_string(static_cast<errc>(code));
}

std::error_condition error_category::default_error_condition(int code) const noexcept {
  switch (static_cast<errc>(code)) {
    case errc::invalid_size:
    case errc::invalid_alignment:
    case errc::alignment_too_big:
    case errc::invalid_argument:
      return std::errc::invalid_argument;
    case errc::too_large:
    case errc::arithmetic_overflow:
      return std::errc::value_too_large;
    case errc::out_of_memory:
    case errc::out_of_offset_space:
      return std::errc::not_enough_memory;
    case errc::occupied:
    case errc::in_use:
      return std::errc::address_in_use;
    case errc::out_of_range:
      return std::errc::address_not_available;
    case errc::pool_closed:
    case errc::pool_gone:
      return std::errc::operation_not_permitted;
    case errc::already_guarded:
      return std::errc::file_exists;
    case errc::not_guarded:
    case errc::empty_slice:
    case errc::null_memory:
    case errc::handle_spent:
    case errc::not_live:
      return std::errc::invalid_argument;
    case errc::overlapping_memory:
      return std::errc::address_in_use;
    case errc::access_denied:
      return std::errc::permission_denied;
  }
  return {code, *this};
}

const std::error_category& bufpool_category() noexcept {
  static const error_category instance;
  return instance;
}

}  // namespace bufpool
