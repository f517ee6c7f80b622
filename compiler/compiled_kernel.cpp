#include "compiler/compiled_kernel.hpp"

#include <cstdio>
#include <string_view>

namespace moejit {
namespace {

// The integer right before `suffix` in `text` ("... 80 registers" -> 80), or -1. Every
// occurrence is tried, so a word elsewhere in the log (a warning about registers, say)
// does not hide the ptxas figure. Hand-rolled rather than std::regex: std::regex crashed
// inside the extension when loaded next to PyTorch's libraries on the GPU host (seen
// 2026-11-28), and a log this regular needs no regular expressions.
int number_before(std::string_view text, std::string_view suffix) {
  for (std::size_t at = text.find(suffix); at != std::string_view::npos; at = text.find(suffix, at + 1)) {
    std::size_t end = at;
    while (end > 0 && (text[end - 1] == ' ' || text[end - 1] == '\t')) --end;
    std::size_t begin = end;
    while (begin > 0 && text[begin - 1] >= '0' && text[begin - 1] <= '9') --begin;
    if (begin < end) return std::stoi(std::string(text.substr(begin, end - begin)));
  }
  return -1;
}

}  // namespace

ResourceUsage parse_ptxas_resources(const std::string& log) {
  ResourceUsage r;
  auto read = [&](std::string_view suffix, int& field) {
    const int v = number_before(log, suffix);
    if (v >= 0) field = v;
  };
  read("registers", r.registers);
  read("bytes smem", r.static_shared_bytes);
  read("bytes stack frame", r.stack_bytes);
  read("bytes spill stores", r.spill_store_bytes);
  read("bytes spill loads", r.spill_load_bytes);
  return r;
}

}  // namespace moejit
