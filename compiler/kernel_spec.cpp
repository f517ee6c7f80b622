#include "compiler/kernel_spec.hpp"

#include <charconv>
#include <map>
#include <string>

#include <fmt/format.h>

#include "compiler/hash.hpp"
#include "compiler/routing_spec.hpp"
#include "compiler/spec_error.hpp"

namespace moejit {

std::string_view op_name(OpKind op) {
  switch (op) {
    case OpKind::sdd: return "sdd";
    case OpKind::dsd: return "dsd";
    case OpKind::dds: return "dds";
    case OpKind::expert_histogram: return "expert_histogram";
    case OpKind::expert_bins: return "expert_bins";
    case OpKind::expert_slots: return "expert_slots";
    case OpKind::padded_gather: return "padded_gather";
    case OpKind::weighted_scatter: return "weighted_scatter";
    case OpKind::weighted_scatter_grad: return "weighted_scatter_grad";
    case OpKind::expert_activation: return "expert_activation";
    case OpKind::expert_activation_grad: return "expert_activation_grad";
  }
  return "?";
}

OpKind parse_op(std::string_view text) {
  if (text == "sdd") return OpKind::sdd;
  if (text == "dsd") return OpKind::dsd;
  if (text == "dds") return OpKind::dds;
  for (OpKind op : {OpKind::expert_histogram, OpKind::expert_bins, OpKind::expert_slots, OpKind::padded_gather,
                    OpKind::weighted_scatter, OpKind::weighted_scatter_grad, OpKind::expert_activation,
                    OpKind::expert_activation_grad}) {
    if (text == op_name(op)) return op;
  }
  throw SpecError("op", std::string(text),
                  "sdd, dsd or dds, or a layer op (expert_histogram, expert_bins, expert_slots, padded_gather, "
                  "weighted_scatter, weighted_scatter_grad, expert_activation, expert_activation_grad)");
}

std::string_view family_name(KernelFamily family) {
  switch (family) {
    case KernelFamily::mma: return "mma";
    case KernelFamily::wgmma: return "wgmma";
  }
  return "?";
}

KernelFamily parse_family(std::string_view text) {
  if (text == "mma") return KernelFamily::mma;
  if (text == "wgmma") return KernelFamily::wgmma;
  throw SpecError("family", std::string(text), "mma or wgmma");
}

char dynamic_extent(OpKind op, bool trans_a, bool trans_b) {
  switch (op) {
    case OpKind::sdd: return 'm';                    // C is sparse: its rows
    case OpKind::dsd: return trans_a ? 'k' : 'm';    // A is sparse, stored M x K or K x M
    case OpKind::dds: return trans_b ? 'n' : 'k';    // B is sparse, stored K x N or N x K
    default: return 0;                               // routing ops: no product extents
  }
}

namespace {

std::string extent_text(std::int64_t v) { return v == kDynamic ? "dyn" : std::to_string(v); }

std::int64_t parse_extent(const std::string& field, const std::string& v) {
  if (v == "dyn") return kDynamic;
  std::int64_t out = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || end != v.data() + v.size() || out <= 0) {
    throw SpecError(field, v, "a positive integer or dyn");
  }
  return out;
}

int parse_int(const std::string& field, const std::string& v) {
  int out = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  if (ec != std::errc() || end != v.data() + v.size()) throw SpecError(field, v, "an integer");
  return out;
}

}  // namespace

std::string KernelSpec::text() const {
  if (is_routing(op)) return routing_text(*this);
  return fmt::format("op={} trans={}{} dtype={} block={} m={} n={} k={} tile={} family={} target={}",
                     op_name(op), trans_a ? 't' : 'n', trans_b ? 't' : 'n', dtype_name(dtype), block_size,
                     extent_text(m), extent_text(n), extent_text(k), tile.text(), family_name(family),
                     target.text());
}

std::string KernelSpec::problem_text() const {
  if (is_routing(op)) return routing_text(*this);   // nothing to tune
  return fmt::format("op={} trans={}{} dtype={} block={} m={} n={} k={} target={}", op_name(op), trans_a ? 't' : 'n',
                     trans_b ? 't' : 'n', dtype_name(dtype), block_size, extent_text(m), extent_text(n),
                     extent_text(k), target.text());
}

