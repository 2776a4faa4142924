// SPDX-License-Identifier: MIT
// bufpool:metadata — where a pool's own records come from: the memory resource of the
// `metadata` option, and the containers and owning pointers that allocate from it.
module;
#include <cstddef>
#include <memory>
#include <memory_resource>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>
export module bufpool:metadata;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

export namespace bufpool::detail {

// The resource a pool's records come from when its options name none: the global heap,
// whatever std::pmr::get_default_resource() is at the time (a pool behind the default
// resource must not take its own records from itself).
[[nodiscard]] inline std::pmr::memory_resource* metadata_or_default(
    std::pmr::memory_resource* metadata) noexcept {
  return metadata != nullptr ? metadata : std::pmr::new_delete_resource();
}

// A vector of a pool's records.
template <class T>
using meta_vector = std::pmr::vector<T>;

// Destroys an object made by make_meta() and gives its memory back to the resource it
// came from. It remembers the size and alignment of the object made, so that a pointer to a
// base class deletes the whole object.
struct meta_delete {
  std::pmr::memory_resource* resource = nullptr;
  std::size_t bytes = 0;
  std::size_t alignment = 0;
  template <class T>
  void operator()(T* p) const noexcept {
    void* whole = p;
    if constexpr (std::is_polymorphic_v<T>) whole = dynamic_cast<void*>(p);
    std::destroy_at(p);
    resource->deallocate(whole, bytes, alignment);
  }
};

// An object owned through a pool's records' resource.
template <class T>
using meta_ptr = std::unique_ptr<T, meta_delete>;

// Makes a T from `resource`. Strong guarantee: what the resource or T's constructor throws
// propagates and nothing is left allocated.
template <class T, class... Args>
[[nodiscard]] meta_ptr<T> make_meta(std::pmr::memory_resource* resource, Args&&... args) {
  void* memory = resource->allocate(sizeof(T), alignof(T));
  try {
    T* object = ::new (memory) T(std::forward<Args>(args)...);
    return meta_ptr<T>(object, meta_delete{resource, sizeof(T), alignof(T)});
  } catch (...) {
    resource->deallocate(memory, sizeof(T), alignof(T));
    throw;
  }
}

// Destroys the `count` elements of an array made by make_meta_array() and frees it.
struct meta_array_delete {
  std::pmr::memory_resource* resource = nullptr;
  std::size_t count = 0;
  template <class T>
  void operator()(T* p) const noexcept {
    std::destroy_n(p, count);
    resource->deallocate(p, count * sizeof(T), alignof(T));
  }
};

// An array owned through a pool's records' resource.
template <class T>
using meta_array = std::unique_ptr<T[], meta_array_delete>;

// `count` value-initialized Ts from `resource` (T must not throw when value-initialized).
template <class T>
[[nodiscard]] meta_array<T> make_meta_array(std::pmr::memory_resource* resource,
                                            std::size_t count) {
  static_assert(std::is_nothrow_default_constructible_v<T>);
  if (count > std::size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
  T* first = static_cast<T*>(resource->allocate(count * sizeof(T), alignof(T)));
  std::uninitialized_value_construct_n(first, count);
  return meta_array<T>(first, meta_array_delete{resource, count});
}

}  // namespace bufpool::detail

#pragma GCC visibility pop
