#include "compiler/routing_spec.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

#include "compiler/spec_error.hpp"
#include "moejit/routing_params.h"

namespace moejit {
namespace {

// The template constants of routing.cuh / permutation.cuh; the host must agree with them.
constexpr int kHistogramThreads = 512;
constexpr int kSlotsThreads = 256;
constexpr int kBinsThreads = 1024;
constexpr int kPermutationThreads = 256;
constexpr int kPermutationWarps = kPermutationThreads / 32;
constexpr int kActivationThreads = 256;

// expert_bins scans the experts with one thread each.
constexpr int kMaxExperts = kBinsThreads;
// weighted_scatter keeps a pointer and a weight per choice in registers.
constexpr int kMaxTopK = 32;

struct Fields {
  bool dtype = false;
  bool block = false;
  bool experts = false;
  bool top_k = false;
  bool n = false;
  bool activation = false;   // act and glu
};

Fields fields_of(OpKind op) {
  switch (op) {
    case OpKind::expert_histogram:
    case OpKind::expert_slots: return {false, false, true, false, false, false};
    case OpKind::expert_bins: return {false, true, true, false, true, false};
    case OpKind::padded_gather:
    case OpKind::weighted_scatter:
    case OpKind::weighted_scatter_grad: return {true, false, false, true, true, false};
    case OpKind::expert_activation:
    case OpKind::expert_activation_grad: return {true, true, false, false, false, true};
    default: return {};
  }
}

const char* template_header(OpKind op) {
  switch (op) {
    case OpKind::expert_histogram:
    case OpKind::expert_bins:
    case OpKind::expert_slots: return "moejit/routing.cuh";
    case OpKind::expert_activation:
    case OpKind::expert_activation_grad: return "moejit/activation.cuh";
    default: return "moejit/permutation.cuh";
  }
}

std::int64_t parse_positive(const std::string& field, const std::string& v) {
  std::int64_t out = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || end != v.data() + v.size() || out <= 0) throw SpecError(field, v, "a positive integer");
  return out;
}

void require(bool ok, const char* field, auto value, const std::string& expected) {
  if (!ok) throw SpecError(field, fmt::format("{}", value), expected);
}

}  // namespace

bool is_routing(OpKind op) { return op != OpKind::sdd && op != OpKind::dsd && op != OpKind::dds; }

std::string_view activation_name(Activation activation) {
  switch (activation) {
    case Activation::gelu: return "gelu";
    case Activation::gelu_exact: return "gelu_exact";
    case Activation::silu: return "silu";
    case Activation::relu: return "relu";
  }
  return "?";
}

Activation parse_activation(std::string_view text) {
  for (Activation a : {Activation::gelu, Activation::gelu_exact, Activation::silu, Activation::relu}) {
    if (text == activation_name(a)) return a;
  }
  throw SpecError("act", std::string(text), "gelu, gelu_exact, silu or relu");
}

KernelSpec routing_spec(OpKind op, const Target& target, int experts, int top_k, std::int64_t n, int block_size,
                        DType dtype, Activation activation, bool glu) {
  const Fields f = fields_of(op);
  KernelSpec s;
  s.op = op;
  s.target = target;
  s.m = s.k = 0;
  s.experts = f.experts ? experts : 0;
  s.top_k = f.top_k ? top_k : 0;
  s.n = f.n ? n : 0;
  s.block_size = f.block ? block_size : 0;
  s.dtype = f.dtype ? dtype : DType::bf16;
  s.activation = f.activation ? activation : Activation::gelu;
  s.glu = f.activation && glu;
  return s;
}

