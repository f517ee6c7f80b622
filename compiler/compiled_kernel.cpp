#include "compiler/compiled_kernel.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>
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

namespace {

template <class T>
bool read_at(const std::string& bytes, std::uint64_t offset, T& out) {
  if (offset > bytes.size() || bytes.size() - offset < sizeof(T)) return false;
  std::memcpy(&out, bytes.data() + offset, sizeof(T));
  return true;
}

// .nv.info attributes (EIATTR_*) and record formats (EIFMT_*), as cuobjdump names them.
constexpr std::uint8_t kFormatNoValue = 0x01, kFormatByte = 0x02, kFormatHalf = 0x03, kFormatSized = 0x04;
constexpr std::uint8_t kAttrFrameSize = 0x11, kAttrRegCount = 0x2f;

}  // namespace

std::optional<CubinResources> read_cubin_resources(const std::string& cubin) {
  // ELF64 little endian: the section header table and the section name table.
  if (cubin.size() < 64 || cubin.compare(0, 4, "\x7f" "ELF") != 0 || cubin[4] != 2) return std::nullopt;
  std::uint64_t shoff = 0;
  std::uint16_t shentsize = 0, shnum = 0, shstrndx = 0;
  if (!read_at(cubin, 0x28, shoff) || !read_at(cubin, 0x3a, shentsize) || !read_at(cubin, 0x3c, shnum) ||
      !read_at(cubin, 0x3e, shstrndx) || shentsize < 64 || shstrndx >= shnum) {
    return std::nullopt;
  }
  auto section = [&](std::uint16_t i, std::uint32_t& name, std::uint64_t& offset, std::uint64_t& size) {
    const std::uint64_t h = shoff + std::uint64_t{i} * shentsize;
    return read_at(cubin, h, name) && read_at(cubin, h + 0x18, offset) && read_at(cubin, h + 0x20, size);
  };
  std::uint32_t name = 0;
  std::uint64_t names_offset = 0, names_size = 0;
  if (!section(shstrndx, name, names_offset, names_size)) return std::nullopt;
  for (std::uint16_t i = 0; i < shnum; ++i) {
    std::uint64_t offset = 0, size = 0;
    if (!section(i, name, offset, size) || name >= names_size || names_offset + name >= cubin.size()) continue;
    if (std::strncmp(cubin.c_str() + names_offset + name, ".nv.info", 9) != 0) continue;   // exactly ".nv.info"
    if (offset + size > cubin.size()) return std::nullopt;
    CubinResources r;
    bool found = false;
    for (std::uint64_t p = offset; p + 4 <= offset + size;) {
      const auto format = static_cast<std::uint8_t>(cubin[p]);
      const auto attribute = static_cast<std::uint8_t>(cubin[p + 1]);
      if (format == kFormatSized) {
        std::uint16_t length = 0;
        read_at(cubin, p + 2, length);
        std::uint32_t value = 0;
        // Per-function records: the function's symbol index, then the value.
        if (length == 8 && read_at(cubin, p + 8, value)) {
          if (attribute == kAttrRegCount) r.registers = static_cast<int>(value), found = true;
          if (attribute == kAttrFrameSize) r.frame_bytes = static_cast<int>(value);
        }
        p += 4 + length;
      } else if (format == kFormatNoValue || format == kFormatByte || format == kFormatHalf) {
        p += 4;
      } else {
        break;   // an unknown record format: stop rather than misread
      }
    }
    return found ? std::optional<CubinResources>(r) : std::nullopt;
  }
  return std::nullopt;
}

ResourceUsage kernel_resources(const std::string& log, const std::string& cubin) {
  ResourceUsage r = parse_ptxas_resources(log);
  const bool ptxas_ran = log.find("Used ") != std::string::npos;
  if (const auto from_cubin = read_cubin_resources(cubin)) {
    r.registers = from_cubin->registers;
    r.stack_bytes = from_cubin->frame_bytes;
    if (!ptxas_ran) r.spill_store_bytes = r.spill_load_bytes = from_cubin->frame_bytes;
  }
  return r;
}

}  // namespace moejit
