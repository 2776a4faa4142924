// SPDX-License-Identifier: MIT
// bufpool — primary module interface: `import bufpool;` is all a user needs for the core.
export module bufpool;
// Shared builds hide what is not marked (cmake/bufpool_library.cmake): the purview of an
// interface unit is the library's interface.
#pragma GCC visibility push(default)

export import :errors;
export import :options;
export import :metadata;
export import :contracts;
export import :size_classes;
export import :engine;
export import :types;
export import :intrusive_list;
export import :map;
export import :locks;
export import :regions;
export import :offset_map;
export import :slabs;
export import :thread_caches;
export import :slice;
export import :pool;
export import :pool_ranges;
export import :pool_regions;
export import :pool_inspect;
export import :pool_guards;

#pragma GCC visibility pop
