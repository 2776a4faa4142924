// SPDX-License-Identifier: MIT
// bufpool:pool_guards — slices destroyed while guarded: the pool parks their ranges with their
// guards and frees them once the guards release (collect()).
module;
#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <memory_resource>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "build_flags.hpp"
export module bufpool:pool_guards;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

import :contracts;
import :engine;
import :errors;
import :metadata;
import :options;
import :pool;
import :regions;
import :slabs;
import :thread_caches;
import :types;

namespace bufpool {

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::collect() -> std::size_t {
  // The parked entries stay in parked_ while their guards are asked (park() only
  // appends, and only the one running collect() removes), so nothing is lost if
  // allocating, or a guard, throws.
  detail::meta_vector<detail::parked_guard*> asked(metadata_);
  {
    std::scoped_lock lock(mutex_);
    if (collecting_ || parked_.empty()) return 0;
    asked.reserve(parked_.size());
    for (const auto& p : parked_) asked.push_back(p.guard.get());
    collecting_ = true;
  }
  detail::meta_vector<bool> released(metadata_);
  try {
    released.reserve(asked.size());
    for (detail::parked_guard* g : asked) released.push_back(g->try_release());
  } catch (...) {
    std::scoped_lock lock(mutex_);
    collecting_ = false;
    throw;
  }
  std::scoped_lock lock(mutex_);
  collecting_ = false;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < parked_.size(); ++i) {
    if (i < released.size() && released[i])
      release_locked(parked_[i].node);
    else if (kept++ != i)
      parked_[kept - 1] = std::move(parked_[i]);
  }
  const std::size_t freed = parked_.size() - kept;
  parked_.erase(parked_.begin() + static_cast<std::ptrdiff_t>(kept), parked_.end());
  guarded_.fetch_sub(freed);
  return freed;
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::mark_guarded(std::uint32_t node,
                                                                 bool guarded) noexcept -> void {
  std::scoped_lock lock(mutex_);
  engine_.set_user_bits(node, guarded ? guarded_bit : 0);
  if (guarded)
    guarded_.fetch_add(1);
  else
    guarded_.fetch_sub(1);
}

template <offset_integer Int, class Extra, class Handle, class Mutex>
template <class G>
inline auto buffer_pool<Int, Extra, Handle, Mutex>::park(std::uint32_t node, G&& guard) noexcept
    -> void {
  try {
    detail::meta_ptr<detail::parked_guard> p =
        detail::make_meta<detail::parked_guard_of<G>>(metadata_, std::move(guard));
    std::scoped_lock lock(mutex_);
    parked_.push_back({node, std::move(p)});
    engine_.set_user_bits(node, guarded_bit | parked_bit);
  } catch (...) {
    detail::report_diagnostic(
        "out of memory while parking a slice destroyed with its guard held: its range is "
        "kept (never reused) and its guard is dropped");
  }
}

}  // namespace bufpool

#pragma GCC visibility pop
