// The one kernel parameter of every block-sparse product kernel. Shared by the host
// (runtime/, which fills it) and the device templates (which read it), so the layout is
// defined once. Plain C++ with no CUDA headers: NVRTC compiles it without the toolkit.
#pragma once

namespace moejit {

struct BsrGemmParams {
  // Operands. A dense operand points at its element (0, 0); a sparse operand points at
  // its blocks, stored [nnz][block][block] row-major in the topology's row-major order.
  const void* a;
  const void* b;
  void* c;
  // Distance in elements between consecutive stored rows of each dense operand (for a
  // transposed view: between stored rows of the underlying matrix). Unused for sparse ones.
  long long lda;
  long long ldb;
  long long ldc;
  // The sparse operand's topology (int32, see python/moejit/ops/topology.py).
  const int* row_indices;        // [nnz] block row of each block, row-major order
  const int* column_indices;     // [nnz] block column of each block
  const int* offsets;            // [block_rows + 1] CSR offsets
  const int* column_indices_t;   // [nnz] block row of each block, column-major order
  const int* offsets_t;          // [block_cols + 1] CSC offsets
  const int* block_offsets_t;    // [nnz] row-major index of each column-major block
  int nnz;
  int block_rows;
  int block_cols;
  // Optional (nullptr: all nnz blocks are live). A device count of the blocks in use, for
  // topologies built on the GPU with room for the most blocks the routing can produce: the
  // host sizes the grid by nnz without waiting for the count, and sdd writes zeros to the
  // stored blocks past the live count instead of computing them. dsd and dds need no such
  // check: the builder gives the unused block rows and columns empty offset ranges. Every
  // stored block must appear once in block_offsets_t (moejit.route points the unused
  // column-major entries at their own index).
  const int* live_nnz;
  // Optional (nullptr: every row is in use). [block_rows] the rows in use of each block row,
  // a prefix of it: the rows after them are padding and must hold zeros in the sparse
  // operand, so a reduction over the sparse operand's rows may skip them. dsd with A
  // transposed (the MoE weight gradients, whose reduction runs over an expert's tokens)
  // does, in the wgmma kernels: the steps of each block column's last block past its rows
  // in use, which for moejit.route's topologies are all the padding there is.
  const int* live_rows;
};

}  // namespace moejit