int KernelSpec::threads() const {
  if (is_routing(op)) return routing_threads(op);
  return family == KernelFamily::wgmma ? wgmma_threads(tile) : tile.threads();
}

int KernelSpec::shared_bytes() const {
  if (is_routing(op)) return 0;   // static shared memory only
  return family == KernelFamily::wgmma ? wgmma_shared_bytes(tile, dtype) : tile.shared_bytes(dtype);
}

std::uint64_t KernelSpec::hash() const { return fnv1a64(text()); }

std::string KernelSpec::hash_hex() const { return hex64(hash()); }

std::string KernelSpec::short_name() const {
  if (is_routing(op)) return routing_short_name(*this);
  std::string name = fmt::format("{}_{}{}_{}_b{}", op_name(op), trans_a ? 't' : 'n', trans_b ? 't' : 'n',
                                 dtype_name(dtype), block_size);
  if (m != kDynamic) name += fmt::format("_m{}", m);
  if (n != kDynamic) name += fmt::format("_n{}", n);
  if (k != kDynamic) name += fmt::format("_k{}", k);
  return name;
}

KernelSpec parse_kernel_spec(std::string_view text) {
  static constexpr const char* kFields[] = {"op", "trans", "dtype", "block", "m", "n",
                                             "k",  "tile",  "family", "target"};
  static constexpr const char* kRoutingFields[] = {"experts", "topk", "act", "glu"};
  std::map<std::string, std::string> kv;
  std::size_t pos = 0;
  const std::string s(text);
  while (pos < s.size()) {
    while (pos < s.size() && s[pos] == ' ') ++pos;
    if (pos >= s.size()) break;
    std::size_t end = s.find(' ', pos);
    if (end == std::string::npos) end = s.size();
    const std::string token = s.substr(pos, end - pos);
    const std::size_t eq = token.find('=');
    if (eq == std::string::npos) throw SpecError("spec", token, "key=value pairs");
    const std::string key = token.substr(0, eq);
    bool known = false;
    for (const char* f : kFields) known = known || key == f;
    for (const char* f : kRoutingFields) known = known || key == f;
    if (!known) {
      throw SpecError("spec", key,
                      "one of op, trans, dtype, block, m, n, k, tile, family, target, experts, topk, act, glu");
    }
    if (!kv.emplace(key, token.substr(eq + 1)).second) throw SpecError(key, "given twice", "each field once");
    pos = end;
  }
  if (!kv.contains("op")) throw SpecError("op", "missing", "every field of the canonical spec text");
  if (const OpKind op = parse_op(kv["op"]); is_routing(op)) return parse_routing_spec(op, kv);
  for (const char* f : kRoutingFields) {
    if (kv.contains(f)) throw SpecError("spec", f, "the fields of a product: op, trans, dtype, block, m, n, k, tile, family, target");
  }
  for (const char* f : kFields) {
    if (!kv.contains(f)) throw SpecError(f, "missing", "every field of the canonical spec text");
  }
  KernelSpec spec;
  spec.op = parse_op(kv["op"]);
  const std::string& trans = kv["trans"];
  if (trans.size() != 2 || (trans[0] != 'n' && trans[0] != 't') || (trans[1] != 'n' && trans[1] != 't')) {
    throw SpecError("trans", trans, "two letters n|t for A and B, such as nt");
  }
  spec.trans_a = trans[0] == 't';
  spec.trans_b = trans[1] == 't';
  spec.dtype = parse_dtype(kv["dtype"]);
  spec.block_size = parse_int("block", kv["block"]);
  spec.m = parse_extent("m", kv["m"]);
  spec.n = parse_extent("n", kv["n"]);
  spec.k = parse_extent("k", kv["k"]);
  spec.tile = parse_tile_config(kv["tile"]);
  spec.family = parse_family(kv["family"]);
  spec.target = parse_target(kv["target"]);
  return spec;
}

}  // namespace moejit