std::string routing_text(const KernelSpec& s) {
  const Fields f = fields_of(s.op);
  std::string out = fmt::format("op={}", op_name(s.op));
  if (f.dtype) out += fmt::format(" dtype={}", dtype_name(s.dtype));
  if (f.block) out += fmt::format(" block={}", s.block_size);
  if (f.experts) out += fmt::format(" experts={}", s.experts);
  if (f.top_k) out += fmt::format(" topk={}", s.top_k);
  if (f.n) out += fmt::format(" n={}", s.n);
  if (f.activation) out += fmt::format(" act={} glu={}", activation_name(s.activation), s.glu ? 1 : 0);
  return out + fmt::format(" target={}", s.target.text());
}

std::string routing_short_name(const KernelSpec& s) {
  const Fields f = fields_of(s.op);
  std::string out(op_name(s.op));
  if (f.dtype) out += fmt::format("_{}", dtype_name(s.dtype));
  if (f.block) out += fmt::format("_b{}", s.block_size);
  if (f.experts) out += fmt::format("_e{}", s.experts);
  if (f.top_k) out += fmt::format("_topk{}", s.top_k);
  if (f.n) out += fmt::format("_n{}", s.n);
  if (f.activation) out += fmt::format("_{}{}", activation_name(s.activation), s.glu ? "_glu" : "");
  return out;
}

KernelSpec parse_routing_spec(OpKind op, const std::map<std::string, std::string>& kv) {
  const Fields f = fields_of(op);
  const std::pair<const char*, bool> allowed[] = {
      {"op", true},       {"dtype", f.dtype}, {"block", f.block},       {"experts", f.experts}, {"topk", f.top_k},
      {"n", f.n},         {"act", f.activation}, {"glu", f.activation}, {"target", true}};
  std::string expected;
  for (auto [name, used] : allowed) {
    if (used) expected += (expected.empty() ? "" : ", ") + std::string(name);
  }
  for (const auto& [key, value] : kv) {
    bool ok = false;
    for (auto [name, used] : allowed) ok = ok || (used && key == name);
    if (!ok) throw SpecError("spec", key, fmt::format("the fields of op={}: {}", op_name(op), expected));
  }
  for (auto [name, used] : allowed) {
    if (used && !kv.contains(name)) throw SpecError(name, "missing", fmt::format("every field of op={}", op_name(op)));
  }
  const auto get = [&](const char* name) { return kv.at(name); };
  bool glu = false;
  if (f.activation) {
    if (get("glu") != "0" && get("glu") != "1") throw SpecError("glu", get("glu"), "0 or 1");
    glu = get("glu") == "1";
  }
  return routing_spec(op, parse_target(get("target")),
                      f.experts ? static_cast<int>(parse_positive("experts", get("experts"))) : 0,
                      f.top_k ? static_cast<int>(parse_positive("topk", get("topk"))) : 0,
                      f.n ? parse_positive("n", get("n")) : 0,
                      f.block ? static_cast<int>(parse_positive("block", get("block"))) : 0,
                      f.dtype ? parse_dtype(get("dtype")) : DType::bf16,
                      f.activation ? parse_activation(get("act")) : Activation::gelu, glu);
}

void validate_routing(const KernelSpec& s) {
  const Fields f = fields_of(s.op);
  require(s.target.compute_capability() >= 80, "target", s.target.text(), "sm_80 or newer");
  if (f.experts) {
    require(s.experts >= 1 && s.experts <= kMaxExperts, "experts", s.experts,
            fmt::format("1 to {} (expert_bins scans the experts with one thread each)", kMaxExperts));
  }
  if (f.top_k) {
    require(s.top_k >= 1 && s.top_k <= kMaxTopK, "topk", s.top_k, fmt::format("1 to {}", kMaxTopK));
  }
  if (f.block) require(s.block_size == 64 || s.block_size == 128, "block", s.block_size, "64 or 128");
  if (f.n) {
    require(s.n > 0, "n", s.n, "a positive extent");
    if (s.op == OpKind::expert_bins) {
      require(s.n % s.block_size == 0, "n", s.n,
              fmt::format("a multiple of block ({}): the ffn size is cut into column blocks", s.block_size));
    } else {
      require(s.n % 8 == 0, "n", s.n, "a multiple of 8 (rows move in 16-byte vectors)");
    }
  }
}

