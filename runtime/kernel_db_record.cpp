#include "runtime/kernel_db_record.hpp"

#include <cstdint>
#include <string_view>

#include <fmt/format.h>

#include "compiler/hash.hpp"
#include "compiler/kernel_spec.hpp"

namespace moejit {
namespace {

class RecordDigest {
 public:
  RecordDigest& field(std::string_view name, std::string_view value) {
    h_ = fnv1a64(name, h_);
    h_ = fnv1a64(fmt::format("={}:", value.size()), h_);
    h_ = fnv1a64(value, h_);
    return *this;
  }
  RecordDigest& field(std::string_view name, std::int64_t value) { return field(name, std::to_string(value)); }
  std::string hex() const { return hex64(h_); }

 private:
  std::uint64_t h_ = fnv1a64("moejit-kernel-record-v1");
};

bool same_resources(const ResourceUsage& a, const ResourceUsage& b) {
  return a.registers == b.registers && a.static_shared_bytes == b.static_shared_bytes &&
         a.stack_bytes == b.stack_bytes && a.spill_store_bytes == b.spill_store_bytes &&
         a.spill_load_bytes == b.spill_load_bytes;
}

}  // namespace

std::string record_hash(const KernelKey& key, const std::string& tile, const CompiledKernel& k) {
  RecordDigest d;
  d.field("spec_text", key.spec_text).field("target", key.target).field("template_hash", key.template_hash);
  d.field("nvrtc_version", key.nvrtc_version).field("compile_options", key.compile_options);
  d.field("moejit_version", key.moejit_version);
  d.field("tile", tile).field("lowered_name", k.lowered_name).field("cubin", k.cubin);
  d.field("threads", k.threads).field("dynamic_shared_bytes", k.dynamic_shared_bytes);
  d.field("registers", k.resources.registers).field("static_shared_bytes", k.resources.static_shared_bytes);
  d.field("stack_bytes", k.resources.stack_bytes).field("spill_store_bytes", k.resources.spill_store_bytes);
  d.field("spill_load_bytes", k.resources.spill_load_bytes);
  d.field("source", k.source).field("ptx", k.ptx).field("log", k.log);
  return d.hex();
}

std::optional<std::string> record_problem(StoredKernel& row) {
  const CompiledKernel& k = row.kernel;
  // A read-only file of schema 3 or older keeps its rows under the key of every part.
  if (row.key.hash_hex() != row.key_hash && row.key.legacy_hash_hex() != row.key_hash) {
    return "its key parts (spec text, target, versions, options) no longer give its key hash";
  }
  KernelSpec spec;
  try {
    spec = parse_kernel_spec(row.key.spec_text);
  } catch (const std::exception& e) {
    return fmt::format("its spec text does not parse ({})", e.what());
  }
  if (spec.text() != row.key.spec_text || spec.target.text() != row.key.target || spec.tile.text() != row.tile) {
    return "its spec text, target and tile disagree";
  }
  if (k.threads != spec.threads() || k.dynamic_shared_bytes != spec.shared_bytes()) {
    return fmt::format("its launch geometry ({} threads, {} bytes of dynamic shared memory) is not its spec's "
                       "({} threads, {} bytes)",
                       k.threads, k.dynamic_shared_bytes, spec.threads(), spec.shared_bytes());
  }
  if (k.lowered_name.empty() || k.cubin.find(k.lowered_name) == std::string::npos) {
    return "its entry point is not in its CUBIN";
  }
  if (!same_resources(k.resources, kernel_resources(k.log, k.cubin))) {
    return "its resource usage is not what its CUBIN and log say";
  }
  // The fields nothing else constrains (the CUBIN's other bytes, source, PTX, log, the key's
  // versions) are covered by the hash alone.
  if (!row.record_hash.empty()) {
    if (record_hash(row.key, row.tile, k) != row.record_hash) {
      return "its contents no longer match its record hash (CUBIN, source, PTX, log or a key part changed)";
    }
  } else if (hex64(fnv1a64(k.cubin)) != row.cubin_hash) {
    return "its CUBIN no longer matches its hash";
  }
  row.kernel.spec = spec;
  return std::nullopt;
}

}  // namespace moejit
