// What a kernel computes: the three block-sparse products of MegaBlocks (C = op(A) x op(B),
// fp32 accumulation), and the routing kernels around them that sort tokens by expert,
// build the products' topology and permute rows (routing.cuh, permutation.cuh). Shared by the host compiler (compiler/kernel_spec.hpp) and the device templates, so the
// generated code and the spec cannot disagree on what an op is. Plain C++: no CUDA headers.
#pragma once

namespace moejit {

enum class OpKind {
  sdd,   // sparse C = dense A x dense B, computed only on C's nonzero blocks
  dsd,   // dense C  = sparse A x dense B
  dds,   // dense C  = dense A x sparse B
  // Routing (templates/moejit/routing.cuh): a stable counting sort of the top-k choices.
  expert_histogram,        // assignments per expert, per chunk of assignments
  expert_bins,             // counts, padded bins and the expert products' topology
  expert_slots,            // the expert-sorted row of every assignment
  // Permutation (templates/moejit/permutation.cuh).
  padded_gather,           // token rows -> expert-sorted, block-padded rows
  weighted_scatter,        // rows -> tokens, weighted sum over each token's top-k rows
  weighted_scatter_grad,   // the scatter's gradient for its rows and its weights
  // The expert MLP's activation on the first product's blocks (activation.cuh).
  expert_activation,       // act(h), or act(h) * gate with GLU
  expert_activation_grad,  // its gradient for h (and the gate)
};

}  // namespace moejit
