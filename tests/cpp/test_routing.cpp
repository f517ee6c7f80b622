// Routing kernel specs (compiler/routing_spec.hpp) and the routing plan's layout
// (compiler/routing_layout.hpp): canonical text, validation, code generation, launch
// geometry and the buffer sections; the NVRTC compiles of every routing kernel are in the
// nvrtc suite.
#include <string>

#include <doctest/doctest.h>

#include "compiler/codegen.hpp"
#include "compiler/compiled_kernel.hpp"
#include "compiler/kernel_compiler.hpp"
#include "compiler/nvrtc_library.hpp"
#include "compiler/routing_layout.hpp"
#include "compiler/routing_spec.hpp"
#include "compiler/template_library.hpp"
#include "compiler/validate.hpp"
#include "test_support.hpp"

using namespace moejit;

namespace {

std::vector<KernelSpec> routing_specs(const Target& target) {
  return {
      routing_spec(OpKind::expert_histogram, target, 128),
      routing_spec(OpKind::expert_bins, target, 128, 0, 768, 128),
      routing_spec(OpKind::expert_slots, target, 1024),
      routing_spec(OpKind::padded_gather, target, 0, 8, 2048, 0, DType::bf16),
      routing_spec(OpKind::weighted_scatter, target, 0, 2, 4096, 0, DType::fp16),
      routing_spec(OpKind::weighted_scatter_grad, target, 0, 1, 136, 0, DType::bf16),
      routing_spec(OpKind::expert_activation, target, 0, 0, 0, 128, DType::bf16, Activation::silu, true),
      routing_spec(OpKind::expert_activation_grad, target, 0, 0, 0, 64, DType::fp16, Activation::gelu_exact, false),
  };
}

}  // namespace

TEST_CASE("a routing spec's text holds only the fields its op uses and parses back") {
  const KernelSpec gather = routing_spec(OpKind::padded_gather, test::sm_90a(), 64, 2, 4096, 128, DType::bf16);
  CHECK(gather.text() == "op=padded_gather dtype=bf16 topk=2 n=4096 target=sm_90a");
  CHECK(gather.experts == 0);        // unused fields are normalised away
  CHECK(gather.block_size == 0);
  CHECK(gather.short_name() == "padded_gather_bf16_topk2_n4096");
  const KernelSpec bins = routing_spec(OpKind::expert_bins, test::sm_90a(), 8, 2, 14336, 128, DType::fp16);
  CHECK(bins.text() == "op=expert_bins block=128 experts=8 n=14336 target=sm_90a");
  const KernelSpec act = routing_spec(OpKind::expert_activation_grad, test::sm_90a(), 8, 2, 64, 128, DType::bf16,
                                      Activation::silu, true);
  CHECK(act.text() == "op=expert_activation_grad dtype=bf16 block=128 act=silu glu=1 target=sm_90a");
  CHECK(act.short_name() == "expert_activation_grad_bf16_b128_silu_glu");
  for (const KernelSpec& s : routing_specs(test::sm_90a())) {
    CHECK(parse_kernel_spec(s.text()) == s);
    CHECK(s.problem_text() == s.text());
  }
}

TEST_CASE("routing specs are validated field by field") {
  CHECK(test::spec_error_of([] { validate(routing_spec(OpKind::expert_slots, test::sm_90a(), 1025)); }).field ==
        "experts");
  CHECK(test::spec_error_of([] {
          validate(routing_spec(OpKind::weighted_scatter, test::sm_90a(), 0, 33, 64, 0));
        }).field == "topk");
  CHECK(test::spec_error_of([] {
          validate(routing_spec(OpKind::padded_gather, test::sm_90a(), 0, 2, 12, 0));
        }).field == "n");
  CHECK(test::spec_error_of([] {
          validate(routing_spec(OpKind::expert_bins, test::sm_90a(), 8, 0, 200, 128));
        }).field == "n");
  CHECK(test::spec_error_of([] { parse_kernel_spec("op=expert_histogram experts=8 n=4 target=sm_90a"); }).field ==
        "spec");
}

TEST_CASE("routing source instantiates the op's template with the spec's constants") {
  const GeneratedSource src =
      generate_source(routing_spec(OpKind::expert_bins, test::sm_90a(), 128, 0, 768, 128));
  CHECK(src.template_header == "moejit/routing.cuh");
  CHECK(src.name_expression == "moejit::expert_bins<128, 128, 768LL>");
  CHECK(src.source.find("template __global__ void moejit::expert_bins<128, 128, 768LL>(const moejit::RoutingParams);") !=
        std::string::npos);
  const GeneratedSource scatter =
      generate_source(routing_spec(OpKind::weighted_scatter, test::sm_90a(), 0, 8, 2048, 0, DType::fp16));
  CHECK(scatter.template_header == "moejit/permutation.cuh");
  CHECK(scatter.name_expression == "moejit::weighted_scatter<moejit::fp16_t, 8, 2048LL>");
}

