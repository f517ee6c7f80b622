#include "compiler/tile_config.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <optional>
#include <tuple>
#include <utility>

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
  // The epilogue stages C in 64-column chunks, two at a time (Sm90Layout::kCBytes).
  const int c_buffer = tile.tile_m * std::min(tile.tile_n, 128) * dtype_bytes(dtype);
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
constexpr std::string_view kClusterPrefix = ".c";

// A positive integer without leading zeros at the front of `digits`, which it consumes.
std::optional<int> take_count(std::string_view& digits) {
  if (digits.empty() || digits.front() < '1' || digits.front() > '9') return std::nullopt;
  int value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc()) return std::nullopt;
  digits.remove_prefix(static_cast<std::size_t>(end - digits.data()));
  return value;
}

// The cluster suffix's values (cluster_m, cluster): ".cN" (1 x N) or ".cMxN" with M > 1,
// positive integers without leading zeros (validate decides which shapes a kernel
// supports); nothing if `suffix` is not of that form.
std::optional<std::pair<int, int>> parse_cluster_suffix(std::string_view suffix) {
  if (!suffix.starts_with(kClusterPrefix)) return std::nullopt;
  std::string_view digits = suffix.substr(kClusterPrefix.size());
  const std::optional<int> first = take_count(digits);
  if (!first) return std::nullopt;
  if (digits.empty()) return std::pair{1, *first};
  if (digits.front() != 'x' || *first == 1) return std::nullopt;   // ".c1xN" is spelled ".cN"
  digits.remove_prefix(1);
  const std::optional<int> second = take_count(digits);
  if (!second || !digits.empty()) return std::nullopt;
  return std::pair{*first, *second};
}
}  // namespace

std::string TileConfig::text() const {
  return fmt::format("{}x{}x{}.s{}.w{}x{}{}{}", tile_m, tile_n, tile_k, stages, warps_m, warps_n,
                     cluster_m != 1  ? fmt::format("{}{}x{}", kClusterPrefix, cluster_m, cluster)
                     : cluster != 1  ? fmt::format("{}{}", kClusterPrefix, cluster)
                                     : std::string(),
                     pingpong ? kPingpongSuffix : std::string_view());
}

TileConfig parse_tile_config(std::string_view text) {
  const auto malformed = [&] {
    return SpecError("tile", std::string(text),
                     "MxNxK.sS.wWMxWN[.cC|.cCMxCN][.pingpong], for example 128x128x32.s4.w2x2, "
                     "128x128x64.s5.w8x1.pingpong, 128x256x64.s3.w8x1.c2 or 128x256x64.s4.w8x1.c2x1");
  };
  TileConfig c;
  std::string_view rest = text;
  if (rest.ends_with(kPingpongSuffix)) {
    c.pingpong = true;
    rest.remove_suffix(kPingpongSuffix.size());
  }
  const std::string s(rest);
  int consumed = -1;
  const int n = std::sscanf(s.c_str(), "%dx%dx%d.s%d.w%dx%d%n", &c.tile_m, &c.tile_n, &c.tile_k, &c.stages,
                            &c.warps_m, &c.warps_n, &consumed);
  if (n != 6 || consumed < 0) throw malformed();
  // What follows the warp grid is the cluster suffix or nothing.
  const std::string_view suffix = rest.substr(static_cast<std::size_t>(consumed));
  if (!suffix.empty()) {
    const std::optional<std::pair<int, int>> cluster = parse_cluster_suffix(suffix);
    if (!cluster) throw malformed();
    std::tie(c.cluster_m, c.cluster) = *cluster;
  }
  return c;
}

}  // namespace moejit
