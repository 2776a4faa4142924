// SPDX-License-Identifier: MIT
// bufpool:intrusive_list — a doubly linked list threaded through its elements, for the lists
// a pool or a thread cache joins (fork handlers, checked builds' registry, a thread's held
// caches): linking and unlinking allocate nothing and cannot fail.
module;
export module bufpool:intrusive_list;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

export namespace bufpool::detail {

// The links an element of an intrusive_list carries: null while it is in no list.
template <class T>
struct list_links {
  T* prev = nullptr;
  T* next = nullptr;
};

// A list of T whose links are the member `Links` of each element; the first element is the
// one pushed last. Constant-initializable. The caller locks.
template <class T, list_links<T> T::* Links>
struct intrusive_list {
  T* first = nullptr;

  void push_front(T& e) noexcept {
    e.*Links = {nullptr, first};
    if (first != nullptr) (first->*Links).prev = &e;
    first = &e;
  }
  // Takes `e`, which is in this list, out of it.
  void erase(T& e) noexcept {
    list_links<T>& l = e.*Links;
    if (l.prev != nullptr)
      (l.prev->*Links).next = l.next;
    else
      first = l.next;
    if (l.next != nullptr) (l.next->*Links).prev = l.prev;
    l = {};
  }
  // The element after `e` (pushed before it), or null.
  [[nodiscard]] static T* next(const T& e) noexcept { return (e.*Links).next; }
};

}  // namespace bufpool::detail

#pragma GCC visibility pop
