// Where the routing kernels' outputs live: one int32 buffer (the *routing plan*) holds the
// per-expert counts, the padded bins, every assignment's row, every row's assignment and
// the topology of the expert products, in sections at fixed offsets.
//
// Every size is an upper bound computed from the layer's shape and the number of
// assignments alone, never from the routing itself, so the host allocates without reading
// anything back from the GPU. Padding each expert to whole blocks adds at most block - 1
// rows per expert, hence
//   max_block_rows = floor((assignments + experts * (block - 1)) / block)
// and the products' nonzero blocks are at most max_block_rows * (ffn / block); the live
// counts are in the buffer (live_nnz, bins[experts], live_rows).
#pragma once

#include <cstdint>

#include "moejit/routing_params.h"

namespace moejit {

struct RoutingLayout {
  std::int64_t assignments = 0;   // tokens * top_k
  int experts = 0;
  int block = 0;
  std::int64_t ffn = 0;

  std::int64_t max_block_rows = 0;
  std::int64_t rows = 0;          // max_block_rows * block
  std::int64_t block_cols = 0;    // experts * ffn / block
  std::int64_t max_nnz = 0;       // max_block_rows * ffn / block
  std::int64_t chunks = 0;        // thread blocks of expert_histogram and expert_slots

  // Section offsets in int32 elements, in buffer order.
  std::int64_t live_nnz = 0;         // [1]
  std::int64_t expert_counts = 0;    // [experts]
  std::int64_t bins = 0;             // [experts + 1]
  std::int64_t offsets = 0;          // [max_block_rows + 1]
  std::int64_t offsets_t = 0;        // [block_cols + 1]
  std::int64_t row_indices = 0;      // [max_nnz]
  std::int64_t column_indices = 0;   // [max_nnz]
  std::int64_t column_indices_t = 0; // [max_nnz]
  std::int64_t block_offsets_t = 0;  // [max_nnz]
  std::int64_t live_rows = 0;        // [max_block_rows]
  std::int64_t slots = 0;            // [assignments]
  std::int64_t row_assignment = 0;   // [rows]
  std::int64_t chunk_counts = 0;     // [chunks * experts] scratch of the sort
  std::int64_t total = 0;            // int32 elements of the whole buffer
};

// Throws SpecError for sizes the kernels cannot take (naming the argument).
RoutingLayout routing_layout(std::int64_t assignments, int experts, int block, std::int64_t ffn);

// The bookkeeping pointers of RoutingParams for a plan buffer at `plan`; the permutation
// fields are left empty.
RoutingParams routing_params(const RoutingLayout& layout, int* plan, const long long* expert_indices);

}  // namespace moejit
