// SPDX-License-Identifier: MIT
// bufpool-map: renders a pool's JSON dump (buffer_pool::dump_json) as an SVG picture.
// Usage: bufpool-map [dump.json] [-o picture.svg]   (stdin and stdout by default)
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
import bufpool;

#include "map_reader.hpp"

int main(int argc, char** argv) {
  const char* input = nullptr;
  const char* output = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
      output = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      std::fprintf(stderr, "usage: %s [dump.json] [-o picture.svg]\n", argv[0]);
      return 2;
    } else {
      input = argv[i];
    }
  }
  std::string json;
  if (input != nullptr && std::strcmp(input, "-") != 0) {
    std::ifstream in(input, std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "bufpool-map: cannot read %s\n", input);
      return 1;
    }
    json.assign(std::istreambuf_iterator<char>(in), {});
  } else {
    json.assign(std::istreambuf_iterator<char>(std::cin), {});
  }
  const auto map = bufpool::tools::from_json(json);
  if (!map) {
    std::fprintf(stderr, "bufpool-map: not a bufpool JSON dump\n");
    return 1;
  }
  const std::string svg = bufpool::to_svg(*map);
  if (output == nullptr) {
    std::cout << svg;
    return std::cout ? 0 : 1;
  }
  std::ofstream out(output, std::ios::binary);
  out << svg;
  if (!out) {
    std::fprintf(stderr, "bufpool-map: cannot write %s\n", output);
    return 1;
  }
  return 0;
}
