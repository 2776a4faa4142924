// SPDX-License-Identifier: MIT
// A pool's map as JSON and as an SVG picture (tools/map_reader.cpp reads the JSON back).
module;
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>
module bufpool;

namespace bufpool {
namespace {

const char* name_of(range_state s) {
  switch (s) {
    case range_state::used:
      return "used";
    case range_state::guarded:
      return "guarded";
    case range_state::parked:
      return "parked";
    case range_state::spare:
      return "spare";
    case range_state::free:
      break;
  }
  return "free";
}

void field(std::string& out, const char* name, std::uint64_t value, bool last = false) {
  out += '"';
  out += name;
  out += "\":";
  out += std::to_string(value);
  if (!last) out += ',';
}

// ---- SVG -------------------------------------------------------------------------------

constexpr const char* colour_free = "#dddddd";
constexpr const char* colour_used = "#4e79a7";
constexpr const char* colour_guarded = "#f28e2b";
constexpr const char* colour_parked = "#e15759";
constexpr const char* colour_spare = "#a0cbe8";
constexpr const char* colour_pending = "#b07aa1";

const char* colour_of(range_state s) {
  switch (s) {
    case range_state::used:
      return colour_used;
    case range_state::guarded:
      return colour_guarded;
    case range_state::parked:
      return colour_parked;
    case range_state::spare:
      return colour_spare;
    case range_state::free:
      break;
  }
  return colour_free;
}

// Formats straight into out, measuring first: no line is cut short, however long its
// numbers or titles.
void append(std::string& out, const char* format, auto... args) {
  const int n = std::snprintf(nullptr, 0, format, args...);
  if (n <= 0) return;
  const std::size_t at = out.size();
  const auto length = static_cast<std::size_t>(n);
  out.resize(at + length + 1);
  std::snprintf(out.data() + at, length + 1, format, args...);
  out.resize(at + length);
}

unsigned long long ull(std::uint64_t n) {
  return static_cast<unsigned long long>(n);
}

std::string bytes_text(std::uint64_t n) {
  char text[32];
  if (n >= (std::uint64_t{1} << 30) && n % (std::uint64_t{1} << 30) == 0)
    std::snprintf(text, sizeof text, "%llu GiB", static_cast<unsigned long long>(n >> 30));
  else if (n >= (std::uint64_t{1} << 20) && n % (std::uint64_t{1} << 20) == 0)
    std::snprintf(text, sizeof text, "%llu MiB", static_cast<unsigned long long>(n >> 20));
  else if (n >= 1024 && n % 1024 == 0)
    std::snprintf(text, sizeof text, "%llu KiB", static_cast<unsigned long long>(n >> 10));
  else
    std::snprintf(text, sizeof text, "%llu B", static_cast<unsigned long long>(n));
  return text;
}

// Labelled ticks under a bar of width pixels that shows offsets first .. first + size: both
// ends always, and halves or quarters when the bar is wide enough for their labels.
void append_axis(std::string& out, double left, double y, double width, std::uint64_t first,
                 std::uint64_t size) {
  const int parts = width >= 360 ? 4 : width >= 180 ? 2 : 1;
  out += "<g class=\"axis\" stroke=\"#555555\" fill=\"#555555\" font-size=\"10\">\n";
  append(out, "<line x1=\"%.2f\" y1=\"%.0f\" x2=\"%.2f\" y2=\"%.0f\"/>\n", left, y, left + width,
         y);
  for (int i = 0; i <= parts; ++i) {
    const auto part = static_cast<std::uint64_t>(parts);
    const std::uint64_t at =
        i == parts ? first + size : first + size / part * static_cast<std::uint64_t>(i);
    const double x = left + width * static_cast<double>(i) / parts;
    const char* anchor = i == 0 ? "start" : i == parts ? "end" : "middle";
    append(out, "<line x1=\"%.2f\" y1=\"%.0f\" x2=\"%.2f\" y2=\"%.0f\"/>\n", x, y, x, y + 4);
    append(out, "<text x=\"%.2f\" y=\"%.0f\" stroke=\"none\" text-anchor=\"%s\">%llu</text>\n", x,
           y + 14, anchor, ull(at));
  }
  out += "</g>\n";
}

}  // namespace

std::string to_json(const pool_map& map) {
  std::string out = "{\"stats\":{";
  const pool_stats& s = map.stats;
  field(out, "used_bytes", s.used_bytes);
  field(out, "free_bytes", s.free_bytes);
  field(out, "spare_bytes", s.spare_bytes);
  field(out, "pending_bytes", s.pending_bytes);
  field(out, "largest_free", s.largest_free);
  field(out, "free_ranges", s.free_ranges);
  field(out, "live_slices", s.live_slices);
  field(out, "guarded_slices", s.guarded_slices);
  field(out, "parked_slices", s.parked_slices);
  field(out, "regions", s.regions, true);
  out += "},\"regions\":[";
  for (std::size_t i = 0; i < map.regions.size(); ++i) {
    const map_region& r = map.regions[i];
    out += i == 0 ? "{" : ",{";
    field(out, "id", r.id);
    field(out, "offset", r.offset);
    field(out, "size", r.size);
    out += "\"ranges\":[";
    for (std::size_t k = 0; k < r.ranges.size(); ++k) {
      out += k == 0 ? "{" : ",{";
      field(out, "offset", r.ranges[k].offset);
      field(out, "size", r.ranges[k].size);
      out += "\"state\":\"";
      out += name_of(r.ranges[k].state);
      out += "\"}";
    }
    out += "]}";
  }
  out += "],\"pending\":[";
  for (std::size_t i = 0; i < map.pending.size(); ++i) {
    out += i == 0 ? "{" : ",{";
    field(out, "offset", map.pending[i].offset);
    field(out, "size", map.pending[i].size, true);
    out += '}';
  }
  out += "]}\n";
  return out;
}

std::string to_svg(const pool_map& map) {
  constexpr double left = 210;  // labels
  constexpr double bar = 760;   // the widest region's bar
  constexpr double row = 52;    // bar, axis, gap
  constexpr double top = 78;
  std::uint64_t widest = 1;
  for (const map_region& r : map.regions) widest = std::max(widest, r.size);
  for (const map_span& p : map.pending) widest = std::max(widest, p.size);
  const double per_pixel = static_cast<double>(widest) / bar;
  const auto px = [&](std::uint64_t bytes) { return static_cast<double>(bytes) / per_pixel; };
  const std::size_t rows = map.regions.size() + map.pending.size();
  const double height = top + row * static_cast<double>(rows) + 20;

  std::string out;
  append(out,
         "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
         "font-family=\"sans-serif\" font-size=\"12\">\n",
         left + bar + 20, height);
  out += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  const pool_stats& s = map.stats;
  append(out,
         "<text x=\"10\" y=\"20\">%zu region(s), %s used, %s free in %zu range(s), largest %s; "
         "%s spare; %zu live slice(s), %zu guarded, %zu parked; %s pending</text>\n",
         s.regions, bytes_text(s.used_bytes).c_str(), bytes_text(s.free_bytes).c_str(),
         s.free_ranges, bytes_text(s.largest_free).c_str(), bytes_text(s.spare_bytes).c_str(),
         s.live_slices, s.guarded_slices, s.parked_slices, bytes_text(s.pending_bytes).c_str());
  append(out, "<text x=\"10\" y=\"38\" fill=\"#555555\">scale: %s per pixel</text>\n",
         bytes_text(static_cast<std::uint64_t>(per_pixel + 0.5)).c_str());
  const std::pair<const char*, const char*> legend[] = {
      {"free", colour_free},     {"used", colour_used},   {"guarded", colour_guarded},
      {"parked", colour_parked}, {"spare", colour_spare}, {"pending", colour_pending}};
  double x = 10;
  for (const auto& [name, colour] : legend) {
    append(out, "<rect x=\"%.0f\" y=\"48\" width=\"14\" height=\"14\" fill=\"%s\"/>\n", x, colour);
    append(out, "<text x=\"%.0f\" y=\"60\">%s</text>\n", x + 18, name);
    x += 90;
  }
  // Every range is a rect whose <title> names its offsets, size and state (a browser shows
  // it on hover); under each bar an axis labels offsets.
  double y = top;
  for (const map_region& r : map.regions) {
    const double width = std::max(px(r.size), 1.0);
    append(out, "<text x=\"10\" y=\"%.0f\">region %u @%llu, %s</text>\n", y + 16, r.id,
           ull(r.offset), bytes_text(r.size).c_str());
    append(out,
           "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.2f\" height=\"22\" fill=\"%s\">"
           "<title>region %u: offsets %llu..%llu, %llu bytes</title></rect>\n",
           left, y, width, colour_free, r.id, ull(r.offset), ull(r.offset + r.size), ull(r.size));
    for (const map_range& g : r.ranges) {
      append(out,
             "<rect x=\"%.2f\" y=\"%.0f\" width=\"%.2f\" height=\"22\" fill=\"%s\">"
             "<title>%s: offset %llu, %llu bytes (%s)</title></rect>\n",
             left + px(g.offset - r.offset), y, std::max(px(g.size), 1.0), colour_of(g.state),
             name_of(g.state), ull(g.offset), ull(g.size), bytes_text(g.size).c_str());
    }
    append_axis(out, left, y + 22, width, r.offset, r.size);
    y += row;
  }
  for (const map_span& p : map.pending) {
    const double width = std::max(px(p.size), 1.0);
    append(out, "<text x=\"10\" y=\"%.0f\">pending @%llu, %s</text>\n", y + 16, ull(p.offset),
           bytes_text(p.size).c_str());
    append(out,
           "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.2f\" height=\"22\" fill=\"%s\">"
           "<title>pending: offset %llu, %llu bytes (%s)</title></rect>\n",
           left, y, width, colour_pending, ull(p.offset), ull(p.size), bytes_text(p.size).c_str());
    append_axis(out, left, y + 22, width, p.offset, p.size);
    y += row;
  }
  out += "</svg>\n";
  return out;
}

}  // namespace bufpool
