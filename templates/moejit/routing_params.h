// The one kernel parameter of the routing kernels: the bookkeeping that turns top-k expert
// choices into a block-sparse topology (routing.cuh) and the permutations between token
// order and expert-sorted, block-padded row order (permutation.cuh). Shared by the host
// (compiler/routing_layout.hpp sizes the buffers, runtime/ fills this struct) and the
// device templates. Plain C++: no CUDA headers.
//
// Vocabulary: an *assignment* is one (token, choice) pair, numbered token * top_k + choice
// like torch.topk's [tokens, top_k] output read row-major. A *row* is a row of the
// expert-sorted matrix: expert e owns rows bins[e] .. bins[e+1], its assignments first (in
// assignment order: the sort is stable) and then padding up to a multiple of the block size.
#pragma once

namespace moejit {

// Assignments one thread block of expert_histogram / expert_slots handles.
inline constexpr int kRoutingChunk = 4096;

struct RoutingParams {
  // --- bookkeeping ---------------------------------------------------------------------
  const long long* expert_indices;   // [assignments] expert of each assignment (int64, as topk gives)
  int assignments;                   // tokens * top_k
  int max_block_rows;                // block rows the buffers below are sized for (an upper bound)
  int block;                         // rows of a block
  int ffn_blocks;                    // ffn column blocks of one expert (ffn / block)
  int* chunk_counts;                 // [chunks][experts] histogram, then its exclusive prefix per expert
  int* expert_counts;                // [experts] assignments per expert
  int* bins;                         // [experts + 1] first row of each expert; bins[experts] = used rows
  int* slots;                        // [assignments] row of each assignment
  int* row_assignment;               // [max_block_rows * block] assignment of each row, -1 for padding
  // The topology of the expert products (see python/moejit/ops/topology.py for the fields), sized
  // for max_block_rows; entries past live_nnz are unused.
  int* live_nnz;                     // [1]
  int* offsets;                      // [max_block_rows + 1]
  int* offsets_t;                    // [experts * ffn / block + 1]
  int* row_indices;                  // [max_nnz]
  int* column_indices;               // [max_nnz]
  int* column_indices_t;             // [max_nnz]
  int* block_offsets_t;              // [max_nnz]
  int* live_rows;                    // [max_block_rows] assignments in each block row (0 if unused)
  // --- permutation ---------------------------------------------------------------------
  const void* input;                 // gather: tokens [tokens, n]; scatter: rows; scatter_grad: d(tokens)
  void* output;                      // gather: rows [rows, n]; scatter: tokens; scatter_grad: d(rows)
  const float* weights;              // [assignments] expert weights; nullptr: all 1 (scatter only)
  float* weight_grad;                // scatter_grad: [assignments] d(weights)
  const void* rows_forward;          // scatter_grad: the rows the forward scatter read
  int tokens;
  int rows;                          // max_block_rows * block
};

}  // namespace moejit