GeneratedSource generate_routing_source(const KernelSpec& s) {
  validate_routing(s);
  std::string arguments;
  switch (s.op) {
    case OpKind::expert_histogram:
    case OpKind::expert_slots: arguments = fmt::format("{}", s.experts); break;
    case OpKind::expert_bins: arguments = fmt::format("{}, {}, {}LL", s.experts, s.block_size, s.n); break;
    case OpKind::expert_activation:
    case OpKind::expert_activation_grad:
      arguments = fmt::format("{}, moejit::Activation::{}, {}, {}", dtype_template_type(s.dtype),
                              activation_name(s.activation), s.glu, s.block_size);
      break;
    default: arguments = fmt::format("{}, {}, {}LL", dtype_template_type(s.dtype), s.top_k, s.n); break;
  }
  GeneratedSource out;
  out.file_name = routing_short_name(s) + ".cu";
  out.template_header = template_header(s.op);
  out.name_expression = fmt::format("moejit::{}<{}>", op_name(s.op), arguments);
  out.source = fmt::format(
      "// Generated by moejit {version}. Do not edit: regenerate from the spec.\n"
      "// spec: {spec}\n"
      "#include \"{header}\"\n"
      "\n"
      "template __global__ void {kernel}(const moejit::{params});\n",
      fmt::arg("version", MOEJIT_VERSION), fmt::arg("spec", routing_text(s)), fmt::arg("header", out.template_header),
      fmt::arg("kernel", out.name_expression),
      fmt::arg("params", fields_of(s.op).activation ? "ActivationParams" : "RoutingParams"));
  return out;
}

int routing_threads(OpKind op) {
  switch (op) {
    case OpKind::expert_histogram: return kHistogramThreads;
    case OpKind::expert_bins: return kBinsThreads;
    case OpKind::expert_slots: return kSlotsThreads;
    case OpKind::expert_activation:
    case OpKind::expert_activation_grad: return kActivationThreads;
    default: return kPermutationThreads;
  }
}

LaunchGeometry routing_launch_geometry(const KernelSpec& s, const RoutingShape& shape) {
  require(shape.assignments >= 0 && shape.assignments <= 0x7fffffff, "assignments", shape.assignments,
          "0 to 2^31-1 (tokens * top_k)");
  require(shape.tokens >= 0, "tokens", shape.tokens, "a non-negative count");
  require(shape.rows >= 0 && shape.rows <= 0x7fffffff, "rows", shape.rows, "0 to 2^31-1");
  const auto ceil_div = [](std::int64_t a, std::int64_t b) { return (a + b - 1) / b; };
  std::int64_t grid = 0;
  switch (s.op) {
    case OpKind::expert_histogram: grid = ceil_div(shape.assignments, kRoutingChunk); break;
    // Also fills the topology's block entries, which exist with no assignment at all.
    case OpKind::expert_slots: grid = std::max<std::int64_t>(1, ceil_div(shape.assignments, kRoutingChunk)); break;
    case OpKind::expert_bins: grid = 1; break;
    case OpKind::padded_gather:
    case OpKind::weighted_scatter_grad: grid = ceil_div(shape.rows, kPermutationWarps); break;
    case OpKind::weighted_scatter: grid = ceil_div(shape.tokens, kPermutationWarps); break;
    case OpKind::expert_activation:
    case OpKind::expert_activation_grad: {
      // One thread per 16 bytes (eight elements) of block data.
      require(shape.blocks >= 0, "blocks", shape.blocks, "a non-negative block count");
      const std::int64_t chunks = shape.blocks * s.block_size * s.block_size / 8;
      grid = ceil_div(chunks, kActivationThreads);
      break;
    }
    default: throw SpecError("op", std::string(op_name(s.op)), "a routing op");
  }
  return LaunchGeometry{grid, routing_threads(s.op), 0};
}

}  // namespace moejit
