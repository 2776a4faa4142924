// SPDX-License-Identifier: MIT
// A small JSON reader for what bufpool::to_json() writes (objects, arrays, numbers, strings),
// and the pool_map it describes.
#include "map_reader.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>
import bufpool;

namespace bufpool::tools {
namespace {

struct json_value;
using json_object = std::map<std::string, json_value, std::less<>>;
using json_array = std::vector<json_value>;
struct json_value {
  std::variant<std::uint64_t, std::string, std::shared_ptr<json_object>,
               std::shared_ptr<json_array>>
      v;
};

class json_reader {
 public:
  explicit json_reader(std::string_view text) : s_(text) {}

  std::optional<json_value> document() {
    auto v = value();
    skip();
    if (!v || i_ != s_.size()) return std::nullopt;
    return v;
  }

 private:
  void skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_])) != 0) ++i_;
  }
  bool eat(char c) {
    skip();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  std::optional<std::string> string() {
    if (!eat('"')) return std::nullopt;
    const std::size_t end = s_.find('"', i_);
    if (end == std::string_view::npos) return std::nullopt;
    std::string out(s_.substr(i_, end - i_));
    if (out.find('\\') != std::string::npos) return std::nullopt;  // never written
    i_ = end + 1;
    return out;
  }
  std::optional<json_value> value(int depth = 0) {
    if (depth > 8) return std::nullopt;
    skip();
    if (i_ >= s_.size()) return std::nullopt;
    if (s_[i_] == '"') {
      auto str = string();
      if (!str) return std::nullopt;
      return json_value{std::move(*str)};
    }
    if (eat('{')) {
      auto obj = std::make_shared<json_object>();
      if (eat('}')) return json_value{obj};
      do {
        auto key = string();
        if (!key || !eat(':')) return std::nullopt;
        auto v = value(depth + 1);
        if (!v) return std::nullopt;
        (*obj)[*key] = std::move(*v);
      } while (eat(','));
      if (!eat('}')) return std::nullopt;
      return json_value{obj};
    }
    if (eat('[')) {
      auto arr = std::make_shared<json_array>();
      if (eat(']')) return json_value{arr};
      do {
        auto v = value(depth + 1);
        if (!v) return std::nullopt;
        arr->push_back(std::move(*v));
      } while (eat(','));
      if (!eat(']')) return std::nullopt;
      return json_value{arr};
    }
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(s_.data() + i_, s_.data() + s_.size(), n);
    if (ec != std::errc{}) return std::nullopt;
    i_ = static_cast<std::size_t>(end - s_.data());
    return json_value{n};
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

const json_object* object(const json_value* v) {
  if (v == nullptr) return nullptr;
  const auto* p = std::get_if<std::shared_ptr<json_object>>(&v->v);
  return p != nullptr ? p->get() : nullptr;
}
const json_array* array(const json_value* v) {
  if (v == nullptr) return nullptr;
  const auto* p = std::get_if<std::shared_ptr<json_array>>(&v->v);
  return p != nullptr ? p->get() : nullptr;
}
const json_value* member(const json_object* o, std::string_view name) {
  if (o == nullptr) return nullptr;
  const auto it = o->find(name);
  return it != o->end() ? &it->second : nullptr;
}
bool number(const json_object* o, std::string_view name, std::uint64_t& out) {
  const json_value* v = member(o, name);
  const auto* n = v != nullptr ? std::get_if<std::uint64_t>(&v->v) : nullptr;
  if (n == nullptr) return false;
  out = *n;
  return true;
}
template <class T>
bool count(const json_object* o, std::string_view name, T& out) {
  std::uint64_t n = 0;
  if (!number(o, name, n)) return false;
  out = static_cast<T>(n);
  return true;
}

}  // namespace

std::expected<pool_map, errc> from_json(std::string_view json) {
  const auto doc = json_reader(json).document();
  if (!doc) return std::unexpected(errc::invalid_argument);
  const json_object* root = object(&*doc);
  const json_object* stats = object(member(root, "stats"));
  const json_array* regions = array(member(root, "regions"));
  const json_array* pending = array(member(root, "pending"));
  if (stats == nullptr || regions == nullptr || pending == nullptr)
    return std::unexpected(errc::invalid_argument);
  pool_map map;
  pool_stats& s = map.stats;
  bool ok = count(stats, "used_bytes", s.used_bytes) && count(stats, "free_bytes", s.free_bytes) &&
            count(stats, "pending_bytes", s.pending_bytes) &&
            count(stats, "largest_free", s.largest_free) &&
            count(stats, "free_ranges", s.free_ranges) &&
            count(stats, "live_slices", s.live_slices) &&
            count(stats, "guarded_slices", s.guarded_slices) &&
            count(stats, "parked_slices", s.parked_slices) && count(stats, "regions", s.regions);
  if (member(stats, "spare_bytes") != nullptr)  // absent in maps of pools without slabs
    ok = ok && count(stats, "spare_bytes", s.spare_bytes);
  for (const json_value& rv : *regions) {
    const json_object* r = object(&rv);
    const json_array* ranges = array(member(r, "ranges"));
    map_region region;
    ok = ok && ranges != nullptr && count(r, "id", region.id) &&
         count(r, "offset", region.offset) && count(r, "size", region.size);
    if (!ok) break;
    for (const json_value& gv : *ranges) {
      const json_object* g = object(&gv);
      const json_value* state = member(g, "state");
      const auto* name = state != nullptr ? std::get_if<std::string>(&state->v) : nullptr;
      map_range range;
      ok =
          ok && name != nullptr && count(g, "offset", range.offset) && count(g, "size", range.size);
      if (!ok) break;
      if (*name == "used")
        range.state = range_state::used;
      else if (*name == "guarded")
        range.state = range_state::guarded;
      else if (*name == "parked")
        range.state = range_state::parked;
      else if (*name == "spare")
        range.state = range_state::spare;
      else
        ok = *name == "free";
      region.ranges.push_back(range);
    }
    map.regions.push_back(std::move(region));
  }
  for (const json_value& pv : *pending) {
    const json_object* p = object(&pv);
    map_span span;
    ok = ok && count(p, "offset", span.offset) && count(p, "size", span.size);
    map.pending.push_back(span);
  }
  if (!ok) return std::unexpected(errc::invalid_argument);
  return map;
}

}  // namespace bufpool::tools
