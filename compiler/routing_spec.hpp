// Layer kernel specs: the routing bookkeeping, permutation and activation kernels of a dMoE
// layer (every op that is not a block-sparse product) as KernelSpecs, so they share the
// products' code generation, NVRTC driver, kernel database, `moejit show` and dumps. Such a
// spec uses only the fields its op needs; the others keep their defaults and are left out
// of its text:
//
//   expert_histogram        experts                    "op=expert_histogram experts=8 target=sm_90a"
//   expert_slots            experts
//   expert_bins             experts, block, n (= ffn)  the topology's column blocks per expert
//   padded_gather           dtype, topk, n (= hidden)  the width of the rows it moves
//   weighted_scatter        dtype, topk, n
//   weighted_scatter_grad   dtype, topk, n
//   expert_activation       dtype, block, act, glu     "... act=silu glu=1 ..."
//   expert_activation_grad  dtype, block, act, glu
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "compiler/codegen.hpp"
#include "compiler/kernel_spec.hpp"
#include "compiler/launch_geometry.hpp"

namespace moejit {

bool is_routing(OpKind op);

// A routing spec with every field the op does not use at its default.
KernelSpec routing_spec(OpKind op, const Target& target, int experts, int top_k = 0, std::int64_t n = 0,
                        int block_size = 0, DType dtype = DType::bf16, Activation activation = Activation::gelu,
                        bool glu = false);

std::string_view activation_name(Activation activation);
Activation parse_activation(std::string_view text);   // throws SpecError

std::string routing_text(const KernelSpec& spec);        // canonical text
std::string routing_short_name(const KernelSpec& spec);  // "padded_gather_bf16_topk2_n4096"
// From parsed key=value fields (op already known to be a routing op); throws SpecError.
KernelSpec parse_routing_spec(OpKind op, const std::map<std::string, std::string>& fields);
void validate_routing(const KernelSpec& spec);
GeneratedSource generate_routing_source(const KernelSpec& spec);

// The run-time sizes a routing launch depends on.
struct RoutingShape {
  std::int64_t assignments = 0;   // tokens * top_k
  std::int64_t tokens = 0;
  std::int64_t rows = 0;          // expert-sorted rows the buffers hold
  std::int64_t blocks = 0;        // activation ops: blocks of block data (the capacity)
};
int routing_threads(OpKind op);
LaunchGeometry routing_launch_geometry(const KernelSpec& spec, const RoutingShape& shape);

}  // namespace moejit
