// SPDX-License-Identifier: MIT
// The libFuzzer entry point of bufpool_fuzz, a differential fuzzer of the pool and pmr adapter.
//
// bufpool::buffer_pool<> and bufpool::pmr::pool_resource are driven by the input bytes and
// checked after every operation against a simple model. Any discrepancy prints which check
// failed, the operation index and the values, then aborts so that libFuzzer records the
// input. The parts, each a header of this one translation unit:
//   decoder.hpp   the input encoding: opcodes and arguments
//   model.hpp     the reference model of the pool
//   checks.hpp    the checks that compare the pool with the model
//   session.hpp   one input's session: its state, the dispatch and the teardown
//   slice_operations.hpp, expansion_operations.hpp, pmr_operations.hpp   the operations
//   slot_session.hpp   the other kind of session: slab slots released across three threads
//   report.hpp, cookies.hpp, upstream.hpp, bounds.hpp   what those build on
#include <cstddef>
#include <cstdint>
#include "checks.hpp"
#include "decoder.hpp"
#include "expansion_operations.hpp"
#include "pmr_operations.hpp"
#include "report.hpp"
#include "session.hpp"
#include "slice_operations.hpp"
#include "slot_session.hpp"
import bufpool;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  bufpool::set_violation_handler(&on_violation);
  bufpool::set_diagnostic_handler(&on_diagnostic);
  g_op = 0;
  g_op_name = "setup";
  g_misuse_expected = false;
  input_decoder in(data, size);
  if (in.slot_session_next()) {
    slot_session s(in);
    s.run();
    return 0;
  }
  session s(in);
  s.run();
  return 0;
}