TEST_CASE("routing launch geometry follows the chunk, row and token counts") {
  const RoutingShape shape{10006, 5003, 1152};
  const auto grid = [&](OpKind op) { return routing_launch_geometry(routing_spec(op, test::sm_90a(), 8, 2, 64, 64), shape); };
  CHECK(grid(OpKind::expert_histogram).grid_x == 3);   // 4096 assignments per chunk
  CHECK(grid(OpKind::expert_slots).grid_x == 3);
  CHECK(grid(OpKind::expert_bins).grid_x == 1);
  CHECK(grid(OpKind::padded_gather).grid_x == 144);     // eight rows per thread block
  CHECK(grid(OpKind::weighted_scatter_grad).grid_x == 144);
  CHECK(grid(OpKind::weighted_scatter).grid_x == 626);  // eight tokens per thread block
  CHECK(grid(OpKind::expert_bins).threads == 1024);
  RoutingShape blocks;
  blocks.blocks = 10;   // 10 blocks of 64 x 64: 5120 16-byte chunks, 256 per thread block
  CHECK(routing_launch_geometry(routing_spec(OpKind::expert_activation, test::sm_90a(), 0, 0, 0, 64), blocks).grid_x ==
        20);
  CHECK(routing_launch_geometry(routing_spec(OpKind::expert_histogram, test::sm_90a(), 8), RoutingShape{}).grid_x == 0);
  // expert_slots also fills the topology's block entries, which exist with no assignment.
  CHECK(routing_launch_geometry(routing_spec(OpKind::expert_slots, test::sm_90a(), 8), RoutingShape{}).grid_x == 1);
  // 128k tokens x top-8: the slots and the block entries spread over 256 thread blocks.
  CHECK(routing_launch_geometry(routing_spec(OpKind::expert_slots, test::sm_90a(), 128), RoutingShape{131072 * 8})
            .grid_x == 256);
}

TEST_CASE("the routing plan's sections are contiguous and sized for the worst routing") {
  const RoutingLayout l = routing_layout(16384 * 8, 128, 128, 768);
  CHECK(l.max_block_rows == (131072 + 128 * 127) / 128);
  CHECK(l.rows == l.max_block_rows * 128);
  CHECK(l.max_nnz == l.max_block_rows * 6);
  CHECK(l.block_cols == 768);
  CHECK(l.chunks == 32);
  CHECK(l.live_nnz == 0);
  CHECK(l.expert_counts == 1);
  CHECK(l.bins == 1 + 128);
  CHECK(l.offsets == l.bins + 129);
  CHECK(l.live_rows == l.block_offsets_t + l.max_nnz);
  CHECK(l.slots == l.live_rows + l.max_block_rows);
  CHECK(l.chunk_counts + l.chunks * 128 == l.total);
  int plan_base = 0;
  const RoutingParams p = routing_params(l, &plan_base, nullptr);
  CHECK(p.row_assignment == &plan_base + l.row_assignment);
  CHECK(p.live_rows == &plan_base + l.live_rows);
  CHECK(p.max_block_rows == l.max_block_rows);
  CHECK(p.block == 128);
  CHECK(p.ffn_blocks == 6);
  CHECK(test::spec_error_of([] { routing_layout(10, 4, 128, 100); }).field == "ffn_hidden_size");
  CHECK(test::spec_error_of([] { routing_layout(-1, 4, 128, 128); }).field == "assignments");
}

TEST_SUITE("nvrtc") {
TEST_CASE("every routing kernel compiles for sm_90a and sm_80 without spills") {
  const NvrtcLibrary nvrtc;
  const TemplateLibrary templates(MOEJIT_TEST_TEMPLATES_DIR);
  const KernelCompiler compiler(nvrtc, templates);
  for (const Target& target : {test::sm_90a(), test::sm_80()}) {
    for (const KernelSpec& spec : routing_specs(target)) {
      CAPTURE(spec.text());
      const CompiledKernel k = compiler.compile(spec);
      CHECK(!k.cubin.empty());
      CHECK(k.resources.spill_store_bytes == 0);
      CHECK(k.resources.stack_bytes == 0);
      CHECK(k.threads == routing_threads(spec.op));
      CHECK(k.dynamic_shared_bytes == 0);
    }
  }
}

TEST_CASE("expert_bins compiles for every width of its chunk scan, expert_slots for one expert") {
  // expert_bins scans each expert's chunks with 32, 16, 8, 4, 2 or 1 lanes as the experts
  // grow (lanes_per_expert); 33 and 100 experts leave a partial warp of idle lanes. The
  // routing_specs above hold 128 experts (8 lanes) and expert_slots at 1024.
  const NvrtcLibrary nvrtc;
  const TemplateLibrary templates(MOEJIT_TEST_TEMPLATES_DIR);
  const KernelCompiler compiler(nvrtc, templates);
  std::vector<KernelSpec> specs{routing_spec(OpKind::expert_slots, test::sm_90a(), 1)};
  for (int experts : {8, 33, 100, 256, 300, 1024}) {
    specs.push_back(routing_spec(OpKind::expert_bins, test::sm_90a(), experts, 0, 14336, 128));
  }
  for (const KernelSpec& spec : specs) {
    CAPTURE(spec.text());
    const CompiledKernel k = compiler.compile(spec);
    CHECK(!k.cubin.empty());
    CHECK(k.resources.spill_store_bytes == 0);
    CHECK(k.resources.stack_bytes == 0);
  }
}
}  // TEST_SUITE
