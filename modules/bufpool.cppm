// SPDX-License-Identifier: MIT
// bufpool — primary module interface: `import bufpool;` is all a user needs for the core.
export module bufpool;

export import :errors;
export import :options;
export import :contracts;
export import :engine;
export import :pool;
