#include "compiler/routing_layout.hpp"

#include <limits>

#include <fmt/format.h>

#include "compiler/spec_error.hpp"

namespace moejit {
namespace {

void require(bool ok, const char* field, std::int64_t value, const std::string& expected) {
  if (!ok) throw SpecError(field, std::to_string(value), expected);
}

}  // namespace

RoutingLayout routing_layout(std::int64_t assignments, int experts, int block, std::int64_t ffn) {
  constexpr std::int64_t kInt32Max = std::numeric_limits<int>::max();
  require(block == 64 || block == 128, "block_size", block, "64 or 128");
  require(experts >= 1, "num_experts", experts, "at least 1");
  require(ffn > 0 && ffn % block == 0, "ffn_hidden_size", ffn, fmt::format("a positive multiple of block_size ({})", block));
  require(assignments >= 0 && assignments <= kInt32Max, "assignments", assignments, "0 to 2^31-1 (tokens * top_k)");
  RoutingLayout l;
  l.assignments = assignments;
  l.experts = experts;
  l.block = block;
  l.ffn = ffn;
  l.max_block_rows = (assignments + static_cast<std::int64_t>(experts) * (block - 1)) / block;
  l.rows = l.max_block_rows * block;
  l.block_cols = static_cast<std::int64_t>(experts) * (ffn / block);
  l.max_nnz = l.max_block_rows * (ffn / block);
  l.chunks = (assignments + kRoutingChunk - 1) / kRoutingChunk;
  std::int64_t at = 0;
  const auto section = [&](std::int64_t size) {
    const std::int64_t start = at;
    at += size;
    return start;
  };
  l.live_nnz = section(1);
  l.expert_counts = section(experts);
  l.bins = section(experts + 1);
  l.offsets = section(l.max_block_rows + 1);
  l.offsets_t = section(l.block_cols + 1);
  l.row_indices = section(l.max_nnz);
  l.column_indices = section(l.max_nnz);
  l.column_indices_t = section(l.max_nnz);
  l.block_offsets_t = section(l.max_nnz);
  l.live_rows = section(l.max_block_rows);
  l.slots = section(assignments);
  l.row_assignment = section(l.rows);
  l.chunk_counts = section(l.chunks * experts);
  l.total = at;
  require(l.rows <= kInt32Max && l.max_nnz <= kInt32Max && l.total <= kInt32Max, "assignments", assignments,
          "few enough that the routing plan's int32 indices do not overflow");
  return l;
}

RoutingParams routing_params(const RoutingLayout& l, int* plan, const long long* expert_indices) {
  RoutingParams p{};
  p.expert_indices = expert_indices;
  p.assignments = static_cast<int>(l.assignments);
  p.max_block_rows = static_cast<int>(l.max_block_rows);
  p.block = l.block;
  p.ffn_blocks = static_cast<int>(l.ffn / l.block);
  p.chunk_counts = plan + l.chunk_counts;
  p.expert_counts = plan + l.expert_counts;
  p.bins = plan + l.bins;
  p.slots = plan + l.slots;
  p.row_assignment = plan + l.row_assignment;
  p.live_nnz = plan + l.live_nnz;
  p.offsets = plan + l.offsets;
  p.offsets_t = plan + l.offsets_t;
  p.row_indices = plan + l.row_indices;
  p.column_indices = plan + l.column_indices;
  p.column_indices_t = plan + l.column_indices_t;
  p.block_offsets_t = plan + l.block_offsets_t;
  p.live_rows = plan + l.live_rows;
  p.rows = static_cast<int>(l.rows);
  return p;
}

}  // namespace moejit
