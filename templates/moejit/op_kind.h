// The three block-sparse products of MegaBlocks (C = op(A) x op(B), fp32 accumulation).
// Shared by the host compiler (compiler/kernel_spec.hpp) and the device templates, so the
// generated code and the spec cannot disagree on what an op is. Plain C++: no CUDA headers.
#pragma once

namespace moejit {

enum class OpKind {
  sdd,   // sparse C = dense A x dense B, computed only on C's nonzero blocks
  dsd,   // dense C  = sparse A x dense B
  dds,   // dense C  = dense A x sparse B
};

}  // namespace moejit
