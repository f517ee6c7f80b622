// One stored kernel as the database holds it, and the check every read applies before a
// row may serve a lookup: a digest over every field a lookup or a launch reads, and the
// fields that follow from others (geometry from the spec, resources from the CUBIN and
// log, the key hash from the key parts) recomputed and compared. A row that fails is
// never handed out.
#pragma once

#include <optional>
#include <string>

#include "compiler/compiled_kernel.hpp"
#include "runtime/kernel_key.hpp"

namespace moejit {

struct StoredKernel {
  std::string key_hash;      // the row's primary key
  KernelKey key;
  std::string tile;          // the tile column (also inside the spec text)
  CompiledKernel kernel;     // cubin, entry point, geometry, resources, artifacts; spec parsed by the check
  std::string record_hash;   // as stored; empty in rows written before schema 3
  std::string cubin_hash;    // as stored: the CUBIN alone (the check of schema 2)
  std::string origin;        // what made it: compile, tune or bake (provenance)
};

// The digest of a record's canonical form: each field by name and length, in a fixed
// order, so no two different records (nor a field moved into its neighbour) share a form.
// It covers the key's parts by name, not the key hash, so a key split into more parts
// adds fields here without changing how the other fields are covered.
std::string record_hash(const KernelKey& key, const std::string& tile, const CompiledKernel& kernel);

// Why the stored row cannot be used, or nothing when it can; on success the kernel's spec
// is parsed from the key's spec text. Rows of schema 2 (no record hash) are held to the
// CUBIN hash and the recomputed fields.
std::optional<std::string> record_problem(StoredKernel& row);

}  // namespace moejit
