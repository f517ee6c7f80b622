#include "compiler/tile_config.hpp"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

#include "compiler/spec_error.hpp"

namespace moejit {

int TileConfig::shared_bytes(DType dtype) const {
  const int bytes = dtype_bytes(dtype);
  const int pipeline = stages * (tile_m * tile_k + tile_k * tile_n) * bytes;
  // Epilogue rows are padded by 8 elements (16 bytes) so the warps' fragment stores
  // into shared memory do not all hit the same bank.
  const int epilogue = tile_m * (tile_n + 8) * bytes;
  return std::max(pipeline, epilogue);
}

int wgmma_threads(const TileConfig& tile) { return tile.threads() + 128; }

int wgmma_consumer_warpgroups(const TileConfig& tile) { return std::max(1, tile.warps_m * tile.warps_n / 4); }

int wgmma_warpgroup_rows(const TileConfig& tile) {
  return tile.pingpong ? tile.tile_m : tile.tile_m / wgmma_consumer_warpgroups(tile);
}

int wgmma_shared_bytes(const TileConfig& tile, DType dtype) {
  const int stage = (tile.tile_m + tile.tile_n) * tile.tile_k * dtype_bytes(dtype);
  const int c_buffers = tile.pingpong ? wgmma_consumer_warpgroups(tile) : 1;
  const int c_buffer = tile.tile_m * tile.tile_n * dtype_bytes(dtype);
  return 1024 + tile.stages * stage + c_buffers * c_buffer + 2 * tile.stages * 8;
}

WgmmaRegisters wgmma_registers(const TileConfig& tile) {
  const int threads = wgmma_threads(tile);
  const int consumer_threads = tile.threads();
  WgmmaRegisters r{};
  r.launch = std::min(240, 65536 / threads / 8 * 8);
  r.producer = 40;
  r.consumer = std::min(240, (r.launch * threads - r.producer * 128) / consumer_threads / 8 * 8);
  return r;
}

namespace {
constexpr std::string_view kPingpongSuffix = ".pingpong";
}

std::string TileConfig::text() const {
  return fmt::format("{}x{}x{}.s{}.w{}x{}{}", tile_m, tile_n, tile_k, stages, warps_m, warps_n,
                     pingpong ? kPingpongSuffix : std::string_view());
}

TileConfig parse_tile_config(std::string_view text) {
  TileConfig c;
  std::string s(text);
  if (text.ends_with(kPingpongSuffix)) {
    c.pingpong = true;
    s.resize(s.size() - kPingpongSuffix.size());
  }
  char tail = 0;
  const int n = std::sscanf(s.c_str(), "%dx%dx%d.s%d.w%dx%d%c", &c.tile_m, &c.tile_n, &c.tile_k, &c.stages,
                            &c.warps_m, &c.warps_n, &tail);
  if (n != 6) {
    throw SpecError("tile", std::string(text),
                    "MxNxK.sS.wWMxWN[.pingpong], for example 128x128x32.s4.w2x2 or 128x128x64.s5.w8x1.pingpong");
  }
  return c;
}

}  // namespace moejit
