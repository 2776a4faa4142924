// SPDX-License-Identifier: MIT
// The pool's map: range states, pending spans, JSON round trip, and the SVG picture.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>
import bufpool;

#include "map_reader.hpp"

namespace {

using pool32 = bufpool::buffer_pool<>;
using bufpool::range_state;

struct flag_guard {
  std::shared_ptr<bool> done;
  bool try_release() const { return *done; }
};

std::vector<range_state> states(const bufpool::map_region& r) {
  std::vector<range_state> out;
  for (const auto& g : r.ranges) out.push_back(g.state);
  return out;
}

// A pool with one 4 KiB region holding a used, a guarded and a parked slice, a free gap
// between them, and a pending expansion.
struct scene {
  std::vector<std::byte> memory = std::vector<std::byte>(4096);
  pool32 pool;
  std::shared_ptr<bool> done = std::make_shared<bool>(false);
  std::optional<pool32::slice_type<flag_guard>> used, guarded;
  std::optional<bufpool::expansion_handle<pool32>> pending;

  scene() {
    EXPECT_TRUE(pool.begin_expand(4096).value().initialize(memory.data()));
    used = pool.acquire<flag_guard>(64, 1, bufpool::fixed(0)).value();
    guarded = pool.acquire<flag_guard>(64, 1, bufpool::fixed(256)).value();
    EXPECT_TRUE(guarded->guard(flag_guard{done}).has_value());
    auto parked = pool.acquire<flag_guard>(128, 1, bufpool::fixed(512)).value();
    EXPECT_TRUE(parked.guard(flag_guard{done}).has_value());
    pending = pool.begin_expand(8192).value();
  }  // `parked` is destroyed while guarded
  ~scene() {  // the I/O completes: nothing stays guarded when the pool goes
    *done = true;
    guarded.reset();
    used.reset();
    pool.collect();
  }
  scene(const scene&) = delete;
  scene& operator=(const scene&) = delete;
};

TEST(PoolMap, ShowsEveryRangeWithItsStateAndThePendingExpansions) {
  scene s;
  const bufpool::pool_map map = s.pool.map();
  ASSERT_EQ(map.regions.size(), 1u);
  const auto& r = map.regions[0];
  EXPECT_EQ(r.offset, 0u);
  EXPECT_EQ(r.size, 4096u);
  EXPECT_EQ(states(r),
            (std::vector<range_state>{range_state::used, range_state::free, range_state::guarded,
                                      range_state::free, range_state::parked, range_state::free}));
  EXPECT_EQ(r.ranges[4].offset, 512u);
  EXPECT_EQ(r.ranges[4].size, 128u);
  ASSERT_EQ(map.pending.size(), 1u);
  EXPECT_EQ(map.pending[0].offset, 4096u);
  EXPECT_EQ(map.pending[0].size, 8192u);
  EXPECT_EQ(map.stats.guarded_slices, 2u);
  EXPECT_EQ(map.stats.parked_slices, 1u);
}

TEST(PoolMap, StatesFollowGuardsAndCollect) {
  scene s;
  *s.done = true;
  ASSERT_TRUE(s.guarded->try_unguard().has_value());
  EXPECT_EQ(s.pool.collect(), 1u);
  s.pending.reset();  // cancelled: no longer pending
  const bufpool::pool_map map = s.pool.map();
  EXPECT_EQ(states(map.regions[0]),
            (std::vector<range_state>{range_state::used, range_state::free, range_state::used,
                                      range_state::free}));
  EXPECT_TRUE(map.pending.empty());
}

TEST(PoolMap, PendingSpansAreWhatIsNeitherARegionNorACancelledGap) {
  std::vector<std::byte> memory(4096);
  pool32 pool;
  auto a = pool.begin_expand(1000).value();  // [0, 1000): stays pending
  auto b = pool.begin_expand(2000).value();  // [1000, 3000): cancelled, a gap
  auto c = pool.begin_expand(4096).value();  // [3000, 7096): a region
  auto d = pool.begin_expand(500).value();   // [7096, 7596): pending
  {
    auto gone = std::move(b);
  }
  ASSERT_TRUE(std::move(c).initialize(memory.data()));
  const auto map = pool.map();
  ASSERT_EQ(map.pending.size(), 2u);
  EXPECT_EQ(map.pending[0], (bufpool::map_span{0, 1000}));
  EXPECT_EQ(map.pending[1], (bufpool::map_span{7096, 500}));
  EXPECT_EQ(map.regions[0].offset, 3000u);
}

TEST(PoolMap, JsonReadsBackToTheSameMap) {
  scene s;
  const bufpool::pool_map map = s.pool.map();
  const std::string json = bufpool::to_json(map);
  EXPECT_NE(json.find("\"state\":\"parked\""), std::string::npos);
  auto back = bufpool::tools::from_json(json);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->regions, map.regions);
  EXPECT_EQ(back->pending, map.pending);
  EXPECT_EQ(back->stats.used_bytes, map.stats.used_bytes);
  EXPECT_EQ(back->stats.free_ranges, map.stats.free_ranges);
  EXPECT_EQ(back->stats.parked_slices, map.stats.parked_slices);
  EXPECT_EQ(s.pool.dump_json(), json);
}

TEST(PoolMap, FromJsonRejectsWhatToJsonDoesNotWrite) {
  for (const char* bad : {"", "{}", "[]", "{\"stats\":{}}", "{\"stats\":{},\"regions\":[],",
                          "{\"stats\":{},\"regions\":[],\"pending\":[]}"}) {
    auto r = bufpool::tools::from_json(bad);
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error(), bufpool::errc::invalid_argument);
  }
  scene s;
  std::string json = s.pool.dump_json();
  json.replace(json.find("parked"), 6, "wobbly");
  EXPECT_FALSE(bufpool::tools::from_json(json).has_value());
}

TEST(PoolMap, SvgDrawsEachStateInItsColourWithALegend) {
  scene s;
  const std::string svg = s.pool.dump_svg();
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  for (const char* colour : {"#dddddd", "#4e79a7", "#f28e2b", "#e15759", "#b07aa1"})
    EXPECT_NE(svg.find(colour), std::string::npos) << colour;
  for (const char* word : {">free<", ">used<", ">guarded<", ">parked<", ">pending<"})
    EXPECT_NE(svg.find(word), std::string::npos) << word;
  EXPECT_NE(svg.find("region 0 @0, 4 KiB"), std::string::npos);
  EXPECT_NE(svg.find("pending @4096, 8 KiB"), std::string::npos);
}

}  // namespace
